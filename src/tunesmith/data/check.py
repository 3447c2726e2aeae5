"""`tunesmith data check`: one report on a train (and valid) file before any training starts.

Errors (from `formats.load_file`) make the data unusable; warnings (truncated rows, exact and near
duplicates, train/valid leakage) and PII findings are for a person to judge. With a tokenizer the
report adds token statistics and a preview of one rendered example with its trained tokens marked.
Duplicates are found by duplicates.py; the CLI prints the report (cli_render.py).

Preference files (DPO pairs, data/preference.py) get the same report: their rows validated by
`load_preferences`, token statistics for prompt, preferred and non-preferred answer, whole pairs
repeated within a file, prompts shared between train and valid, and both trained sides of one pair.

Classification files ({"text", "label"} or {"text", "labels": [...]}, data/labels.py) get their rows
validated by `load_labeled_file` (a valid file against the training file's labels), the class balance of
each file, duplicates and leakage of texts, and token statistics as the classifier tokenizes them.

Prompt files (OpenAI's reinforcement rows: messages ending with the user turn to answer, data/prompts.py) get
their rows validated by `load_prompt_rows`, prompts repeated within a file or shared with valid, PII in the
prompts, and the prompt tokens as generation starts from them. Nothing in them is trained on: the answers are
sampled during training and scored by the job's grader, so there is no trained-token preview.
"""
from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict
from math import ceil
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, computed_field
from transformers import PreTrainedTokenizerBase

from tunesmith.data.classification_examples import classification_text
from tunesmith.data.duplicates import exact_groups, near_duplicate_clusters, normalize_record_content
from tunesmith.data.labels import LabeledFile, class_balance, is_classification_file, load_labeled_file
from tunesmith.data.formats import LoadedFile, Record, RowError, first_object_row, load_file
from tunesmith.data.pii import find_pii, masked_snippets
from tunesmith.data.preference import LoadedPreferences, PreferencePair, load_preferences, pair_token_lengths, render_pair
from tunesmith.data.prompts import LoadedPrompts, PromptRow, is_prompt_file, is_prompt_row, load_prompt_rows
from tunesmith.data.render import TokenizedExample, format_trained_tokens, render_chat, render_text, truncate
from tunesmith.models.chat import render_prompts
from tunesmith.models.classifier import encode_texts


class FileSummary(BaseModel):
    role: Literal["train", "valid"]
    path: str
    kind: Literal["chat", "text", "preference", "classification", "prompts"]
    format: str  # chat, instruction or text; openai or trl for preference pairs; label or labels for classification;
    # openai for prompts
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


class LengthBin(BaseModel):
    """Rows whose length in tokens lies in [low, high] (the web UI draws these as a histogram)."""

    low: int
    high: int
    rows: int


class TokenStats(BaseModel):
    file: str
    part: Literal["row", "prompt", "chosen", "rejected", "pair"] = "row"  # preference files: one line per part
    count: int
    min: int
    median: float
    p95: int  # nearest-rank 95th percentile
    max: int
    trained_tokens: int  # tokens with a label, after truncation to max_length (0 for prompts: nothing is trained)
    truncated_rows: int  # preference files: pairs whose longer side exceeds max_length, on the `pair` line;
    # prompt files: prompts at or over max_length, which training skips (no room is left for an answer)
    histogram: list[LengthBin] = []  # at most HISTOGRAM_BINS equal-width bins from min to max


class Preview(BaseModel):
    file: str
    line: int
    text: str  # rendered example, trained tokens wrapped in [[...]]; for a pair both sides, each under its name


class LabelBalance(BaseModel):
    """Rows per label of a classification file (a multi-label row counts once per label)."""

    file: str
    rows: int
    counts: dict[str, int]
    unlabelled: int  # multi-label rows with [] (harmless, for a moderation set)
    imbalance: float  # largest over smallest non-zero count, unlabelled rows counting as a class
    missing: list[str]  # labels of the training file that this file has no row of


class DataReport(BaseModel):
    max_length: int
    files: list[FileSummary]
    errors: list[dict[str, Any]]  # RowError fields: file, line, field, message, hint
    warnings: list[DataWarning]
    pii: list[PiiEntry]
    token_stats: list[TokenStats]
    preview: Preview | None = None
    class_balance: list[LabelBalance] = []  # classification files only

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
    """The report for the training file's kind: preference pairs, labelled texts, prompts, or chat/instruction/text rows."""
    if is_preference_file(train_path):
        return check_preferences(train_path, valid_path, tokenizer, max_length)
    if is_classification_file(train_path):
        return check_classification(train_path, valid_path, tokenizer, max_length)
    if is_prompt_file(train_path):
        return check_prompts(train_path, valid_path, tokenizer, max_length)
    loaded, mixed = {"train": load_file(train_path)}, []
    if valid_path is not None and (is_preference_file(valid_path) or is_prompt_file(valid_path)):
        mixed = _mixed_kinds(valid_path, kind_name(valid_path), "supervised rows")
    elif valid_path is not None:
        loaded["valid"] = load_file(valid_path)
    report = DataReport(
        max_length=max_length,
        files=[_summary(role, file) for role, file in loaded.items()],
        errors=[asdict(error) for file in loaded.values() for error in file.errors] + mixed,
        warnings=_duplicate_warnings(list(loaded.values())),
        pii=[entry for file in loaded.values() for entry in _pii_entries(str(file.path), file.records, _record_text)],
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
    records = [(index, record) for index, file in enumerate(files) for record in file.records]
    items = [(index, record.line, normalize_record_content(record)) for index, record in records]
    near = [normalize_record_content(record, system=False) for _, record in records]
    return _content_warnings(items, [str(file.path) for file in files], "identical content", near)


def _content_warnings(items: list[tuple[int, int, str]], names: list[str], identical: str,
                      near: list[str] | None = None) -> list[DataWarning]:
    """`items` are (file index, line, normalized content): exact and near duplicates, within files and across;
    `near`, when given, is the content to compare for near duplicates (per item)."""
    near = near if near is not None else [content for _, _, content in items]
    groups = exact_groups([content for _, _, content in items])
    warnings = []
    for group in groups:
        warnings += _group_warnings([items[i][:2] for i in group], names, "duplicate", "leakage", identical)
    first_of_each = [group[0] for group in groups] + _singletons(len(items), groups)
    clusters = near_duplicate_clusters([near[i] for i in first_of_each])
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


def _pii_entries(name: str, records: Iterable[Any], text_of: Callable[[Any], str]) -> list[PiiEntry]:
    """Each PII finding in a file's valid records (each with a `line`; `text_of(record)`: its text), masked."""
    entries = []
    for record in records:
        text = text_of(record)
        findings = find_pii(text)
        for finding, snippet in zip(findings, masked_snippets(text, findings)):
            entries.append(PiiEntry(file=name, line=record.line, kind=finding.kind, snippet=snippet))
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


HISTOGRAM_BINS = 12


def length_histogram(lengths: list[int], bins: int = HISTOGRAM_BINS) -> list[LengthBin]:
    """Equal-width integer bins covering min..max (fewer bins when the lengths span fewer values)."""
    low, high = min(lengths), max(lengths)
    width = ceil((high - low + 1) / bins)
    counts = [0] * ceil((high - low + 1) / width)
    for length in lengths:
        counts[(length - low) // width] += 1
    return [LengthBin(low=low + i * width, high=min(high, low + (i + 1) * width - 1), rows=n) for i, n in enumerate(counts)]


def _token_stats(name: str, lengths: list[int], trained: int, truncated_rows: int, part: str = "row") -> TokenStats:
    ordered = sorted(lengths)
    return TokenStats(
        file=name,
        part=part,
        count=len(ordered),
        min=ordered[0],
        median=statistics.median(ordered),
        p95=ordered[ceil(0.95 * len(ordered)) - 1],
        max=ordered[-1],
        trained_tokens=trained,
        truncated_rows=truncated_rows,
        histogram=length_histogram(ordered),
    )


# --- preference pairs (DPO)

PREFERENCE_ONLY_KEYS = ("preferred_output", "non_preferred_output", "chosen", "rejected")


def is_preference_file(path: str | Path) -> bool:
    """True when the first row that parses as a JSON object is a preference pair (answer keys, or an `input` object).

    Instruction rows also have `input`, but as a string; an unreadable file is not one (load_file reports it).
    """
    row = first_object_row(path)
    return row is not None and (any(key in row for key in PREFERENCE_ONLY_KEYS) or isinstance(row.get("input"), dict))


def check_preferences(
    train_path: str | Path,
    valid_path: str | Path | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    max_length: int = 2048,
) -> DataReport:
    loaded = {"train": load_preferences(train_path)}
    mixed = []
    if valid_path is not None:
        if is_preference_file(valid_path) or not Path(valid_path).is_file():
            loaded["valid"] = load_preferences(valid_path)
        else:
            mixed = _mixed_kinds(valid_path, kind_name(valid_path), "preference pairs")
    files = list(loaded.values())
    report = DataReport(
        max_length=max_length,
        files=[FileSummary(role=role, path=str(file.path), kind="preference", format=file.format, rows=file.rows,
                           valid_rows=len(file.pairs)) for role, file in loaded.items()],
        errors=[asdict(error) for file in files for error in file.errors] + mixed,
        warnings=_pair_warnings(files),
        pii=[entry for file in files for entry in _pii_entries(str(file.path), file.pairs, _pair_text)],
        token_stats=[],
    )
    if tokenizer is not None:
        for file in files:
            _add_pair_token_stats(report, file, tokenizer, max_length)
    return report


def kind_name(path: str | Path) -> str:
    """What a file holds, in the words of the error for a validation file of another kind than the training file."""
    if is_preference_file(path):
        return "preference pairs"
    if is_prompt_file(path):
        return "prompts (rows ending with a user turn)"
    return "classification rows" if is_classification_file(path) else "supervised rows"


def _mixed_kinds(valid_path: str | Path, found: str, expected: str) -> list[dict]:
    error = RowError(str(valid_path), 0, "", f"the validation file has {found}, the training file {expected}",
                     "validate with rows of the same kind as training")
    return [asdict(error)]


def _prompt_text(messages: list[dict]) -> str:
    """A prompt as compared for duplicates: each turn's role and content, lower-cased, whitespace collapsed."""
    return " ".join("\n".join(f"{m['role']}: {m['content']}" for m in messages).lower().split())


def _pair_warnings(files: list[LoadedPreferences]) -> list[DataWarning]:
    """Whole pairs repeated within a file; prompts shared between train and valid, exactly or nearly.

    One prompt with several pairs in one file is ordinary DPO data (different answers to rank), so
    prompts alone are compared only across files: a valid prompt seen in training measures nothing.
    """
    names = [str(file.path) for file in files]
    pairs = [(index, pair) for index, file in enumerate(files) for pair in file.pairs]
    by_prompt = [(index, pair.line, _prompt_text(pair.prompt)) for index, pair in pairs]
    whole = [(index, pair.line, f"{_prompt_text(pair.prompt)}\n{pair.chosen}\n{pair.rejected}") for index, pair in pairs]
    warnings = [w for w in _content_warnings(whole, names, "identical pairs") if w.kind == "duplicate"]
    return warnings + [w for w in _content_warnings(by_prompt, names, "the same prompt") if w.kind in ("leakage", "near_leakage")]


def _pair_text(pair: PreferencePair) -> str:
    return "\n".join([*(m["content"] for m in pair.prompt), pair.chosen, pair.rejected])


def _add_pair_token_stats(report: DataReport, file: LoadedPreferences, tokenizer: PreTrainedTokenizerBase, max_length: int) -> None:
    """Lengths before truncation per part; trained tokens of each side after it; the first pair as the preview."""
    name = str(file.path)
    parts: dict[str, list[int]] = {"prompt": [], "chosen": [], "rejected": [], "pair": []}
    trained, long_lines = dict.fromkeys(parts, 0), []
    for pair in file.pairs:
        try:
            lengths, rendered = pair_token_lengths(tokenizer, pair), render_pair(tokenizer, pair, max_length)
        except ValueError as error:
            report.errors.append(asdict(RowError(name, pair.line, "", f"cannot render: {error}", "use a base model with a standard chat template")))
            continue
        for part in parts:
            parts[part].append(lengths.longest if part == "pair" else getattr(lengths, part))
        trained["chosen"] += rendered.chosen.num_trained
        trained["rejected"] += rendered.rejected.num_trained
        trained["pair"] += rendered.chosen.num_trained + rendered.rejected.num_trained
        if lengths.longest > max_length:
            long_lines.append(pair.line)
        if report.preview is None:
            sides = (format_trained_tokens(tokenizer, rendered.chosen), format_trained_tokens(tokenizer, rendered.rejected))
            report.preview = Preview(file=name, line=pair.line, text=f"preferred:\n{sides[0]}\nnon-preferred:\n{sides[1]}")
    if long_lines:
        message = f"{len(long_lines)} pairs in {name} have a side longer than {max_length} tokens and will be truncated: lines {_lines(long_lines)}"
        report.warnings.append(DataWarning(kind="long_rows", message=message, locations=[Location(file=name, line=line) for line in long_lines]))
    if parts["pair"]:
        for part, lengths in parts.items():
            truncated = len(long_lines) if part == "pair" else 0
            report.token_stats.append(_token_stats(name, lengths, trained[part], truncated, part))


# --- classification (labelled texts)


def check_classification(
    train_path: str | Path,
    valid_path: str | Path | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    max_length: int = 2048,
) -> DataReport:
    loaded = {"train": load_labeled_file(train_path)}
    labels = sorted({label for record in loaded["train"].records for label in record.labels})
    mixed = []
    if valid_path is not None:
        valid = load_labeled_file(valid_path, labels or None)  # a label training never saw cannot be learnt
        if valid.records and loaded["train"].records and valid.mode != loaded["train"].mode:
            mixed = _mixed_kinds(valid_path, f"'{_label_key(valid)}' rows", f"'{_label_key(loaded['train'])}' rows")
        loaded["valid"] = valid
    files = list(loaded.values())
    report = DataReport(
        max_length=max_length,
        files=[FileSummary(role=role, path=str(file.path), kind="classification", format=_label_key(file), rows=file.rows,
                           valid_rows=len(file.records)) for role, file in loaded.items()],
        errors=[asdict(error) for file in files for error in file.errors] + mixed,
        warnings=_content_warnings([(index, record.line, " ".join(classification_text(record).lower().split()))
                                    for index, file in enumerate(files) for record in file.records],
                                   [str(file.path) for file in files], "identical text"),
        pii=[entry for file in files for entry in _pii_entries(str(file.path), file.records, classification_text)],
        token_stats=[],
        class_balance=[_label_balance(file, labels) for file in files],
    )
    if tokenizer is not None:
        for file in files:
            _add_label_token_stats(report, file, tokenizer, max_length)
    return report


def _label_key(file: LabeledFile) -> str:
    return "labels" if file.mode == "multi" else "label"


def _label_balance(file: LabeledFile, labels: list[str]) -> LabelBalance:
    balance = class_balance(file.records, labels)
    return LabelBalance(file=str(file.path), rows=balance.rows, counts=balance.counts, unlabelled=balance.unlabelled,
                        imbalance=round(balance.imbalance, 2), missing=balance.missing)


def _add_label_token_stats(report: DataReport, file: LabeledFile, tokenizer: PreTrainedTokenizerBase, max_length: int) -> None:
    """Lengths as the classifier tokenizes each text (models/classifier.encode_texts); every kept token is read."""
    if not file.records:
        return
    name = str(file.path)
    lengths = [len(row) for row in encode_texts(tokenizer, [classification_text(r) for r in file.records], sys.maxsize)]
    long_lines = [record.line for record, length in zip(file.records, lengths) if length > max_length]
    if long_lines:
        message = f"{len(long_lines)} rows in {name} are longer than {max_length} tokens and will be truncated: lines {_lines(long_lines)}"
        report.warnings.append(DataWarning(kind="long_rows", message=message, locations=[Location(file=name, line=line) for line in long_lines]))
    report.token_stats.append(_token_stats(name, lengths, sum(min(n, max_length) for n in lengths), len(long_lines)))
    if report.preview is None:
        first = file.records[0]
        report.preview = Preview(file=name, line=first.line,
                                 text=f"labels: {', '.join(first.labels) or '(none)'}\n[[{classification_text(first)}]]")



# --- prompts (reinforcement)


def check_prompts(
    train_path: str | Path,
    valid_path: str | Path | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    max_length: int = 2048,
) -> DataReport:
    """Prompts to sample answers to (data/prompts.py): row errors, repeated and leaked prompts, PII, prompt tokens."""
    loaded = {"train": load_prompt_rows(train_path)}
    mixed = []
    if valid_path is not None:
        first = first_object_row(valid_path)  # none: an empty, missing or unreadable file, which the loader names
        if first is None or is_prompt_row(first):
            loaded["valid"] = load_prompt_rows(valid_path)
        else:
            mixed = _mixed_kinds(valid_path, kind_name(valid_path), "prompts (rows ending with a user turn)")
    files = list(loaded.values())
    report = DataReport(
        max_length=max_length,
        files=[FileSummary(role=role, path=str(file.path), kind="prompts", format="openai", rows=file.row_count,
                           valid_rows=len(file.rows)) for role, file in loaded.items()],
        errors=[asdict(error) for file in files for error in file.errors] + mixed,
        warnings=_prompt_warnings(files),
        pii=[entry for file in files for entry in _pii_entries(str(file.path), file.rows, _row_prompt_text)],
        token_stats=[],
    )
    if tokenizer is not None:
        for file in files:
            _add_prompt_token_stats(report, file, tokenizer, max_length)
    return report


def _row_prompt_text(row: PromptRow) -> str:
    return "\n".join(m["content"] for m in row.messages)


def _prompt_warnings(files: list[LoadedPrompts]) -> list[DataWarning]:
    """A prompt repeated within a file (sampled and graded that many times as often), and prompts shared between
    train and valid, exactly or nearly (a valid prompt seen in training measures nothing)."""
    items = [(index, row.line, _prompt_text(row.messages)) for index, file in enumerate(files) for row in file.rows]
    warnings = _content_warnings(items, [str(file.path) for file in files], "the same prompt")
    return [warning for warning in warnings if warning.kind in ("duplicate", "leakage", "near_leakage")]


def _add_prompt_token_stats(report: DataReport, file: LoadedPrompts, tokenizer: PreTrainedTokenizerBase,
                            max_length: int) -> None:
    """Each prompt as generation starts from it (chat template + generation prompt, models/chat.py); one at or over
    max_length leaves no room for an answer, and training skips it (train/reinforce.py)."""
    name, lengths, long_lines = str(file.path), [], []
    for row in file.rows:
        try:
            (ids,) = render_prompts(tokenizer, [row.messages])
        except ValueError as error:
            report.errors.append(asdict(RowError(name, row.line, "", f"cannot render: {error}", "use a base model with a standard chat template")))
            continue
        lengths.append(len(ids))
        if len(ids) >= max_length:
            long_lines.append(row.line)
    if long_lines:
        message = (f"{len(long_lines)} prompts in {name} are {max_length} tokens or longer, which leaves no room for an "
                   f"answer: training skips them: lines {_lines(long_lines)}")
        report.warnings.append(DataWarning(kind="long_rows", message=message, locations=[Location(file=name, line=line) for line in long_lines]))
    if lengths:
        report.token_stats.append(_token_stats(name, lengths, 0, len(long_lines), "prompt"))
