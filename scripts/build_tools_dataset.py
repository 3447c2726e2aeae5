"""Build the function-calling example from the elements records (Debian's public-domain dict-elements).

Run as: .venv/bin/python scripts/build_tools_dataset.py [--seed 0] [--train-per-fact 2] [--out examples/tools]

One tool, `lookup_element` (query: an element's name, symbol or atomic number as the user wrote it), returns the
element's record from examples/elements/elements.jsonl. The questions are the elements demo's phrasings
(examples/elements/augment.yaml: train, valid and eval templates stay disjoint, so eval measures phrasings never
trained on), the answers its answer sentences, filled from the records; follow-up questions ("And its atomic
number?") are written here, with their own train / valid / eval phrasings. Nothing is invented: every fact in every
row is the record's.

  train.jsonl  OpenAI fine-tuning rows: the question; the assistant calls lookup_element with the element as asked;
               the tool's result; the answer from it. Every other row goes on with a follow-up about the same
               element, answered from the result already in the conversation, without a new call.
  valid.jsonl  the same, with the valid phrasings
  eval.jsonl   tool_calls task items (evaluate/tool_calls.py): a question with the call it is due, or a follow-up
               after a call and its result, due no call

Deterministic for a seed.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import yaml

from tunesmith.data.augment import ordinal

REPO = Path(__file__).resolve().parents[1]
TOOL = {"type": "function", "function": {
    "name": "lookup_element",
    "description": "Look up a chemical element in the periodic table: its name, symbol, atomic number and atomic weight.",
    "parameters": {"type": "object", "properties": {"query": {
        "type": "string", "description": "The element's name, symbol or atomic number, as the user wrote it."}},
        "required": ["query"], "additionalProperties": False}}}
# what each relation's question names the element by: the query the call must carry
ASKED_BY = {"symbol": "name", "atomic_number": "name", "element_of_symbol": "symbol", "element_of_number": "number"}
FOLLOW_UPS = {  # a second question about the element the conversation has looked up already
    "symbol": {"train": ["And its symbol?", "What is its chemical symbol?", "Which symbol does it have?",
                         "Its symbol, please."],
               "valid": ["What letters stand for it?"],
               "eval": ["Also, how is it abbreviated on the periodic table?", "One more: its chemical symbol?"]},
    "atomic_number": {"train": ["And its atomic number?", "What is its atomic number?",
                                "How many protons does it have?", "Which number is it in the periodic table?"],
                      "valid": ["What is its proton count?"],
                      "eval": ["Also, which atomic number does it carry?", "One more: its place by atomic number?"]},
}


def fill(template: str, record: dict, rng: random.Random) -> tuple[str, str]:
    """The question, and the element as it names it (name in the case drawn, symbol, or number as digits)."""
    name = record["name"] if rng.random() < 0.5 else record["name"].capitalize()
    text = template.format(name=name, Name=record["name"].capitalize(), symbol=record["symbol"],
                           number=record["atomic_number"], ordinal=ordinal(record["atomic_number"]))
    return text, name


def query_for(relation: str, record: dict, name_as_written: str, template: str) -> str:
    by = ASKED_BY[relation]
    if by == "name":
        return record["name"].capitalize() if "{Name}" in template else name_as_written
    return record["symbol"] if by == "symbol" else str(record["atomic_number"])


def answer(template: str, record: dict) -> str:
    return template.format(name=record["name"], Name=record["name"].capitalize(), symbol=record["symbol"],
                           number=record["atomic_number"])


def result(record: dict) -> str:
    return json.dumps({key: record[key] for key in ("name", "symbol", "atomic_number", "atomic_weight")})


def call(query: str, call_id: str) -> dict:
    return {"id": call_id, "type": "function",
            "function": {"name": "lookup_element", "arguments": json.dumps({"query": query})}}


def conversation(relation: str, spec: dict, record: dict, template: str, rng: random.Random, call_id: str) -> tuple[list, str]:
    question, name = fill(template, record, rng)
    query = query_for(relation, record, name, template)
    return [{"role": "user", "content": question},
            {"role": "assistant", "tool_calls": [call(query, call_id)]},
            {"role": "tool", "tool_call_id": call_id, "content": result(record)},
            {"role": "assistant", "content": answer(spec["relations"][relation]["answer"], record)}], query


def follow_up(relation: str, spec: dict, record: dict, split: str, rng: random.Random) -> list[dict]:
    asked = "atomic_number" if relation in ("symbol", "element_of_symbol") else "symbol"
    return [{"role": "user", "content": rng.choice(FOLLOW_UPS[asked][split])},
            {"role": "assistant", "content": answer(spec["relations"][asked]["answer"], record)}]


def training_rows(spec: dict, records: list[dict], split: str, per_fact: int, rng: random.Random) -> list[dict]:
    rows = []
    for record in records:
        for relation in ASKED_BY:
            templates = spec["relations"][relation][split]
            for k, template in enumerate(rng.sample(templates, min(per_fact, len(templates)))):
                messages, _ = conversation(relation, spec, record, template, rng, f"call_{record['atomic_number']}_{k}")
                if rng.random() < 0.5:
                    messages += follow_up(relation, spec, record, split, rng)
                rows.append({"messages": messages, "tools": [TOOL], "parallel_tool_calls": False})
    rng.shuffle(rows)
    return rows


def eval_items(spec: dict, records: list[dict], rng: random.Random) -> list[dict]:
    items = []
    for record in records:
        for relation in ASKED_BY:
            template = rng.choice(spec["relations"][relation]["eval"])
            messages, query = conversation(relation, spec, record, template, rng, "call_1")
            items.append({"id": f"{relation}-{record['atomic_number']}", "messages": messages[:1], "tools": [TOOL],
                          "expected": [{"name": "lookup_element", "arguments": {"query": query}}]})
        relation = rng.choice(list(ASKED_BY))
        messages, _ = conversation(relation, spec, record, rng.choice(spec["relations"][relation]["eval"]), rng,
                                   "call_1")
        items.append({"id": f"follow_up-{record['atomic_number']}", "tools": [TOOL], "expected": [],
                      "messages": messages + follow_up(relation, spec, record, "eval", rng)[:1]})
    return items


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, default=REPO / "examples/elements/elements.jsonl")
    parser.add_argument("--spec", type=Path, default=REPO / "examples/elements/augment.yaml")
    parser.add_argument("--train-per-fact", type=int, default=2, help="training phrasings per element x relation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "examples/tools")
    args = parser.parse_args()
    records = [json.loads(line) for line in args.records.read_text().splitlines() if line.strip()]
    spec = yaml.safe_load(args.spec.read_text())
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.out / "train.jsonl", training_rows(spec, records, "train", args.train_per_fact, rng))
    write_jsonl(args.out / "valid.jsonl", rng.sample(training_rows(spec, records, "valid", 1, rng), 100))
    write_jsonl(args.out / "eval.jsonl", eval_items(spec, records, rng))


if __name__ == "__main__":
    main()
