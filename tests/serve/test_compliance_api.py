"""Compliance through the API, in-process: the key's PII policy on upload, lineage on model objects and its
endpoint, erasure (DELETE /v1/files) reaching a model continued from another, recorded integrations, retention."""
import hashlib
import json
import time

import pytest
from fastapi.testclient import TestClient

from tests.serve.server import FACTS, write_chat_file
from tunesmith.config import load_config
from tunesmith.registry import audit, batches, files, keys, models
from tunesmith.serve.app import create_app
from tunesmith.serve.retention import expire
from tunesmith.serve.settings import ServeSettings
from tunesmith.train.sft import train

PERSONAL = [{"messages": [{"role": "user", "content": "Who do I write to?"},
                          {"role": "assistant", "content": "Write to ada@example.com or call +44 20 7946 0958."}]},
            {"messages": [{"role": "user", "content": "Symbol for gold?"}, {"role": "assistant", "content": "Au."}]}]


@pytest.fixture
def api(tmp_path, tiny_model_dir):
    settings = ServeSettings(home=tmp_path / "home", bases=[str(tiny_model_dir)], run_jobs=False)
    app = create_app(settings)
    with TestClient(app) as client:
        def new_key(pii="refuse"):
            key_id, secret = keys.create_key(app.state.db, pii_policy=pii)
            return key_id, {"Authorization": f"Bearer {secret}"}
        client.new_key, client.db, client.settings = new_key, app.state.db, settings
        yield client


def upload(api, headers, content: bytes, name="train.jsonl"):
    return api.post("/v1/files", headers=headers, data={"purpose": "fine-tune"}, files={"file": (name, content)})


def personal_file() -> bytes:
    return "".join(json.dumps(row) + "\n" for row in PERSONAL).encode()


def test_refuse_is_400_listing_each_finding_by_line_and_is_audited(api):
    key_id, headers = api.new_key()
    response = upload(api, headers, personal_file())
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "personal_data" and error["param"] == "file"
    assert "train.jsonl:1: messages[1].content: email" in error["message"]
    assert "train.jsonl:1: messages[1].content: phone" in error["message"]
    assert "ada@example.com" not in error["message"] and "tunesmith keys pii" in error["message"]
    assert api.get("/v1/files", headers=headers).json()["data"] == []
    assert not [p for p in api.settings.files_dir.iterdir()]
    [entry] = [e for e in audit.entries(api.db) if e["action"] == "file.upload_refused"]
    assert entry["actor"] == key_id and entry["outcome"] == "refused: personal data"
    assert entry["detail"]["findings"] == {"email": 1, "phone": 1}


def test_redact_stores_the_redacted_copy_and_allow_stores_the_file(api):
    redacting_id, redacting = api.new_key("redact")
    stored = upload(api, redacting, personal_file()).json()
    content = api.get(f"/v1/files/{stored['id']}/content", headers=redacting).text
    assert "<EMAIL_1>" in content and "<PHONE_1>" in content and "ada@example.com" not in content
    assert stored["bytes"] == len(content.encode())
    check = api.get(f"/ui/api/files/{stored['id']}/check", headers=redacting).json()["report"]
    assert check["pii_policy"]["policy"] == "redact" and check["pii_policy"]["redacted"]["email"] == 1
    assert files.get_file(api.db, redacting_id, stored["id"]).sha256 == hashlib.sha256(content.encode()).hexdigest()

    _, allowing = api.new_key("allow")
    kept = upload(api, allowing, personal_file()).json()
    assert api.get(f"/v1/files/{kept['id']}/content", headers=allowing).content == personal_file()


def test_integrations_are_recorded_and_unknown_ones_refused(api, tiny_model_dir):
    _, headers = api.new_key()
    file_id = upload(api, headers, write_chat_file_bytes()).json()["id"]
    given = [{"type": "wandb", "wandb": {"project": "brand"}}]
    job = api.post("/v1/fine_tuning/jobs", headers=headers,
                   json={"model": tiny_model_dir.name, "training_file": file_id, "integrations": given}).json()
    assert job["integrations"] == given
    assert api.get(f"/v1/fine_tuning/jobs/{job['id']}", headers=headers).json()["integrations"] == given
    bad = api.post("/v1/fine_tuning/jobs", headers=headers,
                   json={"model": tiny_model_dir.name, "training_file": file_id, "integrations": [{"type": "comet"}]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "integrations"


def write_chat_file_bytes(facts=FACTS) -> bytes:
    return "".join(json.dumps({"messages": [{"role": "user", "content": f"What is the symbol for {n}?"},
                                            {"role": "assistant", "content": f"The symbol for {n} is {s}."}]}) + "\n"
                   for n, s in facts).encode()


def register(api, owner, run_dir, job_id, base) -> str:
    model_id = f"ft:{base}::{job_id.removeprefix('ftjob-')}"
    with api.db.transaction() as tx:
        models.add_model(tx, model_id, owner, job_id, base, str(run_dir))
    return model_id


def test_erasure_lists_a_model_continued_from_one_trained_on_the_file_then_deletes_both(api, tmp_path, tiny_model_dir):
    owner, headers = api.new_key()
    first = upload(api, headers, write_chat_file_bytes(FACTS[:4])).json()
    again = upload(api, headers, write_chat_file_bytes(FACTS[:4]), name="copy.jsonl").json()  # the same rows again
    blob = files.blob_path(api.settings.files_dir, first["id"], "train.jsonl")
    other = write_chat_file(tmp_path / "other.jsonl", FACTS[4:8])
    runs = api.settings.jobs_dir
    common = {"model.base": str(tiny_model_dir), "train.max_steps": 1, "train.batch_size": 2, "lora.r": 4}
    train(load_config(overrides={**common, "data.train": blob, "out": runs / "ftjob-a" / "run"}), started_by=owner)
    train(load_config(overrides={**common, "data.train": other, "out": runs / "ftjob-b" / "run",
                                 "model.parent": runs / "ftjob-a" / "run"}), started_by=owner)
    base = tiny_model_dir.name
    parent = register(api, owner, runs / "ftjob-a" / "run", "ftjob-" + "a" * 24, base)
    child = register(api, owner, runs / "ftjob-b" / "run", "ftjob-" + "b" * 24, base)

    tree = api.get(f"/v1/models/{child}/lineage", headers=headers).json()
    assert [step["model"] for step in tree["chain"]] == [parent, child]
    assert tree["chain"][0]["data"][0]["file_id"] in {first["id"], again["id"]} and tree["chain"][1]["started_by"] == owner
    field = api.get(f"/v1/models/{child}", headers=headers).json()["lineage"]
    assert field["parent"] == parent and field["data"][0]["rows"] == 4 and field["base_model_sha256"]

    erased = api.delete(f"/v1/files/{first['id']}", headers=headers).json()
    assert erased["deleted"] is True and erased["deleted_models"] == []
    assert {(m["model"], m["how"]) for m in erased["trained_models"]} == {(parent, "direct"), (child, "through a parent")}
    assert api.get(f"/v1/files/{first['id']}", headers=headers).status_code == 404 and not blob.exists()

    gone = api.delete(f"/v1/files/{again['id']}?delete_models=true", headers=headers).json()
    assert sorted(gone["deleted_models"]) == sorted([parent, child])
    listed = [m["id"] for m in api.get("/v1/models", headers=headers).json()["data"]]
    assert parent not in listed and child not in listed and not (runs / "ftjob-a" / "run").exists()
    actions = [(e["action"], e["object_id"]) for e in audit.entries(api.db)]
    assert ("file.deleted", again["id"]) in actions and ("model.deleted", child) in actions
    deletion = next(e for e in audit.entries(api.db, child) if e["action"] == "model.deleted")
    assert deletion["actor"] == owner and "erasure" in deletion["detail"]["reason"]


def test_a_file_an_unfinished_batch_reads_is_neither_deleted_nor_expired_and_the_refusal_names_it(api):
    owner, headers = api.new_key()
    file_id = upload(api, headers, write_chat_file_bytes()).json()["id"]
    batch = batches.create_batch(api.db, owner, "/v1/chat/completions", file_id, "24h", None)  # runner not woken
    assert api.delete(f"/v1/files/{file_id}", headers=headers).status_code == 409
    refusal = [e for e in audit.entries(api.db, file_id) if e["action"] == "file.deleted"][-1]
    assert refusal["outcome"] == "refused: read by unfinished batches" and refusal["detail"]["batches"] == [batch.id]
    settings = api.settings.model_copy(update={"retention_days": 1})
    assert expire(api.db, settings, time.time() + 2 * 86400) == []  # the batch still reads it
    assert api.get(f"/v1/files/{file_id}", headers=headers).status_code == 200
    batches.move(api.db, batch, "cancelled", only_from=batches.UNFINISHED)
    assert expire(api.db, settings, time.time() + 2 * 86400) == [file_id]


def test_retention_deletes_old_files_and_models_and_audits_it(api, tmp_path, tiny_model_dir):
    owner, headers = api.new_key()
    old = upload(api, headers, write_chat_file_bytes()).json()
    run_dir = api.settings.jobs_dir / "ftjob-old" / "run"
    run_dir.mkdir(parents=True)
    model_id = register(api, owner, run_dir, "ftjob-" + "c" * 24, tiny_model_dir.name)
    settings = api.settings.model_copy(update={"retention_days": 1})
    assert expire(api.db, settings, time.time()) == []  # nothing is a day old yet
    deleted = expire(api.db, settings, time.time() + 2 * 86400)
    assert deleted == [old["id"], model_id] and not run_dir.exists()
    assert api.get(f"/v1/files/{old['id']}", headers=headers).status_code == 404
    expired = [(e["action"], e["actor"]) for e in audit.entries(api.db) if e["object_id"] in deleted]
    assert ("file.expired", "retention") in expired and ("model.expired", "retention") in expired


def test_state_changes_and_refused_ones_are_audited_with_actor_and_outcome(api, tiny_model_dir):
    owner, headers = api.new_key()
    file_id = upload(api, headers, write_chat_file_bytes()).json()["id"]
    job = api.post("/v1/fine_tuning/jobs", headers=headers,
                   json={"model": tiny_model_dir.name, "training_file": file_id}).json()
    assert api.delete(f"/v1/files/{file_id}", headers=headers).status_code == 409  # the job still reads it
    assert api.post(f"/v1/fine_tuning/jobs/{job['id']}/resume", headers=headers).status_code == 409
    assert api.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=headers).status_code == 200
    assert api.delete(f"/v1/files/{file_id}", headers=headers).status_code == 200
    trail = [(e["actor"], e["action"], e["object_id"], e["outcome"]) for e in audit.entries(api.db)]
    assert trail == [
        (owner, "key.created", owner, "ok"),
        (owner, "file.uploaded", file_id, "ok"),
        (owner, "job.created", job["id"], "ok"),
        (owner, "file.deleted", file_id, "refused: read by unfinished jobs"),
        (owner, "job.queued", job["id"], "refused: the job is validating_files"),
        (owner, "job.cancelled", job["id"], "ok"),
        (owner, "file.deleted", file_id, "ok"),
    ]
    assert audit.verify_chain(api.db) == []


def test_the_cli_reads_the_servers_registry_for_lineage_and_erasure(api, tmp_path, tiny_model_dir):
    from typer.testing import CliRunner

    from tunesmith.cli import app

    owner, headers = api.new_key()
    stored = upload(api, headers, write_chat_file_bytes(FACTS[:4])).json()
    run_dir = api.settings.jobs_dir / "ftjob-cli" / "run"
    blob = files.blob_path(api.settings.files_dir, stored["id"], "train.jsonl")
    train(load_config(overrides={"model.base": str(tiny_model_dir), "train.max_steps": 1, "train.batch_size": 2,
                                 "lora.r": 4, "data.train": blob, "out": run_dir}))
    model_id = register(api, owner, run_dir, "ftjob-" + "d" * 24, tiny_model_dir.name)
    home, empty = ["--home", str(api.settings.home)], ["--runs", str(tmp_path / "no-runs")]
    tree = CliRunner().invoke(app, ["lineage", model_id, *home, *empty, "--json"])
    assert tree.exit_code == 0, tree.output
    assert json.loads(tree.stdout)["chain"][0]["data"][0]["file_id"] == stored["id"]
    erased = CliRunner().invoke(app, ["erase", "--data", stored["id"], *home, *empty, "--delete-models", "--json"])
    assert erased.exit_code == 0, erased.output
    report = json.loads(erased.stdout)
    assert report["deleted_files"] == [stored["id"]] and report["deleted_models"] == [model_id]
    assert not blob.exists() and not run_dir.exists()
    by = {e["action"]: e["actor"] for e in audit.entries(api.db) if e["object_id"] in (stored["id"], model_id)}
    assert by["file.deleted"] == by["model.deleted"] == audit.os_actor()
