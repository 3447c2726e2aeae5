"""Registry on a temporary SQLite file: hashed keys, per-key isolation, job state machine, pagination, audit."""
import pytest

from tunesmith.registry import audit, files, job_events, jobs, keys, models
from tunesmith.registry.db import Database


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "registry.sqlite")
    yield database
    database.close()


def make_job(db, owner, training_file="file-" + "0" * 24):
    return jobs.create_job(db, owner, "tiny", training_file, None, {"n_epochs": 1}, "demo", 42)


def test_keys_are_stored_hashed_and_authenticate(db):
    key_id, secret = keys.create_key(db, name="ci")
    assert keys.authenticate(db, secret) == key_id
    assert keys.authenticate(db, secret + "x") is None
    stored = db.query_one("SELECT * FROM api_keys WHERE id = ?", (key_id,))
    assert secret not in tuple(stored) and stored["secret_sha256"] == keys.hash_secret(secret)
    assert keys.revoke_key(db, key_id) and keys.authenticate(db, secret) is None


def test_files_are_invisible_to_other_keys_and_blob_paths_refuse_names(db, tmp_path):
    a, _ = keys.create_key(db)
    b, _ = keys.create_key(db)
    file_id = files.new_file_id()
    files.add_file(db, file_id, a, "train.jsonl", "fine-tune", 12, {"ok": True})
    assert files.get_file(db, a, file_id).filename == "train.jsonl"
    assert files.get_file(db, b, file_id) is None
    assert files.list_files(db, b)[0] == []
    assert not files.delete_file(db, b, file_id) and files.delete_file(db, a, file_id)
    assert files.get_file(db, a, file_id) is None
    assert files.blob_path(tmp_path, file_id, "../../a.TXT") == tmp_path / f"{file_id}.txt"
    assert files.blob_path(tmp_path, file_id, "x/../y.sh") == tmp_path / f"{file_id}.jsonl"
    for bad in ["../etc/passwd", "file-../../x", "train.jsonl", file_id + "/.."]:
        with pytest.raises(ValueError):
            files.blob_path(tmp_path, bad)


def test_job_state_machine_allows_the_documented_moves_only(db):
    owner, _ = keys.create_key(db)
    job = make_job(db, owner)
    assert job.status == "validating_files"
    for status in ["queued", "running", "paused", "queued", "running"]:
        job = jobs.transition(db, job.id, status, "worker")
    job = jobs.transition(db, job.id, "succeeded", "worker", fine_tuned_model="ft:tiny:demo:x", trained_tokens=10)
    assert job.finished_at is not None and job.trained_tokens == 10
    with pytest.raises(jobs.InvalidTransition, match="succeeded"):
        jobs.transition(db, job.id, "cancelled", owner)
    with pytest.raises(jobs.InvalidTransition):  # resume means paused → queued only
        jobs.transition(db, make_job(db, owner).id, "queued", owner, only_from={"paused"})
    failed = jobs.transition(db, make_job(db, owner).id, "failed", "worker", error={"code": "x", "message": "bad"})
    assert failed.error == {"code": "x", "message": "bad"}


def test_success_registers_the_model_in_the_same_transaction(db):
    owner, _ = keys.create_key(db)
    other, _ = keys.create_key(db)
    job = make_job(db, owner)
    jobs.transition(db, job.id, "queued", "worker")
    jobs.transition(db, job.id, "running", "worker")
    model_id = models.fine_tuned_model_id("tiny", "demo", job.id)
    jobs.transition(db, job.id, "succeeded", "worker", fine_tuned_model=model_id,
                    also=lambda tx: models.add_model(tx, model_id, owner, job.id, "tiny", "/runs/x"))
    assert model_id == f"ft:tiny:demo:{job.id.removeprefix('ftjob-')}"
    assert [m.id for m in models.list_models(db, owner)] == [model_id]
    assert models.get_model(db, other, model_id) is None and not models.delete_model(db, other, model_id)
    assert models.delete_model(db, owner, model_id) and models.list_models(db, owner) == []


def test_jobs_page_newest_first_with_after_and_limit_per_key(db):
    owner, _ = keys.create_key(db)
    other, _ = keys.create_key(db)
    created = [make_job(db, owner).id for _ in range(5)]
    make_job(db, other)
    first, more = jobs.list_jobs(db, owner, limit=2)
    assert [j.id for j in first] == created[::-1][:2] and more
    rest, more = jobs.list_jobs(db, owner, after=first[-1].id, limit=10)
    assert [j.id for j in rest] == created[::-1][2:] and not more
    assert jobs.list_jobs(db, other, after=created[0])[0] == []  # another key's id is no cursor


def test_events_and_checkpoints_are_recorded_once(db):
    owner, _ = keys.create_key(db)
    job = make_job(db, owner)
    for _ in range(2):
        job_events.add_event(db, job.id, "Step 1: training loss=1.0", type="metrics", data={"step": 1}, dedupe=f"{job.id}:1")
        job_events.add_checkpoint(db, job.id, 1, {"train_loss": 1.0}, "ft:x:ckpt-step-1")
    events, _ = job_events.list_events(db, job.id, limit=100)
    assert [e.type for e in events].count("metrics") == 1
    assert events[-1].message.startswith("Created fine-tuning job")  # newest first
    assert len(job_events.list_checkpoints(db, job.id)[0]) == 1


def test_audit_log_records_state_changes_with_actor(db):
    owner, _ = keys.create_key(db)
    job = make_job(db, owner)
    jobs.transition(db, job.id, "cancelled", owner)
    actions = [(e["actor"], e["action"]) for e in audit.entries(db, job.id)]
    assert actions == [(owner, "job.created"), (owner, "job.cancelled")]
    assert audit.entries(db, job.id)[-1]["detail"] == {"previous": "validating_files"}
