"""The web UI used by keyboard alone, at 1280 px and on a 400 px window, with every API error beside the control
that caused it (headless Debian chromium through Playwright, against an in-process server with a tiny model and
no job worker, so it takes seconds: nothing trains). Also: a suite comparison is still listed, with its report,
after the server restarts; a reinforcement job is set up in the form (its grader checked by the server, each error
beside the grader), and its page plots the grader's reward, not the surrogate loss."""
import json
import threading
import time

import httpx
import pytest
import yaml
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect, sync_playwright

from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.serve.server import FACTS, free_port, upload_file, write_chat_file
from tests.serve.test_reinforcement_jobs import write_prompt_file, write_reward_metrics
from tunesmith.registry import job_events, keys
from tunesmith.serve.app import create_app
from tunesmith.serve.settings import ServeSettings
from tunesmith.serve.worker import JobWorker, RunningJob

CONTROLS = "input:not([type=hidden]), select, textarea, button, a.button-like, .error:not(:empty), svg"


class Server:
    """uvicorn in a thread of the test: no second Python to start, so a restart takes a fraction of a second."""

    def __init__(self, settings: ServeSettings, port: int):
        import uvicorn

        self.app = create_app(settings)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def focus_order(page, stop_at: str, limit: int = 40) -> list[str]:
    """Ids of the elements Tab visits, from the current focus, until `stop_at` has focus."""
    seen = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        seen.append(page.evaluate("(e => e.id || e.getAttribute('href') || e.tagName)(document.activeElement)"))
        if seen[-1] == stop_at:
            return seen
    raise AssertionError(f"Tab never reached #{stop_at}: {seen}")


def tab_to(page, target: str) -> None:
    focus_order(page, target)


def open_file_chooser_by_keyboard(page, tries: int = 3):
    """Space on the focused file picker opens the chooser. Under a loaded CI machine Chromium has once let a
    press pass without one (the picker had focus; alone the test passes every time), so press again, at most
    `tries` times within the 30 s a single wait used to get."""
    for attempt in range(tries):
        try:
            with page.expect_file_chooser(timeout=10_000) as chooser:
                page.keyboard.press("Space")
            return chooser.value
        except PlaywrightTimeoutError:
            if attempt == tries - 1:
                raise
            assert page.evaluate("document.activeElement.id") == "upload"  # still on the picker, not elsewhere


def assert_described_error(page, control: str, text: str) -> None:
    """The message is in the control's own error element, which the control names (aria-describedby), which
    announces itself (role=alert), and which sits right under or beside the control on screen."""
    error = page.locator(f"#{control}-error")
    expect(error).to_contain_text(text)
    assert f"{control}-error" in page.get_attribute(f"#{control}", "aria-describedby").split()
    assert error.get_attribute("role") == "alert"
    box, near = page.evaluate("""(id) => [id, id + '-error'].map((name) => {
        const r = document.getElementById(name).getBoundingClientRect(); return { y: r.y, height: r.height }; })""", control)
    assert 0 <= near["y"] - box["y"] < box["height"] + 60, (control, box, near)  # just below (or on) its row


def assert_fits(page, view: str) -> None:
    """No horizontal scrolling of the page, and every visible control, error and chart inside the window."""
    width = page.evaluate("window.innerWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width, view
    outside = page.evaluate("""([selector, width]) => [...document.querySelectorAll(selector)]
        .filter((e) => e.getClientRects().length && getComputedStyle(e).visibility !== 'hidden')
        .map((e) => [e.id || e.className.baseVal || e.className || e.tagName, e.getBoundingClientRect()])
        .filter(([, r]) => r.width > 0 && (r.left < -0.5 || r.right > width + 0.5))
        .map(([name, r]) => `${name}: ${Math.round(r.left)}..${Math.round(r.right)}`)""", [CONTROLS, width])
    assert outside == [], (view, width, outside)


@pytest.fixture
def served(tmp_path, tiny_model_dir):
    home = tmp_path / "home"
    (home / "suites").mkdir(parents=True)
    write_chat_file(home / "suites" / "facts.jsonl", FACTS[5:])
    (home / "suites" / "facts.yaml").write_text(yaml.safe_dump({
        "name": "facts", "tasks": [{"kind": "loss", "name": "facts", "data": "facts.jsonl"}],
        "gates": [{"metric": "facts.loss", "max": 100}]}))
    settings = ServeSettings(home=home, bases=[str(tiny_model_dir)], run_jobs=False)
    port = free_port()
    servers = [Server(settings, port)]
    key = keys.create_key(servers[0].app.state.db)[1]

    def restart() -> None:
        servers[0].stop()
        servers[0] = Server(settings, port)

    yield f"http://127.0.0.1:{port}", key, restart
    servers[0].stop()


def test_the_workflow_by_keyboard_at_two_widths_with_errors_beside_their_controls(served, tmp_path, tiny_model_dir):
    url, key, restart = served
    bad = tmp_path / "bad.jsonl"
    bad.write_text(write_chat_file(tmp_path / "rows.jsonl").read_text() + '{"messages": "not a list"}\n')
    good = write_chat_file(tmp_path / "train.jsonl")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/ui#files")

        # the key, by keyboard: skip link, the five sections, the key field; Enter saves it
        order = [name for name in focus_order(page, "api-key") if name != "BODY"]  # headless starts on the body
        assert order == ["#main", "#files", "#new", "#jobs", "#models", "#evals", "#playground", "api-key"], order
        page.keyboard.type(key)
        page.keyboard.press("Enter")
        expect(page.locator("#key-state")).to_have_text("key saved")

        # upload by keyboard: Tab to the picker, Space opens it; a refused file's error is beside the picker
        tab_to(page, "upload")
        open_file_chooser_by_keyboard(page).set_files(str(bad))
        assert_described_error(page, "upload", "line 11, messages")
        expect(page.locator("#file-check tr.row-error[data-line='11']")).to_be_visible()
        for width in (1280, 400):
            page.set_viewport_size({"width": width, "height": 900})
            assert_fits(page, f"files with an error at {width}")
        page.set_viewport_size({"width": 1280, "height": 900})
        # drag and drop works too
        page.evaluate("""(text) => { const data = new DataTransfer();
            data.items.add(new File([text], 'train.jsonl', { type: 'application/json' }));
            document.getElementById('upload-form').dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true })); }""",
                      good.read_text())
        expect(page.locator("#upload-status")).to_contain_text("uploaded train.jsonl as file-")
        expect(page.locator("#upload-error")).to_be_empty()
        expect(page.locator("#file-check")).to_contain_text("ready to train")
        file_id = page.locator("#upload-status").inner_text().split(" as ")[1]
        for width in (1280, 400):  # the file table's Delete button and the data check's charts, on screen
            page.set_viewport_size({"width": width, "height": 900})
            assert_fits(page, f"files at {width}")

        # the new-job form at 400 px, by keyboard: every control in reading order, labelled; an API error on a
        # hyperparameter beside it, and focus taken there when Start is pressed
        page.goto(f"{url}/ui#new")
        expect(page.locator("#job-training-file")).to_have_value(file_id)
        page.locator("#job-model").focus()
        order = ["job-model"] + focus_order(page, "create-job")
        assert order == ["job-model", "job-training-file", "job-validation-file", "job-method", "hp-n_epochs",
                         "hp-batch_size", "hp-learning_rate_multiplier", "job-suite", "job-suffix", "create-job"], order
        for control in order[:-1]:
            assert page.locator(f"label[for='{control}']").count() == 1, control
        expect(page.locator("#hp-n_epochs-resolved")).to_contain_text("auto →")  # auto shown as what it becomes
        expect(page.locator("#estimate-time")).to_be_visible()  # the cost before starting
        page.locator("#hp-n_epochs").focus()
        page.keyboard.type("0")
        page.keyboard.press("Shift+Tab")  # away and back through the form by keyboard only
        tab_to(page, "create-job")
        page.keyboard.press("Enter")
        assert_described_error(page, "hp-n_epochs", "must be >= 1")
        expect(page.locator("#hp-n_epochs")).to_be_focused()
        expect(page.locator("#hp-n_epochs")).to_have_attribute("aria-invalid", "true")
        for width in (1280, 400):
            page.set_viewport_size({"width": width, "height": 900})
            assert_fits(page, f"new job with an error at {width}")
        page.keyboard.press("Backspace")
        page.keyboard.type("2")
        expect(page.locator("#hp-n_epochs-error")).to_be_empty()
        tab_to(page, "job-suffix")
        page.keyboard.type("bad suffix!")
        tab_to(page, "create-job")
        page.keyboard.press("Space")
        assert_described_error(page, "job-suffix", "suffix")
        expect(page.locator("#job-suffix")).to_be_focused()
        page.keyboard.press("Control+A")
        page.keyboard.type("kb")
        tab_to(page, "create-job")
        page.keyboard.press("Enter")
        page.wait_for_url("**/ui#jobs/ftjob-*")

        # the job (no worker: its files are never validated): only Cancel is allowed, pressed by keyboard
        expect(page.locator("#job-title .status")).to_have_text("validating_files")
        expect(page.locator("#job-pause")).to_be_disabled()
        expect(page.locator("#job-resume")).to_be_disabled()
        page.locator("#job-cancel").focus()
        page.keyboard.press("Space")
        expect(page.locator("#job-title .status")).to_have_text("cancelled")
        for action in ("cancel", "pause", "resume"):
            expect(page.locator(f"#job-{action}")).to_be_disabled()
        for width in (400, 1280):
            page.set_viewport_size({"width": width, "height": 900})
            assert_fits(page, f"job page at {width}")

        # models: a refused limit beside its field; a suite run on two models, listed; still there after a restart
        page.goto(f"{url}/ui#models")
        base = tiny_model_dir.name
        expect(page.locator("#compare-a option")).to_have_count(1)
        page.fill("#compare-limit", "0")
        page.locator("#compare-run").focus()
        page.keyboard.press("Enter")
        assert_described_error(page, "compare-limit", "limit")
        expect(page.locator("#compare-limit")).to_be_focused()
        page.keyboard.press("Control+A")
        page.keyboard.type("1")
        page.locator("#compare-run").focus()
        page.keyboard.press("Enter")
        report = page.locator("#compare-suite-report")
        expect(report).to_contain_text(f"Suite facts: {base} (before) vs {base} (after)", timeout=60_000)
        row = page.locator("#comparisons tr[data-comparison]")
        expect(row).to_contain_text("succeeded, PASSED")
        for width in (400, 1280):
            page.set_viewport_size({"width": width, "height": 900})
            assert_fits(page, f"models with a report at {width}")
        restart()
        page.goto(f"{url}/ui#jobs")
        page.goto(f"{url}/ui#models")
        expect(row).to_contain_text("succeeded, PASSED")
        row.focus()
        page.keyboard.press("Enter")
        expect(report.locator("table.evaluation")).to_contain_text("facts")

        # the playground: a bad max tokens beside its field, not in the answers
        page.goto(f"{url}/ui#playground")
        page.fill("#max-tokens", "0")
        page.locator("#send").focus()
        page.keyboard.press("Enter")
        assert_described_error(page, "max-tokens", "max_output_tokens")
        for width in (400, 1280):
            page.set_viewport_size({"width": width, "height": 900})
            assert_fits(page, f"playground at {width}")
        browser.close()


def test_a_reinforcement_job_from_the_form_with_its_grader_checked_and_its_reward_plotted(tmp_path, tiny_model_dir):
    settings = ServeSettings(home=tmp_path / "home", bases=[str(tiny_model_dir)], run_jobs=False)
    port = free_port()
    server = Server(settings, port)
    url, key = f"http://127.0.0.1:{port}", keys.create_key(server.app.state.db)[1]
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    prompts = upload_file(http, write_prompt_file(tmp_path / "prompts.jsonl", field="answer"))  # 10 prompts
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{url}/ui#new")
            page.fill("#api-key", key)
            page.click("#save-key")
            expect(page.locator("#job-training-file")).to_have_value(prompts)
            assert page.locator("#grader-field").is_hidden() and page.locator("#hp-compute_multiplier").is_hidden()

            # reinforcement: the grader (a string_check example reading item.answer) and its hyperparameters, each
            # "auto" resolved for 10 prompts although this machine's estimate refuses the method
            page.select_option("#job-method", "reinforcement")
            expect(page.locator("#grader-field")).to_be_visible()
            assert page.locator("#beta-field").is_hidden()
            example = json.loads(page.input_value("#job-grader"))
            assert (example["type"], example["operation"]) == ("string_check", "ilike")
            assert example["reference"] == "{{ item.answer }}"
            expect(page.locator("#hp-compute_multiplier-resolved")).to_have_text("auto → 1")
            expect(page.locator("#hp-eval_interval-resolved")).to_have_text("auto → 10")
            expect(page.locator("#hp-eval_samples-resolved")).to_have_text("auto → 64")
            expect(page.locator("#estimate")).to_contain_text("No cost estimate")
            page.click("#check-grader")
            expect(page.locator("#job-grader-status")).to_have_text('OK: string_check grader "answer"')

            # not JSON: caught here; a grader the server refuses: its message (the field named) beside the grader
            page.fill("#job-grader", '{"type": "string_check", name: "answer"}')
            page.click("#check-grader")
            assert_described_error(page, "job-grader", "not valid JSON")
            expect(page.locator("#job-grader-status")).to_be_empty()
            bad = {**example, "operation": "contains"}
            page.fill("#job-grader", json.dumps(bad))
            page.click("#check-grader")
            assert_described_error(page, "job-grader", 'grader.operation: "contains" is not one of eq, ne, like, ilike')
            expect(page.locator("#job-grader")).to_have_attribute("aria-invalid", "true")
            page.click("#create-job")  # job creation refuses it too (method.reinforcement.grader.operation)
            assert_described_error(page, "job-grader", "method.reinforcement.grader.operation")
            expect(page.locator("#job-grader")).to_be_focused()
            for width in (400, 1280):
                page.set_viewport_size({"width": width, "height": 900})
                assert_fits(page, f"reinforcement form with a grader error at {width}")
            page.screenshot(path=str(tmp_path / "reinforcement-form.png"), full_page=True)

            good = {**example, "name": "symbol", "operation": "like"}
            page.fill("#job-grader", json.dumps(good, indent=2))
            page.click("#check-grader")
            expect(page.locator("#job-grader-status")).to_have_text('OK: string_check grader "symbol"')
            expect(page.locator("#job-grader-error")).to_be_empty()
            page.fill("#hp-compute_multiplier", "0.5")
            page.fill("#hp-eval_samples", "2")
            expect(page.locator("#hp-compute_multiplier-resolved")).to_have_text("0.5")
            page.click("#create-job")
            page.wait_for_url("**/ui#jobs/ftjob-*")
            job_id = page.url.split("/")[-1]
            method = http.get(f"/v1/fine_tuning/jobs/{job_id}").json()["method"]
            assert method["type"] == "reinforcement" and method["reinforcement"]["grader"] == good
            asked = method["reinforcement"]["hyperparameters"]
            assert (asked["compute_multiplier"], asked["eval_samples"], asked["eval_interval"]) == (0.5, 2, "auto")
            expect(page.locator("#job-grader-json")).to_contain_text('"reference": "{{ item.answer }}"')

            # its run's metrics, as the worker records them: the reward and validation reward are plotted where
            # the loss would be; the surrogate loss is not
            running = RunningJob(job_id, settings.jobs_dir / job_id, process=None)
            write_reward_metrics(running.run_dir)
            JobWorker(server.app.state.db, settings).record_progress(running)
            surrogate = {"step": 4, "train_loss": 4e-9, "valid_loss": -0.8}  # OpenAI's checkpoint metrics
            job_events.add_checkpoint(server.app.state.db, job_id, 4, surrogate, f"ft:tiny:{job_id}:ckpt-step-4")
            page.wait_for_selector("#reward-curve[data-points='4']")  # the page follows the job every 2 s
            assert page.locator("#reward-curve polyline.train").get_attribute("points").count(",") == 4
            assert page.locator("#reward-curve polyline.valid").get_attribute("points").count(",") == 2
            expect(page.locator("#reward-figure figcaption")).to_contain_text("Grader reward")
            assert page.locator("#loss-figure").is_hidden() and page.locator("#reward-curves").is_hidden()
            expect(page.locator("#events")).to_contain_text("Step 4: reward=0.400, validation reward=0.800")
            columns = ["Step", "Checkpoint model", "Reward", "Validation reward"]  # the reward, not the surrogate
            expect(page.locator("#checkpoints th")).to_have_text(columns)
            expect(page.locator("#checkpoints td")).to_have_text(["4", f"ft:tiny:{job_id}:ckpt-step-4", "0.4", "0.8"])
            page.screenshot(path=str(tmp_path / "reinforcement-job.png"), full_page=True)
            browser.close()
    finally:
        server.stop()
