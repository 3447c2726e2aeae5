"""report.html: one self-contained page (plots embedded as base64 PNG, inline CSS, no scripts, no network).

Plots: training/validation loss curves from the run's metrics.jsonl, baseline-vs-candidate bars per
task metric, confusion matrices and a classifier's threshold curves; tables: gates, metrics, sample
generations (regressions first).
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt  # noqa: E402

from tunesmith.train.metrics import read_metrics  # noqa: E402

SAMPLES_PER_TASK = 12
BASE_COLOUR, CAND_COLOUR = "#9aa5b1", "#2b6cb0"

CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #1a202c; }
h1 .pass { color: #276749; } h1 .fail { color: #c53030; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; width: 100%; font-size: 0.9rem; }
th, td { border: 1px solid #e2e8f0; padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f7fafc; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.passed td:first-child, tr.improved td:first-child { color: #276749; font-weight: 600; }
tr.failed td:first-child, tr.regressed td:first-child { color: #c53030; font-weight: 600; }
figure { margin: 1rem 0; } figure img { max-width: 100%; } pre { background: #f7fafc; padding: 0.5rem; overflow: auto; }
"""


def png_data_uri(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def loss_curve_plot(records: list[dict]) -> str | None:
    train = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None]
    valid = [(r["step"], r["valid_loss"]) for r in records if r.get("valid_loss") is not None]
    if not train and not valid:
        return None
    figure, axes = plt.subplots(figsize=(8, 3.5))
    if train:
        axes.plot(*zip(*train), label="training loss", color=CAND_COLOUR)
    if valid:
        axes.plot(*zip(*valid), "o-", label="validation loss", color="#dd6b20")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss (nats/token)")
    axes.grid(alpha=0.3)
    axes.legend()
    axes.set_title("Training run")
    return png_data_uri(figure)


def metric_bars_plot(tasks: list[dict]) -> str:
    panels = [(task, metric) for task in tasks for metric in task["candidate"]["metrics"]]
    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.8 * rows), squeeze=False)
    for axis in axes.flat[len(panels):]:
        axis.axis("off")
    for axis, (task, metric) in zip(axes.flat, panels):
        values = [task["baseline"]["metrics"][metric], task["candidate"]["metrics"][metric]]
        heights = [value if value is not None else 0 for value in values]
        bars = axis.bar(["baseline", "candidate"], heights, color=[BASE_COLOUR, CAND_COLOUR])
        for bar, value in zip(bars, values):
            axis.annotate("n/a" if value is None else f"{value:.3g}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                          ha="center", va="bottom", fontsize=8)
        arrow = "↑" if task["higher_is_better"][metric] else "↓"
        axis.set_title(f"{task['name']}: {metric} ({arrow} better)", fontsize=9)
        axis.set_ylim(0, max(heights) * 1.15 or 1)  # bars start at 0; an all-zero panel still has a scale
    figure.tight_layout()
    return png_data_uri(figure)


def confusion_plot(task: dict) -> str:
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, side in zip(axes, ("baseline", "candidate")):
        confusion = task[side]["details"]["confusion"]
        matrix = confusion["matrix"]
        axis.imshow(matrix, cmap="Blues")
        axis.set_xticks(range(len(confusion["columns"])), confusion["columns"], rotation=45, ha="right")
        axis.set_yticks(range(len(confusion["labels"])), confusion["labels"])
        peak = max(max(row) for row in matrix) or 1
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                axis.text(j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black")
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.set_title(f"{task['name']}: {side}")
    figure.tight_layout()
    return png_data_uri(figure)


def threshold_curves_plot(task: dict) -> str:
    """A classifier's threshold curves (multilabel.threshold_curves): harmful vs harmless on the left, recall per
    category on the right; the dots mark each side's measured operating point (its calibrated thresholds)."""
    curves = task["candidate"]["details"]["curves"]
    thresholds = curves["thresholds"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(thresholds, curves["harmful_recall"], label="harmful recall", color=CAND_COLOUR)
    left.plot(thresholds, curves["harmless_fpr"], label="harmless flagged", color="#dd6b20")
    left.plot(thresholds, curves["marked_fpr"], "--", label="marked harmless flagged", color="#c53030")
    metrics = task["candidate"]["metrics"]
    for value, colour in ((metrics["harmful_recall"], CAND_COLOUR), (metrics["harmless_fpr"], "#dd6b20"),
                          (metrics["marked_fpr"], "#c53030")):
        left.axhline(value, color=colour, alpha=0.25, linewidth=1)
    left.set_xlabel("one threshold on every category")
    left.set_ylabel("share of rows")
    left.set_title(f"{task['name']}: harmful vs harmless (lines: at the calibrated thresholds)", fontsize=9)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    for label, values in curves["per_category"].items():
        if any(values["recall"]) or any(values["precision"]):
            right.plot(thresholds, values["recall"], label=label)
    right.set_xlabel("threshold")
    right.set_ylabel("recall")
    right.set_title(f"{task['name']}: recall per category", fontsize=9)
    right.grid(alpha=0.3)
    right.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    return png_data_uri(figure)


def escape(value) -> str:
    return "" if value is None else html.escape(str(value))


def fmt(value) -> str:
    return "n/a" if value is None else (f"{value:.4g}" if isinstance(value, float) else escape(value))


def figure_html(uri: str, caption: str) -> str:
    return f'<figure><img src="{uri}" alt="{escape(caption)}"><figcaption>{escape(caption)}</figcaption></figure>'


def gates_table(gates: list[dict]) -> str:
    if not gates:
        return "<p>No gates in this suite.</p>"
    rows = "".join(
        f'<tr class="{"passed" if g["passed"] else "failed"}"><td>{"pass" if g["passed"] else "FAIL"}</td>'
        f'<td>{escape(g["metric"])}</td><td>{escape(g["condition"])}{" (relative)" if g["relative"] else ""}</td>'
        f'<td class="num">{fmt(g["threshold"])}</td><td class="num">{fmt(g["measured"])}</td>'
        f'<td class="num">{fmt(g["baseline"])}</td><td class="num">{fmt(g["candidate"])}</td></tr>'
        for g in gates)
    return ("<table><tr><th></th><th>metric</th><th>condition</th><th>threshold</th><th>measured</th>"
            f"<th>baseline</th><th>candidate</th></tr>{rows}</table>")


def metrics_table(tasks: list[dict]) -> str:
    rows = "".join(
        f"<tr><td>{escape(t['name'])}</td><td>{escape(t['kind'])}</td><td>{escape(metric)}</td>"
        f'<td class="num">{fmt(t["baseline"]["metrics"][metric])}</td><td class="num">{fmt(value)}</td>'
        f'<td class="num">{fmt(t["delta"].get(metric))}</td></tr>'
        for t in tasks for metric, value in t["candidate"]["metrics"].items())
    return ("<table><tr><th>task</th><th>kind</th><th>metric</th><th>baseline</th><th>candidate</th>"
            f"<th>change</th></tr>{rows}</table>")


def samples_table(task: dict) -> str:
    items = task["items"][:SAMPLES_PER_TASK]
    regressions = sum(item["change"] == "regressed" for item in task["items"])
    rows = "".join(
        f'<tr class="{item["change"]}"><td>{item["change"]}</td><td>{escape(item["prompt"])}</td>'
        f'<td>{escape(item["reference"])}</td><td>{escape(item["baseline"])}</td><td>{escape(item["candidate"])}</td></tr>'
        for item in items)
    return (f"<h3>{escape(task['name'])}: {regressions} regressions of {len(task['items'])} items "
            f"(showing {len(items)}, worst first)</h3><table><tr><th>change</th><th>prompt</th><th>reference</th>"
            f"<th>baseline</th><th>candidate</th></tr>{rows}</table>")


def html_report(report: dict, metrics_log: Path | None = None) -> str:
    passed = report["passed"]
    parts = [f"<h1>Evaluation: {escape(report['suite']['name'])} — "
             f'<span class="{"pass" if passed else "fail"}">{"PASSED" if passed else "FAILED"}</span></h1>',
             "<table>"]
    for role in ("candidate", "baseline"):
        info = report[role]
        parts.append(f"<tr><th>{role}</th><td>{escape(info['ref'])}</td><td><code>{escape(info['sha256'])}</code></td></tr>")
    parts.append(f"<tr><th>suite</th><td>{escape(report['suite']['path'])}</td>"
                 f"<td><code>{escape(report['suite']['sha256'])}</code></td></tr></table>")
    parts += ["<h2>Gates</h2>", gates_table(report["gates"])]
    curve = loss_curve_plot(read_metrics(metrics_log) if metrics_log else [])
    if curve:
        parts += ["<h2>Training</h2>", figure_html(curve, "training and validation loss")]
    parts += ["<h2>Baseline vs candidate</h2>", figure_html(metric_bars_plot(report["tasks"]), "metrics per task"),
              metrics_table(report["tasks"])]
    for task in report["tasks"]:
        if "confusion" in task["candidate"]["details"]:
            parts.append(figure_html(confusion_plot(task), f"confusion matrix: {task['name']}"))
        if "curves" in task["candidate"]["details"]:
            parts.append(figure_html(threshold_curves_plot(task), f"threshold curves: {task['name']}"))
    samples = [samples_table(task) for task in report["tasks"] if task["items"]]
    if samples:
        parts += ["<h2>Sample generations</h2>", *samples]
    configs = {"suite": report["suite"]["resolved"], "candidate run config": report["candidate"].get("config"),
               "data sha256": report["data_sha256"], "environment": report["environment"]}
    parts += ["<h2>Resolved configuration</h2>"] + [
        f"<details><summary>{escape(name)}</summary><pre>{escape(json.dumps(value, indent=2))}</pre></details>"
        for name, value in configs.items() if value is not None]
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>tunesmith eval: '
            f"{escape(report['suite']['name'])}</title><style>{CSS}</style></head><body>\n{body}\n</body></html>\n")
