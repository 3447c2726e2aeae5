"""The `tunesmith data augment` spec: relations of answer and question templates, loaded strictly from YAML.

Run as: library code; `tunesmith data augment SPEC.yaml ...` loads it (examples/elements/augment.yaml is one).
"""
from __future__ import annotations

import string
from enum import Enum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tunesmith.config import field_model, read_yaml_mapping, validation_message

SPLITS = ("train", "valid", "eval")


class AugmentError(ValueError):
    """A spec or input problem, worded for the person running the command."""


class Holdout(str, Enum):
    by_source = "by-source"
    by_template = "by-template"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Placeholder(Strict):
    """How a `{placeholder}` is filled; a placeholder not declared is the record field of the same name."""

    field: str = Field(description="Record field (or passage field) the value comes from.")
    case: Literal["as_is", "capitalize", "random"] = Field(
        "as_is", description="capitalize: first letter upper-cased; random: as written or capitalised, "
        "drawn once per question (answers always use the value as written).")
    format: Literal["plain", "ordinal"] = Field("plain", description="ordinal: 79 -> '79th'.")


class Relation(Strict):
    """One kind of fact: an answer template and the question templates that ask for it."""

    answer: str = Field(description="Answer template of train/valid chat rows, e.g. 'The symbol for {name} is {symbol}.'")
    train: list[str] = Field([], description="Question templates used only for training.")
    valid: list[str] = Field([], description="Question templates used only for validation.")
    eval: list[str] = Field([], description="Question templates used only for evaluation.")
    questions: list[str] = Field([], description="Templates split by `splits.template_fractions` instead.")
    eval_answer: str | None = Field(None, description="Placeholder whose value an eval item expects; "
                                    "default: the whole answer sentence.")
    case_sensitive: bool = Field(False, description="Eval items match case-sensitively ('Co' is not 'CO').")
    eval_aliases: str | None = Field(None, description="Record field listing other accepted eval answers.")
    eval_skip: list[str] = Field([], description="Answer values too ambiguous to score ('I', 'As'): no eval item.")

    @model_validator(mode="after")
    def _one_way_of_splitting(self) -> "Relation":
        explicit = self.train or self.valid or self.eval
        if explicit and self.questions:
            raise ValueError("give either train/valid/eval template lists or one `questions` list, not both")
        if not explicit and not self.questions:
            raise ValueError("no question templates: add train/valid/eval lists or a `questions` list")
        shared = (set(self.train) & set(self.valid)) | (set(self.train) & set(self.eval)) | (set(self.valid) & set(self.eval))
        if shared:
            raise ValueError(f"template in more than one split: {sorted(shared)[0]!r}")
        return self


class TemplateFractions(Strict):
    valid: float = Field(0.2, ge=0, le=1)
    eval: float = Field(0.2, ge=0, le=1)


class Splits(Strict):
    train_per_source: int | None = Field(None, ge=1, description="Training phrasings per source x relation (default all).")
    valid_size: int | None = Field(None, ge=0, description="Valid rows sampled from all facts (default one per fact).")
    template_fractions: TemplateFractions = Field(default_factory=TemplateFractions,
                                                  description="Share of a `questions` list held out per split.")


class EvalItems(Strict):
    id: str = Field("{relation}-{source_index}", description="Template of an eval item's id: {relation}, "
                    "{source_index} (1-based among the eval sources) or any placeholder, e.g. '{relation}-{number}'.")
    fields: dict[str, str] = Field({}, description="Extra item keys: key -> placeholder, e.g. {element: name}.")


class PassageSplitting(Strict):
    max_chars: int = Field(1200, ge=80, description="Longest passage; longer sections split at paragraphs, then sentences.")


class AugmentSpec(Strict):
    placeholders: dict[str, Placeholder] = Field({}, description="Placeholders that are not plain record fields.")
    relations: dict[str, Relation] = Field(description="Kinds of fact, by name.")
    splits: Splits = Field(default_factory=Splits)
    eval_items: EvalItems = Field(default_factory=EvalItems)
    passages: PassageSplitting = Field(default_factory=PassageSplitting)
    reverse: bool = Field(True, description="Records: also ask each one-to-one relation the other way round "
                          "(a cloze of its answer, `<relation>_reverse`) where no relation asks it yet; see data/reverse.py.")

    @model_validator(mode="after")
    def _templates_parse(self) -> "AugmentSpec":
        for name, relation in self.relations.items():
            for template in [relation.answer, *relation.train, *relation.valid, *relation.eval, *relation.questions]:
                try:
                    template_fields(template)
                except ValueError as exc:
                    raise ValueError(f"relations.{name}: template {template!r}: {exc}") from None
        return self


def _model_at(loc: tuple) -> type[BaseModel]:
    """The model that owns the keys at `loc` (for naming the nearest valid key of a typo)."""
    if len(loc) == 2 and loc[0] in ("relations", "placeholders"):
        return Relation if loc[0] == "relations" else Placeholder
    return field_model(AugmentSpec, loc)


def load_spec(path: Path) -> AugmentSpec:
    raw = read_yaml_mapping(path, AugmentError, "spec file", "with `relations`")
    try:
        return AugmentSpec.model_validate(raw)
    except ValidationError as exc:
        raise AugmentError(validation_message(exc, str(path), _model_at)) from None


def template_fields(template: str) -> set[str]:
    """Placeholder names in a template; ValueError for unbalanced braces."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
