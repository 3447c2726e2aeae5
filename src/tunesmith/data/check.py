"""`tunesmith data check`: one report on a train (and valid) file before any training starts.

Errors (from `formats.load_file`) make the data unusable; warnings (truncated rows, exact and near
duplicates, train/valid leakage) and PII findings are for a person to judge. With a tokenizer the
report adds token statistics and a preview of one rendered example with its trained tokens marked.
Duplicates are found by duplicates.py; the CLI prints the report (cli_render.py).
"""
from __future__ import annotations

import statistics
import sys
from dataclasses import asdict
from math import ceil
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, computed_field
from transformers import PreTrainedTokenizerBase

from tunesmith.data.duplicates import exact_groups, near_duplicate_clusters, normalize_record_content
from tunesmith.data.formats import LoadedFile, Record, RowError, load_file
from tunesmith.data.pii import find_pii, masked_snippets
from tunesmith.data.render import TokenizedExample, format_trained_tokens, render_chat, render_text, truncate


class FileSummary(BaseModel):
    role: Literal["train", "valid"]
    path: str
    kind: Literal["chat", "text"]
    format: str
    rows: int
    valid_rows: int


class Location(BaseModel):
    file: str
    line: int


class DataWarning(BaseModel):
    kind: Literal["long_rows", "duplicate", "near_duplicate", "leakage", "near_leakage"]
    message: str
    locations: list[Location]


class PiiEntry(BaseModel):
    file: str
    line: int
    kind: str
    snippet: str  # the surrounding text with every finding redacted


class TokenStats(BaseModel):
    file: str
    count: int
    min: int
    median: float
    p95: int  # nearest-rank 95th percentile
    max: int
    trained_tokens: int  # tokens with a label, after truncation to max_length
    truncated_rows: int


class Preview(BaseModel):
    file: str
    line: int
    text: str  # rendered example, trained tokens wrapped in [[...]]


class DataReport(BaseModel):
    max_length: int
    files: list[FileSummary]
    errors: list[dict[str, Any]]  # RowError fields: file, line, field, message, hint
    warnings: list[DataWarning]
    pii: list[PiiEntry]
    token_stats: list[TokenStats]
    preview: Preview | None = None

    @computed_field
    @property
    def ok(self) -> bool:
        return not self.errors


def check_data(
    train_path: str | Path,
    valid_path: str | Path | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    max_length: int = 2048,
) -> DataReport:
    loaded = {"train": load_file(train_path)}
    if valid_path is not None:
        loaded["valid"] = load_file(valid_path)
    report = DataReport(
        max_length=max_length,
        files=[_summary(role, file) for role, file in loaded.items()],
        errors=[asdict(error) for file in loaded.values() for error in file.errors],
        warnings=_duplicate_warnings(list(loaded.values())),
        pii=[entry for file in loaded.values() for entry in _pii_entries(file)],
        token_stats=[],
    )
    if tokenizer is not None:
        for file in loaded.values():
            _add_token_stats(report, file, tokenizer, max_length)
    return report


def _summary(role: Literal["train", "valid"], file: LoadedFile) -> FileSummary:
    return FileSummary(role=role, path=str(file.path), kind=file.kind, format=file.format, rows=file.rows, valid_rows=len(file.records))


def _duplicate_warnings(files: list[LoadedFile]) -> list[DataWarning]:
    """Exact and near duplicates within each file, and rows shared between train and valid (leakage)."""
    items = [(index, record.line, normalize_record_content(record)) for index, file in enumerate(files) for record in file.records]
    names = [str(file.path) for file in files]
    groups = exact_groups([content for _, _, content in items])
    warnings = []
    for group in groups:
        warnings += _group_warnings([items[i][:2] for i in group], names, "duplicate", "leakage", "identical content")
    first_of_each = [group[0] for group in groups] + _singletons(len(items), groups)
    clusters = near_duplicate_clusters([items[i][2] for i in first_of_each])
    for cluster, similarity in clusters:
        members = [items[first_of_each[i]][:2] for i in cluster]
        warnings += _group_warnings(members, names, "near_duplicate", "near_leakage", f"≥{similarity:.0%} shared word 3-grams")
    return warnings


def _singletons(count: int, groups: list[list[int]]) -> list[int]:
    grouped = {i for group in groups for i in group}
    return [i for i in range(count) if i not in grouped]


def _group_warnings(members: list[tuple[int, int]], names: list[str], within: str, across: str, why: str) -> list[DataWarning]:
    """`members` are (file index, line) pairs; one warning for leakage, one per file with repeated rows."""
    warnings = []
    by_file = {index: sorted(line for i, line in members if i == index) for index in {i for i, _ in members}}
    locations = [Location(file=names[i], line=line) for i in sorted(by_file) for line in by_file[i]]
    if len(by_file) > 1:
        where = "; ".join(f"{names[i]} lines {_lines(lines)}" for i, lines in sorted(by_file.items()))
        warnings.append(DataWarning(kind=across, message=f"rows shared between train and valid ({why}): {where}", locations=locations))
    for index, lines in sorted(by_file.items()):
        if len(lines) > 1:
            message = f"{len(lines)} rows in {names[index]} are {within.replace('_', ' ')}s ({why}): lines {_lines(lines)}"
            warnings.append(DataWarning(kind=within, message=message, locations=[Location(file=names[index], line=line) for line in lines]))
    return warnings


def _lines(lines: list[int], shown: int = 10) -> str:
    text = ", ".join(map(str, lines[:shown]))
    return text + (f" (+{len(lines) - shown} more)" if len(lines) > shown else "")


def _record_text(record: Record) -> str:
    return record.text if record.kind == "text" else "\n".join(m["content"] for m in record.messages)


def _pii_entries(file: LoadedFile) -> list[PiiEntry]:
    entries = []
    for record in file.records:
        text = _record_text(record)
        findings = find_pii(text)
        for finding, snippet in zip(findings, masked_snippets(text, findings)):
            entries.append(PiiEntry(file=str(file.path), line=record.line, kind=finding.kind, snippet=snippet))
    return entries


def _add_token_stats(report: DataReport, file: LoadedFile, tokenizer: PreTrainedTokenizerBase, max_length: int) -> None:
    """Render every valid record once: lengths before truncation, trained tokens after it."""
    name, lengths, trained, long_lines = str(file.path), [], 0, []
    for record in file.records:
        try:
            full_length, examples = _render_record(record, tokenizer, max_length)
        except ValueError as error:
            report.errors.append(asdict(RowError(name, record.line, "", f"cannot render: {error}", "use a base model with a standard chat template")))
            continue
        lengths.append(full_length)
        trained += sum(example.num_trained for example in examples)
        if record.kind == "chat" and full_length > max_length:
            long_lines.append(record.line)
        if report.preview is None:
            report.preview = Preview(file=name, line=record.line, text=format_trained_tokens(tokenizer, examples[0]))
    if long_lines:
        message = f"{len(long_lines)} rows in {name} are longer than {max_length} tokens and will be truncated: lines {_lines(long_lines)}"
        report.warnings.append(DataWarning(kind="long_rows", message=message, locations=[Location(file=name, line=line) for line in long_lines]))
    if lengths:
        report.token_stats.append(_token_stats(name, lengths, trained, len(long_lines)))


def _render_record(record: Record, tokenizer: PreTrainedTokenizerBase, max_length: int) -> tuple[int, list[TokenizedExample]]:
    """(length in tokens before truncation, the examples the trainer will see)."""
    if record.kind == "chat":
        full = render_chat(tokenizer, record.messages, sys.maxsize)
        return len(full.input_ids), [truncate(full, max_length)]
    chunks = render_text(tokenizer, record.text, max_length)
    return sum(len(chunk.input_ids) for chunk in chunks), chunks


def _token_stats(name: str, lengths: list[int], trained: int, truncated_rows: int) -> TokenStats:
    ordered = sorted(lengths)
    return TokenStats(
        file=name,
        count=len(ordered),
        min=ordered[0],
        median=statistics.median(ordered),
        p95=ordered[ceil(0.95 * len(ordered)) - 1],
        max=ordered[-1],
        trained_tokens=trained,
        truncated_rows=truncated_rows,
    )
