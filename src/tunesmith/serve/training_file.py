"""An uploaded training file's kind and validation: supervised rows, preference pairs, prompts for a reinforcement
job, or classification rows for a moderation model.

Supervised files (chat, instruction, prompt-completion, ShareGPT or text rows: data/formats.py), preference pairs
(data/preference.py) and prompts (OpenAI's reinforcement rows, ending with a user turn: data/prompts.py) are checked
by data/check.py, whose report names the kind in each file's summary. Classification files, whose rows carry `label`
or `labels` (data/labels.py), make a job train a classifier. OpenAI's job API has no method for that, so the file's
rows decide: a client uploads its labelled file and creates the job as usual.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, computed_field

from tunesmith.data.check import DataReport, check_data, kind_name
from tunesmith.data.formats import RowError
from tunesmith.data.labels import class_balance, is_classification_file, load_labeled_file

class ClassificationFileSummary(BaseModel):
    """Named like data/check.py's FileSummary where they agree, so the web UI shows either."""

    role: Literal["train", "valid"]
    path: str
    kind: Literal["classification"] = "classification"
    format: Literal["single-label", "multi-label"]  # rows with `label` (one class) or `labels` (any number)
    rows: int
    valid_rows: int
    class_balance: dict[str, int]  # rows per label
    unlabelled: int  # multi-label rows with `[]` (harmless, for a moderation set)


class ClassificationReport(BaseModel):
    kind: Literal["classification"] = "classification"
    files: list[ClassificationFileSummary]
    errors: list[dict[str, Any]]  # RowError fields: file, line, field, message, hint

    @computed_field
    @property
    def ok(self) -> bool:
        return not self.errors


def check_classification(train_path: Path, valid_path: Path | None = None) -> ClassificationReport:
    """Rows valid as classification rows; a validation file must use the training file's form and labels."""
    train = load_labeled_file(train_path)
    loaded, errors = {"train": train}, list(train.errors)
    if valid_path is not None:
        labels = sorted({label for record in train.records for label in record.labels})
        valid = load_labeled_file(valid_path, label_set=labels or None)
        loaded["valid"], errors = valid, errors + valid.errors
        if valid.records and valid.mode != train.mode:
            errors.append(RowError(str(valid_path), 0, "", f"{valid.mode}-label rows, but the training file is {train.mode}-label",
                                   "write both files with the same key: label or labels"))
    summaries = []
    for role, file in loaded.items():
        balance = class_balance(file.records)
        summaries.append(ClassificationFileSummary(role=role, path=str(file.path), format=f"{file.mode}-label", rows=file.rows,
                                                   valid_rows=len(file.records), class_balance=balance.counts,
                                                   unlabelled=balance.unlabelled))
    return ClassificationReport(files=summaries, errors=[asdict(error) for error in errors])


def check_training_file(train_path: Path, valid_path: Path | None = None) -> DataReport | ClassificationReport:
    """The report for the training file's kind; a validation file of the other kind is an error in it."""
    if not is_classification_file(train_path):
        if valid_path is not None and is_classification_file(valid_path):
            return mixed_kinds(valid_path, "classification rows (label/labels)", kind_name(train_path))
        return check_data(train_path, valid_path)
    if valid_path is not None and not is_classification_file(valid_path):
        return mixed_kinds(valid_path, kind_name(valid_path), "classification rows (label/labels)")
    return check_classification(train_path, valid_path)


def mixed_kinds(valid_path: Path, found: str, expected: str) -> ClassificationReport:
    error = RowError(str(valid_path), 0, "", f"the validation file has {found}, the training file {expected}",
                     "validate with rows of the same kind as training")
    return ClassificationReport(files=[], errors=[asdict(error)])
