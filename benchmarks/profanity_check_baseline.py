"""How `alt-profanity-check`, the pip-installable filter many teams start with, does as a moderation model.

Run as: .venv/bin/python benchmarks/profanity_check_baseline.py [--split examples/moderation/test.jsonl] [--threshold 0.5]

Needs `pip install alt-profanity-check==1.9.1` (it pins scikit-learn==1.9.1 and joblib==1.6.0, whose
pickled model it loads; it is not a tunesmith dependency). A row counts as flagged when the profanity
probability is >= --threshold; a row is harmful when its `labels` list is non-empty. Prints JSON:
- macro_f1: mean of the F1 of the harmful and of the harmless class;
- harmful_recall, harmless_fpr (flagged share of harmless rows), and the false-positive rate on the
  harmless rows with alarming words (`kind: alarming` in sources.jsonl) and on ordinary ones;
- recall per moderation category (rows carrying it that were flagged);
- items_per_s: texts scored per second in one batched call (best of --repeats), on this machine's CPU.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tunesmith.data.labels import MODERATION_CATEGORIES, load_labeled_file


def f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def binary_report(harmful: list[bool], flagged: list[bool], kinds: list[str]) -> dict:
    """Harmful-vs-harmless figures; `kinds` marks each harmless row "alarming" or "ordinary"."""
    tp = sum(h and f for h, f in zip(harmful, flagged))
    fp = sum(f and not h for h, f in zip(harmful, flagged))
    fn = sum(h and not f for h, f in zip(harmful, flagged))
    tn = len(harmful) - tp - fp - fn

    def fpr(kind: str | None) -> float:
        rows = [f for h, f, k in zip(harmful, flagged, kinds) if not h and kind in (None, k)]
        return sum(rows) / len(rows) if rows else 0.0

    return {
        "rows": len(harmful), "harmful": tp + fn, "harmless": fp + tn,
        "macro_f1": round((f1(tp, fp, fn) + f1(tn, fn, fp)) / 2, 4),
        "harmful_recall": round(tp / (tp + fn), 4) if tp + fn else 0.0,
        "harmless_fpr": round(fpr(None), 4),
        "alarming_fpr": round(fpr("alarming"), 4),
        "ordinary_fpr": round(fpr("ordinary"), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, default=Path("examples/moderation/test.jsonl"))
    parser.add_argument("--sources", type=Path, help="provenance file (default: sources.jsonl beside --split)")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from profanity_check import predict_prob  # optional: only this benchmark needs it

    loaded = load_labeled_file(args.split, MODERATION_CATEGORIES)
    if loaded.errors:
        raise SystemExit("\n".join(str(error) for error in loaded.errors))
    split_name = args.split.stem
    sources = args.sources or args.split.with_name("sources.jsonl")
    provenance = {row["line"]: row for row in map(json.loads, sources.read_text().splitlines()) if row["split"] == split_name}
    texts = [record.text for record in loaded.records]
    timings = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        scores = predict_prob(texts)  # (N,) profanity probability
        timings.append(time.perf_counter() - start)
    flagged = [bool(score >= args.threshold) for score in scores]
    harmful = [bool(record.labels) for record in loaded.records]
    kinds = [provenance[record.line]["kind"] for record in loaded.records]
    per_category = {}
    for category in MODERATION_CATEGORIES:
        rows = [f for record, f in zip(loaded.records, flagged) if category in record.labels]
        if rows:
            per_category[category] = {"rows": len(rows), "recall": round(sum(rows) / len(rows), 4)}
    report = {"split": str(args.split), "filter": "alt-profanity-check", "threshold": args.threshold,
              **binary_report(harmful, flagged, kinds), "category_recall": per_category,
              "items_per_s": round(len(texts) / min(timings))}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
