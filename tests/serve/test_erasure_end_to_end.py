"""Erasure end to end against a real `tunesmith serve`: a file trains a model through the job worker; the model
carries its lineage (file, digest, the key that started it); deleting the file names the model; deleting an
identical upload with ?delete_models=true deletes the model too; the audit log records it all and verifies.
(A model continued from another is covered in-process: tests/serve/test_compliance_api.py.)"""
import json
import subprocess

import httpx

from tests.serve.server import cli, create_key, wait_for, write_chat_file

TERMINAL = {"succeeded", "failed", "cancelled"}


def test_a_model_trained_by_the_worker_is_named_by_erasure_and_deleted_with_the_flag(server, tmp_path, tiny_model_dir):
    url, home = server
    key = create_key(home)
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    content = write_chat_file(tmp_path / "train.jsonl").read_bytes()
    upload = lambda name: http.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": (name, content)}).json()
    first, copy = upload("train.jsonl"), upload("copy.jsonl")
    job = http.post("/v1/fine_tuning/jobs", json={"model": tiny_model_dir.name, "training_file": first["id"],
                                                  "hyperparameters": {"n_epochs": 1, "batch_size": 5}}).json()
    job = wait_for(lambda: (j := http.get(f"/v1/fine_tuning/jobs/{job['id']}").json())["status"] in TERMINAL and j)
    assert job["status"] == "succeeded", job
    model = job["fine_tuned_model"]

    lineage = http.get(f"/v1/models/{model}").json()["lineage"]
    assert lineage["data"][0]["file_id"] in {first["id"], copy["id"]} and lineage["data"][0]["rows"] == 10
    key_id = json.loads((home / "jobs" / job["id"] / "run" / "run.json").read_text())["started_by"]
    assert key_id.startswith("key-") and lineage["started_by"] == key_id
    assert http.get(f"/ui/api/jobs/{job['id']}/model-card").json()["text"].startswith("---\nbase_model:")

    erased = http.delete(f"/v1/files/{first['id']}").json()
    assert erased["deleted"] and [m["model"] for m in erased["trained_models"]] == [model]
    assert model in [m["id"] for m in http.get("/v1/models").json()["data"]]  # listed, not deleted

    gone = http.delete(f"/v1/files/{copy['id']}", params={"delete_models": "true"}).json()
    assert gone["deleted_models"] == [model]
    assert model not in [m["id"] for m in http.get("/v1/models").json()["data"]]
    answer = http.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 404 and not (home / "jobs" / job["id"] / "run").exists()

    verify = cli("audit", "verify", "--home", str(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, errors = verify.communicate(timeout=60)
    assert verify.returncode == 0, errors
    exported = cli("audit", "export", "--home", str(home), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    entries = [json.loads(line) for line in exported.communicate(timeout=60)[0].splitlines()]
    deleted = [(e["action"], e["object_id"]) for e in entries if e["action"] in ("file.deleted", "model.deleted")]
    assert deleted == [("file.deleted", first["id"]), ("file.deleted", copy["id"]), ("model.deleted", model)]
    assert entries[-1]["detail"]["reason"].startswith("erasure of sha256 ")
