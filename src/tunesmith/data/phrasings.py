"""Question phrasings of each augment relation per split: the plan that augment.py expands and paraphrase.py extends.

Run as: library code; `tunesmith data augment` plans phrasings here before filling them from sources.

A phrasing is a question template written in the spec or by a model (a paraphrase of a spec
template). Both augment.py and paraphrase.py compare phrasings by `normalize_wording`, so the plan and
that comparison live here, below both.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Literal

from tunesmith.data.augment_spec import SPLITS, AugmentSpec


@dataclass(frozen=True)
class Phrasing:
    text: str
    origin: Literal["spec", "model"] = "spec"
    paraphrase_of: str | None = None


Plan = dict[str, dict[str, list[Phrasing]]]  # relation -> split -> question phrasings


def plan_phrasings(spec: AugmentSpec, seed: int) -> Plan:
    """Each relation's templates per split; a `questions` list is split by fraction, seeded per relation."""
    plan: Plan = {}
    for name, relation in spec.relations.items():
        if relation.questions:
            shuffled = list(relation.questions)
            random.Random(f"{seed}:{name}").shuffle(shuffled)
            fractions = spec.splits.template_fractions
            n_valid, n_eval = round(fractions.valid * len(shuffled)), round(fractions.eval * len(shuffled))
            lists = {"valid": shuffled[:n_valid], "eval": shuffled[n_valid : n_valid + n_eval],
                     "train": shuffled[n_valid + n_eval :]}
        else:
            lists = {"train": relation.train, "valid": relation.valid, "eval": relation.eval}
        plan[name] = {split: [Phrasing(text) for text in lists[split]] for split in SPLITS}
    return plan


def pooled(plan: Plan) -> Plan:
    """Every phrasing of a relation in every split (by-source holdout: phrasings are not the held-out axis)."""
    return {name: {split: [p for s in SPLITS for p in splits[s]] for split in SPLITS} for name, splits in plan.items()}


def normalize_wording(text: str) -> str:
    """Casefolded words (braces kept, so placeholders stay distinct), punctuation and spacing dropped.

    Two questions or templates with the same result say the same thing in the same words: augment
    keeps one of them, paraphrase rejects the second. This compares wordings, not answers: unlike
    `evaluate.matching.normalize_answer` it keeps articles and drops the punctuation inside numbers.
    """
    return " ".join(re.sub(r"[^\w\s{}]", " ", text.casefold()).split())
