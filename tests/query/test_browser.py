"""The web UI in headless Chromium (Debian's ``chromium`` + ``chromedriver``, driven by
Selenium): search a service, see the scatter points and results, open a trace, see its
spans, and render a 2000-span trace without building 2000 rows.

Without Chromium the test is skipped, saying what is missing; under ``CI=true`` it fails
instead (``.ci/run`` installs the browser). Screenshots go to the test's tmp directory, and
to ``$OPENTRACING_SLS_SCREENSHOTS`` when set (how ``docs/images/query-ui-*.png`` are made).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator, List

import pytest

from .conftest import BIG, BIG_SPANS, SHOP, QueryServer, trace_hex

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _missing() -> str:
    """Why the browser test cannot run here, or ""."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install -e '.[test]')"
    if not any(shutil.which(name) for name in CHROMIUM_NAMES):
        return "no Chromium binary (apt-get install chromium chromium-driver)"
    if not shutil.which("chromedriver"):
        return "no chromedriver (apt-get install chromium-driver)"
    return ""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail("browser test cannot run under CI: %s" % reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = next(shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n))
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


@pytest.fixture
def shoot(browser: Any, tmp_path: Path):
    target = os.environ.get("OPENTRACING_SLS_SCREENSHOTS")

    def save(name: str) -> Path:
        path = tmp_path / ("query-ui-%s.png" % name)
        assert browser.save_screenshot(str(path))
        assert path.stat().st_size > 10_000  # a real picture, not a blank page
        if target:
            shutil.copy(path, Path(target) / path.name)
        return path

    return save


def wait_for(browser: Any, css: str, count: int = 1, timeout: float = 10.0) -> List[Any]:
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while True:
        found = browser.find_elements(By.CSS_SELECTOR, css)
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("%d of %s after %.0f s; page: %s" % (
                len(found), css, timeout, browser.find_element(By.TAG_NAME, "main").text[:500]))
        time.sleep(0.05)


def console_errors(browser: Any) -> List[str]:
    return [entry["message"] for entry in browser.get_log("browser")
            if entry["level"] == "SEVERE"]


def test_search_open_a_trace_and_see_its_spans(browser: Any, local_server: QueryServer,
                                               shoot) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(local_server.base + "/")
    service = Select(wait_for(browser, "select[name=service] option[value=frontend]")[0]
                     .find_element(By.XPATH, ".."))
    service.select_by_value("frontend")
    wait_for(browser, "select[name=operation] option[value='GET /checkout']")
    browser.find_element(By.CSS_SELECTOR, "button.primary").click()

    rows = wait_for(browser, ".result", 4)
    assert len(rows) == 4
    assert "/search?service=frontend" in browser.current_url  # the search is a link
    dots = browser.find_elements(By.CSS_SELECTOR, "circle.dot")
    assert sorted(dot.get_attribute("data-trace-id") for dot in dots) == sorted(
        row.get_attribute("data-trace-id") for row in rows)
    assert len(browser.find_elements(By.CSS_SELECTOR, "circle.dot-error")) == 1
    shop = next(row for row in rows if row.get_attribute("data-trace-id") == trace_hex(SHOP))
    assert "4 Spans" in shop.text and "1 Error" in shop.text and "mailer (1)" in shop.text
    shoot("search")

    # Click-through from the scatter plot.
    browser.find_element(By.CSS_SELECTOR, "circle[data-trace-id='%s']" % trace_hex(SHOP)).click()
    spans = wait_for(browser, ".tl-row", 4)
    assert browser.current_url.endswith("/trace/" + trace_hex(SHOP))
    assert [row.find_element(By.CSS_SELECTOR, ".svc").text for row in spans] == [
        "frontend", "api", "db", "mailer"]
    spans[1].click()  # api: charge -> its detail
    detail = wait_for(browser, ".span-detail .detail")[0]
    assert "api: charge" in detail.text and "card declined" in detail.text
    assert "1152921504606846979" in detail.text  # the int64 beyond 2^53, exact
    assert "span=0000000000000002" in browser.current_url
    shoot("trace")

    # Collapsing the root hides its three descendants; expanding shows them again.
    # (Rows are redrawn on every change: find them again.)
    wait_for(browser, ".tl-row")[0].find_element(By.CSS_SELECTOR, ".toggle").click()
    assert len(wait_for(browser, ".tl-row")) == 1
    browser.find_element(By.CSS_SELECTOR, ".tl-row .toggle").click()
    assert len(wait_for(browser, ".tl-row", 4)) == 4
    assert console_errors(browser) == []


def test_a_2000_span_trace_renders_a_window_of_rows(browser: Any, local_server: QueryServer,
                                                    shoot) -> None:
    from selenium.webdriver.common.by import By

    started = time.monotonic()
    browser.get(local_server.base + "/trace/" + trace_hex(BIG))
    wait_for(browser, ".tl-row")
    main = browser.find_element(By.ID, "view")
    render_ms = int(wait_for(browser, "#view[data-render-ms]")[0].get_attribute(
        "data-render-ms"))
    assert time.monotonic() - started < 10
    assert render_ms < 3000, "fetching and drawing 2000 spans took %d ms" % render_ms
    rows = browser.find_elements(By.CSS_SELECTOR, ".tl-row")
    assert 10 < len(rows) < 120, "%d rows in the DOM for 2000 spans" % len(rows)
    assert "Totalspans2000" in main.text.replace(" ", "").replace("\n", "")
    # Scrolled to the end, the last spans are drawn (and still only a window of rows).
    browser.execute_script("const s = document.querySelector('.tl-scroll');"
                           "s.scrollTop = s.scrollHeight;")
    last = "%016x" % BIG_SPANS
    wait_for(browser, ".tl-row[data-span-id='%s']" % last)
    assert len(browser.find_elements(By.CSS_SELECTOR, ".tl-row")) < 120
    # Finding a span by text jumps to it, expanding nothing else.
    find = browser.find_element(By.CSS_SELECTOR, "input.find")
    find.send_keys("step-3")
    assert "matches" in browser.find_element(By.CSS_SELECTOR, ".find-count").text
    shoot("big-trace")
    assert console_errors(browser) == []


def test_deep_links_dependencies_and_statistics(browser: Any, local_server: QueryServer,
                                                shoot) -> None:
    from selenium.webdriver.common.by import By

    browser.get(local_server.base + "/search?service=api&lookback=1h&limit=20")
    assert len(wait_for(browser, ".result", 3)) == 3
    browser.get(local_server.base + "/trace/%s?span=0000000000000003" % trace_hex(SHOP))
    assert "db: SELECT" in wait_for(browser, ".span-detail .detail")[0].text

    browser.get(local_server.base + "/dependencies?lookback=7d")
    nodes = wait_for(browser, ".deps-svg .node", 4)
    assert sorted(node.get_attribute("data-service") for node in nodes) == [
        "api", "db", "frontend", "mailer"]
    edges = browser.find_elements(By.CSS_SELECTOR, ".deps-svg .edge")
    assert ("frontend", "mailer") in {(e.get_attribute("data-parent"),
                                       e.get_attribute("data-child")) for e in edges}
    shoot("dependencies")

    browser.get(local_server.base + "/stats?service=api&lookback=1h")
    charge = wait_for(browser, ".stats-table tr[data-operation=charge]")[0]
    assert "100%" in charge.text and "250ms" in charge.text
    shoot("statistics")
    # The navigation bar moves between views without reloading the page.
    browser.execute_script("window.__same_page = true")
    browser.find_element(By.CSS_SELECTOR, "nav a[data-view=search]").click()
    wait_for(browser, "form.search-form")
    assert browser.execute_script("return window.__same_page") is True
    assert console_errors(browser) == []
