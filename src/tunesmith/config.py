"""Typed, layered, strict run configuration: defaults → YAML → CLI overrides.

Unknown keys are an error that names the nearest valid key, so a typo is never silently dropped.
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Callable, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunesmith.models.resolve import DEFAULT_BASE


class ConfigError(ValueError):
    """A config file or override is invalid; the message says where and what to do."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ParentConfig(Strict):
    """A previous run to continue from (`tunesmith train --from RUN`): continued finetuning, not a fresh start.

    Which forgetting control the defaults use, and what chose it, is said in train/parent.py.
    """

    run: Path = Field(..., description="The parent's run directory (run.json, config.yaml, model/, and adapter/ for LoRA).")
    adapter: Literal["continue", "stack"] = Field("continue", description="A LoRA run from a LoRA parent: keep training the parent's adapter (continue), or train a new adapter on the parent's merged weights, exported as one adapter of both ranks over the shared base (stack). Runs from or to a full finetune start from the parent's merged weights.")
    anchor: float = Field(0.0, ge=0, description="Pull towards the parent's weights after every step, θ -= lr·anchor·(θ − θ_parent) (L2 towards the parent, decoupled like AdamW's weight decay); 0 = off.")


class ModelConfig(Strict):
    base: str = Field(DEFAULT_BASE, description="Embedded model name, local HF directory, run directory or hub id. With model.parent it defaults to the parent's.")
    attn_implementation: Literal["sdpa", "eager"] = Field("sdpa", description="Attention kernel (packing uses a 4D mask with either).")
    parent: ParentConfig | None = Field(None, description="Continue from a previous run (a run directory, or {run, adapter, anchor}); None = start from model.base.")

    @field_validator("parent", mode="before")
    @classmethod
    def _run_directory_alone(cls, value: Any) -> Any:
        return {"run": value} if isinstance(value, (str, Path)) else value


class ReplayConfig(Strict):
    """Earlier training data and/or general text mixed into every step of a continued run, against forgetting.

    Each step draws round(share × batch_size) of its examples (at least one) from the replay sources present,
    alternating between them; which ones is a function of (seed, step), so a resumed run replays the same.
    """

    share: float = Field(0.5, gt=0, lt=1, description="Fraction of each step's examples drawn from replay (0.5: measured in train/parent.py).")
    from_parent: bool = Field(True, description="Replay the training files of the parent and every earlier ancestor, as their run.json records them (each must still match its recorded sha256).")
    general_text: Path | None = Field(None, description="Plain text (.txt, blank-line separated documents) or JSONL {text}: general language to keep, chunked to data.max_length.")
    general_chunk_tokens: int | None = Field(None, ge=8, description="Chunk the general text to this many tokens instead of data.max_length. Loss is averaged over a step's trained tokens, so one 256-token chunk outweighs a batch of short chat answers; short chunks keep replay a small share of the gradient.")
    general_share: float | None = Field(None, gt=0, lt=1, description="With both earlier data and general text replayed: the fraction of the replay slots that general text takes (None: the sources alternate, half each). A pool of short general chunks under kl_to_base needs few slots; the rest replay earlier data.")
    general_loss: Literal["next_token", "kl_to_base", "kl_to_parent"] = Field("next_token", description="How replayed general text is trained: next_token, like the new data (the model learns that text); kl_to_base, towards the base model's own predictions on it (KL(base || model) per token, the base being the same weights with the LoRA adapters off: LoRA runs only; train/base_anchor.py); kl_to_parent, towards the parent run's predictions (the parent's adapter weights swapped in: a LoRA run continuing a LoRA parent), so an update keeps what its parent does on general text without pulling the parent's own training back out.")

    drop_matching: list[str] = Field(default_factory=list, description="Regular expressions (Python `re`, searched in each row's message or text content): earlier rows that match any are not replayed. For rows the new data supersedes (corrected facts): replaying them keeps teaching what the update corrects. Each must match at least one earlier row; run.json records how many rows each dropped.")
    earlier_loss: Literal["next_token", "kl_to_parent"] = Field("next_token", description="How replayed earlier training data is trained: next_token, on its own answers again; kl_to_parent, towards the parent run's predictions on those answers (KL(parent || model) per answer token over the whole vocabulary, the parent's adapter swapped in: a LoRA run continuing a LoRA parent; train/base_anchor.py), so the update keeps the parent's whole answer distribution on earlier questions, not only its top tokens.")

    @model_validator(mode="after")
    def _has_a_source(self) -> "ReplayConfig":
        if not self.from_parent and self.general_text is None:
            raise ValueError("data.replay replays nothing: set from_parent: true or a general_text file")
        if self.drop_matching and not self.from_parent:
            raise ValueError("data.replay.drop_matching drops earlier rows from the replay: it needs from_parent: true (or remove it)")
        for pattern in self.drop_matching:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"data.replay.drop_matching: {pattern!r} is not a regular expression ({error})") from None
        if self.general_share is not None and not (self.from_parent and self.general_text is not None):
            raise ValueError("data.replay.general_share splits the replay slots between earlier data and general text: "
                             "it needs from_parent: true and a general_text file (or remove it)")
        return self


class DataConfig(Strict):
    train: Path | None = Field(None, description="Training file: chat/instruction JSONL, or raw text (.txt / JSONL with `text`).")
    valid: Path | None = Field(None, description="Validation file in the same format; loss is reported on it.")
    max_length: int = Field(1024, ge=8, description="Tokens per example; longer examples are truncated (data check warns).")
    packing: bool = Field(True, description="Pack short examples into one sequence with a block-diagonal mask.")
    share_prefix: bool | None = Field(None, description="With packing: examples of a batch that begin with the same untrained tokens (a chat template's system prompt) share one copy of them per row; each example still computes exactly what it would alone (train/packing.py). Default (null): on for packed supervised runs (train.method lora or full), off otherwise; the run's config.yaml records what it resolved to.")
    skip_invalid: bool = Field(False, description="Train on the valid rows and report the skipped ones, instead of refusing.")
    pii: Literal["refuse", "redact", "allow"] = Field("refuse", description="Personal data (emails, phones, cards, IBANs, national ids, IP and street addresses) in the train/valid files and the replayed general text: refuse to train, listing each by line (default: no shipped example has any, and nothing personal reaches a model unasked); redact into RUN_DIR/redacted/ and train on that copy (names too where a detector is installed); or allow.")
    replay: ReplayConfig | None = Field(None, description="Mix earlier data and/or general text into each step (continued runs); None = train on data.train alone.")


class LoraConfig(Strict):
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator (scale = alpha / r, or alpha / √r with rslora).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] | Literal["all-linear"] = Field("all-linear", description="Module names to adapt, or all linear layers but the output head.")
    rslora: bool = Field(False, description="Rank-stabilised LoRA (Kalajdzievski 2023; peft's use_rslora, Axolotl's peft_use_rslora): scale = alpha / √r instead of alpha / r, so higher ranks keep learning instead of being scaled down.")
    plus_lr_ratio: float | None = Field(None, gt=0, description="LoRA+ (Hayou et al. 2024; Axolotl's loraplus_lr_ratio): the B matrices learn at train.lr × this ratio, the A matrices at train.lr; the paper suggests 16. None = one learning rate for both.")


class DpoConfig(Strict):
    """Preference tuning (train.method: dpo): pairs of a preferred and a non-preferred answer to one prompt."""

    beta: float = Field(0.1, gt=0, description="How far the model may move from the reference: the implicit reward is beta × log(π/π_ref); smaller lets it move further.")
    loss: Literal["sigmoid", "ipo", "simpo"] = Field("sigmoid", description="sigmoid: DPO's −log σ(β × reward margin); ipo: IPO's squared loss on per-token log-ratios; simpo: SimPO's −log σ(β × (mean log-prob per token of the preferred answer − of the other) − γ), with no reference model (Meng et al. 2024; TRL's CPOTrainer loss_type simpo): no reference forward or precomputation, and the paper's β is larger (2 to 2.5).")
    simpo_gamma: float = Field(0.5, ge=0, description="SimPO's target reward margin γ (TRL's simpo_gamma); dpo.loss simpo only.")
    sft_weight: float = Field(0.0, ge=0, description="Adds this × the preferred answer's supervised loss (per token, averaged per pair), as RPO does: ranking alone need not change what the model writes.")
    reference: Literal["auto", "precomputed"] = Field("auto", description="The reference model's log-probs: auto = the same weights with the LoRA adapters disabled while the run's adapter starts at zero (no second copy), else precomputed; precomputed = computed once before training into DIR/reference_logps.safetensors and reused on resume.")


class ReinforcementConfig(Strict):
    """Reinforcement finetuning (train.method: reinforcement; GRPO, Shao et al. 2024, as TRL's GRPOTrainer): each step
    samples `group_size` answers to each of its prompts from the model being trained, scores them with the grader,
    and raises the log-probability of the answers that score above their group's mean (train/reward_objective.py)."""

    grader: dict[str, Any] | None = Field(None, description="The grader, in OpenAI's grader JSON (string_check, text_similarity, python, score_model, label_model or multi; train/graders.py): reads the answer as {{ sample.output_text }} and the prompt row's fields as {{ item.<key> }}; required.")
    judges: dict[str, str] = Field(default_factory=dict, description="What loads each model grader's judge: its `model` name → a base name, a model or run directory, or a hub id (train/local_judge.py); a name not listed loads as given. The judge answers under the grader's JSON schema, frozen, in this process.")
    group_size: int = Field(8, ge=2, description="Answers sampled per prompt (TRL's num_generations, default 8); each answer's advantage is its reward against its group's.")
    max_new_tokens: int = Field(256, ge=1, description="Longest sampled answer (TRL's max_completion_length); a longer one is cut there and trained as it stands, unless mask_truncated_answers.")
    mask_truncated_answers: bool = Field(False, description="Answers cut at max_new_tokens still count in their group's mean and std but train nothing (TRL's mask_truncated_completions, DAPO's advice): an unfinished answer is not penalised or rewarded for where it was cut.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the answers trained on (TRL's default 1.0).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling of the answers trained on.")
    beta: float = Field(0.0, ge=0, description="Weight of the per-token KL (k3) to the run's starting point (TRL's beta, default 0.0: no reference forward): the base model, the same weights with the LoRA adapters off, or the parent run whose adapter this run continues (its adapter weights swapped in); LoRA runs only.")
    scale_rewards: Literal["group", "none"] = Field("group", description="Advantages: (reward − group mean) / group std (group, GRPO and TRL's default) or not divided (none, as Dr. GRPO).")
    valid_samples: int = Field(64, ge=1, description="Validation prompts answered greedily at each evaluation (from data.valid); their mean reward is logged as valid_reward, and the validation loss is its negative (so early stopping keeps the best reward).")


WEIGHTS_METHODS = ("dpo", "classification", "reinforcement")  # methods whose weights train.weights names


class TrainConfig(Strict):
    method: Literal["lora", "full", "dpo", "classification", "reinforcement"] = Field("lora", description="lora / full: supervised finetuning of LoRA adapters (default) or of all weights; dpo: preference tuning on preferred / non-preferred pairs (the dpo section); classification: a label classifier with a head over the base model (the classification section); reinforcement: answers sampled from the model and scored by a grader (the reinforcement section; GRPO); dpo, classification and reinforcement train the weights train.weights names.")
    weights: Literal["lora", "full"] | None = Field(None, description="Which weights a dpo, classification or reinforcement run trains: LoRA adapters (None, the default; a classifier's head trains whole) or all; supervised runs say it in train.method.")
    epochs: float = Field(3, gt=0, description="Passes over the training data (fractions allowed).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    lr: float = Field(2e-4, gt=0, description="Peak learning rate.")
    batch_size: int = Field(8, ge=1, description="Examples per optimizer step (the effective batch).")
    micro_batch_size: int | None = Field(None, ge=1, description="Examples per forward pass; smaller than batch_size means gradient accumulation. None = batch_size.")
    warmup_ratio: float = Field(0.05, ge=0, le=1, description="Fraction of steps with linear warm-up.")
    scheduler: Literal["cosine", "linear", "constant"] = Field("cosine", description="Learning-rate schedule after warm-up.")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping threshold.")
    activation_checkpointing: bool = Field(False, description="Recompute layer activations in backward: less memory, ~30% more compute.")
    compile: bool = Field(False, description="torch.compile each decoder layer (inductor), at the first step: LoRA steps ~25-30% faster on the CPU at small batches, after 30-45 s of compiling (train/compiled_layers.py). Supervised runs (lora, full) in one process; needs a C++ compiler on the CPU.")
    grouped_attention: bool = Field(True, description="Training forwards on the CPU attend each packed example as its own small dense block instead of the row's whole masked square (train/grouped_attention.py); with model.attn_implementation sdpa only. Off: sdpa's kernels.")
    seed: int = Field(42, description="Seeds data order, initialisation and dropout.")
    bf16: bool | None = Field(None, description="bf16 autocast; None = on where the hardware supports it (AMX/AVX512-BF16 CPUs, bf16 GPUs).")
    log_every: int = Field(5, ge=1, description="Steps between metrics.jsonl lines.")
    eval_every: int | None = Field(None, ge=1, description="Steps between validation-loss evaluations; None = each epoch end.")
    early_stopping_patience: int | None = Field(None, ge=1, description="Stop once this many validations in a row have not lowered the best validation loss (HF Trainer's EarlyStoppingCallback, Axolotl's early_stopping_patience), and export the weights of the best validation, not the last (load_best_model_at_end); needs data.valid. Each new best is checkpointed and kept. None = train every step.")
    save_every: int = Field(50, ge=1, description="Steps between checkpoints (also at the end).")
    keep_checkpoints: int = Field(2, ge=1, description="Newest checkpoints kept on disk.")
    distributed: Literal["ddp", "fsdp", "deepspeed"] = Field("ddp", description="How several processes share a run: ddp (each holds the whole model, gradients summed), fsdp (parameters, gradients and optimizer state sharded: models that do not fit one device) or deepspeed (ZeRO through accelerate with train.deepspeed_config; needs the deepspeed package). A 1-process run ignores ddp and fsdp.")
    deepspeed_config: Path | None = Field(None, description="DeepSpeed JSON config passed through to accelerate; required with distributed: deepspeed.")
    time_budget: float | None = Field(None, gt=0, description="Minutes the training steps must fit (model loading and export not counted): after timing a few steps, the run fixes its total at what fits (at most what epochs / max_steps give) and the learning-rate schedule ends there; None = no limit.")
    neftune_alpha: float | None = Field(None, gt=0, description="NEFTune (Jain et al. 2023; TRL's and Axolotl's neftune_noise_alpha): uniform noise of magnitude alpha / √(row tokens × hidden size) added to the input embeddings of training forwards (not validation or reference forwards); the paper uses 5. Supervised runs (method lora or full). None = off.")
    report_to: list[Literal["tensorboard", "mlflow"]] = Field([], description="Also send metrics to TensorBoard (RUN_DIR/tensorboard) and/or MLflow (RUN_DIR/mlruns, or $MLFLOW_TRACKING_URI); needs the tensorboard / mlflow extra.")

    @property
    def uses_lora(self) -> bool:
        """LoRA adapters train (method lora, or dpo / classification / reinforcement without weights: full), not all weights."""
        return self.method == "lora" or (self.method in WEIGHTS_METHODS and self.weights != "full")

    @model_validator(mode="after")
    def _weights_only_with_dpo(self) -> "TrainConfig":
        if self.weights is not None and self.method not in WEIGHTS_METHODS:
            raise ValueError(f"train.weights is for method dpo, classification or reinforcement; a supervised run names its weights in train.method — "
                             f"drop train.weights, or set train.method: {self.weights}")
        return self

    @model_validator(mode="after")
    def _neftune_only_supervised(self) -> "TrainConfig":
        if self.neftune_alpha is not None and self.method not in ("lora", "full"):
            raise ValueError(f"train.neftune_alpha is for supervised runs (method lora or full), not {self.method} — "
                             "drop train.neftune_alpha")
        return self

    @model_validator(mode="after")
    def _compile_only_supervised(self) -> "TrainConfig":
        if self.compile and self.method not in ("lora", "full"):
            raise ValueError(f"train.compile is for supervised runs (method lora or full), not {self.method} — "
                             "set train.compile: false")
        return self

    @model_validator(mode="after")
    def _deepspeed_needs_config(self) -> "TrainConfig":
        if self.distributed == "deepspeed" and self.deepspeed_config is None:
            raise ValueError("train.distributed is deepspeed but train.deepspeed_config is not set: give the path of a DeepSpeed JSON config")
        return self


class ClassificationConfig(Strict):
    """Classification finetuning (train.method: classification) on {"text", "label"} or {"text", "labels"} rows."""

    labels: list[str] | None = Field(None, description="The classifier's labels, in output order; None = the labels seen in data.train, sorted. List them to keep a label no training row carries (a moderation model's 13 categories).")
    category_map: dict[str, list[str]] | None = Field(None, description="Which OpenAI moderation categories each label stands for (served by /v1/moderations); None = each label that is an OpenAI category maps to itself, others to none.")
    class_weights: Literal["balanced", "none"] = Field("balanced", description="Counter imbalance: balanced weighs a label's positive rows by negatives/positives (multi-label) or a class's rows by rows/(classes × its rows) (single-label); none = every row alike.")
    max_class_weight: float = Field(10.0, ge=1, description="Cap on a balanced class weight, so a label with a handful of rows cannot swamp a step.")
    layers: int | None = Field(None, ge=1, description="Keep only the first N decoder layers of the base under the head (None = all): a fraction of the compute per text, for training and serving (train/classification_model.py has the measurement).")
    target_fpr: float = Field(0.05, gt=0, lt=1, description="Calibration: each label's threshold is the lowest at which at most this share of validation rows without it would be flagged (multi-label: also at most this share of unlabelled rows flagged by any label). Needs data.valid; without it thresholds stay 0.5.")


class EvalConfig(Strict):
    suite: Path | None = Field(None, description="Evaluation suite YAML (tasks and gates); with it, a finished run is evaluated against its base model and DIR/eval/report.html written.")
    limit: int | None = Field(None, ge=1, description="Use only the first N items of each task (a quick look); None = all.")
    fail_on_gate: bool = Field(True, description="Exit non-zero when a gate fails (the trained model is kept either way).")
    max_points_lost: float = Field(2.0, ge=0, description="A run with model.parent must keep the suites of all its ancestors: each accuracy-like score may fall at most this many points below the best an ancestor reached, each loss or perplexity may rise at most this many percent above it.")
    retired: list[str] = Field(default_factory=list, description="`SUITE.TASK` of ancestor suites whose facts this run changes on purpose (corrections): reported, not gated.")


class RunConfig(Strict):
    """Everything a run needs; saved resolved as DIR/config.yaml."""

    out: Path = Field(Path("runs/latest"), description="Run directory: checkpoints, metrics, adapter, merged model.")
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    lora: LoraConfig = LoraConfig()
    train: TrainConfig = TrainConfig()
    dpo: DpoConfig = DpoConfig()
    classification: ClassificationConfig = ClassificationConfig()
    reinforcement: ReinforcementConfig = ReinforcementConfig()
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _inherit_from_parent(self) -> "RunConfig":
        """model.base, and lora when the parent's adapter is continued, default to the parent's; a clash is an error.

        A parent not trained yet (an example config naming a run still to come) is left to build_model to refuse.
        """
        parent = self.model.parent
        if self.data.replay is not None and self.data.replay.from_parent and parent is None:
            raise ValueError("data.replay.from_parent needs model.parent (the run whose data to replay)")
        if parent is not None and parent.anchor > 0 and self.train.distributed == "deepspeed":
            raise ValueError("model.parent.anchor does not work under train.distributed: deepspeed (its engine steps its "
                             "own copies of the weights) — use ddp or fsdp, or anchor: 0")
        if parent is None or not (parent.run / "config.yaml").is_file():
            return self
        saved = read_yaml_mapping(parent.run / "config.yaml", ConfigError, "parent config", "of sections")
        adapters = TrainConfig.model_validate(saved.get("train", {})).uses_lora and self.train.uses_lora
        base = saved["model"]["base"] if adapters else str(parent.run)  # else: the parent's merged weights
        if "base" not in self.model.model_fields_set:
            self.model.base = base
        elif self.model.base != base:
            raise ValueError(f"model.base is {self.model.base!r} but this run starts from {base!r} (model.parent "
                             f"{parent.run}) — drop model.base, it follows the parent")
        if adapters and parent.adapter == "continue":
            inherited = LoraConfig.model_validate(saved.get("lora", {}))
            if "lora" not in self.model_fields_set:
                self.lora = inherited
            elif (self.lora.r, self.lora.alpha, self.lora.target_modules) != (inherited.r, inherited.alpha, inherited.target_modules):
                raise ValueError(f"lora (r {self.lora.r}, alpha {self.lora.alpha}) differs from the parent adapter's "
                                 f"(r {inherited.r}, alpha {inherited.alpha}) that this run continues — drop the lora "
                                 "section, or set model.parent.adapter: stack to train a new adapter")
        return self

    @model_validator(mode="after")
    def _early_stopping_needs_validation(self) -> "RunConfig":
        if self.train.early_stopping_patience is not None and self.data.valid is None:
            raise ValueError("train.early_stopping_patience stops on the validation loss: set data.valid (a held-out "
                             "file in the training file's format)")
        return self

    @model_validator(mode="after")
    def _kl_to_base_needs_lora(self) -> "RunConfig":
        replay = self.data.replay
        if replay is not None and replay.general_loss == "kl_to_base":
            if replay.general_text is None:
                raise ValueError("data.replay.general_loss: kl_to_base applies to general text: set data.replay.general_text")
            if self.train.method != "lora":
                raise ValueError("data.replay.general_loss: kl_to_base needs train.method: lora (the base model's predictions "
                                 "are the adapters switched off) — use next_token for a full finetune")
        if replay is not None and replay.general_loss == "kl_to_parent":
            if replay.general_text is None:
                raise ValueError("data.replay.general_loss: kl_to_parent applies to general text: set data.replay.general_text")
            self._continues_parent_adapter("data.replay.general_loss: kl_to_parent", "use kl_to_base without a parent")
        if replay is not None and replay.earlier_loss == "kl_to_parent":
            if not replay.from_parent:
                raise ValueError("data.replay.earlier_loss: kl_to_parent applies to replayed earlier data: set data.replay.from_parent: true")
            self._continues_parent_adapter("data.replay.earlier_loss: kl_to_parent", "use next_token")
            if replay.general_loss == "kl_to_base":
                raise ValueError("data.replay: earlier_loss kl_to_parent and general_loss kl_to_base anchor to two different "
                                 "models; a run has one reference — use general_loss: kl_to_parent")
        return self

    def _continues_parent_adapter(self, what: str, otherwise: str) -> None:
        if self.train.method != "lora" or self.model.parent is None or self.model.parent.adapter != "continue":
            raise ValueError(f"{what} needs a LoRA run that continues its parent's adapter (train.method: lora, "
                             f"model.parent with adapter: continue): the parent's predictions are its adapter weights "
                             f"swapped in — {otherwise}")

    @model_validator(mode="after")
    def _share_prefix_in_packed_supervised_rows(self) -> "RunConfig":
        if self.data.share_prefix is None:  # the default: share wherever it applies (2.5x TRL's fastest; benchmarks/README.md)
            self.data.share_prefix = self.data.packing and self.train.method in ("lora", "full")
        if self.data.share_prefix and not self.data.packing:
            raise ValueError("data.share_prefix shares a prefix within packed rows: set data.packing: true, or drop share_prefix")
        if self.data.share_prefix and self.train.method in WEIGHTS_METHODS:
            raise ValueError(f"data.share_prefix applies to supervised runs (train.method lora or full); a {self.train.method} "
                             "run packs its examples whole — drop share_prefix")
        return self

    @model_validator(mode="after")
    def _micro_batch_divides(self) -> "RunConfig":
        micro = self.train.micro_batch_size
        if micro is not None and micro > self.train.batch_size:
            raise ValueError(f"train.micro_batch_size ({micro}) exceeds train.batch_size ({self.train.batch_size})")
        return self


def nearest_key(key: str, model: type[BaseModel]) -> str | None:
    matches = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.5)
    return matches[0] if matches else None


def field_model(root: type[BaseModel], path: tuple) -> type[BaseModel]:
    """The nested model that owns the keys at `path` (as far as the path names nested models)."""
    model = root
    for part in path:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        nested = [t for t in (annotation, *get_args(annotation)) if isinstance(t, type) and issubclass(t, BaseModel)]
        if not nested:  # a plain field, or a section that may be None (`ParentConfig | None`) is still a section
            break
        model = nested[0]
    return model


def validation_message(error: ValidationError, source: str, model_at: Callable[[tuple], type[BaseModel]]) -> str:
    """One line per problem: where, what; an unknown key names the nearest valid key of the model owning it."""
    lines = []
    for item in error.errors():
        location = ".".join(str(p) for p in item["loc"])
        if item["type"] == "extra_forbidden":
            parent = model_at(tuple(item["loc"][:-1]))
            guess = nearest_key(str(item["loc"][-1]), parent)
            hint = f" — did you mean {guess!r}?" if guess else f" — valid keys: {', '.join(parent.model_fields)}"
            lines.append(f"{source}: unknown key {location!r}{hint}")
        else:
            message = item["msg"].removeprefix("Value error, ")  # a validator's own sentence says where
            lines.append(f"{source}: {location}: {message}" if location else f"{source}: {message}")
    return "\n".join(lines)


def explain(error: ValidationError, source: str) -> ConfigError:
    return ConfigError(validation_message(error, source, lambda loc: field_model(RunConfig, loc)))


def read_yaml_mapping(path: Path, error: type[Exception], what: str, expected: str, empty_ok: bool = False) -> dict:
    """A YAML file whose top level is a mapping; otherwise `error` naming the file and what to fix."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise error(f"{what} {path} not found") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None
    if raw is None and empty_ok:
        return {}
    if not isinstance(raw, dict):
        raise error(f"{path}: the top level must be a mapping {expected}")
    return raw


def deep_merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Defaults, then the YAML file, then overrides given as dotted keys ({"train.lr": 1e-3})."""
    raw: dict = {}
    if path is not None:
        raw = read_yaml_mapping(path, ConfigError, "config file", "of sections (model, data, lora, train, eval)",
                                empty_ok=True)
    nested: dict = {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        return RunConfig.model_validate(deep_merge(raw, nested))
    except ValidationError as exc:
        raise explain(exc, str(path) if path else "config") from None


def save_config(config: RunConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
