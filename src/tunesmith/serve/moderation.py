"""Moderation verdicts: a moderation model's name → its loaded classifier, and its scores → OpenAI's result shape.

A classifier's labels map onto OpenAI's 13 categories through its `category_map` (models/classifier.py):
a category's score is the highest score of the labels that stand for it, and it is flagged when any of
those labels reaches its calibrated threshold. Categories the model does not cover score 0 and are never
flagged, yet still appear: OpenAI's response always names all 13, and its client expects them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunesmith.data.labels import MODERATION_CATEGORIES
from tunesmith.models.classifier import is_classifier_dir
from tunesmith.registry import models
from tunesmith.registry.db import Database
from tunesmith.serve.classifier_pool import ClassifierPool, ServedClassifier
from tunesmith.serve.errors import APIError
from tunesmith.serve.settings import ServeSettings

# OpenAI's moderation model names; each stands for the server's default moderation model (--moderation-model).
ALIASES = ("omni-moderation-latest", "omni-moderation-2024-09-26", "text-moderation-latest", "text-moderation-stable")


@dataclass
class Verdict:
    """One input's moderation: every category's score and flag."""

    scores: dict[str, float]  # all 13 categories
    flags: dict[str, bool]  # all 13 categories

    @property
    def flagged(self) -> bool:
        return any(self.flags.values())

    def flagged_scores(self) -> dict[str, float]:
        """The flagged categories and their scores, highest first."""
        hits = {category: round(self.scores[category], 4) for category, flag in self.flags.items() if flag}
        return dict(sorted(hits.items(), key=lambda item: -item[1]))

    def result_object(self) -> dict:
        """One element of a /v1/moderations response's `results`."""
        return {"flagged": self.flagged, "categories": dict(self.flags), "category_scores": dict(self.scores),
                "category_applied_input_types": {category: ["text"] for category in MODERATION_CATEGORIES}}


def moderate(served: ServedClassifier, texts: list[str]) -> list[Verdict]:
    """One verdict per text, scored in a batch with the classifier's other waiting requests."""
    scores = served.batcher.score(texts)  # (N, L)
    category_scores, category_flags = served.classifier.by_category(scores)
    return [Verdict({c: float(row_scores.get(c, 0.0)) for c in MODERATION_CATEGORIES},
                    {c: bool(row_flags.get(c, False)) for c in MODERATION_CATEGORIES})
            for row_scores, row_flags in zip(category_scores, category_flags)]


def moderation_model_dir(db: Database, settings: ServeSettings, name: str, owner: str | None) -> Path:
    """The classifier directory a moderation model name stands for.

    `owner` is the calling key: it may use its own `ft:` models. None means the operator named the model
    (a guard), who may name any key's model, or a classifier directory on this machine.
    """
    if name in ALIASES:
        if settings.moderation_model is None:
            raise APIError(404, f"The model {name} is not configured on this server: start `tunesmith serve` with "
                                "--moderation-model DIR, or name an ft: moderation model.", param="model",
                           code="model_not_found")
        return settings.moderation_model
    tuned = models.get_model(db, owner, name) if owner is not None else models.find_model(db, name)
    if tuned is not None:
        directory = Path(tuned.run_dir)
    elif owner is None and Path(name).expanduser().is_dir():
        directory = Path(name).expanduser()
    elif name in settings.base_models():
        raise not_a_moderation_model(name)
    else:
        raise APIError(404, f"The model {name} does not exist or you do not have access to it.", param="model",
                       code="model_not_found")
    if not (is_classifier_dir(directory) or is_classifier_dir(directory / "model")):
        raise not_a_moderation_model(name)
    return directory


def not_a_moderation_model(name: str) -> APIError:
    return APIError(400, f"The model {name} is a chat model, not a moderation model: name an ft: model trained on "
                         f"a classification file, or {ALIASES[0]}.", param="model", code="invalid_model")


def load_moderation_model(pool: ClassifierPool, db: Database, settings: ServeSettings, name: str,
                          owner: str | None) -> ServedClassifier:
    return pool.get(name, moderation_model_dir(db, settings, name, owner))
