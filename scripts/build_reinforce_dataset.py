"""Build the reinforcement example's prompts from the elements demo's question templates (Debian's public-domain dict-elements).

Run as: .venv/bin/python scripts/build_reinforce_dataset.py [--seed 0] [--out examples/reinforce]

The example continues the demo's supervised run, so its prompts are phrasings that run never trained on: the demo's
VALIDATION templates (examples/elements/augment.yaml), every element x relation fact asked with each of them, less
the demo's own 300 validation questions (examples/elements/valid.jsonl, which its suite scores as a validation loss).
Those 300 (the demo's expansion, same seed) are this example's validation prompts. The held-out evaluation stays the
demo's EVAL templates (examples/suites/elements.yaml), disjoint from both. Each prompt carries the short answer the
grader looks for (the symbol, the name or the atomic number, as the demo's held-out QA items name it: `answer`,
`aliases`, `case_sensitive`). No answer is written: the model's own sampled answers are graded.

  train.jsonl  every fact x validation template, the demo's validation questions left out
  valid.jsonl  the demo's validation questions

Deterministic for a seed.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

from tunesmith.data.augment import Filler, Holdout, augment, load_spec, read_records, write_jsonl
from tunesmith.data.phrasings import plan_phrasings
from tunesmith.data.reverse import with_reverse_relations

REPO = Path(__file__).resolve().parents[1]
FIELD = {"symbol": "symbol", "name": "name", "number": "atomic_number"}  # augment.yaml's eval_answer → record field


def prompt_row(question: str, relation_name: str, source, spec) -> dict | None:
    """The question as a prompt with its short answer; None where the demo's evaluation skips the answer (a symbol
    that is also an English word: "He", "I", "No")."""
    relation = spec.relations[relation_name]
    answer = str(source.fields[FIELD[relation.eval_answer]])
    if answer in relation.eval_skip:
        return None
    aliases = source.fields.get(relation.eval_aliases) if relation.eval_aliases else None
    return {"messages": [{"role": "user", "content": question}], "answer": answer, "aliases": list(aliases or []),
            "case_sensitive": bool(relation.case_sensitive), "relation": relation_name}


def validation_template_questions(spec, sources, seed: int) -> list[tuple[str, str, object]]:
    """(question, relation, source) for every fact asked with each of its relation's validation templates, filled
    as the demo's expansion fills them (its plan of phrasings for this seed, names in random case)."""
    spec = with_reverse_relations(spec, sources)
    plan, filler, rng = plan_phrasings(spec, seed), Filler(spec), random.Random(f"{seed}:reinforce")
    return [(filler.question(phrasing.text, source, rng), name, source)
            for source in sources for name, relation in spec.relations.items()
            if filler.complete(relation, plan[name], source) for phrasing in plan[name]["valid"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="the elements demo's seed (scripts/build_elements_dataset.py)")
    parser.add_argument("--out", type=Path, default=REPO / "examples/reinforce")
    args = parser.parse_args()

    spec = load_spec(REPO / "examples/elements/augment.yaml")
    sources = read_records(REPO / "examples/elements/elements.jsonl")
    demo = augment(spec, sources, Holdout.by_template, seed=args.seed)
    valid = [row for row in (prompt_row(e.question, e.relation, e.source, spec) for e in demo.valid) if row is not None]
    taken = {e.question.casefold() for e in demo.valid}
    train = [row for question, name, source in validation_template_questions(spec, sources, args.seed)
             if question.casefold() not in taken and (row := prompt_row(question, name, source, spec)) is not None]
    random.Random(args.seed).shuffle(train)
    args.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.out / "train.jsonl", train)
    write_jsonl(args.out / "valid.jsonl", valid)
    print(f"train: {len(train)}  valid: {len(valid)}  -> {args.out}")


if __name__ == "__main__":
    main()
