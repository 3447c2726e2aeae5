"""A finished tiny run (merged model, run.json, metrics log) and a suite with every task kind."""
import json

import pytest
import yaml

from tests.tiny import save_tiny_pair

SUITE = {
    "name": "tiny",
    "decoding": {"max_new_tokens": 4, "batch_size": 4},
    "tasks": [
        {"kind": "qa", "name": "facts", "data": "qa.jsonl"},
        {"kind": "multiple_choice", "name": "mc", "data": "mc.jsonl"},
        {"kind": "classification", "name": "sentiment", "data": "cls.jsonl", "labels": ["pos", "neg"]},
        {"kind": "loss", "name": "held_out", "data": "valid.jsonl", "max_length": 64},
        {"kind": "general", "name": "general", "text": "general.txt", "prompts": "prompts.jsonl"},
        {"kind": "speed", "name": "speed", "prompts": "prompts.jsonl", "requests": 2, "max_new_tokens": 3},
    ],
    "gates": [
        {"metric": "general.perplexity", "max": 1e9},
        {"metric": "facts.accuracy", "max_forgetting": 1.0},
    ],
}


def jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("eval")
    jsonl(root / "qa.jsonl", [{"id": "q1", "question": "Gold?", "answer": "Au"}, {"id": "q2", "question": "One?", "answer": "1"}])
    jsonl(root / "mc.jsonl", [{"id": "m1", "question": "Gold?", "choices": ["Au", "Ag"], "answer": 0}])
    jsonl(root / "cls.jsonl", [{"id": "c1", "text": "great", "label": "pos"}, {"id": "c2", "text": "bad", "label": "neg"}])
    jsonl(root / "valid.jsonl", [{"messages": [{"role": "user", "content": "Gold?"}, {"role": "assistant", "content": "Au"}]}])
    (root / "general.txt").write_text("The quick brown fox jumps over the lazy dog.\n\nHydrogen has atomic number 1.\n")
    jsonl(root / "prompts.jsonl", [{"id": "p1", "prompt": "Hello"}, {"id": "p2", "prompt": "Gold?"}])
    (root / "suite.yaml").write_text(yaml.safe_dump(SUITE))
    run = root / "run"  # a finished tunesmith run: merged model, run.json naming its base, metrics log
    save_tiny_pair(run / "model", seed=1)
    (run / "run.json").write_text(json.dumps({"base_model": str(tiny_model_dir)}))
    (run / "config.yaml").write_text("train: {lr: 0.001}\n")
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "loss": 3 - 0.1 * s} | ({"valid_loss": 3.1 - 0.1 * s} if s % 2 == 0 else {})) + "\n"
        for s in range(1, 7)))
    return root
