"""examples/continual: every file valid, eval phrasings never trained on, and update 3 really changes facts of update 2."""
import json
from pathlib import Path

from tunesmith.data.check import check_data

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "continual"


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_each_update_is_valid_chat_data_with_unseen_eval_phrasings():
    for update in ("u1", "u2", "u3"):
        directory = EXAMPLE / update
        assert check_data(directory / "train.jsonl", directory / "valid.jsonl").ok
        trained = {r["messages"][0]["content"] for r in rows(directory / "train.jsonl")}
        asked = [item["question"] for item in rows(directory / "eval.jsonl")]
        assert asked and not trained & set(asked), update


def test_update_3_corrects_the_provisional_names_update_2_taught():
    provisional = {r["atomic_number"]: r["name"] for r in rows(EXAMPLE / "u2" / "records.jsonl") if r["atomic_number"] > 103}
    approved = {r["atomic_number"]: r["name"] for r in rows(EXAMPLE / "u3" / "records.jsonl")}
    assert provisional == {104: "unnilquadium", 105: "unnilpentium", 108: "unniloctium"}
    assert {n: approved[n] for n in provisional} == {104: "rutherfordium", 105: "dubnium", 108: "hassium"}
    assert {i["element"] for i in rows(EXAMPLE / "u2" / "eval_provisional.jsonl")} == set(provisional.values())
    assert not {i["element"] for i in rows(EXAMPLE / "u2" / "eval.jsonl")} & set(provisional.values())
