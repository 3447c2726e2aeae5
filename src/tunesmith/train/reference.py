"""The DPO reference model's log-probabilities, computed once before training and kept in the run directory.

DPO measures how far the model moved from where it started: its reference is the model as training starts.
With a fresh LoRA adapter that is the same weights with the adapters disabled, computed in every batch
(preference_objective.py). Otherwise — a full finetune, a run continuing an adapter that is not zero, or
`dpo.reference: precomputed` — each pair's two log-probabilities are computed here, once, before any step and
before a checkpoint loads (so a resumed run still scores the starting model), and stored in
DIR/reference_logps.safetensors. A resumed run reuses the file when its key matches: the rendered tokens of
every pair and the starting model's identity (sha256 in the file's metadata); else it computes them again.

Every process scores every pair (no gather; under FSDP and DeepSpeed all ranks run the same forwards in
lockstep), through the strategy's loss path so sharded parameters are gathered around it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tunesmith.train.loop import LoopSettings, autocast
from tunesmith.train.preference_objective import PreferenceBatch, PreferenceExample, answer_logps, collate_pairs
from tunesmith.train.schedule import micro_batches

REFERENCE_FILE = "reference_logps.safetensors"


class AnswerLogps:
    """Scores a batch's answers through `Strategy.loss_sum` (the objective interface): ((2, P) log-probs, {})."""

    def loss_sum(self, model, batch: PreferenceBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logps = answer_logps(model, batch)
        return torch.stack([logps.chosen, logps.rejected]), {}


def reference_key(splits: dict[str, list[PreferenceExample]], starting_model: str) -> str:
    """sha256 over every pair's tokens and trained labels, per split, and the starting model's identity."""
    digest = hashlib.sha256(starting_model.encode())
    for name, examples in sorted(splits.items()):
        digest.update(name.encode())
        for pair in examples:
            for side in (pair.chosen, pair.rejected):
                digest.update(json.dumps([side.input_ids, side.labels]).encode())
    return digest.hexdigest()


@torch.no_grad()
def score_pairs(model, examples: list[PreferenceExample], settings: LoopSettings, batch_size: int = 16) -> torch.Tensor:
    """(2, N) log-probs of every pair's chosen and rejected answer under `model` as it is now."""
    was_training = model.training
    model.eval()
    device, scored = settings.strategy.world.device, []
    for chunk in micro_batches(examples, batch_size):
        batch = collate_pairs(chunk, settings).to(device)
        with autocast(settings.bf16, device):
            logps, _ = settings.strategy.loss_sum(model, AnswerLogps(), batch)
        scored.append(logps.float().cpu())
    model.train(was_training)
    return torch.cat(scored, dim=1) if scored else torch.zeros(2, 0)


def with_reference_logps(model, splits: dict[str, list[PreferenceExample]], settings: LoopSettings, run_dir: Path,
                         starting_model: str) -> dict[str, list[PreferenceExample]]:
    """`splits` with each pair's reference log-probs: read from the run directory, or computed and written there."""
    key = reference_key(splits, starting_model)
    path = run_dir / REFERENCE_FILE
    stored = read_reference(path, key)
    if stored is None:
        stored = {name: score_pairs(model, examples, settings) for name, examples in splits.items()}
        if settings.strategy.world.is_main:
            write_reference(path, stored, key)
    return {name: [pair.with_reference(float(c), float(r)) for pair, c, r in zip(examples, *stored[name])]
            for name, examples in splits.items()}


def read_reference(path: Path, key: str) -> dict[str, torch.Tensor] | None:
    """The stored (2, N) log-probs per split, or None when there are none for this key."""
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as handle:
        if (handle.metadata() or {}).get("key") != key:
            return None
        return {name: handle.get_tensor(name) for name in handle.keys()}


def write_reference(path: Path, scored: dict[str, torch.Tensor], key: str) -> None:
    staging = path.with_name(f".tmp-{path.name}")
    save_file({name: t.contiguous() for name, t in scored.items()}, str(staging), metadata={"key": key})
    staging.replace(path)  # atomic: a kill mid-write leaves no half file to be trusted on resume
