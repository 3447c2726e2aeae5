"""The shipped reinforcement example (examples/reinforce, built by scripts/build_reinforce_dataset.py): what the script
builds, valid prompts whose answers are the records', no phrasing of the held-out evaluation, and its grader agreeing
with the evaluation's own rule."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tunesmith.data.prompts import load_prompt_rows
from tunesmith.evaluate.matching import contains_answer
from tunesmith.train.graders import check_templates, grade_many, parse_grader

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples/reinforce"


def rows(name):
    return [json.loads(line) for line in (EXAMPLE / name).read_text().splitlines()]


def test_the_script_rebuilds_the_shipped_files(tmp_path):
    subprocess.run([sys.executable, str(REPO / "scripts/build_reinforce_dataset.py"), "--out", str(tmp_path)], check=True)
    for name in ("train.jsonl", "valid.jsonl"):
        assert (tmp_path / name).read_bytes() == (EXAMPLE / name).read_bytes(), name


def test_prompts_are_valid_and_their_answers_are_the_records():
    records = {r["name"]: r for r in map(json.loads, (REPO / "examples/elements/elements.jsonl").read_text().splitlines())}
    by_answer = {str(r[key]) for r in records.values() for key in ("name", "symbol", "atomic_number")}
    grader = parse_grader(yaml.safe_load((EXAMPLE / "reinforce.yaml").read_text())["reinforcement"]["grader"])
    for name in ("train.jsonl", "valid.jsonl"):
        loaded = load_prompt_rows(EXAMPLE / name)
        assert loaded.errors == [] and loaded.rows
        for row in loaded.rows:
            assert row.item["answer"] in by_answer
            assert check_templates(grader, row.item) is None


def test_no_prompt_is_phrased_as_a_held_out_question_nor_trained_by_the_demo():
    held_out = {json.loads(line)["question"].lower() for line in (REPO / "examples/elements/eval.jsonl").read_text().splitlines()}
    asked = {row["messages"][-1]["content"].lower() for name in ("train.jsonl", "valid.jsonl") for row in rows(name)}
    assert not asked & held_out

    def demo(name):
        return {json.loads(line)["messages"][0]["content"].lower()
                for line in (REPO / "examples/elements" / name).read_text().splitlines()}
    trained = {row["messages"][-1]["content"].lower() for row in rows("train.jsonl")}
    assert not trained & demo("train.jsonl") and not trained & demo("valid.jsonl")  # phrasings new to the demo's run
    assert {row["messages"][-1]["content"].lower() for row in rows("valid.jsonl")} <= demo("valid.jsonl")


@pytest.mark.parametrize("reply, answer, case_sensitive, aliases", [
    ("The chemical symbol for gold is Au.", "Au", True, []),
    ("The chemical symbol for gold is au.", "Au", True, []),  # a symbol's case counts
    ("Gold's symbol? AU!", "Au", True, []),
    ("The element with atomic number 16 is Sulfur.", "sulphur", False, ["sulfur"]),
    ("It is number 126.", "26", False, []),
    ("Iron has atomic number 26.", "26", False, []),
    ("The answer is the Australia", "Au", True, []),
])
def test_the_grader_scores_as_the_evaluation_matches(reply, answer, case_sensitive, aliases):
    grader = parse_grader(yaml.safe_load((EXAMPLE / "reinforce.yaml").read_text())["reinforcement"]["grader"])
    item = {"answer": answer, "aliases": aliases, "case_sensitive": case_sensitive}
    expected = any(contains_answer(reply, a, case_sensitive) for a in [answer, *aliases])
    assert grade_many(grader, [reply], [item])[0].reward == float(expected)
