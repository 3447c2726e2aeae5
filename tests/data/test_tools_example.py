"""The shipped function-calling example (examples/tools, built by scripts/build_tools_dataset.py): what the script
builds, valid, every fact a record's, and eval phrasings never trained on."""
import json
import subprocess
import sys
from pathlib import Path

from tunesmith.data.formats import load_file
from tunesmith.evaluate.tool_calls import check_items

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "examples/tools"


def rows(name):
    return [json.loads(line) for line in (TOOLS / name).read_text().splitlines()]


def test_the_script_rebuilds_the_shipped_files(tmp_path):
    subprocess.run([sys.executable, str(REPO / "scripts/build_tools_dataset.py"), "--out", str(tmp_path)], check=True)
    for name in ("train.jsonl", "valid.jsonl", "eval.jsonl"):
        assert (tmp_path / name).read_bytes() == (TOOLS / name).read_bytes(), name


def test_rows_are_valid_and_every_fact_is_the_records():
    records = {r["name"]: r for r in map(json.loads, (REPO / "examples/elements/elements.jsonl").read_text().splitlines())}
    for name in ("train.jsonl", "valid.jsonl"):
        assert load_file(TOOLS / name).errors == []
    check_items(TOOLS / "eval.jsonl", rows("eval.jsonl"))
    for row in rows("train.jsonl") + rows("eval.jsonl"):
        for message in row["messages"]:
            if message["role"] == "tool":
                result = json.loads(message["content"])
                assert {key: records[result["name"]][key] for key in result} == result


def test_eval_questions_are_phrased_as_no_training_row_is():
    def questions(messages):
        return {m["content"].lower() for m in messages if m["role"] == "user"}

    trained = set().union(*(questions(row["messages"]) for row in rows("train.jsonl")))
    asked = [row["messages"][-1]["content"].lower() for row in rows("eval.jsonl")]
    assert not trained & set(asked)
    due = [row for row in rows("eval.jsonl") if row["expected"]]
    assert len(due) == 424 and len(rows("eval.jsonl")) - len(due) == 106
