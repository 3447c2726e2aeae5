"""Per-label decision thresholds chosen on the validation set for a target false-positive rate.

For each label, the threshold is the lowest one at which at most `target_fpr` of the validation rows
WITHOUT that label score at or above it: the most recall the false-positive budget allows. The k-th
highest negative score (k = floor(target_fpr × negatives)) sets it, nudged up by one float32 step so that
score itself stays below: ties never push the rate over the budget.

A moderation text is flagged when ANY label fires, so thirteen labels each at 5% could flag far more
than 5% of harmless text. For multi-label models with unlabelled rows (`labels: []`, harmless), the
thresholds are then raised, one negative score at a time on the label that flags the most of those rows,
until at most `target_fpr` of them are flagged by any label. Single-label rows always carry a class, so
only the per-label rule applies to them.

A label with no negative row in the validation set keeps 0.5 (nothing to calibrate against). A label with
no POSITIVE row stays at 0.5 or above: lowering it buys recall nobody measured. (The example moderation
run put `hate/threatening`, which no row carries, at 0.0145 without this floor.)
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

UNCALIBRATED = 0.5


def threshold_above(score: float) -> float:
    """The next float32 above `score`: a threshold that `score` itself does not reach."""
    return float(torch.nextafter(torch.tensor(score, dtype=torch.float32), torch.tensor(math.inf)))


def label_threshold(negative_scores: torch.Tensor, target_fpr: float) -> float:
    """Lowest threshold with at most floor(target_fpr × n) of `negative_scores` at or above it."""
    if negative_scores.numel() == 0:
        return UNCALIBRATED
    allowed = math.floor(target_fpr * negative_scores.numel())
    ranked = negative_scores.sort(descending=True).values
    if allowed >= ranked.numel():
        return 0.0
    return threshold_above(float(ranked[allowed]))


def calibrate_thresholds(scores: torch.Tensor, targets: torch.Tensor, labels: Sequence[str],
                         target_fpr: float, multi_label: bool = True) -> dict[str, float]:
    """{label: threshold}. scores, targets: (N, L) probabilities and 0/1 truth of the validation rows."""
    negatives = targets < 0.5  # (N, L)
    limits = [label_threshold(scores[negatives[:, j], j], target_fpr) for j in range(len(labels))]
    limits = [limit if (~negatives[:, j]).any() else max(limit, UNCALIBRATED) for j, limit in enumerate(limits)]
    unlabelled = negatives.all(dim=-1)  # (N,) rows carrying no label: harmless text
    if multi_label and unlabelled.any():
        limits = tighten_for_any_flag(scores[unlabelled], limits, target_fpr)
    return dict(zip(labels, limits))


def tighten_for_any_flag(scores: torch.Tensor, limits: list[float], target_fpr: float) -> list[float]:
    """Raise thresholds until at most `target_fpr` of these rows (N, L) fire any label (module docstring)."""
    limits = list(limits)
    allowed = math.floor(target_fpr * scores.shape[0])
    while True:
        fired = scores >= torch.tensor(limits)  # (N, L)
        flagged = fired.any(dim=-1)
        if int(flagged.sum()) <= allowed:
            return limits
        worst = int(fired[flagged].sum(dim=0).argmax())  # the label behind most of the flagged rows
        limits[worst] = threshold_above(float(scores[fired[:, worst], worst].min()))
