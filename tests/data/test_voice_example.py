"""The shipped brand-voice example (examples/voice, built by scripts/build_voice_dataset.py) is valid and split by term."""
import json
import re
from pathlib import Path

from tunesmith.data.preference import load_preferences

VOICE = Path(__file__).resolve().parents[2] / "examples/voice"


def rows(name):
    return [json.loads(line) for line in (VOICE / name).read_text().splitlines()]


def term_of(prompt: str) -> str:
    return re.search(r'"(.+)"', prompt).group(1)


def test_pair_files_load_without_errors():
    for name, at_least in (("train.jsonl", 300), ("valid.jsonl", 50)):
        loaded = load_preferences(VOICE / name)
        assert loaded.errors == [] and loaded.format == "openai"
        assert len(loaded.pairs) >= at_least


def test_no_term_or_text_is_in_two_splits():
    train = load_preferences(VOICE / "train.jsonl").pairs
    valid = load_preferences(VOICE / "valid.jsonl").pairs
    evaluated = rows("eval_prompts.jsonl")
    style = rows("style.jsonl")
    terms = {
        "train": {term_of(p.prompt[-1]["content"]) for p in train},
        "valid": {term_of(p.prompt[-1]["content"]) for p in valid},
        "eval": {row["term"] for row in evaluated},
    }
    assert not terms["train"] & terms["valid"] and not terms["eval"] & (terms["train"] | terms["valid"])
    assert all(term_of(row["prompt"]) == row["term"] for row in evaluated)
    for side in ("chosen", "rejected"):  # aliases share an answer, so they share a split
        assert not {getattr(p, side) for p in train} & {getattr(p, side) for p in valid}
    answers = {p.chosen for p in train + valid} | {p.rejected for p in train + valid} | {row["reference"] for row in evaluated}
    assert not answers & {row["text"] for row in style}
    recorded = {row["term"]: row["split"] for row in rows("terms.jsonl")}
    assert recorded == {**{t: "train" for t in terms["train"]}, **{t: "valid" for t in terms["valid"]}}


def test_style_set_is_balanced_brand_and_not_brand():
    labels = [row["label"] for row in rows("style.jsonl")]
    assert set(labels) == {"brand", "not_brand"}
    assert labels.count("brand") == labels.count("not_brand")


def test_typography_is_ascii_on_both_sides():
    """Curly quotes only in the brand answers would let a model or judge tell the voices apart by typography."""
    for name in ("train.jsonl", "valid.jsonl", "style.jsonl", "eval_prompts.jsonl"):
        text = (VOICE / name).read_text()
        assert not re.search("[\u2018\u2019\u201c\u201d\u2014]", text), name
