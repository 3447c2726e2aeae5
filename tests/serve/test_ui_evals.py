"""The web UI's evals page in headless Debian chromium: a new eval from a file, run at once; an eval's runs side by
side with their pass rates, the same rows run again with a model from the page, and a run's rows that did not pass
with the answer and each verdict."""
import json
import time

import httpx
from playwright.sync_api import sync_playwright

from tests.browser import signed_in_page
from tests.serve.server import create_key

EXACT = {"type": "string_check", "name": "exact", "operation": "eq", "input": "{{ sample.output_text }}",
         "reference": "{{ item.answer }}"}


def test_runs_side_by_side_a_rerun_from_the_page_and_the_rows_that_failed(server, tmp_path, tiny_model_dir):
    url, home = server
    key, model = create_key(home), tiny_model_dir.name
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    asked = {"role": "user", "content": "Q: {{ item.question }}"}
    direct = http.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "Q: q0"}],
                                                     "temperature": 0, "max_completion_tokens": 4}).json()
    said = direct["choices"][0]["message"]["content"]
    content = [{"item": {"question": "q0", "answer": said}}] + [{"item": {"question": f"q{n}", "answer": "never said"}}
                                                               for n in range(1, 4)]
    created = http.post("/v1/evals", json={"name": "qa", "testing_criteria": [EXACT], "data_source_config": {
        "type": "custom", "item_schema": {"type": "object", "properties": {"question": {"type": "string"}}}}}).json()
    run = http.post(f"/v1/evals/{created['id']}/runs", json={"name": "first", "data_source": {
        "type": "completions", "model": model, "input_messages": {"type": "template", "template": [asked]},
        "sampling_params": {"temperature": 0, "max_completion_tokens": 4},
        "source": {"type": "file_content", "content": content}}}).json()
    deadline = time.monotonic() + 60
    while http.get(f"/v1/evals/{created['id']}/runs/{run['id']}").json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.1)

    with sync_playwright() as p:
        browser, page = signed_in_page(p, url, key, "evals")
        page.locator(f"tr[data-eval='{created['id']}']").click()
        first = page.locator(f"#eval-runs tr[data-run='{run['id']}']")
        first.wait_for()
        assert [c.inner_text() for c in first.locator("td").all()][1:] == [model, "completed", "1", "3", "0", "25.0%",
                                                                           "1/4"]
        page.select_option("#eval-model", model)
        page.click("#eval-rerun")  # the same rows, asked again: greedy, so the same verdicts
        again = page.locator("#eval-runs tbody tr", has_text="completed").nth(1)
        again.wait_for(timeout=60000)
        assert [c.inner_text() for c in again.locator("td").all()][3:7] == ["1", "3", "0", "25.0%"]
        first.click()
        page.locator("#eval-items", has_text="rows that did not pass (3)").wait_for()
        assert page.locator("#eval-items tbody tr").count() == 3
        assert "never said" in page.locator("#eval-items").inner_text()
        assert "exact: fail 0.00" in page.locator("#eval-items").inner_text()
        page.screenshot(path=str(tmp_path / "evals.png"), full_page=True)
        browser.close()
    runs = http.get(f"/v1/evals/{created['id']}/runs").json()["data"]
    assert len(runs) == 2 and runs[1]["name"] == model and runs[1]["data_source"]["source"] == run["data_source"]["source"]


def test_a_new_eval_from_a_file_runs_at_once_and_a_bad_file_leaves_nothing_behind(server, tmp_path, tiny_model_dir):
    url, home = server
    key, model = create_key(home), tiny_model_dir.name
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    said = http.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "Q: q0"}],
                                                   "temperature": 0, "max_completion_tokens": 4}).json()
    said = said["choices"][0]["message"]["content"]
    good, bad = tmp_path / "qa.jsonl", tmp_path / "bad.jsonl"
    good.write_text("".join(json.dumps({"item": {"question": f"q{n}", "answer": said if n == 0 else "never said"}}) + "\n"
                            for n in range(3)))
    bad.write_text(json.dumps({"item": {"question": "q0", "answer": "a"}}) + "\n" + json.dumps({"item": {"asked": "q1"}}) + "\n")

    with sync_playwright() as p:
        browser, page = signed_in_page(p, url, key, "evals")
        page.click("#new-eval summary")

        def create(name: str, rows) -> None:
            page.fill("#new-eval-name", name)
            page.set_input_files("#new-eval-file", str(rows))
            page.fill("#new-eval-prompt", "Q: {{ item.question }}")
            page.select_option("#new-eval-model", model)
            page.fill("#new-eval-max-tokens", "4")
            page.click("#new-eval-create")

        create("broken rows", bad)  # row 1 lacks the question its template reads: refused before anything runs
        # the template that reads the missing field is named, with the row
        page.locator("#new-eval-prompt-error", has_text="rows[1]: input_messages read item.question").wait_for()
        assert http.get("/v1/evals").json()["data"] == []
        assert [f for f in http.get("/v1/files").json()["data"] if f["purpose"] == "evals"] == []

        page.fill("#new-eval-reference", "{{ item.answer")  # a template that does not parse: named beside it
        create("broken reference", good)
        page.locator("#new-eval-reference-error").filter(has_text="testing_criteria").wait_for()
        assert http.get("/v1/evals").json()["data"] == []
        page.fill("#new-eval-reference", "{{ item.answer }}")

        create("element QA", good)
        page.locator("#eval-runs tbody tr", has_text="completed").wait_for(timeout=60000)
        row = page.locator("#eval-runs tbody tr", has_text="completed")
        assert [c.inner_text() for c in row.locator("td").all()][1:7] == [model, "completed", "1", "2", "0", "33.3%"]
        assert page.locator("#eval-title").inner_text().startswith("element QA")
        browser.close()
    [made] = http.get("/v1/evals").json()["data"]
    assert made["testing_criteria"][0]["operation"] == "eq" and made["testing_criteria"][0]["reference"] == "{{ item.answer }}"
