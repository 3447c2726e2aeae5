"""A DPO job through the official `openai` package against a real `tunesmith serve`: a chat with its model,
and its reward curves in the web UI (headless Debian chromium, as in test_ui.py)."""
import openai
import pytest
from playwright.sync_api import sync_playwright

from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.serve.server import FACTS, create_key, free_port, start_server, wait_for
from tests.serve.test_dpo_jobs import write_preference_file

TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory, tiny_model_dir):
    """One DPO job created with the openai client and waited for: (server URL, API key, client, job)."""
    tmp_path = tmp_path_factory.mktemp("dpo")
    port = free_port()
    process = start_server(tmp_path / "home", tiny_model_dir, port, "--checkpoint-every", "3")
    key = create_key(tmp_path / "home")
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=60)
    train = client.files.create(file=write_preference_file(tmp_path / "pairs.jsonl").open("rb"), purpose="fine-tune")
    valid = client.files.create(file=write_preference_file(tmp_path / "valid.jsonl", FACTS[:3]).open("rb"), purpose="fine-tune")
    method = {"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 2, "batch_size": 4, "beta": 0.2}}}
    created = client.fine_tuning.jobs.create(model=tiny_model_dir.name, training_file=train.id, validation_file=valid.id,
                                             method=method, suffix="voice", seed=7)
    assert created.method.type == "dpo" and created.method.dpo.hyperparameters.learning_rate_multiplier == "auto"
    job = wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(created.id)).status in TERMINAL and j, timeout=300)
    yield f"http://127.0.0.1:{port}", key, client, job
    process.terminate()
    process.wait(timeout=30)


def test_openai_client_creates_a_dpo_job_and_chats_with_its_model(finished_job):
    _, _, client, job = finished_job
    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    assert job.status == "succeeded", [e.message for e in events]
    resolved = job.method.dpo.hyperparameters
    assert (resolved.n_epochs, resolved.batch_size, resolved.beta, resolved.learning_rate_multiplier) == (2, 4, 0.2, 1.0)
    assert job.hyperparameters.learning_rate_multiplier == 1.0 and job.trained_tokens > 0
    metrics = [e for e in events if e.type == "metrics"]
    assert len(metrics) == 6  # 10 pairs in batches of 4 → 3 steps × 2 epochs
    assert all(0 <= e.data["rewards/accuracy"] <= 1 and "reward accuracy=" in e.message for e in metrics)
    assert any("valid_rewards/margin" in e.data for e in metrics)

    answer = client.chat.completions.create(model=job.fine_tuned_model, temperature=0, max_tokens=8,
                                            messages=[{"role": "user", "content": "What is the symbol for gold?"}])
    assert answer.choices[0].finish_reason in {"stop", "length"} and answer.usage.completion_tokens <= 8


def test_the_job_page_plots_reward_accuracy_and_margin(finished_job, tmp_path):
    url, key, _, job = finished_job
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 1200})
        page.goto(f"{url}/ui")
        page.fill("#api-key", key)
        page.click("#save-key")
        page.locator(f"tr[data-job='{job.id}']").click()
        page.wait_for_selector("#loss-curve[data-points='6']")
        for chart in ("#reward-accuracy", "#reward-margin"):
            page.wait_for_selector(f"{chart}[data-points='6']")
            assert page.locator(f"{chart} polyline.train").get_attribute("points").count(",") == 6
            assert page.locator(f"{chart} polyline.valid").get_attribute("points").count(",") >= 1
        assert page.locator("#reward-curves").is_visible()
        y_ticks = [t.text_content() for t in page.locator("#reward-accuracy text.tick.y").all()]
        assert y_ticks[0] == "0" and y_ticks[-1] == "1", y_ticks  # accuracy's axis is fixed at 0..1
        page.screenshot(path=str(tmp_path / "dpo-job.png"), full_page=True)
        browser.close()
