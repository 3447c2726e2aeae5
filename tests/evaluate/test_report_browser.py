"""report.html opened from disk in headless Debian chromium: every plot decodes and draws, nothing is fetched."""
import io

import numpy as np
from PIL import Image
from playwright.sync_api import sync_playwright
from typer.testing import CliRunner

from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tunesmith.cli import app


def drawn_fraction(png: bytes) -> tuple[float, int]:
    """Share of pixels that are not near-white, and the number of distinct colours."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)  # (H*W, 3)
    return float((pixels.min(axis=1) < 230).mean()), len(np.unique(pixels, axis=0))


def test_report_renders_with_its_plots_in_headless_chromium(workspace, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["eval", "--model", str(workspace / "run"), "--suite",
                                      str(workspace / "suite.yaml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("request", lambda r: requests.append(r.url))
        page.goto((out / "report.html").as_uri())
        page.wait_for_load_state("load")
        images = page.locator("img")
        assert images.count() == 3  # loss curves, before/after bars, confusion matrix
        captions = []
        for i in range(images.count()):
            image = images.nth(i)
            width, height = image.evaluate("img => [img.complete && img.naturalWidth, img.naturalHeight]")
            assert width > 200 and height > 100, (i, width, height)  # decoded, not a broken-image icon
            inked, colours = drawn_fraction(image.screenshot())
            assert inked > 0.02 and colours > 20, (i, inked, colours)  # axes, lines, bars actually drawn
            captions.append(image.evaluate("img => img.closest('figure').innerText"))
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        assert page.get_by_text("Sample generations").count() >= 1
        browser.close()
    assert any("loss" in caption.lower() for caption in captions), captions
    assert all(url.startswith(("file://", "data:")) for url in requests), requests
    inked, _ = drawn_fraction((tmp_path / "report.png").read_bytes())
    assert inked > 0.05
