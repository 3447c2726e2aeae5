"""Rich rendering of what the `tunesmith data` commands return (the data-check report, the augment summary)
and of lineage: the tree of a model, the models made from a data file, an erasure.

Run as: library code for cli.py; `tunesmith data check FILE`, `tunesmith data augment SPEC.yaml ...`,
`tunesmith lineage MODEL`, `tunesmith erase --data FILE` and `tunesmith models scores NAME` print with it.

Library modules return data and never print: training and evaluation import the data package, and
printing there would pull rich tables into every run. The CLI renders what they return, here.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tunesmith.data.augment_spec import SPLITS
from tunesmith.data.formats import RowError

if TYPE_CHECKING:
    from tunesmith.data.augment import AugmentSummary
    from tunesmith.data.check import DataReport
    from tunesmith.registry.versions import ScoreHistory

SHOWN = 20  # entries printed per section of a data report; the rest are counted
SAMPLED_ANSWERS = "No answers in a prompt file: they are sampled from the model during training and scored by the grader."


def print_data_report(report: DataReport, console: Console) -> None:
    console.print(_files_table(report))
    if report.token_stats:
        console.print(_token_table(report))
    if report.class_balance:
        console.print(_balance_table(report))
    _print_capped(console, "Errors", [str(RowError(**error)) for error in report.errors], "bold red")
    _print_capped(console, "Warnings", [f"{w.kind}: {w.message}" for w in report.warnings], "yellow")
    _print_capped(console, "Possible personal data", [f"{p.file}:{p.line}: {p.kind}: {p.snippet}" for p in report.pii], "magenta")
    if report.preview is not None:
        console.print(Text(f"\nPreview ({report.preview.file}:{report.preview.line}), trained tokens in [[...]]:", style="bold"))
        console.print(_marked_preview(report.preview.text))
    if _prompts(report):
        console.print(Text(f"\n{SAMPLED_ANSWERS}", style="bold"))
    if report.ok:
        console.print(Text("\nOK: no errors", style="bold green"))
    else:
        console.print(Text(f"\n{len(report.errors)} errors: fix them before training", style="bold red"))


def _files_table(report: DataReport) -> Table:
    table = Table(title="Data files")
    for column in ("role", "path", "format", "rows", "valid rows"):
        table.add_column(column, justify="right" if "rows" in column else "left")
    for summary in report.files:
        row_format = f"{summary.kind} ({summary.format})" if summary.kind in ("preference", "classification", "prompts") else summary.format
        table.add_row(summary.role, Text(summary.path), row_format, str(summary.rows), str(summary.valid_rows))
    return table


def _prompts(report: DataReport) -> bool:
    return any(summary.kind == "prompts" for summary in report.files)


def _token_table(report: DataReport) -> Table:
    if _prompts(report):
        return _prompt_token_table(report)
    pairs = any(stats.part != "row" for stats in report.token_stats)  # preference files: prompt, chosen, rejected, pair
    table = Table(title=f"Tokens per {'pair part' if pairs else 'row'} (max_length {report.max_length})")
    for column in ("file", *(["part"] if pairs else []), "rows", "min", "median", "p95", "max", "trained tokens", "truncated"):
        table.add_column(column, justify="left" if column in ("file", "part") else "right")
    for stats in report.token_stats:
        numbers = (stats.count, stats.min, f"{stats.median:g}", stats.p95, stats.max, stats.trained_tokens, stats.truncated_rows)
        table.add_row(Text(stats.file), *([stats.part] if pairs else []), *map(str, numbers))
    return table


def _prompt_token_table(report: DataReport) -> Table:
    """Prompt files: each prompt's tokens as generation starts from it; nothing is trained, so no trained column."""
    table = Table(title=f"Prompt tokens per row, with the chat template (max_length {report.max_length})")
    for column in ("file", "rows", "min", "median", "p95", "max", f"skipped (≥ {report.max_length})"):
        table.add_column(column, justify="left" if column == "file" else "right")
    for stats in report.token_stats:
        numbers = (stats.count, stats.min, f"{stats.median:g}", stats.p95, stats.max, stats.truncated_rows)
        table.add_row(Text(stats.file), *map(str, numbers))
    return table


def _balance_table(report: DataReport) -> Table:
    """Rows per label, one column per file; a multi-label file's `[]` rows on their own line."""
    table = Table(title="Rows per label")
    table.add_column("label")
    for balance in report.class_balance:
        table.add_column(Path(balance.file).name, justify="right")
    for label in report.class_balance[0].counts:
        table.add_row(label, *(str(balance.counts.get(label, 0)) for balance in report.class_balance))
    if any(balance.unlabelled for balance in report.class_balance):
        table.add_row("(none)", *(str(balance.unlabelled) for balance in report.class_balance))
    table.add_row("imbalance", *(f"{balance.imbalance:g}×" for balance in report.class_balance), style="dim")
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


def print_augment_summary(summary: AugmentSummary, console: Console) -> None:
    table = Table(title=f"augmented {summary.sources} sources -> {summary.out}")
    table.add_column("relation")
    for split in SPLITS:
        table.add_column(split, justify="right")
    for relation, counts in summary.by_relation.items():
        table.add_row(relation, *(str(counts[split]) for split in SPLITS))
    table.add_row("[bold]rows[/]", *(f"[bold]{summary.rows[split]}[/]" for split in SPLITS))
    table.add_row("sources", *(str(summary.sources_per_split[split]) for split in SPLITS))
    table.add_row("duplicates dropped", *(str(summary.duplicates.get(split, 0)) for split in SPLITS))
    console.print(table)
    if summary.paraphrases_asked:
        rejected = ", ".join(f"{count} {reason}" for reason, count in summary.rejected_paraphrases.items()) or "none"
        console.print(f"model paraphrases kept: {summary.model_phrasings}; rejected: {rejected}")
    console.print("provenance of every row: sources.jsonl")


def print_lineage(lineage: dict, console: Console) -> None:
    """base → each ancestor → the model, each run with its data files and evaluations (a `Lineage.to_json()`).

    Lines are never wrapped or cropped: a path or digest broken over two lines cannot be copied.
    """
    lines = [f"base {lineage['base_model']}  weights sha256 {_short(lineage['base_model_sha256'])}"]
    for depth, run in enumerate(lineage["chain"]):
        pad = "   " * depth
        name = run["run_dir"] + (f"  ({run['model']})" if run["model"] else "")
        when = f"{run['started_at'] or '?'} by {run['started_by'] or '?'}"
        code = f"tunesmith {run['tunesmith_version'] or '?'} @ {(run['code_revision'] or 'unknown')[:12]}"
        lines.append(f"{pad}└─ {name} · {run['method']} · {when} · {code}")
        for data in run["data"]:
            source = f" (redacted from {data['source']['path']}, sha256 {_short(data['source']['sha256'])})" \
                if data.get("source") else ""
            rows = f"{data['rows']} rows, " if data.get("rows") is not None else ""
            file_id = f" [{data['file_id']}]" if data.get("file_id") else ""
            lines.append(f"{pad}   data {data['role']}: {data['path']}{file_id} ({rows}sha256 {_short(data['sha256'])}){source}")
        for replayed in run.get("replay") or []:  # mixed into every step: trained on as much as the data
            source = f" (redacted from {replayed['from']['path']})" if replayed.get("from") else ""
            lines.append(f"{pad}   replay {replayed['source']}: {replayed['path']} (sha256 {_short(replayed['sha256'])}){source}")
        for evaluation in run["evaluations"]:
            report = evaluation["reports"]["json"]
            verdict = "passed" if evaluation["passed"] else "FAILED"
            lines.append(f"{pad}   eval {evaluation['suite']}: {verdict} · {report['path']} sha256 {_short(report['sha256'])}")
    for line in lines:
        console.print(line, soft_wrap=True, markup=False, highlight=False)


def print_trained_on(digest: str, trained: list[dict], console: Console) -> None:
    """The models made from one data file (`TrainedOn.to_json()` each)."""
    if not trained:
        console.print(f"no model under the searched directories was trained on sha256 {digest}")
        return
    table = Table(title=f"models trained on sha256 {_short(digest)}")
    for column in ("model", "run directory", "how"):
        table.add_column(column, overflow="fold")
    for item in trained:
        how = item["how"] + (f" ({item['via_run_dir']})" if item["via_run_dir"] else "")
        table.add_row(item["model"] or "", item["run_dir"], how)
    console.print(table)


def print_erasure(report: dict, console: Console) -> None:
    """What `tunesmith erase` deleted and which models were made from the data (`ErasureReport.to_json()`)."""
    for path in report["deleted_files"]:
        console.print(f"deleted {path}", markup=False, highlight=False, soft_wrap=True)
    if not report["deleted_files"]:
        console.print("no copy of the data was found to delete", markup=False)
    print_trained_on(report["sha256"], report["trained_models"], console)
    for model in report["deleted_models"]:
        console.print(f"deleted model {model}", markup=False, highlight=False, soft_wrap=True)
    if report["trained_models"] and not report["deleted_models"]:
        console.print("retrain these models without the data, or run again with --delete-models", markup=False)


def _short(digest: str | None) -> str:
    return f"{digest[:12]}…" if digest else "unknown"


def print_score_history(name: str, history: ScoreHistory, served: int | None, console: Console) -> None:
    """One row per SUITE.TASK.METRIC, one column per version: every task after every update (accuracy-like
    scores in percent), a kept score marked ✗ where the version forgot it and (r) where it was retired."""
    table = Table(title=f"{name}: every task after every version (eval/update.json)",
                  caption="✗ forgotten: lost more than eval.max_points_lost · (r) retired: measured, not gated")
    table.add_column("suite.task.metric")
    for version, _ in history.rows:
        verdict = "passed" if version.passed else "FAILED"
        table.add_column(f"version {version.number}\n{verdict}" + ("\n(latest)" if version.number == served else ""),
                         justify="right")
    marks = {"FORGOTTEN": " ✗", "retired": " (r)"}
    for column in history.columns:
        row = [column]
        for _, cells in history.rows:
            value, verdict = cells.get(column, (None, ""))
            shown = "" if value is None else (f"{value:.1f}" if column.endswith(".perplexity") else f"{100 * value:.1f}%")
            row.append(shown + marks.get(verdict, ""))
        table.add_row(*row)
    console.print(table)
