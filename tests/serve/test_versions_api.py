"""Versions end to end on the tiny model: an update that forgets is not promoted and serving keeps the previous
version; a passing update is served as NAME:latest; rollback through the API switches back without reloading."""
import random
import string
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from rich.console import Console

from tests.serve.server import FACTS, write_chat_file
from tunesmith.config import load_config
from tunesmith.data.hashing import file_sha256
from tunesmith.evaluate.continual import evaluate_update
from tunesmith.registry import keys, versions
from tunesmith.serve.app import create_app
from tunesmith.serve.routes.models import resolve_served
from tunesmith.serve.settings import ServeSettings
from tunesmith.train.run_record import read_run_record
from tunesmith.train.sft import train

NEW_FACTS = [("zinc", "Zn"), ("nickel", "Ni"), ("sodium", "Na"), ("neon", "Ne"), ("argon", "Ar"), ("boron", "B")]
QUESTION = [{"role": "user", "content": "What is the symbol for gold?"}]


def loss_suite(path: Path, name: str, facts: Path) -> Path:
    """Perplexity on a facts file; gate: the candidate must not be worse than its baseline on it."""
    path.write_text(f"name: {name}\ntasks:\n  - {{kind: loss, name: facts, data: {facts}}}\n"
                    "gates:\n  - {metric: facts.perplexity, min_gain: 0.0}\n")
    return path


def trained(tmp_path: Path, out: str, overrides: dict) -> Path:
    config = load_config(overrides={"out": tmp_path / out, "train.batch_size": 4, "train.bf16": False,
                                    "train.scheduler": "constant", "train.warmup_ratio": 0, **overrides})
    train(config, console=Console(quiet=True))
    evaluate_update(config, tmp_path / out, Console(quiet=True))
    return tmp_path / out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    """v1 learns the old facts; v2 continues it on random letters at a high learning rate (it forgets them: +18-19%
    perplexity where measured; a high learning rate alone on the new facts forgot or not by the attention kernel's
    rounding); v3 continues it gently on the new facts."""
    tmp = tmp_path_factory.mktemp("versions")
    old, new = write_chat_file(tmp / "old.jsonl"), write_chat_file(tmp / "new.jsonl", NEW_FACTS)
    letters = random.Random(0)
    noise = tmp / "noise.txt"  # 20 documents of 60 random lower-case "words"
    noise.write_text("\n\n".join(" ".join("".join(letters.choice(string.ascii_lowercase) for _ in range(letters.randint(2, 9)))
                                            for _ in range(60)) for _ in range(20)) + "\n")
    old_suite, new_suite = loss_suite(tmp / "old.yaml", "old", old), loss_suite(tmp / "new.yaml", "new", new)
    v1 = trained(tmp, "v1", {"model.base": str(tiny_model_dir), "data.train": old, "train.lr": 3e-2,
                             "train.max_steps": 30, "lora.r": 8, "eval.suite": old_suite})
    update = {"model.parent.run": v1, "data.train": new, "eval.suite": new_suite, "eval.max_points_lost": 5}
    v2 = trained(tmp, "v2", {**update, "data.train": noise, "train.lr": 5e-2, "train.max_steps": 20})
    v3 = trained(tmp, "v3", {**update, "train.lr": 2e-3, "train.max_steps": 3, "data.replay.share": 0.5})
    return v1, v2, v3


def test_the_forgetting_update_fails_to_keep_the_old_suite_and_the_gentle_one_passes(runs):
    v1, v2, v3 = (versions.read_run(run)[2] for run in runs)
    assert v1["passed"] and v1["kept"] == []
    forgotten = [k for k in v2["kept"] if not k["passed"]]
    assert not v2["passed"] and forgotten and forgotten[0]["suite"] == "old" and forgotten[0]["lost"] > 5
    assert v3["passed"] and all(k["passed"] for k in v3["kept"]) and v3["kept"]


def test_run_json_and_the_model_card_record_the_kept_suites_with_their_hashes(runs):
    v1, v2, v3 = runs
    entry = next(e for e in read_run_record(v3)["evaluations"] if e.get("kind") == "update")
    assert entry["reports"]["json"] == {"path": "eval/update.json", "sha256": file_sha256(v3 / "eval" / "update.json")}
    assert [s["name"] for s in entry["suites"]] == ["new", "old"] and entry["passed"] is True
    assert entry["suites"][1]["sha256"] == file_sha256(v1.parent / "old.yaml")
    assert entry["compared_with"] == [{"path": str((v1 / "eval" / "update.json").resolve()),
                                       "sha256": file_sha256(v1 / "eval" / "update.json")}]
    card = (v3 / "model" / "README.md").read_text()
    assert "### Kept from earlier versions" in card and "| old | facts | perplexity |" in card
    assert "model-index" in card and "Suite `new`" in card  # the gain report still heads the evaluation
    forgot = (v2 / "model" / "README.md").read_text()
    assert "| FORGOTTEN |" in forgot and "it was NOT promotable" in forgot
    assert [e.get("kind") for e in read_run_record(v1)["evaluations"]] == [None]  # a root run: its report only


@pytest.fixture
def api(tmp_path, tiny_model_dir):
    app = create_app(ServeSettings(home=tmp_path / "home", bases=[str(tiny_model_dir)], run_jobs=False))
    with TestClient(app) as client:
        client.owner, secret = keys.create_key(app.state.db)
        client.headers.update({"Authorization": f"Bearer {secret}"})
        yield client


def answer(api, model: str) -> str:
    response = api.post("/v1/chat/completions", json={"model": model, "messages": QUESTION, "max_tokens": 6,
                                                      "temperature": 0})
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def test_serving_keeps_the_previous_version_and_rollback_switches_back_without_reloading(api, runs, tiny_model_dir):
    db, owner, request = api.app.state.db, api.owner, SimpleNamespace(app=api.app)
    for run in runs:
        versions.register_version(db, owner, "facts", run, owner)
    listed = {m["id"]: m for m in api.get("/v1/models").json()["data"]}
    assert {"facts:1", "facts:2", "facts:3", "facts:latest"} <= listed.keys()
    assert listed["facts:2"]["passed"] is False and "FORGOTTEN" in " ".join(listed["facts:2"]["failures"])
    assert listed["facts:latest"]["version"] == 3 and listed["facts:3"]["parent"] == "facts:1"

    refused = api.post("/v1/models/facts/promote", json={"version": 2})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "version_not_promotable"
    assert api.get("/v1/models/facts:latest").json()["version"] == 3  # still the passing one

    v1_answer, v3_answer = answer(api, "facts:1"), answer(api, "facts:3")
    assert answer(api, "facts:latest") == v3_answer
    assert resolve_served(request, owner, "facts:latest").model_id == "facts:3"
    pool = api.app.state.pool
    base = pool.loaded[tiny_model_dir.name]
    rolled = api.post("/v1/models/facts/rollback")
    assert rolled.status_code == 200 and rolled.json()["id"] == "facts:latest" and rolled.json()["version"] == 1
    assert answer(api, "facts:latest") == v1_answer
    assert resolve_served(request, owner, "facts:latest").model_id == "facts:1"  # its adapter serves it
    assert pool.loaded[tiny_model_dir.name] is base and list(pool.loaded) == [tiny_model_dir.name]  # no reload
    assert {"facts:1", "facts:3"} <= set(base.model.peft_config)  # both versions are adapters on the one base
    assert api.post("/v1/models/facts/rollback").status_code == 409  # nothing served before 1
    assert api.post("/v1/models/facts/promote", json={"version": 3}).json()["version"] == 3
    assert api.post("/v1/models/nothing/rollback").status_code == 404
