"""Did the elements model learn a fact, or learn it only in the phrasings it was trained on? Accuracy per relation
on TRAINING rows, on validation rows (phrasings never trained) and on the held-out eval items.

Run as: .venv/bin/python benchmarks/elements_trained_vs_heldout.py RUN_OR_MODEL [--per-relation 60]

Train and valid rows are chat rows; each becomes a QA item whose expected answer is the value its answer sentence
states (the symbol, name or number; the sentence shapes are examples/elements/augment.yaml's), scored like the
eval items (`contains_answer`, symbols case-sensitive). `--per-relation` rows of each relation are drawn with a
fixed seed. Prints one JSON object: {split: {"n", "accuracy", "by_relation"}}.

A relation low on its training rows was never stored (more exposures help); one high there but low held out
did not carry over to new wordings (more phrasing variety helps). examples/elements/SOURCE.md has the numbers.
"""
from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter
from pathlib import Path

from tunesmith.evaluate.generation import evaluate_qa
from tunesmith.evaluate.runner import load_for_eval

ELEMENTS = Path(__file__).resolve().parents[1] / "examples" / "elements"
# answer sentence of each relation -> the group holding the value an answer must contain
ANSWERS = {
    "symbol": re.compile(r"The chemical symbol for .+ is (\S+)\.$"),
    "element_of_symbol": re.compile(r"\S+ is the chemical symbol for (.+)\.$"),
    "atomic_number": re.compile(r"The atomic number of .+ is (\d+)\.$"),
    "element_of_number": re.compile(r"The element with atomic number \d+ is (.+)\.$"),
}


def chat_rows_as_items(path: Path, per_relation: int, seed: int = 0) -> list[dict]:
    items: list[dict] = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        question, answer = (m["content"] for m in json.loads(line)["messages"][:2])
        for relation, pattern in ANSWERS.items():
            if match := pattern.match(answer):
                items.append({"id": f"{path.name}:{line_no}", "question": question, "answer": match.group(1),
                              "relation": relation, **({"match": {"case_sensitive": True}} if relation == "symbol" else {})})
                break
    random.Random(seed).shuffle(items)
    kept, counts = [], Counter()
    for item in items:
        if counts[item["relation"]] < per_relation:
            counts[item["relation"]] += 1
            kept.append(item)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a run directory, a merged model directory or a base model name")
    parser.add_argument("--per-relation", type=int, default=60, help="train and valid rows scored per relation")
    args = parser.parse_args()
    model, tokenizer = load_for_eval(args.model)
    splits = {"train": chat_rows_as_items(ELEMENTS / "train.jsonl", args.per_relation),
              "valid": chat_rows_as_items(ELEMENTS / "valid.jsonl", args.per_relation),
              "eval": [json.loads(line) for line in (ELEMENTS / "eval.jsonl").read_text().splitlines()]}
    out = {}
    for name, items in splits.items():
        result = evaluate_qa(model, tokenizer, items, max_new_tokens=24, batch_size=32, progress=False)
        out[name] = {"n": len(items), "accuracy": round(result.accuracy, 4),
                     "by_relation": {k: round(v, 4) for k, v in result.by_relation.items()}}
    print(json.dumps({"model": args.model, **out}, indent=2))


if __name__ == "__main__":
    main()
