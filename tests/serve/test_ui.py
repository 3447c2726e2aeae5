"""The web UI in headless Debian chromium (Playwright, executablePath /usr/bin/chromium; see scripts/setup.sh)."""
import json

import httpx
from playwright.sync_api import sync_playwright

from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.serve.server import FACTS, create_key, wait_for, write_chat_file


def test_jobs_loss_curve_evaluation_data_check_and_playground(server, tmp_path, tiny_model_dir):
    url, home = server
    key = create_key(home)
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    train = http.post("/v1/files", data={"purpose": "fine-tune"},
                      files={"file": ("train.jsonl", write_chat_file(tmp_path / "t.jsonl").read_bytes())}).json()
    valid = http.post("/v1/files", data={"purpose": "fine-tune"},
                      files={"file": ("valid.jsonl", write_chat_file(tmp_path / "v.jsonl", FACTS[:3]).read_bytes())}).json()
    job = http.post("/v1/fine_tuning/jobs", json={"model": tiny_model_dir.name, "training_file": train["id"],
                                                  "validation_file": valid["id"], "suffix": "ui",
                                                  "hyperparameters": {"n_epochs": 2, "batch_size": 4}}).json()
    job = wait_for(lambda: (j := http.get(f"/v1/fine_tuning/jobs/{job['id']}").json())["status"]
                   in {"succeeded", "failed", "cancelled"} and j)
    assert job["status"] == "succeeded"
    report = {"passed": True, "gates": [{"passed": True, "message": "qa accuracy 0.9 >= 0.5"}],
              "tasks": [{"name": "qa", "baseline": {"metrics": {"accuracy": 0.1}},
                         "candidate": {"metrics": {"accuracy": 0.9}}, "delta": {"accuracy": 0.8}}]}
    # the job's quick evaluation wrote a report with no gates; this one has a gate to show
    (home / "jobs" / job["id"] / "run" / "eval").mkdir(parents=True, exist_ok=True)
    (home / "jobs" / job["id"] / "run" / "eval" / "report.json").write_text(json.dumps(report))
    assert httpx.get(f"{url}/ui/api/jobs/{job['id']}/evaluation").status_code == 401

    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("request", lambda r: requests.append(r.url))
        chats = []  # the playground's requests (the Responses API): it must ask for a streamed answer
        page.on("request", lambda r: chats.append(json.loads(r.post_data)) if r.url.endswith("/v1/responses") else None)
        page.goto(f"{url}/ui")
        page.fill("#api-key", key)
        page.click("#save-key")
        row = page.locator(f"tr[data-job='{job['id']}']")
        row.wait_for()
        assert row.locator(".status").inner_text() == "succeeded"
        row.click()
        page.wait_for_selector("#loss-curve[data-points='6']")
        assert page.locator("#loss-curve polyline.train").get_attribute("points").count(",") == 6
        page.locator("#evaluation .pass", has_text="PASSED").wait_for()
        page.locator("#lineage", has_text=f"data train: {train['id']} — 10 rows").wait_for()  # base → the model
        page.locator("#model-card", has_text="## Training data").wait_for()  # README.md beside the model
        page.screenshot(path=str(tmp_path / "jobs.png"), full_page=True)

        page.goto(f"{url}/ui#files")  # the key stays in localStorage
        page.locator(f"tr[data-file='{train['id']}']").click()
        page.locator("#file-check", has_text="train: 10 rows, 10 valid").wait_for()
        page.screenshot(path=str(tmp_path / "files.png"), full_page=True)

        page.goto(f"{url}/ui#playground")
        page.locator(f"#tuned-model option[value='{job['fine_tuned_model']}']").wait_for(state="attached")
        page.click("#send")
        page.wait_for_selector("#answer-base[data-done]")
        page.wait_for_selector("#answer-tuned[data-done]")
        # the tiny untrained model answers with newlines, so compare with what the API itself returns
        for side, model in (("#answer-base", tiny_model_dir.name), ("#answer-tuned", job["fine_tuned_model"])):
            expected = http.post("/v1/chat/completions", json={
                "model": model, "temperature": 0, "max_tokens": 32,
                "messages": [{"role": "user", "content": "What is the symbol for gold?"}]}).json()
            text = page.text_content(side)
            assert text and text == expected["choices"][0]["message"]["content"], text
        assert len(chats) == 2 and all(chat["stream"] for chat in chats), chats
        assert all("previous_response_id" not in chat for chat in chats)  # a new conversation on each side
        # the next prompt continues each side's conversation: the answer the API gives to the whole exchange
        page.fill("#prompt", "And silver?")
        page.click("#send")
        page.locator("#history-tuned .turn", has_text="And silver?").wait_for()
        page.locator("#history-base .turn", has_text="And silver?").wait_for()
        follow_ups = chats[2:]
        assert len(follow_ups) == 2 and all(chat["previous_response_id"].startswith("resp_") for chat in follow_ups)
        for chat in follow_ups:
            first = http.get(f"/v1/responses/{chat['previous_response_id']}").json()
            expected = http.post("/v1/chat/completions", json={
                "model": chat["model"], "temperature": 0, "max_tokens": 32, "messages": [
                    {"role": "user", "content": "What is the symbol for gold?"},
                    {"role": "assistant", "content": first["output"][0]["content"][0]["text"]},
                    {"role": "user", "content": "And silver?"}]}).json()
            side = "#answer-base" if chat["model"] == tiny_model_dir.name else "#answer-tuned"
            assert page.text_content(side) == expected["choices"][0]["message"]["content"]
        assert page.locator("#history-base .turn").count() == 4  # two prompts, two answers
        page.click("#new-chat")
        assert page.locator("#history-base .turn").count() == 0
        page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
        browser.close()
    assert all(u.startswith(url) for u in requests), [u for u in requests if not u.startswith(url)]
