"""Check a suite's gates against candidate and baseline metrics; each result says threshold and measured value.

Gain is signed so that positive is better: candidate − baseline for accuracy-like metrics, baseline −
candidate for loss-like ones. Forgetting is the negative gain. With `relative: true` both are divided
by |baseline| (a perplexity rise of 0.1 means 10%).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from tunesmith.evaluate.suite import Gate, metric_direction


@dataclass
class GateResult:
    metric: str
    condition: str  # min_gain, max_forgetting, min or max
    threshold: float
    measured: float  # the gain, the forgetting, or the candidate's value (what the threshold is compared with)
    candidate: float
    baseline: float | None
    relative: bool
    passed: bool

    def describe(self) -> str:
        unit = "%" if self.relative else ""
        scale = 100 if self.relative else 1
        verdict = "passed" if self.passed else "FAILED"
        comparison = {"min_gain": ">=", "max_forgetting": "<=", "min": ">=", "max": "<="}[self.condition]
        versus = f" (baseline {self.baseline:.4g} -> candidate {self.candidate:.4g})" if self.baseline is not None else ""
        return (f"gate {self.metric} {self.condition} {verdict}: measured {self.measured * scale + 0.0:.4g}{unit} "
                f"{comparison} threshold {self.threshold * scale:.4g}{unit} required{versus}")

    def to_dict(self) -> dict:
        return asdict(self) | {"message": self.describe()}


def gain(candidate: float, baseline: float, direction: int, relative: bool) -> float:
    difference = (candidate - baseline) * direction
    if not relative:
        return difference
    return difference / abs(baseline) if baseline else (0.0 if difference == 0 else float("inf") * difference)


def check_gates(gates: list[Gate], kinds: dict[str, str], candidate: dict[str, dict[str, float]],
                baseline: dict[str, dict[str, float]] | None) -> list[GateResult]:
    """`kinds`: task name → kind; `candidate`/`baseline`: task name → metrics. One result per condition."""
    results = []
    for gate in gates:
        task, _, metric = gate.metric.partition(".")
        value = candidate[task][metric]
        base = baseline[task][metric] if baseline is not None else None
        direction = metric_direction(kinds[task], metric)
        for condition in ("min_gain", "max_forgetting", "min", "max"):
            threshold = getattr(gate, condition)
            if threshold is None:
                continue
            if condition in ("min", "max"):
                measured = value
                passed = value >= threshold if condition == "min" else value <= threshold
                relative = False
            else:
                if base is None:
                    raise ValueError(f"gate {gate.metric} {condition} needs a baseline")
                change = gain(value, base, direction, gate.relative)
                measured = change if condition == "min_gain" else -change
                passed = measured >= threshold if condition == "min_gain" else measured <= threshold
                relative = gate.relative
            results.append(GateResult(gate.metric, condition, threshold, measured, value, base, relative, passed))
    return results
