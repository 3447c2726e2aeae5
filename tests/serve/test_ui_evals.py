"""The web UI's evals page in headless Debian chromium: an eval's runs side by side with their pass rates, the same
rows run again with a model from the page, and a run's rows that did not pass with the answer and each verdict."""
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
