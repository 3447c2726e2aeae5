"""The whole workflow in the browser (headless Debian chromium, Playwright) against `tunesmith serve` with a tiny model:
a file with a bad row fails its data check with its line shown (it cannot be picked for a job), a good one is
checked and stored, a job is started from the form
(cost estimate and resolved "auto" shown first), reaches succeeded with drawn curves and its quick evaluation, a
second job is paused, resumed and cancelled, the model is compared with its base (their reports, and a suite run
on both) and chatted with. Nothing is fetched from outside the server."""
import io
import json

import httpx
import numpy as np
import yaml
from PIL import Image
from playwright.sync_api import expect, sync_playwright

from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.serve.server import FACTS, create_key, write_chat_file


def drawn_fraction(png: bytes) -> tuple[float, int]:
    """Share of pixels that are not near-white, and the number of distinct colours (as tests/evaluate does)."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)  # (H*W, 3)
    return float((pixels.min(axis=1) < 230).mean()), len(np.unique(pixels, axis=0))


def assert_drawn(locator, what: str) -> None:
    inked, colours = drawn_fraction(locator.screenshot())
    assert inked > 0.02 and colours > 20, (what, inked, colours)  # axes, ticks, lines or bars actually drawn


def test_from_a_jsonl_file_to_a_chat_with_the_fine_tuned_model(server, tmp_path, tiny_model_dir):
    url, home = server
    key = create_key(home)
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(write_chat_file(tmp_path / "rows.jsonl").read_text() + '{"messages": "not a list"}\n')
    train, valid = write_chat_file(tmp_path / "train.jsonl"), write_chat_file(tmp_path / "valid.jsonl", FACTS[:3])
    spare = write_chat_file(tmp_path / "spare.jsonl", FACTS[:2])
    (home / "suites").mkdir()
    write_chat_file(home / "suites" / "facts.jsonl", FACTS[5:])
    (home / "suites" / "facts.yaml").write_text(yaml.safe_dump({
        "name": "facts", "tasks": [{"kind": "loss", "name": "facts", "data": "facts.jsonl"}],
        "gates": [{"metric": "facts.loss", "max": 100}]}))
    requests, chats = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda r: requests.append(r.url))
        page.on("request", lambda r: chats.append(json.loads(r.post_data)) if r.url.endswith("/v1/responses") else None)
        page.goto(f"{url}/ui#files")
        page.fill("#api-key", key)
        page.click("#save-key")

        # a bad row: stored with status error (the data check runs after the upload is answered), its line beside
        # the upload control and in the data check
        page.set_input_files("#upload", str(bad))
        expect(page.locator("#upload-error")).to_contain_text("line 11, messages")
        expect(page.locator("#file-check tr.row-error[data-line='11']")).to_contain_text("line 11")
        stored = http.get("/v1/files").json()["data"]
        assert [(f["filename"], f["status"]) for f in stored] == [("bad.jsonl", "error")]
        expect(page.locator(f"tr[data-file='{stored[0]['id']}']")).to_contain_text("failed its data check")

        # good files: progress to 100 %, the check at once with histogram and trained-token preview
        ids = {}
        for path in (train, valid, spare):
            page.set_input_files("#upload", str(path))
            expect(page.locator("#upload-status")).to_contain_text(f"uploaded {path.name} as file-")
            ids[path.name] = page.locator("#upload-status").inner_text().split(" as ")[1]
            expect(page.locator("#file-check")).to_contain_text(f"Data check: {path.name}")
        assert page.locator("#upload-progress").get_attribute("value") == "100"
        page.locator(f"tr[data-file='{ids['train.jsonl']}']").click()
        expect(page.locator("#file-check")).to_contain_text("train: 10 rows, 10 valid")
        expect(page.locator("#file-check .preview mark").first).to_be_visible()
        assert int(page.locator("#length-histogram").get_attribute("data-bins")) >= 1
        assert_drawn(page.locator("#length-histogram"), "token length histogram")
        page.locator(f"#delete-{ids['spare.jsonl']}").click()
        expect(page.locator(f"tr[data-file='{ids['spare.jsonl']}']")).to_have_count(0)
        page.screenshot(path=str(tmp_path / "files.png"), full_page=True)

        # the form: an API error beside its field, "auto" resolved, the estimate, then the job
        page.goto(f"{url}/ui#new")
        page.select_option("#job-training-file", ids["train.jsonl"])
        assert page.locator(f"#job-training-file option[value='{stored[0]['id']}']").is_disabled()  # the bad file
        page.select_option("#job-validation-file", ids["valid.jsonl"])
        page.fill("#hp-n_epochs", "0")
        expect(page.locator("#hp-n_epochs-error")).to_contain_text("must be >= 1")
        page.fill("#hp-n_epochs", "2")
        page.fill("#hp-batch_size", "4")
        expect(page.locator("#hp-learning_rate_multiplier-resolved")).to_have_text("auto → 1")
        expect(page.locator("#estimate-time")).to_contain_text("s")
        expect(page.locator("#estimate")).to_contain_text("6 over 10 examples")  # 2 epochs × ceil(10 / 4) steps
        page.fill("#job-suffix", "ui")
        page.click("#create-job")
        page.wait_for_url("**/ui#jobs/ftjob-*")
        job_id = page.url.split("/")[-1]
        expect(page.locator("#job-title .status")).to_have_text("succeeded", timeout=180_000)
        page.wait_for_selector("#loss-curve[data-points='6']")
        assert page.locator("#loss-curve polyline.valid").get_attribute("points").count(",") >= 1
        assert page.locator("#lr-curve polyline.lr").get_attribute("points").count(",") == 6
        assert page.locator("#loss-curve text.tick").count() >= 4  # ticked axes
        assert page.locator("#accuracy-curve polyline.train").get_attribute("points").count(",") == 6  # token accuracy
        for chart in ("#loss-curve", "#lr-curve", "#accuracy-curve"):
            assert_drawn(page.locator(chart), chart)
        expect(page.locator("#job-times")).to_contain_text("step 6 of 6")
        for action, enabled in (("cancel", False), ("pause", False), ("resume", False)):
            assert page.locator(f"#job-{action}").is_enabled() is enabled, action
        # the quick evaluation: held-out validation loss, base model before, this model after
        expect(page.locator("#evaluation")).to_contain_text("quick evaluation")
        expect(page.locator("#evaluation table.evaluation")).to_contain_text("validation")
        expect(page.locator("#evaluation table.evaluation")).to_contain_text("loss")
        expect(page.locator("#checkpoints")).to_contain_text("ckpt-step-6")
        expect(page.locator("#model-card")).to_contain_text("## Training data")
        page.screenshot(path=str(tmp_path / "job.png"), full_page=True)
        model = http.get(f"/v1/fine_tuning/jobs/{job_id}").json()["fine_tuned_model"]

        # a second job, continuing the first model (the models page links to the form with it chosen); its file
        # cannot be deleted while it runs; paused, resumed, cancelled
        page.goto(f"{url}/ui#models")
        page.locator(f"tr[data-model='{model}']").click()
        page.click("#model-continue")
        expect(page.locator("#job-model")).to_have_value(model)
        page.select_option("#job-training-file", ids["train.jsonl"])
        page.fill("#hp-n_epochs", "50")
        page.select_option("#job-suite", "facts")
        page.click("#create-job")
        page.wait_for_url("**/ui#jobs/ftjob-*")
        second = page.url.split("/")[-1]
        assert second != job_id and http.get(f"/v1/fine_tuning/jobs/{second}").json()["suite"] == "facts"
        page.goto(f"{url}/ui#files")
        page.locator(f"#delete-{ids['train.jsonl']}").click()
        expect(page.locator(f"#delete-{ids['train.jsonl']}-error")).to_contain_text("cancel them first")
        page.goto(f"{url}/ui#jobs/{second}")
        page.click("#job-pause")
        expect(page.locator("#job-title .status")).to_have_text("paused")
        expect(page.locator("#job-pause")).to_be_disabled()
        page.click("#job-resume")
        expect(page.locator("#job-title .status")).not_to_have_text("paused")
        expect(page.locator("#job-resume")).to_be_disabled()
        page.click("#job-cancel")
        expect(page.locator("#job-title .status")).to_have_text("cancelled")
        expect(page.locator("#job-resume")).to_be_disabled()
        expect(page.locator("#job-pause")).to_be_disabled()
        expect(page.locator(f"tr[data-job='{second}'] .status")).to_have_text("cancelled")

        # the keyboard opens a job from the list; the report is there
        page.locator(f"tr[data-job='{job_id}']").focus()
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/ui#jobs/{job_id}")
        expect(page.locator("#evaluation")).to_contain_text("PASSED")

        # models: the fine-tuned model with lineage and card; both models' evaluations side by side
        page.goto(f"{url}/ui#models")
        page.locator(f"tr[data-model='{model}']").click()
        expect(page.locator("#model-lineage")).to_contain_text(f"data train: {ids['train.jsonl']} — 10 rows")
        expect(page.locator("#model-card-view")).to_contain_text("## Training data")
        page.select_option("#compare-a", tiny_model_dir.name)
        page.select_option("#compare-b", model)
        page.click("#compare-form button")
        expect(page.locator("#compare")).to_contain_text("is a base model")
        expect(page.locator("#compare table.evaluation")).to_contain_text("validation")
        page.fill("#compare-limit", "3")
        page.click("#compare-run")
        report = page.locator("#compare-suite-report")
        expect(report).to_contain_text(f"Suite facts: {tiny_model_dir.name} (before) vs {model} (after)", timeout=60_000)
        expect(report).to_contain_text("PASSED")
        expect(report.locator("table.evaluation")).to_contain_text("facts")

        # chat with the result: the job page's link opens the playground on the new model
        page.goto(f"{url}/ui#jobs/{job_id}")
        page.click("#job-chat")
        expect(page.locator("#tuned-model")).to_have_value(model)
        page.click("#send")
        page.wait_for_selector("#answer-base[data-done]")
        page.wait_for_selector("#answer-tuned[data-done]")
        expected = http.post("/v1/chat/completions", json={
            "model": model, "temperature": 0, "max_tokens": 32,
            "messages": [{"role": "user", "content": "What is the symbol for gold?"}]}).json()
        assert page.text_content("#answer-tuned") == expected["choices"][0]["message"]["content"]
        assert [chat["model"] for chat in chats] == [tiny_model_dir.name, model] and all(c["stream"] for c in chats)

        # a narrow window: nothing wider than the screen, the form still usable
        page.set_viewport_size({"width": 400, "height": 800})
        for view in ("new", f"jobs/{job_id}", "files", "models", "evals", "playground"):
            page.goto(f"{url}/ui#{view}")
            page.wait_for_timeout(300)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (view, overflow)
        page.goto(f"{url}/ui#new")
        page.fill("#hp-batch_size", "300")  # a long error message beside the field still wraps
        expect(page.locator("#hp-batch_size-error")).to_contain_text("batch_size")
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
        assert page.locator("#beta-field").is_hidden()  # DPO's beta only for a dpo job
        page.screenshot(path=str(tmp_path / "narrow.png"), full_page=True)
        browser.close()
    assert all(u.startswith(url) for u in requests), [u for u in requests if not u.startswith(url)]
