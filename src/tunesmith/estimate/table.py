"""Render an Estimate as a rich table: one column per scenario, so the saving of finetuning is visible.

Run as: tunesmith estimate examples/elements/demo.yaml
"""
from __future__ import annotations

from rich.table import Table

from tunesmith.estimate.estimate import Estimate


def format_duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2g} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds < 730 * 86400:
        return f"{seconds / 86400:,.0f} days"
    return f"{seconds / (365 * 86400):,.0f} years"


def format_bytes(count: float) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2)):
        if count >= size:
            return f"{count / size:,.1f} {unit}"
    return f"{count / 1024:,.0f} KiB"


def format_count(value: float) -> str:
    for suffix, size in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:,.3g}{suffix}"
    return f"{value:,.0f}"


def estimate_table(estimate: Estimate) -> Table:
    table = Table(title=f"{estimate.model} on {estimate.hardware.name}: "
                        f"{estimate.train_examples:,} examples, {estimate.epoch_tokens:,} tokens per epoch")
    table.add_column("")
    for scenario in estimate.scenarios:
        table.add_column(scenario.label, justify="right")
    memory_limit = estimate.hardware.memory_bytes

    def row(name: str, cell) -> None:
        table.add_row(name, *[cell(s) for s in estimate.scenarios])

    row("trained parameters", lambda s: format_count(s.trainable))
    row("optimizer steps", lambda s: f"{s.steps:,}")
    row("tokens", lambda s: format_count(s.tokens))
    row("training FLOPs", lambda s: "— (timed)" if s.flops is None else format_count(s.flops))
    row("peak memory", lambda s: format_bytes(s.peak_memory_bytes) + (" (probed)" if s.measured_memory else "")
        + ("" if s.peak_memory_bytes <= memory_limit else f" [red]> {format_bytes(memory_limit)}[/]"))
    row("time per epoch", lambda s: format_duration(s.seconds_per_epoch))
    if any(s.reference_seconds for s in estimate.scenarios):  # a preference run scoring its reference first
        row("reference pass", lambda s: format_duration(s.reference_seconds) if s.reference_seconds else "—")
    row("total time", lambda s: format_duration(s.total_seconds))
    row("cost", lambda s: "—" if s.cost is None else f"${s.cost:,.2f}")
    table.caption = "\n".join(estimate.notes)
    return table
