"""Build the reinforcement example's prompts from the elements demo's questions (Debian's public-domain dict-elements).

Run as: .venv/bin/python scripts/build_reinforce_dataset.py [--seed 0] [--per-fact 2] [--out examples/reinforce]

The elements demo's own expansion (examples/elements/augment.yaml, by-template holdout, the same seed as
scripts/build_elements_dataset.py) gives its training and validation questions; each becomes a prompt row in
OpenAI's reinforcement format with the short answer the grader looks for (the symbol, the name or the atomic number,
as the demo's held-out QA items name it: `answer`, `aliases`, `case_sensitive`). No answer is written: the model's
own sampled answers are graded. The held-out evaluation stays the demo's (examples/suites/elements.yaml), whose
phrasings no prompt here uses.

  train.jsonl  --per-fact of the demo's training phrasings for each element x relation fact
  valid.jsonl  the demo's validation questions

Deterministic for a seed.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

from tunesmith.data.augment import Holdout, augment, load_spec, read_records, write_jsonl

REPO = Path(__file__).resolve().parents[1]
FIELD = {"symbol": "symbol", "name": "name", "number": "atomic_number"}  # augment.yaml's eval_answer → record field


def prompt_row(example, spec) -> dict | None:
    """The question as a prompt with its short answer; None where the demo's evaluation skips the answer (a symbol
    that is also an English word: "He", "I", "No")."""
    relation = spec.relations[example.relation]
    answer = str(example.source.fields[FIELD[relation.eval_answer]])
    if answer in relation.eval_skip:
        return None
    aliases = example.source.fields.get(relation.eval_aliases) if relation.eval_aliases else None
    return {"messages": [{"role": "user", "content": example.question}], "answer": answer,
            "aliases": list(aliases or []), "case_sensitive": bool(relation.case_sensitive),
            "relation": example.relation}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="the elements demo's seed (scripts/build_elements_dataset.py)")
    parser.add_argument("--per-fact", type=int, default=2, help="training phrasings kept per element x relation fact")
    parser.add_argument("--out", type=Path, default=REPO / "examples/reinforce")
    args = parser.parse_args()

    spec = load_spec(REPO / "examples/elements/augment.yaml")
    result = augment(spec, read_records(REPO / "examples/elements/elements.jsonl"), Holdout.by_template, seed=args.seed)
    kept: dict[tuple[str, str], int] = {}
    train = []
    for example in result.train:  # shuffled by the expansion: the first per_fact of each fact
        fact = (example.relation, example.source.fields["name"])
        if kept.get(fact, 0) < args.per_fact and (row := prompt_row(example, spec)) is not None:
            kept[fact] = kept.get(fact, 0) + 1
            train.append(row)
    random.Random(args.seed).shuffle(train)
    valid = [row for row in (prompt_row(example, spec) for example in result.valid) if row is not None]
    args.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.out / "train.jsonl", train)
    write_jsonl(args.out / "valid.jsonl", valid)
    print(f"train: {len(train)}  valid: {len(valid)}  -> {args.out}")


if __name__ == "__main__":
    main()
