"""The new-job form's DPO fields in headless Debian chromium: the preference loss (SimPO among them) and SimPO's
margin, "auto" beta shown as SimPO's 2 once that loss is chosen, and the server's refusal beside the field."""
import httpx
from playwright.sync_api import expect, sync_playwright

from tests.browser import signed_in_page
from tests.serve.server import create_key, upload_file
from tests.serve.test_dpo_jobs import write_preference_file


def test_a_simpo_job_from_the_form(server, tmp_path, tiny_model_dir):
    url, home = server
    key = create_key(home)
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    pairs = upload_file(http, write_preference_file(tmp_path / "pairs.jsonl"))
    with sync_playwright() as p:
        browser, page = signed_in_page(p, url, key, "new")
        expect(page.locator("#job-training-file")).to_have_value(pairs)
        assert page.locator("#loss-field").is_hidden()  # DPO's own fields only for a dpo job
        page.select_option("#job-method", "dpo")
        expect(page.locator("#loss-field")).to_be_visible()
        expect(page.locator("#hp-beta-resolved")).to_have_text("auto → 0.1")
        page.select_option("#hp-loss", "simpo")
        expect(page.locator("#hp-beta-resolved")).to_have_text("auto → 2")  # SimPO's beta

        page.select_option("#hp-loss", "sigmoid")  # a margin without SimPO's loss: refused beside the margin
        page.fill("#hp-simpo_gamma", "1.5")
        page.click("#create-job")
        expect(page.locator("#hp-simpo_gamma-error")).to_contain_text('loss "simpo" only')
        expect(page.locator("#hp-simpo_gamma")).to_be_focused()

        page.select_option("#hp-loss", "simpo")
        page.click("#create-job")
        page.wait_for_url("**#jobs/*")
        job_id = page.url.rsplit("/", 1)[1]
        browser.close()
    job = http.get(f"/v1/fine_tuning/jobs/{job_id}").json()
    hyper = job["method"]["dpo"]["hyperparameters"]
    assert job["method"]["type"] == "dpo" and (hyper["loss"], hyper["simpo_gamma"]) == ("simpo", 1.5)
    http.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")
