"""The web UI's extension endpoints in-process (no job worker): data check, cost estimate, suites, and the run
config a job gets (its named suite, or the quick evaluation on its validation file)."""
import json

import torch
import yaml
from fastapi.testclient import TestClient

from tests.serve.server import FACTS, upload_file, wait_for, write_chat_file
from tunesmith.evaluate.suite import load_suite
from tunesmith.registry import comparisons, jobs, keys
from tunesmith.serve.app import create_app
from tunesmith.serve.routes.preflight import this_machine
from tunesmith.serve.suites import QUICK_EVAL_ROWS
from tunesmith.serve.worker import JobWorker

SUITE = {"name": "facts", "tasks": [{"kind": "loss", "name": "facts", "data": "facts.jsonl"}],
         "gates": [{"metric": "facts.loss", "max": 100}]}


def test_data_check_reports_a_bad_row_by_line_and_a_good_file_with_histogram_and_preview(api, tmp_path, tiny_model_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(write_chat_file(tmp_path / "rows.jsonl").read_text() + '{"messages": "nope"}\n')
    report = api.post("/ui/api/data-check", files={"file": ("bad.jsonl", bad.read_bytes())}).json()
    assert [(e["file"], e["line"], e["field"]) for e in report["errors"]] == [("bad.jsonl", 11, "messages")]
    assert not any((tmp_path / "home" / "files").glob("*"))  # nothing kept
    nested = b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"  # the upload's line screen refuses it
    report = api.post("/ui/api/data-check", files={"file": ("deep.jsonl", nested)}).json()
    assert [(e["file"], e["line"]) for e in report["errors"]] == [("deep.jsonl", 1)] and not report["ok"]
    api.app_state.settings.max_row_bytes = 200  # the same screen and limit as an upload
    mixed = b'{"text": "fine"}\n{"text": "' + b"x" * 300 + b'"}\n{"text": "caf\xe9"}\n'
    report = api.post("/ui/api/data-check", files={"file": ("mixed.jsonl", mixed)}).json()
    assert [(e["line"], e["message"].split(" ")[0]) for e in report["errors"]] == [(2, "line"), (3, "not")]
    assert "over the limit of 200 bytes" in report["errors"][0]["message"] and not report["ok"]
    assert not any((tmp_path / "home" / "files").glob("*"))  # nothing kept

    good = write_chat_file(tmp_path / "good.jsonl")
    report = api.post("/ui/api/data-check", data={"model": tiny_model_dir.name},
                      files={"file": ("good.jsonl", good.read_bytes())}).json()
    assert report["ok"] and report["files"][0]["valid_rows"] == 10
    stats = report["token_stats"][0]
    assert sum(b["rows"] for b in stats["histogram"]) == 10
    assert stats["histogram"][0]["low"] == stats["min"] and stats["histogram"][-1]["high"] == stats["max"]
    assert report["preview"]["line"] == 1 and "[[" in report["preview"]["text"]  # trained tokens marked

    file_id = upload_file(api, good)
    stored = api.get(f"/ui/api/files/{file_id}/data-check").json()
    assert stored["files"][0]["path"] == "good.jsonl" and stored["token_stats"] == report["token_stats"]
    assert api.get(f"/ui/api/files/{file_id}/data-check", params={"model": "ft:nope"}).json()["error"]["param"] == "model"


def test_estimate_resolves_auto_as_the_worker_will_and_prices_the_run(api, tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this CPU's estimate (a GPU's: the next test)
    train = upload_file(api, write_chat_file(tmp_path / "train.jsonl"))
    body = {"model": tiny_model_dir.name, "training_file": train, "hyperparameters": {"batch_size": 2}}
    answer = api.post("/ui/api/estimate", json=body).json()
    # 10 rows: auto epochs make it about 100 examples in all (n_epochs 10); batch size as given
    assert answer["hyperparameters"] == {"n_epochs": 10, "batch_size": 2, "learning_rate_multiplier": 1.0}
    assert answer["requested"]["n_epochs"] == "auto"
    estimate = answer["estimate"]
    assert estimate["steps"] == 50 and estimate["train_examples"] == 10
    assert estimate["total_seconds"] > estimate["train_seconds"] > 0 and estimate["peak_memory_bytes"] > 2**20
    # the server's memory before it loaded any model, not what its model pool holds now
    assert estimate["memory"]["python, torch, tokenizer, data (measured)"] == api.app_state.runtime_bytes
    bad = api.post("/ui/api/estimate", json={**body, "training_file": "file-nope"})
    assert bad.status_code == 404 and bad.json()["error"]["param"] == "training_file"


def test_a_dpo_jobs_estimate_counts_its_pairs_and_a_reinforcement_jobs_says_why_there_is_none(api, tmp_path,
                                                                                             tiny_model_dir, monkeypatch):
    from tests.serve.test_dpo_jobs import write_preference_file
    from tests.serve.test_reinforcement_jobs import reinforcement, write_prompt_file

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    pairs = upload_file(api, write_preference_file(tmp_path / "pairs.jsonl"))
    answer = api.post("/ui/api/estimate", json={"model": tiny_model_dir.name, "training_file": pairs, "method": {
        "type": "dpo", "dpo": {"hyperparameters": {"batch_size": 2, "n_epochs": 1}}}}).json()
    assert answer["estimate"]["train_examples"] == 10 and answer["estimate"]["steps"] == 5
    assert answer["estimate"]["label"].startswith("dpo (sigmoid), LoRA")
    prompts = upload_file(api, write_prompt_file(tmp_path / "prompts.jsonl"))
    answer = api.post("/ui/api/estimate", json={"model": tiny_model_dir.name, "training_file": prompts,
                                                "method": reinforcement()}).json()
    assert answer["estimate"] is None and "a reinforcement run is timed, not modelled" in answer["estimate_error"]


def test_on_a_gpu_machine_the_estimate_prices_that_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *device: "NVIDIA H100 80GB HBM3")  # an H100's name
    assert this_machine() == "h100"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *device: "Some Future Accelerator")
    assert this_machine() == "cpu"  # not in the GPU table: the estimate stays this machine's CPU's


def test_a_job_names_a_server_suite_or_gets_the_quick_evaluation(api, tmp_path, tiny_model_dir):
    suites = tmp_path / "home" / "suites"
    suites.mkdir(parents=True)
    write_chat_file(suites / "facts.jsonl", FACTS[:4])
    (suites / "facts.yaml").write_text(yaml.safe_dump(SUITE))
    (suites / "broken.yaml").write_text("name: broken\ntasks: []\n")
    listed = {s["name"]: s for s in api.get("/ui/api/suites").json()["data"]}
    assert listed["facts"]["tasks"] == [{"name": "facts", "kind": "loss"}] and listed["facts"]["gates"] == ["facts.loss"]
    assert "tasks" in listed["broken"]["error"]

    train = upload_file(api, write_chat_file(tmp_path / "train.jsonl"))
    valid = upload_file(api, write_chat_file(tmp_path / "valid.jsonl", FACTS[:3]))
    base = {"model": tiny_model_dir.name, "training_file": train}
    refused = api.post("/v1/fine_tuning/jobs", json={**base, "suite": "nope"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "suite"
    named = api.post("/v1/fine_tuning/jobs", json={**base, "suite": "facts"}).json()
    quick = api.post("/v1/fine_tuning/jobs", json={**base, "validation_file": valid}).json()
    assert named["suite"] == "facts" and quick["suite"] is None

    worker, db = JobWorker(api.app_state.db, api.app_state.settings), api.app_state.db
    hyper = {"n_epochs": 1, "batch_size": 2, "learning_rate_multiplier": 1.0}
    config = worker.run_config(jobs.get_job(db, named["id"]), hyper, tmp_path / "named")
    assert config.eval.suite == suites / "facts.yaml"
    (tmp_path / "quick").mkdir()
    config = worker.run_config(jobs.get_job(db, quick["id"]), hyper, tmp_path / "quick")
    quick_suite = yaml.safe_load(config.eval.suite.read_text())
    assert [(t["kind"], t["data"]) for t in quick_suite["tasks"]] == [("loss", str(config.data.valid))]
    assert load_suite(config.eval.suite).tasks[0].limit == QUICK_EVAL_ROWS
    no_valid = api.post("/v1/fine_tuning/jobs", json=base).json()
    (tmp_path / "none").mkdir()
    assert worker.run_config(jobs.get_job(db, no_valid["id"]), hyper, tmp_path / "none").eval.suite is None


def test_two_models_compared_on_a_server_suite_a_before_b_after(api, tmp_path, tiny_model_dir):
    suites = tmp_path / "home" / "suites"
    suites.mkdir(parents=True)
    write_chat_file(suites / "facts.jsonl", FACTS[:4])
    (suites / "facts.yaml").write_text(yaml.safe_dump(SUITE))
    base = tiny_model_dir.name
    refused = api.post("/ui/api/comparisons", json={"a": base, "b": base, "suite": "nope"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "suite"
    unknown = api.post("/ui/api/comparisons", json={"a": base, "b": "ft:nope", "suite": "facts"})
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "b"
    started = api.post("/ui/api/comparisons", json={"a": base, "b": base, "suite": "facts", "limit": 2}).json()
    assert started["status"] == "running" and started["limit"] == 2
    done = wait_for(lambda: (c := api.get(f"/ui/api/comparisons/{started['id']}").json())["status"] != "running" and c)
    assert done["status"] == "succeeded", done["error"]
    task = done["report"]["tasks"][0]
    assert task["name"] == "facts" and task["delta"]["loss"] == 0  # the same model before and after
    assert (tmp_path / "home" / "comparisons" / started["id"] / "report.html").is_file()
    assert api.get("/ui/api/comparisons/cmp-nope").status_code == 404
    listed = api.get("/ui/api/comparisons").json()["data"]
    assert [(c["id"], c["passed"]) for c in listed] == [(started["id"], True)] and "report" not in listed[0]

    # a restart: a new server on the same home still has the report; one left running is failed, not lost
    header = api.headers["Authorization"]
    owner = keys.authenticate(api.app_state.db, header.split()[-1])
    left_running = comparisons.start_comparison(api.app_state.db, owner, base, base, "facts", 1)
    assert api.post("/ui/api/comparisons", json={"a": base, "b": base, "suite": "facts"}).status_code == 409
    with TestClient(create_app(api.app_state.settings)) as again:
        again.headers["Authorization"] = header
        kept = again.get(f"/ui/api/comparisons/{started['id']}").json()
        assert kept["status"] == "succeeded" and kept["report"] == done["report"]
        stopped = again.get(f"/ui/api/comparisons/{left_running.id}").json()
        assert stopped["status"] == "failed" and stopped["error"] == comparisons.INTERRUPTED
        assert [c["id"] for c in again.get("/ui/api/comparisons").json()["data"]] == [left_running.id, started["id"]]


def test_data_check_of_a_prompt_file_reports_prompt_tokens_without_a_preview(api, tmp_path, tiny_model_dir):
    rows = [{"messages": [{"role": "user", "content": f"What is {n} + {n}?"}], "answer": str(2 * n)} for n in range(3)]
    body = "".join(json.dumps(row) + "\n" for row in rows).encode()
    report = api.post("/ui/api/data-check", data={"model": tiny_model_dir.name},
                      files={"file": ("rft.jsonl", body)}).json()
    assert report["ok"] and report["files"][0]["kind"] == "prompts" and report["preview"] is None
    (stats,) = report["token_stats"]
    assert (stats["part"], stats["count"], stats["trained_tokens"]) == ("prompt", 3, 0)
