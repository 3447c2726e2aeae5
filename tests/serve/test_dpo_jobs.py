"""DPO fine-tuning jobs as OpenAI takes them: method parsing, "auto" resolution, preference files checked by line."""
import json


from tests.serve.server import FACTS, upload_file, write_chat_file
from tunesmith.registry import jobs
from tunesmith.serve.hyperparameters import auto_batch_size, auto_n_epochs, resolve_hyperparameters
from tunesmith.serve.worker import JobWorker

AUTO = "auto"


def write_preference_file(path, facts=FACTS):
    rows = [{"input": {"messages": [{"role": "user", "content": f"What is the symbol for {n}?"}]},
             "preferred_output": [{"role": "assistant", "content": f"The symbol for {n} is {s}."}],
             "non_preferred_output": [{"role": "assistant", "content": f"{n.title()}."}]} for n, s in facts]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def create(api, **body):
    return api.post("/v1/fine_tuning/jobs", json=body)


def error_of(response, param):
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    return error["message"]


def test_auto_rules_follow_the_dataset_size():
    assert [auto_n_epochs(n) for n in (1, 10, 33, 34, 354, 8333, 8334, 30_000)] == [25, 10, 3, 3, 3, 3, 2, 1]
    assert [auto_batch_size(n) for n in (1, 31, 32, 64, 128, 354, 100_000)] == [1, 1, 2, 4, 8, 16, 16]
    asked = {"n_epochs": 2, "batch_size": AUTO, "learning_rate_multiplier": AUTO, "beta": 0.3}
    assert resolve_hyperparameters(asked, 354) == {"n_epochs": 2, "batch_size": 16, "learning_rate_multiplier": 1.0, "beta": 0.3}


def test_a_dpo_job_records_its_method_and_resolves_auto_when_it_starts(api, tmp_path, tiny_model_dir):
    train = upload_file(api, write_preference_file(tmp_path / "pairs.jsonl"))
    valid = upload_file(api, write_preference_file(tmp_path / "valid.jsonl", FACTS[:3]))
    method = {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": AUTO}}}
    job = create(api, model=tiny_model_dir.name, training_file=train, validation_file=valid, method=method).json()
    asked = {"n_epochs": AUTO, "batch_size": AUTO, "learning_rate_multiplier": AUTO, "beta": 0.2}
    assert job["method"] == {"type": "dpo", "dpo": {"hyperparameters": asked}}
    assert job["hyperparameters"] == {"n_epochs": AUTO, "batch_size": AUTO, "learning_rate_multiplier": AUTO}

    worker = JobWorker(api.app_state.db, api.app_state.settings)  # what the worker does when the job starts
    record = jobs.get_job(api.app_state.db, job["id"])
    resolved = worker.resolved_hyperparameters(record)
    assert resolved == {"n_epochs": 10, "batch_size": 1, "learning_rate_multiplier": 1.0, "beta": 0.2}  # 10 pairs
    config = worker.run_config(record, resolved, tmp_path / "job")
    assert (config.train.method, config.dpo.beta, config.train.epochs, config.train.batch_size) == ("dpo", 0.2, 10, 1)
    jobs.set_hyperparameters(api.app_state.db, job["id"], resolved)
    shown = api.get(f"/v1/fine_tuning/jobs/{job['id']}").json()
    assert shown["method"]["dpo"]["hyperparameters"] == resolved
    assert shown["hyperparameters"] == {"n_epochs": 10, "batch_size": 1, "learning_rate_multiplier": 1.0}


def test_supervised_jobs_keep_the_top_level_hyperparameters_and_take_method_supervised(api, tmp_path, tiny_model_dir):
    chat = upload_file(api, write_chat_file(tmp_path / "chat.jsonl"))
    legacy = create(api, model=tiny_model_dir.name, training_file=chat, hyperparameters={"n_epochs": 2}).json()
    assert legacy["method"] == {"type": "supervised", "supervised": {"hyperparameters": {
        "n_epochs": 2, "batch_size": AUTO, "learning_rate_multiplier": AUTO}}}
    record = jobs.get_job(api.app_state.db, legacy["id"])
    worker = JobWorker(api.app_state.db, api.app_state.settings)
    config = worker.run_config(record, worker.resolved_hyperparameters(record), tmp_path / "job")
    assert (config.train.method, config.train.epochs, config.train.batch_size) == ("lora", 2, 1)
    method = {"type": "supervised", "supervised": {"hyperparameters": {"batch_size": 2, "learning_rate_multiplier": 0.5}}}
    job = create(api, model=tiny_model_dir.name, training_file=chat, method=method).json()
    assert job["hyperparameters"] == {"n_epochs": AUTO, "batch_size": 2, "learning_rate_multiplier": 0.5}


def test_method_and_file_mismatches_are_400s_that_name_the_line(api, tmp_path, tiny_model_dir):
    chat = upload_file(api, write_chat_file(tmp_path / "chat.jsonl"))
    pairs = upload_file(api, write_preference_file(tmp_path / "pairs.jsonl"))
    base = tiny_model_dir.name
    message = error_of(create(api, model=base, training_file=chat, method={"type": "dpo"}), "training_file")
    assert message.startswith(f"File {chat} (chat.jsonl) is not preference data, which a dpo job trains on: line 1: "
                              "not a preference pair — write {\"input\"")
    message = error_of(create(api, model=base, training_file=pairs, validation_file=chat, method={"type": "dpo"}),
                       "validation_file")
    assert "(chat.jsonl) is not preference data" in message
    assert 'method {"type": "dpo"}' in error_of(create(api, model=base, training_file=pairs), "training_file")
    hyper = {"hyperparameters": {"n_epochs": 1}}
    assert "method.dpo.hyperparameters" in error_of(
        create(api, model=base, training_file=pairs, method={"type": "dpo"}, **hyper), "hyperparameters")
    error_of(create(api, model=base, training_file=pairs, method={"type": "dpo", "supervised": hyper}), "method.supervised")
    error_of(create(api, model=base, training_file=pairs, method={"type": "grpo"}), "method.type")
    bad_beta = {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0}}}
    message = error_of(create(api, model=base, training_file=pairs, method=bad_beta), "method.dpo.hyperparameters.beta")
    assert 'must be > 0 and <= 2, or "auto"' in message
    error_of(create(api, model=base, training_file=chat, hyperparameters={"n_epochs": 0}), "hyperparameters.n_epochs")


def test_an_invalid_preference_upload_fails_its_check_and_a_job_on_it_is_a_400_naming_line_and_field(api, tmp_path, tiny_model_dir):
    path = write_preference_file(tmp_path / "pairs.jsonl")
    rows = path.read_text().splitlines()
    broken = json.loads(rows[2]) | {"non_preferred_output": [{"role": "user", "content": "Gold."}]}
    path.write_text("\n".join(rows[:2] + [json.dumps(broken)] + rows[3:]) + "\n")
    file_id = upload_file(api, path)  # stored as `uploaded`; the full check then refuses the row
    job = create(api, model=tiny_model_dir.name, training_file=file_id,
                 method={"type": "dpo"})
    assert "line 3, non_preferred_output[0].role: role 'user'" in error_of(job, "training_file")
    assert api.get(f"/v1/files/{file_id}").json()["status"] == "error"


def test_a_simpo_job_through_the_api_trains_with_simpos_loss_margin_and_beta(api, tmp_path, tiny_model_dir):
    """tunesmith's extension of OpenAI's dpo hyperparameters: loss (sigmoid, ipo, simpo) and simpo_gamma, shown on
    the job only where asked; "auto" beta becomes SimPO's 2.0 under its loss."""
    asked = {"n_epochs": 1, "batch_size": AUTO, "learning_rate_multiplier": AUTO, "beta": AUTO, "loss": "simpo"}
    assert resolve_hyperparameters(asked, 354)["beta"] == 2.0
    assert resolve_hyperparameters({**asked, "loss": AUTO}, 354) == {**asked, "batch_size": 16,
                                                                        "learning_rate_multiplier": 1.0, "beta": 0.1,
                                                                        "loss": "sigmoid"}
    train = upload_file(api, write_preference_file(tmp_path / "pairs.jsonl"))
    method = {"type": "dpo", "dpo": {"hyperparameters": {"loss": "simpo", "simpo_gamma": 1.5}}}
    job = create(api, model=tiny_model_dir.name, training_file=train, method=method).json()
    assert job["method"]["dpo"]["hyperparameters"] == {"n_epochs": AUTO, "batch_size": AUTO,
                                                       "learning_rate_multiplier": AUTO, "beta": AUTO,
                                                       "loss": "simpo", "simpo_gamma": 1.5}
    worker = JobWorker(api.app_state.db, api.app_state.settings)
    record = jobs.get_job(api.app_state.db, job["id"])
    config = worker.run_config(record, worker.resolved_hyperparameters(record), tmp_path / "job")
    assert (config.train.method, config.dpo.loss, config.dpo.simpo_gamma, config.dpo.beta) == ("dpo", "simpo", 1.5, 2.0)

    base = tiny_model_dir.name
    margin_alone = {"type": "dpo", "dpo": {"hyperparameters": {"simpo_gamma": 1.0}}}
    message = error_of(create(api, model=base, training_file=train, method=margin_alone),
                       "method.dpo.hyperparameters.simpo_gamma")
    assert 'loss "simpo" only' in message
    other = {"type": "dpo", "dpo": {"hyperparameters": {"loss": "orpo"}}}
    error_of(create(api, model=base, training_file=train, method=other), "method.dpo.hyperparameters.loss")
