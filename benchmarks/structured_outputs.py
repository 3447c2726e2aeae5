"""Structured outputs on the embedded model: how often its answers are JSON valid under a schema, without and with
`response_format`, and what the grammar's masks cost in generation speed; prints JSON.

Run as: .venv/bin/python benchmarks/structured_outputs.py [--model smollm2-135m-instruct] [--threads 2] [--out FILE]

Each of the 106 elements of examples/elements/elements.jsonl (Debian's dict-elements, public domain) is asked for
in two wordings: `asks_json` "Give the chemical element with atomic number N as JSON with the keys name, symbol and
atomic_number." and `plain` "Which chemical element has atomic number N?" (the schema only in response_format, as a
client that relies on it sends). Three sides per wording, greedy, through the serving engine
(models/decoding/offline.py, 32 rows at a time, bf16 weights where the CPU has bf16 matmuls), in one process one
after another:
- free: the prompt alone (what a client gets without `response_format`);
- json_object: OpenAI's JSON mode, any JSON object;
- json_schema: the schema {name: string, symbol: string, atomic_number: integer}, all required, nothing else.
Per side: answers that parse as JSON, that are valid under the schema, whose symbol and atomic number are right
(the base model barely knows the elements: the demo's fine-tune is what teaches them), answers cut by max_tokens,
generated tokens, seconds and tokens/s, and the seconds spent computing and applying the grammar's masks (their
share of the side's time is the constraint's cost; tokens/s against free's also moves with the answers' lengths).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from json_report import emit

REPO = Path(__file__).resolve().parents[1]
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "symbol": {"type": "string"},
                                           "atomic_number": {"type": "integer"}},
          "required": ["name", "symbol", "atomic_number"], "additionalProperties": False}
QUESTIONS = {"asks_json": "Give the chemical element with atomic number {n} as JSON with the keys name, symbol and "
                          "atomic_number.",
             "plain": "Which chemical element has atomic number {n}?"}


def parsed(text: str) -> object | None:
    try:
        return json.loads(text)
    except ValueError:
        return None


def valid(answer: object) -> bool:
    return (isinstance(answer, dict) and set(answer) == set(SCHEMA["properties"])
            and isinstance(answer["name"], str) and isinstance(answer["symbol"], str)
            and isinstance(answer["atomic_number"], int) and not isinstance(answer["atomic_number"], bool))


def side(name: str, model, tokenizer, prompts: list[list[int]], elements: list[dict], max_new_tokens: int) -> dict:
    from tunesmith.models.decoding.constraints import json_grammar
    from tunesmith.models.decoding.offline import greedy_token_ids

    from tunesmith.models.decoding import engine

    grammar = {"free": None, "json_object": {"type": "object"}, "json_schema": SCHEMA}[name]
    masking = [0.0]  # seconds inside the masks' function (constraints.constrained), timed where the engine calls it
    unmasked = engine.constrained

    def timed(logits, asking):
        begun = time.perf_counter()
        try:
            return unmasked(logits, asking)
        finally:
            masking[0] += time.perf_counter() - begun

    started = time.perf_counter()
    if grammar is not None:
        grammar = json_grammar(grammar, tokenizer, model.config.vocab_size)
    engine.constrained = timed
    try:
        answers = greedy_token_ids(model, tokenizer, prompts, max_new_tokens, grammar=grammar)
    finally:
        engine.constrained = unmasked
    seconds = time.perf_counter() - started
    texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in answers]
    objects = [parsed(text) for text in texts]
    right = [valid(o) and o["symbol"] == e["symbol"] and o["atomic_number"] == e["atomic_number"]
             for o, e in zip(objects, elements)]
    tokens = sum(len(ids) for ids in answers)
    return {"answers": len(texts), "parse_as_json": sum(o is not None for o in objects),
            "valid_under_schema": sum(valid(o) for o in objects), "symbol_and_number_right": sum(right),
            "cut_by_max_tokens": sum(len(ids) >= max_new_tokens for ids in answers), "generated_tokens": tokens,
            "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "masking_seconds": round(masking[0], 3), "masking_share": round(masking[0] / seconds, 4),
            "first_answers": texts[:3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--sides", default="free,json_object,json_schema")
    parser.add_argument("--wordings", default="asks_json,plain")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from tunesmith.models.chat import render_prompts
    from tunesmith.models.load import inference_dtype, load_model, load_tokenizer

    elements = [json.loads(line) for line in (REPO / "examples" / "elements" / "elements.jsonl").open()]
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model, dtype=inference_dtype(None)).eval()
    load_before = os.getloadavg()
    wordings = {}
    for wording in args.wordings.split(","):
        prompts = render_prompts(tokenizer, [[{"role": "user", "content": QUESTIONS[wording].format(n=e["atomic_number"])}]
                                             for e in elements])
        sides = {name: side(name, model, tokenizer, prompts, elements, args.max_new_tokens)
                 for name in args.sides.split(",")}
        if "free" in sides:
            for name, found in sides.items():
                if name != "free":
                    found["tokens_per_s_against_free"] = round(found["tokens_per_s"] / sides["free"]["tokens_per_s"], 3)
        wordings[wording] = {"question": QUESTIONS[wording], "sides": sides}
    report = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "model": args.model,
              "weights": str(model.dtype).removeprefix("torch."), "threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "max_new_tokens": args.max_new_tokens,
              "load_average_before": load_before, "load_average_after": os.getloadavg(), "wordings": wordings}
    emit(report, args.out)


if __name__ == "__main__":
    main()
