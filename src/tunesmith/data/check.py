"""`tunesmith data check`: one report on a train (and valid) file before any training starts.

Errors (from `formats.load_file`) make the data unusable; warnings (truncated rows, exact and near
duplicates, train/valid leakage) and PII findings are for a person to judge. With a tokenizer the
report adds token statistics and a preview of one rendered example with its trained tokens marked.
"""
from __future__ import annotations

import statistics
import string
import sys
from dataclasses import asdict, dataclass
from itertools import count
from collections import defaultdict
from math import ceil
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pydantic import BaseModel, computed_field
from rich.console import Console
from rich.table import Table
from rich.text import Text
from transformers import PreTrainedTokenizerBase

from tunesmith.data.formats import LoadedFile, Record, RowError, load_file
from tunesmith.data.pii import find_pii, masked_snippets
from tunesmith.data.render import TokenizedExample, format_trained_tokens, render_chat, render_text, truncate

SHOWN = 20  # entries printed per section; the rest are counted
NEAR_DUPLICATE_JACCARD = 0.8  # word 3-gram Jaccard similarity from which two rows are near duplicates


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


def records_to_examples(loaded: LoadedFile, tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[TokenizedExample]:
    """Training examples for the valid records of a file: one per chat, one or more chunks per text."""
    examples = []
    for record in loaded.records:
        if record.kind == "chat":
            examples.append(render_chat(tokenizer, record.messages, max_length))
        else:
            examples.extend(render_text(tokenizer, record.text, max_length))
    return examples


def _summary(role: Literal["train", "valid"], file: LoadedFile) -> FileSummary:
    return FileSummary(role=role, path=str(file.path), kind=file.kind, format=file.format, rows=file.rows, valid_rows=len(file.records))


def _duplicate_warnings(files: list[LoadedFile]) -> list[DataWarning]:
    """Exact and near duplicates within each file, and rows shared between train and valid (leakage)."""
    items = [(index, record.line, normalised_content(record)) for index, file in enumerate(files) for record in file.records]
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


def print_report(report: DataReport, console: Console) -> None:
    console.print(_files_table(report))
    if report.token_stats:
        console.print(_token_table(report))
    _print_capped(console, "Errors", [str(RowError(**error)) for error in report.errors], "bold red")
    _print_capped(console, "Warnings", [f"{w.kind}: {w.message}" for w in report.warnings], "yellow")
    _print_capped(console, "Possible personal data", [f"{p.file}:{p.line}: {p.kind}: {p.snippet}" for p in report.pii], "magenta")
    if report.preview is not None:
        console.print(Text(f"\nPreview ({report.preview.file}:{report.preview.line}), trained tokens in [[...]]:", style="bold"))
        console.print(_marked_preview(report.preview.text))
    if report.ok:
        console.print(Text("\nOK: no errors", style="bold green"))
    else:
        console.print(Text(f"\n{len(report.errors)} errors: fix them before training", style="bold red"))


def _files_table(report: DataReport) -> Table:
    table = Table(title="Data files")
    for column in ("role", "path", "format", "rows", "valid rows"):
        table.add_column(column, justify="right" if "rows" in column else "left")
    for summary in report.files:
        table.add_row(summary.role, Text(summary.path), summary.format, str(summary.rows), str(summary.valid_rows))
    return table


def _token_table(report: DataReport) -> Table:
    table = Table(title=f"Tokens per row (max_length {report.max_length})")
    for column in ("file", "rows", "min", "median", "p95", "max", "trained tokens", "truncated"):
        table.add_column(column, justify="left" if column == "file" else "right")
    for stats in report.token_stats:
        numbers = (stats.count, stats.min, f"{stats.median:g}", stats.p95, stats.max, stats.trained_tokens, stats.truncated_rows)
        table.add_row(Text(stats.file), *map(str, numbers))
    return table


def _print_capped(console: Console, title: str, lines: list[str], style: str) -> None:
    if not lines:
        return
    console.print(Text(f"\n{title} ({len(lines)})", style=style))
    for line in lines[:SHOWN]:
        console.print(Text(f"  {line}"), soft_wrap=True)
    if len(lines) > SHOWN:
        console.print(Text(f"  … {len(lines) - SHOWN} more not shown (all are in the JSON report)", style="dim"))


def _marked_preview(preview: str) -> Text:
    """Keep the [[...]] markers (they survive copying and plain terminals) and highlight what they enclose."""
    text = Text()
    for index, part in enumerate(preview.replace("]]", "[[").split("[[")):
        text.append(f"[[{part}]]" if index % 2 else part, style="bold green" if index % 2 else "")
    return text


# --- Duplicates: exact by normalised content, near by MinHash + LSH over word 3-grams, verified exactly ---
# (This belongs in its own module, data/dedup.py; it lives here until that file is allotted.)

_BANDS, _ROWS_PER_BAND = 12, 3  # 36 hashes; a 0.8-Jaccard pair shares a band with probability > 0.999
_PUNCTUATION_TO_SPACE = str.maketrans(string.punctuation, " " * len(string.punctuation))
# odd 64-bit constants that mix a few integers into one hash (products wrap mod 2^64)
_SHINGLE_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9], dtype=np.uint64)
_BAND_MIX = np.array([0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x27D4EB2F165667C5], dtype=np.uint64)


def normalised_content(record: Record) -> str:
    """Lowercased, whitespace-collapsed content; chat roles are kept so a question is not its answer."""
    body = record.text if record.kind == "text" else "\n".join(f"{m['role']}: {m['content']}" for m in record.messages)
    return " ".join(body.lower().split())


def exact_groups(contents: list[str]) -> list[list[int]]:
    """Indices of contents that occur more than once, grouped, in order of first occurrence."""
    positions: dict[str, list[int]] = defaultdict(list)
    for index, content in enumerate(contents):
        positions[content].append(index)
    return [group for group in positions.values() if len(group) > 1]


@dataclass
class ShingleSets:
    """Each row's sorted unique word 3-gram hashes, stored flat: row r owns hashes[starts[r]:ends[r]]."""

    rows: list[int]  # indices into the contents given; rows under 3 words have no 3-grams and are left out
    hashes: np.ndarray  # (S,) uint64
    starts: np.ndarray  # (R,)
    ends: np.ndarray  # (R,)

    def jaccard(self, a: int, b: int) -> float:
        first, second = self.hashes[self.starts[a] : self.ends[a]], self.hashes[self.starts[b] : self.ends[b]]
        shared = len(set(first.tolist()).intersection(second.tolist()))
        return shared / (len(first) + len(second) - shared)


def near_duplicate_clusters(contents: list[str], threshold: float = NEAR_DUPLICATE_JACCARD) -> list[tuple[list[int], float]]:
    """Clusters of indices whose word 3-gram Jaccard similarity is ≥ threshold, each with its weakest verified link.

    Candidates come from MinHash banding (each row is compared with the first row of every bucket it
    lands in, so the work grows linearly), are screened on signature agreement, then verified exactly.
    Contents under 3 words have no 3-grams and are left to the exact check.
    """
    sets = shingle_sets(contents)
    if len(sets.rows) < 2:
        return []
    signatures = _minhash(sets)  # (R, BANDS * ROWS_PER_BAND)
    pairs = _candidate_pairs(signatures)  # (P, 2)
    agreement = (signatures[pairs[:, 0]] == signatures[pairs[:, 1]]).mean(axis=1)
    edges = []
    for a, b in pairs[agreement >= threshold - 0.2].tolist():
        similarity = sets.jaccard(a, b)
        if similarity >= threshold:
            edges.append((a, b, similarity))
    parent = list(range(len(sets.rows)))
    for a, b, _ in edges:
        parent[_find(parent, a)] = _find(parent, b)
    weakest: dict[int, float] = {}
    for a, _, similarity in edges:
        root = _find(parent, a)
        weakest[root] = min(similarity, weakest.get(root, 1.0))
    members: dict[int, list[int]] = defaultdict(list)
    for index, row in enumerate(sets.rows):
        members[_find(parent, index)].append(row)
    return [(group, weakest[root]) for root, group in members.items() if len(group) > 1]


def shingle_sets(contents: list[str]) -> ShingleSets:
    word_ids: defaultdict[str, int] = defaultdict(count().__next__)
    ids, lengths, rows = [], [], []
    for index, content in enumerate(contents):
        words = content.translate(_PUNCTUATION_TO_SPACE).split()
        if len(words) >= 3:
            ids += [word_ids[word] for word in words]
            lengths.append(len(words))
            rows.append(index)
    ids_array = np.array(ids, dtype=np.uint64)
    owners = np.repeat(np.arange(len(rows), dtype=np.uint64), lengths)
    within_row = owners[:-2] == owners[2:]  # 3-grams that do not cross into the next row
    hashes = ids_array[:-2] * _SHINGLE_MIX[0] + ids_array[1:-1] * _SHINGLE_MIX[1] + ids_array[2:] * _SHINGLE_MIX[2]
    # One sort for (row, hash) order and per-row uniqueness: the row in the high bits, the hash in the rest.
    hash_bits = np.uint64(64 - max(1, len(rows).bit_length()))
    keys = np.sort((owners[:-2][within_row] << hash_bits) | (hashes[within_row] >> (np.uint64(64) - hash_bits)))
    if len(keys):  # no row with 3+ words leaves nothing to deduplicate
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
    row_of_key = (keys >> hash_bits).astype(np.int64)
    starts = np.searchsorted(row_of_key, np.arange(len(rows)))
    ends = np.r_[starts[1:], len(keys)].astype(starts.dtype)
    return ShingleSets(rows, keys & ((np.uint64(1) << hash_bits) - np.uint64(1)), starts, ends)


def _minhash(sets: ShingleSets) -> np.ndarray:
    """(R, H) signatures: per hash function, the minimum of a multiply-shift hash over each row's 3-grams."""
    rng = np.random.default_rng(0)
    size = _BANDS * _ROWS_PER_BAND
    multipliers = rng.integers(1, 2**63, size=size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    offsets = rng.integers(0, 2**63, size=size, dtype=np.uint64)
    signatures = np.empty((len(sets.rows), size), dtype=np.uint64)
    for column in range(size):
        hashed = (sets.hashes * multipliers[column] + offsets[column]) >> np.uint64(32)
        signatures[:, column] = np.minimum.reduceat(hashed, sets.starts)
    return signatures


def _candidate_pairs(signatures: np.ndarray) -> np.ndarray:
    """(P, 2) unique (bucket leader, member) pairs over all bands; the leader is a bucket's lowest index."""
    found = []
    indices = np.arange(len(signatures))
    for band in range(_BANDS):
        keys = (signatures[:, band * _ROWS_PER_BAND : (band + 1) * _ROWS_PER_BAND] * _BAND_MIX).sum(axis=1)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        run_start = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
        leaders = order[np.maximum.accumulate(np.where(run_start, indices, 0))]
        member = ~run_start
        found.append(np.stack([leaders[member], order[member]], axis=1))
    pairs = np.concatenate(found)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def _find(parent: list[int], index: int) -> int:
    while parent[index] != index:
        parent[index] = parent[parent[index]]
        index = parent[index]
    return index
