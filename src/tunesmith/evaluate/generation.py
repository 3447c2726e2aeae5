"""QA accuracy: ask each item's question as one user turn, score the greedy answer against its answer.

Generation itself (chat template, stop tokens, batching) lives in models/generate.py.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tunesmith.evaluate.matching import match
from tunesmith.models.generate import generate_answers


@dataclass
class QAResult:
    accuracy: float
    rows: list[dict]  # each item plus "prediction" and "correct"
    by_relation: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    items_per_second: float = 0.0

    def summary(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "n": len(self.rows),
            "by_relation": self.by_relation,
            "seconds": round(self.seconds, 2),
            "items_per_second": round(self.items_per_second, 2),
        }


def is_correct(prediction: str, item: dict, method: str, **opts) -> bool:
    """Any of the item's answer and `aliases` matches; the item's own `match` options override `opts`."""
    options = opts | item.get("match", {})
    answers = [item["answer"], *item.get("aliases", [])]
    return any(match(prediction, str(answer), method, **options) for answer in answers)


def evaluate_qa(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: list[dict],
    method: str = "contains_answer",
    max_new_tokens: int = 32,
    batch_size: int = 32,
    system: str | None = None,
    progress: bool = True,
    autocast_dtype: torch.dtype | None = None,
    **match_opts,
) -> QAResult:
    """Ask each item's `question` as one user turn and score the greedy answer against `answer`.

    Items: {"id", "question", "answer", optional "relation", "aliases", "match": {matcher options}}.
    `system`, when given, is prepended as a system turn; otherwise the template's default applies.
    """
    prefix = [{"role": "system", "content": system}] if system is not None else []
    prompts = [prefix + [{"role": "user", "content": item["question"]}] for item in items]
    start = time.perf_counter()
    predictions = generate_answers(
        model, tokenizer, prompts, max_new_tokens, batch_size, progress, autocast_dtype=autocast_dtype
    )
    seconds = time.perf_counter() - start
    rows = [
        item | {"prediction": prediction, "correct": is_correct(prediction, item, method, **match_opts)}
        for item, prediction in zip(items, predictions)
    ]
    by_relation: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        by_relation[row.get("relation", "all")].append(row["correct"])
    return QAResult(
        accuracy=sum(row["correct"] for row in rows) / len(rows) if rows else 0.0,
        rows=rows,
        by_relation={name: sum(flags) / len(flags) for name, flags in sorted(by_relation.items())},
        seconds=seconds,
        items_per_second=len(rows) / seconds if seconds > 0 else 0.0,
    )
