"""Labelled records (data/labels.py) → token ids and target vectors: what a classifier trains and is scored on.

Texts are tokenized by `models.classifier.encode_texts`, the function the served classifier uses, so
training and serving see the same ids. A chat row is classified as its turns written `role: content`, one
per line — the classifier reads the conversation, not the chat template's control tokens.

A target is a 0/1 vector over the run's labels: several ones for a multi-label row, none for a harmless
moderation row, exactly one for a single-label row (the loss takes its argmax as the class).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from transformers import PreTrainedTokenizerBase

from tunesmith.data.labels import LabeledRecord
from tunesmith.models.classifier import encode_texts


@dataclass
class ClassifiedExample:
    input_ids: list[int]
    target: list[float]  # one 0/1 per label, in the order of the run's labels
    truncated: bool = False


def classification_text(record: LabeledRecord) -> str:
    """The text a classifier reads for a record: its text, or its conversation as `role: content` lines."""
    if record.text is not None:
        return record.text
    return "\n".join(f"{message['role']}: {message['content']}" for message in record.messages or [])


def label_target(labels: Sequence[str], label_names: Sequence[str]) -> list[float]:
    wanted = set(labels)
    return [1.0 if name in wanted else 0.0 for name in label_names]


def records_to_classified(records: Sequence[LabeledRecord], tokenizer: PreTrainedTokenizerBase,
                          label_names: Sequence[str], max_length: int) -> list[ClassifiedExample]:
    """One example per record, cut to `max_length` tokens (`truncated` says which were cut)."""
    rows = encode_texts(tokenizer, [classification_text(record) for record in records], max_length + 1)
    return [
        ClassifiedExample(row[:max_length], label_target(record.labels, label_names), truncated=len(row) > max_length)
        for row, record in zip(rows, records)
    ]
