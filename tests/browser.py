"""Headless Debian chromium for browser tests (installed by scripts/setup.sh; driven by Playwright)."""
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def signed_in_page(playwright, url: str, key: str, view: str = "", width: int = 1100, height: int = 900):
    """(browser, page): the web UI at `#view` with `key` saved, as a user pastes it once."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(f"{url}/ui{'#' + view if view else ''}")
    page.fill("#api-key", key)
    page.click("#save-key")
    return browser, page
