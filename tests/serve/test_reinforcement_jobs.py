"""Reinforcement fine-tuning jobs as OpenAI takes them: method and grader parsing, "auto" resolution, prompt files
checked by line against the grader's fields, python graders only where the operator allows them, and one job run to
the end through the official `openai` client against a real `tunesmith serve`."""
import json

import openai

from tests.serve.server import FACTS, create_key, free_port, start_server, upload_file, wait_for, write_chat_file
from tests.serve.test_dpo_jobs import create, error_of
from tunesmith.registry import job_events, jobs
from tunesmith.serve.worker import JobWorker, RunningJob, job_dir

AUTO = "auto"
GRADER = {"type": "string_check", "name": "symbol", "input": "{{ sample.output_text }}",
          "reference": "{{ item.symbol }}", "operation": "like"}
PYTHON = {"type": "python", "name": "short", "source": "def grade(sample, item):\n    return float(len(sample['output_text']) < 20)\n"}


def write_prompt_file(path, facts=FACTS, field="symbol"):
    rows = [{"messages": [{"role": "user", "content": f"What is the symbol for {n}?"}], field: s} for n, s in facts]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def reinforcement(grader=GRADER, **hyperparameters) -> dict:
    return {"type": "reinforcement", "reinforcement": {"grader": grader, "hyperparameters": hyperparameters}}


def test_a_reinforcement_job_records_its_grader_and_trains_with_it(api, tmp_path, tiny_model_dir):
    train = upload_file(api, write_prompt_file(tmp_path / "prompts.jsonl"))
    valid = upload_file(api, write_prompt_file(tmp_path / "valid.jsonl", FACTS[:3]))
    job = create(api, model=tiny_model_dir.name, training_file=train, validation_file=valid,
                 method=reinforcement(compute_multiplier=0.5, eval_samples=2)).json()
    asked = {"n_epochs": AUTO, "batch_size": AUTO, "learning_rate_multiplier": AUTO, "compute_multiplier": 0.5,
             "eval_interval": AUTO, "eval_samples": 2, "reasoning_effort": AUTO}
    assert job["method"] == {"type": "reinforcement", "reinforcement": {"hyperparameters": asked, "grader": GRADER}}

    worker = JobWorker(api.app_state.db, api.app_state.settings)  # what the worker does when the job starts
    record = jobs.get_job(api.app_state.db, job["id"])
    resolved = worker.resolved_hyperparameters(record)
    assert resolved == {"n_epochs": 10, "batch_size": 1, "learning_rate_multiplier": 1.0, "compute_multiplier": 0.5,
                        "eval_interval": 10, "eval_samples": 2, "reasoning_effort": "default"}  # 10 prompts
    config = worker.run_config(record, resolved, tmp_path / "job")
    assert config.train.method == "reinforcement" and config.reinforcement.grader == GRADER
    assert (config.reinforcement.group_size, config.reinforcement.valid_samples, config.train.eval_every) == (4, 2, 10)


def write_reward_metrics(run_dir, steps=4) -> None:
    """metrics.jsonl as a reinforcement run writes it: a surrogate loss near 0, the reward rising, validation (its
    loss the reward negated) every other step."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for step in range(1, steps + 1):
        line = {"step": step, "epoch": step / steps, "loss": 1e-9 * step, "lr": 1e-4, "reward": 0.1 * step,
                "reward_std": 0.2, "answer_tokens": 12.0, "kl": 0.0, "zero_std_groups": 0.0, "clipped_answers": 1.0,
                "tokens_per_s": 50.0, "trained_tokens": 100 * step}
        if step % 2 == 0:
            line |= {"valid_loss": -0.2 * step, "valid_reward": 0.2 * step, "valid_kl": 0.0}
        lines.append(json.dumps(line) + "\n")
    (run_dir / "metrics.jsonl").write_text("".join(lines))


def test_a_reinforcement_runs_reward_reaches_the_jobs_events_and_names_each_step(api, tmp_path, tiny_model_dir):
    train = upload_file(api, write_prompt_file(tmp_path / "prompts.jsonl"))
    job = create(api, model=tiny_model_dir.name, training_file=train, method=reinforcement()).json()
    worker = JobWorker(api.app_state.db, api.app_state.settings)
    running = RunningJob(job["id"], tmp_path / "job", process=None)
    write_reward_metrics(running.run_dir)
    worker.record_progress(running)
    events = [e for e in job_events.list_events(api.app_state.db, job["id"], limit=100)[0] if e.type == "metrics"]
    by_step = {e.data["step"]: e for e in events}
    assert sorted(by_step) == [1, 2, 3, 4]
    assert by_step[4].data["reward"] == 0.4 and by_step[4].data["valid_reward"] == 0.8
    assert by_step[4].data["clipped_answers"] == 1.0 and "valid_reward" not in by_step[3].data
    assert by_step[4].message == "Step 4: reward=0.400, validation reward=0.800"  # not the surrogate loss
    assert by_step[3].message == "Step 3: reward=0.300"


def test_graders_files_and_hyperparameters_that_cannot_train_are_400s_by_field(api, tmp_path, tiny_model_dir):
    base = tiny_model_dir.name
    prompts = upload_file(api, write_prompt_file(tmp_path / "prompts.jsonl"))
    chat = upload_file(api, write_chat_file(tmp_path / "chat.jsonl"))
    wrong_field = upload_file(api, write_prompt_file(tmp_path / "named.jsonl", field="answer"))
    assert "needs method.reinforcement.grader" in error_of(
        create(api, model=base, training_file=prompts, method={"type": "reinforcement"}), "method.reinforcement")
    message = error_of(create(api, model=base, training_file=prompts, method=reinforcement({**GRADER, "operation": "has"})),
                       "method.reinforcement.grader.operation")
    assert "eq, ne, like, ilike" in message
    assert "do not reason" in error_of(create(api, model=base, training_file=prompts,
                                              method=reinforcement(reasoning_effort="high")),
                                       "method.reinforcement.hyperparameters.reasoning_effort")
    refused = create(api, model=base, training_file=prompts, method=reinforcement(PYTHON))
    assert refused.json()["error"]["code"] == "python_graders_disabled"
    assert "--allow-python-graders" in error_of(refused, "method.reinforcement.grader")
    message = error_of(create(api, model=base, training_file=chat, method=reinforcement()), "training_file")
    assert "is not reinforcement prompts" in message and "line 1, messages[1].role" in message
    message = error_of(create(api, model=base, training_file=wrong_field, method=reinforcement()), "training_file")
    assert "line 1" in message and "item.symbol" in message
    assert 'method {"type": "reinforcement"}' in error_of(create(api, model=base, training_file=prompts), "training_file")
    api.app_state.settings.allow_python_graders = True
    assert create(api, model=base, training_file=prompts, method=reinforcement(PYTHON)).status_code == 200


def test_a_python_grader_job_waits_paused_on_a_server_restarted_without_python_graders(api, tmp_path, tiny_model_dir):
    train = upload_file(api, write_prompt_file(tmp_path / "prompts.jsonl"))
    api.app_state.settings.allow_python_graders = True
    job = create(api, model=tiny_model_dir.name, training_file=train, method=reinforcement(PYTHON)).json()
    jobs.transition(api.app_state.db, job["id"], "queued", "worker")
    api.app_state.settings.allow_python_graders = False  # the server started again without the flag
    worker = JobWorker(api.app_state.db, api.app_state.settings)
    worker.launch(jobs.get_job(api.app_state.db, job["id"]))
    assert worker.current is None and jobs.get_job(api.app_state.db, job["id"]).status == "paused"
    assert not job_dir(api.app_state.settings, job["id"]).exists()  # nothing written, nothing run
    latest = job_events.list_events(api.app_state.db, job["id"], limit=1)[0][0]
    assert "--allow-python-graders" in latest.message and "resume" in latest.message
    api.app_state.settings.allow_python_graders = True  # restarted with it, the resumed job starts
    jobs.transition(api.app_state.db, job["id"], "queued", "user", only_from={"paused"})
    assert not worker.python_grader_refused(jobs.get_job(api.app_state.db, job["id"]))
    assert jobs.get_job(api.app_state.db, job["id"]).status == "queued"


def test_openai_client_runs_a_reinforcement_job_to_a_model(tmp_path, tiny_model_dir):
    port = free_port()
    process = start_server(tmp_path / "home", tiny_model_dir, port, "--checkpoint-every", "2")
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=create_key(tmp_path / "home"),
                               max_retries=0, timeout=60)
        train = client.files.create(file=write_prompt_file(tmp_path / "prompts.jsonl").open("rb"), purpose="fine-tune")
        assert wait_for(lambda: client.files.retrieve(train.id).status != "uploaded") and \
            client.files.retrieve(train.id).status == "processed"  # its data check read it as prompts
        created = client.fine_tuning.jobs.create(
            model=tiny_model_dir.name, training_file=train.id, seed=3,
            method={"type": "reinforcement", "reinforcement": {"grader": GRADER, "hyperparameters": {
                "n_epochs": 1, "batch_size": 5, "compute_multiplier": 0.25}}})
        assert created.method.type == "reinforcement" and created.method.reinforcement.grader.type == "string_check"
        job = wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(created.id)).status in
                       ("succeeded", "failed", "cancelled") and j, timeout=300)
        events = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data]
        assert job.status == "succeeded", events
        assert job.method.reinforcement.hyperparameters.n_epochs == 1 and job.fine_tuned_model.startswith("ft:")
        answer = client.chat.completions.create(model=job.fine_tuned_model, max_tokens=4,
                                                messages=[{"role": "user", "content": "What is the symbol for gold?"}])
        assert answer.choices[0].message.content is not None
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_model_graders_judge_is_one_of_the_keys_models_loaded_by_the_job(api, tmp_path, tiny_model_dir):
    judge = {"type": "score_model", "name": "judge", "model": tiny_model_dir.name, "range": [0, 10],
             "input": [{"role": "user", "content": "Rate {{ sample.output_text }} for {{ item.symbol }}"}]}
    train = upload_file(api, write_prompt_file(tmp_path / "prompts.jsonl"))
    job = create(api, model=tiny_model_dir.name, training_file=train, method=reinforcement(judge)).json()
    record = jobs.get_job(api.app_state.db, job["id"])
    worker = JobWorker(api.app_state.db, api.app_state.settings)
    config = worker.run_config(record, worker.resolved_hyperparameters(record), tmp_path / "job")
    assert config.reinforcement.judges == {tiny_model_dir.name: str(tiny_model_dir.resolve())}
    elsewhere = create(api, model=tiny_model_dir.name, training_file=train,
                       method=reinforcement({**judge, "model": "gpt-4o"}))
    assert elsewhere.status_code == 404 and elsewhere.json()["error"]["param"] == "method.reinforcement.grader.model"
