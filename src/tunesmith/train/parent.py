"""Continued finetuning: start a run from a previous run (`model.parent`) instead of from the base model.

Run as: tunesmith train --from runs/v1 --data new.jsonl --out runs/v2

How a run starts from its parent:
- LoRA from a LoRA parent, `continue` (the default): base + the parent's adapter, trained further. The
  new adapter has the parent's shape and sits on the same base, so every version of a model is an
  adapter over one shared base (serve/model_pool.py switches between them without reloading it).
- LoRA from a LoRA parent, `stack`: a new adapter on the parent's merged weights; exported as ONE adapter
  over the shared base, of rank r_parent + r (stack_adapters), so serving does not change.
- anything from or to a full finetune: the parent's merged weights (model/), then LoRA or full as asked.

Forgetting control, chosen by measurement (benchmarks/continual.py on examples/continual: SmolLM2-135M,
LoRA r16, three updates; held-out accuracy on update 1's facts, best 85.5%, after updates 2 and 3):
plain continuation 63.8% then 23.2%; replay of a quarter of each step 76.8% then 53.6%; that plus
`anchor` 100 82.6% then 73.9%, at a smaller gain on the new facts; replay of half of each step 79.7%
then 87.0%, keeping update 2's facts within 2.6 points. The defaults are therefore `continue`, anchor 0
and, when `data.replay` is set, share 0.5. `stack` is implemented and tested (exported adapter equals
the merged model) but was not measured on the real model.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from peft import PeftModel
from safetensors.torch import load_file, save_file

from tunesmith.config import ConfigError, RunConfig, TrainConfig
from tunesmith.data.hashing import file_sha256
from tunesmith.models.load import load_model
from tunesmith.train.lora import apply_lora, peft_deprecation_silenced

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"

@dataclass
class ParentRun:
    """A finished run that another run continues from."""

    run_dir: Path
    record: dict  # its run.json
    config: dict  # its resolved config.yaml

    @property
    def method(self) -> str:
        return self.config["train"]["method"]

    @property
    def uses_lora(self) -> bool:
        """It trained LoRA adapters (a supervised lora run, or a dpo run on adapters): it exported adapter/."""
        return TrainConfig.model_validate(self.config["train"]).uses_lora

    @property
    def adapter_dir(self) -> Path:
        return self.run_dir / "adapter"

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"


def load_parent(run_dir: Path) -> ParentRun:
    """The parent run, refused (as a config error) unless it finished and exported its model."""
    run_dir = Path(run_dir)
    missing = [name for name in ("run.json", "config.yaml", "model/config.json") if not (run_dir / name).is_file()]
    if missing:
        raise ConfigError(f"model.parent: {run_dir} is not a finished tunesmith run (no {', '.join(missing)}) — "
                          "name the --out directory of a run that completed")
    record = json.loads((run_dir / "run.json").read_text())
    parent = ParentRun(run_dir, record, yaml.safe_load((run_dir / "config.yaml").read_text()))
    if parent.uses_lora and not (parent.adapter_dir / ADAPTER_CONFIG).is_file():
        raise ConfigError(f"model.parent: {run_dir} is a LoRA run without adapter/ — it was not exported; rerun it")
    return parent


def ancestors(run_dir: Path) -> list[ParentRun]:
    """The parent, its parent, ... (nearest first), through each run.json's `parent.run_dir`."""
    found: list[ParentRun] = []
    seen: set[Path] = set()
    current = load_parent(run_dir)
    while True:
        if current.run_dir.resolve() in seen:
            raise ConfigError(f"model.parent: {current.run_dir} is its own ancestor — run.json parents form a loop")
        seen.add(current.run_dir.resolve())
        found.append(current)
        parent = current.record.get("parent")
        if not parent:
            return found
        current = load_parent(Path(parent["run_dir"]))


def continues_adapter(config: RunConfig, parent: ParentRun) -> bool:
    return config.train.uses_lora and parent.uses_lora  # DPO continues an SFT adapter too


def build_from_parent(config: RunConfig):
    """The model a run with `model.parent` trains: see the module docstring for which weights it starts from."""
    parent = load_parent(config.model.parent.run)
    attn = config.model.attn_implementation
    if not continues_adapter(config, parent):
        model = load_model(str(parent.model_dir), attn_implementation=attn)
        return apply_lora(model, config.lora) if config.train.uses_lora else model
    base = load_model(config.model.base, attn_implementation=attn)
    if config.model.parent.adapter == "continue":
        with peft_deprecation_silenced():
            return PeftModel.from_pretrained(base, parent.adapter_dir, is_trainable=True)
    with peft_deprecation_silenced():
        merged = PeftModel.from_pretrained(base, parent.adapter_dir).merge_and_unload()
    check_stackable(parent, config)
    return apply_lora(merged, config.lora)


def stacked_parent_adapter(config: RunConfig) -> Path | None:
    """The parent adapter a `stack` run's new adapter is combined with at export; None for other runs."""
    if config.model.parent is None or config.model.parent.adapter != "stack":
        return None
    parent = load_parent(config.model.parent.run)
    return parent.adapter_dir if continues_adapter(config, parent) else None


def check_stackable(parent: ParentRun, config: RunConfig) -> None:
    """Stacked adapters are exported as one, so they must adapt the same modules."""
    saved = json.loads((parent.adapter_dir / ADAPTER_CONFIG).read_text())
    wanted = config.lora.target_modules
    theirs = parent.config.get("lora", {}).get("target_modules", saved.get("target_modules"))
    if wanted != theirs:
        raise ConfigError(f"lora.target_modules {wanted!r} differs from the parent adapter's {theirs!r}: a stacked "
                          "adapter is exported together with its parent's, so both must adapt the same modules")


def adapter_scale(adapter_config: dict) -> float:
    if adapter_config.get("use_rslora"):
        return adapter_config["lora_alpha"] / adapter_config["r"] ** 0.5
    return adapter_config["lora_alpha"] / adapter_config["r"]


def stack_adapters(parent_dir: Path, new_dir: Path) -> None:
    """Rewrite `new_dir` as one adapter equal to parent + new: ΔW = s1·B1A1 + s2·B2A2 = [s1·B1, s2·B2]·[A1; A2].

    The combined adapter has rank r1 + r2 and alpha = rank (scale 1), the scales folded into B, so peft,
    merging and serving read it like any other adapter over the shared base.
    """
    configs = [json.loads((d / ADAPTER_CONFIG).read_text()) for d in (parent_dir, new_dir)]
    weights = [load_file(str(d / ADAPTER_WEIGHTS)) for d in (parent_dir, new_dir)]
    if set(weights[0]) != set(weights[1]):
        raise ConfigError(f"{new_dir}: the new adapter's modules differ from the parent's ({parent_dir}); "
                          "stacked adapters must adapt the same modules")
    scales = [adapter_scale(c) for c in configs]
    combined: dict[str, torch.Tensor] = {}
    for name in weights[0]:
        if "lora_A" in name:  # (r, in)
            combined[name] = torch.cat([weights[0][name], weights[1][name]], dim=0).contiguous()
        elif "lora_B" in name:  # (out, r)
            combined[name] = torch.cat([weights[0][name] * scales[0], weights[1][name] * scales[1]], dim=1).contiguous()
        else:
            raise ConfigError(f"{new_dir}: cannot stack adapter tensor {name} (only LoRA A/B matrices stack)")
    rank = configs[0]["r"] + configs[1]["r"]
    stacked = {**configs[1], "r": rank, "lora_alpha": rank, "use_rslora": False, "rank_pattern": {}, "alpha_pattern": {}}
    save_file(combined, str(new_dir / ADAPTER_WEIGHTS))
    (new_dir / ADAPTER_CONFIG).write_text(json.dumps(stacked, indent=2))


def anchor_to_parent(optimizer: torch.optim.Optimizer, strength: float) -> None:
    """After each step pull every trained weight back towards where it started (the parent's value).

    θ ← θ − lr·strength·(θ − θ_parent): L2 regularisation towards the parent, decoupled from Adam's scaling
    as AdamW decouples weight decay (whose pull is towards 0). The start is copied before a checkpoint is
    loaded, so a resumed run anchors to the same parent weights.
    """
    start = {p: p.detach().clone() for group in optimizer.param_groups for p in group["params"]}

    @torch.no_grad()
    def pull(opt: torch.optim.Optimizer, args, kwargs) -> None:
        for group in opt.param_groups:
            for p in group["params"]:
                p.sub_(p - start[p], alpha=group["lr"] * strength)

    optimizer.register_step_post_hook(pull)


def parent_record(config: RunConfig) -> dict | None:
    """run.json's `parent`: which run this one continued, pinned by the sha256 of its run.json and model."""
    if config.model.parent is None:
        return None
    parent = load_parent(config.model.parent.run)
    return {
        "run_dir": str(parent.run_dir.resolve()),
        "run_json_sha256": hashlib.sha256((parent.run_dir / "run.json").read_bytes()).hexdigest(),
        "model_sha256": model_weights_sha256(parent.model_dir),
        "method": parent.method,
        "adapter": config.model.parent.adapter if continues_adapter(config, parent) else "merged",
        "anchor": config.model.parent.anchor,
    }


def model_weights_sha256(directory: Path) -> str:
    """Over config.json and the weight files, in name order (as evaluate's report pins models)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.iterdir() if p.name == "config.json" or p.suffix in (".safetensors", ".bin")):
        digest.update(f"{path.name}:{file_sha256(path)}\n".encode())
    return digest.hexdigest()
