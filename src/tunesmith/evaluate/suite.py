"""Evaluation suite YAML: typed and strict task declarations plus the gates a candidate must pass.

A suite names tasks (each a `kind` with its data file) and gates on `task.metric` names. Relative
paths are relative to the suite file. Unknown keys, unknown metrics in gates and duplicate task names
are errors that say what to write instead.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tunesmith.config import read_yaml_mapping, validation_message
from tunesmith.evaluate.matching import METHODS
from tunesmith.models.load import inference_dtype

TaskName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]+$", description="Unique name; gates say `name.metric`.")]
DataPath = Annotated[Path, Field(description="JSONL file, relative to the suite file.")]
Limit = Annotated[int | None, Field(None, ge=1, description="Use only the first N items (None = all).")]


class SuiteError(ValueError):
    """A suite file, or a task data file it names, is invalid; the message says where and what to do."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Decoding(Strict):
    """Shared by candidate and baseline, so both answer the same prompts the same way."""

    max_new_tokens: int = Field(32, ge=1, description="Greedy decoding stops at end of turn or after this many tokens.")
    batch_size: int = Field(32, ge=1, description="Texts per scoring batch (losses, choices, classifier scores).")
    rows: int = Field(128, ge=1, description="Most answers decoded together in generation tasks (the serving engine's "
                      "continuous batching, models/decoding/offline.py; the demo's 416 questions: 18.4 s at 32 rows, 13.5 s at 128).")
    system: str | None = Field(None, description="System message before every prompt; None = the template's default.")
    bf16: bool | None = Field(None, description="Load the models with bf16 weights for every task (losses still summed in "
                              "float32); None = where the hardware has bf16 matmuls (AVX512-BF16 or AMX CPUs, bf16 GPUs). "
                              "Both models of a comparison use the same; greedy answers may differ from float32's at near-ties.")

    def dtype(self) -> torch.dtype:
        return inference_dtype(self.bf16)


class QATask(Strict):
    """Generation QA. Items: {id, question, answer, optional aliases, match: {matcher options}}."""

    kind: Literal["qa"]
    name: TaskName
    data: DataPath
    method: Literal[tuple(METHODS)] = Field("contains_answer", description="How an answer is matched: " + ", ".join(METHODS))
    limit: Limit = None


class ChoiceTask(Strict):
    """Multiple choice by log-likelihood of each option as the assistant's answer (no generation).

    Items: {id, question, choices: [str, ...], answer: index or the correct choice's text}.
    """

    kind: Literal["multiple_choice"]
    name: TaskName
    data: DataPath
    normalize: Literal["sum", "mean"] = Field("sum", description="Score by summed log-probability, or per token (favours long options less).")
    max_length: int = Field(512, ge=8, description="Tokens per prompt + option; longer ones are truncated.")
    limit: Limit = None


class ClassifyTask(Strict):
    """Classification. Items: {id, text, label} (one class) or {text, labels: [...]} (multi-label; [] = harmless).

    A classifier (a `train.method: classification` run) is scored with its calibrated thresholds; a chat
    model answers `template` and its labels are read from the answer (multilabel.py says what is measured).
    """

    kind: Literal["classification"]
    name: TaskName
    data: DataPath
    labels: list[str] = Field(..., min_length=2, description="The classes; a prediction naming none of them counts as `(none)`.")
    template: str = Field("{text}", description="User message; `{text}` is replaced by the item's text.")
    marked_file: DataPath | None = Field(None, description="Multi-label: JSONL of per-item records with `line` (1-based, in data); those matching marked_where are the marked items whose harmless ones give marked_fpr.")
    marked_where: dict[str, str] = Field(default_factory=dict, description="Key/value pairs a marked_file record must carry, e.g. {split: test, kind: alarming}.")
    limit: Limit = None


class LossTask(Strict):
    """Held-out loss and perplexity on a chat/instruction JSONL or raw-text file (trained tokens only)."""

    kind: Literal["loss"]
    name: TaskName
    data: DataPath
    max_length: int = Field(512, ge=8, description="Tokens per example (text documents are split into chunks).")
    limit: Limit = None


class GeneralTask(Strict):
    """Forgetting check: perplexity on general English text, and agreement with the baseline's answers."""

    kind: Literal["general"]
    name: TaskName
    text: DataPath = Field(..., description="Plain text (.txt, blank-line separated documents) or JSONL {text}.")
    prompts: DataPath = Field(..., description="JSONL {id, prompt}: everyday prompts without reference answers.")
    max_length: int = Field(256, ge=8, description="Tokens per text chunk.")
    limit: Limit = None


class SpeedTask(Strict):
    """Generation speed: latency of single requests and tokens per second, one request at a time and batched."""

    kind: Literal["speed"]
    name: TaskName
    prompts: DataPath = Field(..., description="JSONL {prompt} (or {question}).")
    requests: int = Field(8, ge=1, description="Prompts timed one at a time (after one untimed warm-up).")
    max_new_tokens: int = Field(64, ge=1, description="Tokens generated per request.")


class PreferenceTask(Strict):
    """Held-out preference pairs ranked by the implicit DPO reward, beta * (log pi(y|x) - log pi_base(y|x)).

    The reference model is the evaluation's baseline, so the baseline scores 0 on every answer
    (accuracy 0: only strict wins count, as in TRL). Items: OpenAI preference JSONL or TRL prompt/chosen/rejected.
    """

    kind: Literal["preference"]
    name: TaskName
    data: DataPath
    beta: float = Field(0.1, gt=0, description="Scale of the implicit reward; use the training run's dpo.beta.")
    max_length: int = Field(512, ge=8, description="Tokens per prompt + answer; longer sides are truncated.")
    limit: Limit = None


class StyleTask(Strict):
    """Share of the model's greedy answers that a style judge assigns to `label` (e.g. the brand's voice).

    The judge (TF-IDF + logistic regression) is trained at evaluation time on `texts`, the same way for
    baseline and candidate; its cross-validated accuracy on those texts is reported as `judge_accuracy`.
    """

    kind: Literal["style"]
    name: TaskName
    prompts: DataPath = Field(..., description="JSONL {id, prompt, optional reference}: held-out prompts the model answers.")
    texts: DataPath = Field(..., description="JSONL {text, label}: labelled texts that train the judge (none of them prompts' answers).")
    label: str = Field("brand", description="The label whose share of the answers is measured; every other label is 'not it'.")
    limit: Limit = None


class ToolCallTask(Strict):
    """Function calling (evaluate/tool_calls.py). Items: {id, messages, tools, expected: [{name, arguments}]}: the
    conversation so far and the tools offered, as OpenAI's API takes them, and the calls its next turn should make
    ([]: answer without calling). The model answers as `tunesmith serve` does with tool_choice "auto"."""

    kind: Literal["tool_calls"]
    name: TaskName
    data: DataPath
    limit: Limit = None


Task = Annotated[Union[QATask, ChoiceTask, ClassifyTask, LossTask, GeneralTask, SpeedTask, PreferenceTask, StyleTask,
                       ToolCallTask], Field(discriminator="kind")]
TASK_TYPES: dict[str, type[BaseModel]] = {
    "qa": QATask, "multiple_choice": ChoiceTask, "classification": ClassifyTask,
    "loss": LossTask, "general": GeneralTask, "speed": SpeedTask, "preference": PreferenceTask, "style": StyleTask,
    "tool_calls": ToolCallTask,
}

# +1: higher is better, -1: lower is better. Gates may name only these.
KIND_METRICS: dict[str, dict[str, int]] = {
    "qa": {"accuracy": 1},
    "multiple_choice": {"accuracy": 1},
    "classification": {"accuracy": 1, "macro_f1": 1, "harmful_f1": 1, "binary_macro_f1": 1, "harmful_recall": 1,
                       "harmless_fpr": -1, "marked_fpr": -1},  # all but the first two: multi-label items only
    "loss": {"loss": -1, "perplexity": -1},
    "general": {"loss": -1, "perplexity": -1, "agreement": 1, "exact_agreement": 1},
    "speed": {"latency_ms_p50": -1, "latency_ms_p95": -1, "tokens_per_s": 1, "batch_tokens_per_s": 1},
    "preference": {"reward_accuracy": 1, "margin": 1},
    "style": {"share": 1, "judge_accuracy": 1},
    "tool_calls": {"accuracy": 1, "name_accuracy": 1, "call_rate": 1, "false_call_rate": -1},
}


class Gate(Strict):
    """A condition on one metric. Gains and forgetting are signed so that positive means better."""

    metric: str = Field(..., description="`task.metric`, e.g. `facts.accuracy` or `general.perplexity`.")
    min_gain: float | None = Field(None, description="Candidate must beat the baseline by at least this much.")
    max_forgetting: float | None = Field(None, ge=0, description="Candidate may be worse than the baseline by at most this much.")
    min: float | None = Field(None, description="Absolute floor on the candidate's value.")
    max: float | None = Field(None, description="Absolute ceiling on the candidate's value.")
    relative: bool = Field(False, description="min_gain / max_forgetting are fractions of the baseline value (0.1 = 10%).")

    @model_validator(mode="after")
    def _has_a_condition(self) -> "Gate":
        if all(value is None for value in (self.min_gain, self.max_forgetting, self.min, self.max)):
            raise ValueError("a gate needs at least one of min_gain, max_forgetting, min, max")
        return self


class Suite(Strict):
    """Everything `tunesmith eval` runs; saved resolved in the report."""

    name: str = Field(..., description="Shown in reports.")
    decoding: Decoding = Decoding()
    tasks: list[Task] = Field(..., min_length=1)
    gates: list[Gate] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_and_metrics(self) -> "Suite":
        kinds = {}
        for task in self.tasks:
            if task.name in kinds:
                raise ValueError(f"two tasks are named {task.name!r}; task names must be unique")
            kinds[task.name] = task.kind
        for gate in self.gates:
            task_name, _, metric = gate.metric.partition(".")
            if task_name not in kinds:
                raise ValueError(f"gate metric {gate.metric!r}: no task named {task_name!r} (tasks: {', '.join(kinds)})")
            valid = KIND_METRICS[kinds[task_name]]
            if metric not in valid:
                raise ValueError(f"gate metric {gate.metric!r}: a {kinds[task_name]} task has metrics {', '.join(valid)}")
        return self

    def data_files(self) -> list[Path]:
        return [value for task in self.tasks for value in task.__dict__.values() if isinstance(value, Path)]


def metric_direction(kind: str, metric: str) -> int:
    return KIND_METRICS[kind][metric]


def load_suite(path: Path) -> Suite:
    """Parse and validate a suite file; relative data paths become relative to its directory."""
    path = Path(path)
    raw = read_yaml_mapping(path, SuiteError, "suite file", "with name, tasks and gates")
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as exc:
        raise SuiteError(validation_message(exc, str(path), _model_at)) from None
    for task in suite.tasks:
        for field, value in list(task.__dict__.items()):
            if isinstance(value, Path) and not value.is_absolute():
                setattr(task, field, (path.parent / value).resolve())
    missing = [str(file) for file in suite.data_files() if not file.is_file()]
    if missing:
        raise SuiteError(f"{path}: data file(s) not found: {', '.join(missing)}")
    return suite


def _model_at(loc: tuple) -> type[BaseModel]:
    """The model that owns a location such as ('tasks', 0, 'qa') or ('decoding',) or ('gates', 1)."""
    if loc[:1] == ("tasks",) and len(loc) >= 3 and loc[2] in TASK_TYPES:
        return TASK_TYPES[loc[2]]
    if loc[:1] == ("gates",):
        return Gate
    if loc[:1] == ("decoding",):
        return Decoding
    return Suite

