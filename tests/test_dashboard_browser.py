"""The dashboard in headless Chromium (Debian's binary, driven by Python playwright).

A real serve process over a real Redis holding the fixture read model: the page loads the
at-risk list, filters by tier and by rule, opens a customer, draws the health chart and shows
the live alert feed. The screenshots go to a temporary directory; with
CHURNGUARD_UPDATE_SCREENSHOTS=1 they replace the ones in docs/ (shown in the README).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect, sync_playwright

from tests.serve_support import CUSTOMERS, serve_over_fixture

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parent.parent / "docs"
CHROMIUM = os.environ.get("CHURNGUARD_CHROMIUM") or next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None
)
UPDATE_SCREENSHOTS = os.environ.get("CHURNGUARD_UPDATE_SCREENSHOTS") == "1"
SCORED = sum(1 for c in CUSTOMERS if c.health is not None)


@pytest.fixture(scope="module")
def serve_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A serve process over the fixture read model."""
    with serve_over_fixture(tmp_path_factory.mktemp("dashboard")) as url:
        yield url


@pytest.fixture
def page() -> Iterator[Page]:
    """A page in headless Chromium, 1280x860, offline except for the local server."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium executable found; .ci/run installs Debian's chromium")
        pytest.skip("no chromium executable found (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 860})
            context.route("**/*", _local_only)
            yield context.new_page()
        finally:
            browser.close()


def _local_only(route: Route) -> None:
    """Let requests to the local server through; anything else (a CDN) fails the page."""
    if route.request.url.startswith("http://127.0.0.1:"):
        route.continue_()
    else:
        route.abort()


def test_list_filter_customer_chart_and_feed(page: Page, serve_url: str, tmp_path: Path) -> None:
    shots = DOCS if UPDATE_SCREENSHOTS else tmp_path
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(serve_url + "/")
    rows = page.locator("#at-risk tbody tr")
    expect(rows).to_have_count(SCORED)
    expect(rows.first).to_contain_text("Wayne Enterprises")  # worst health first
    expect(page.locator("#alert-feed li")).to_have_count(6)

    expect(page.locator("#tier-filter option")).to_have_count(6)  # "all" + five tiers
    page.select_option("#tier-filter", "key")
    expect(rows).to_have_count(2)
    expect(page.locator("#at-risk tbody td.tier")).to_have_text(["key", "key"])

    page.select_option("#tier-filter", "")
    page.select_option("#rule-filter", "complaint-spike")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("Initech")
    expect(rows.nth(1)).to_contain_text("Hooli")
    page.select_option("#rule-filter", "")
    expect(rows).to_have_count(SCORED)
    page.screenshot(path=str(shots / "dashboard.png"))

    page.locator("#at-risk tbody tr", has_text="Acme Corp").click()
    expect(page.locator("#customer-view")).to_be_visible()
    expect(page.locator("#list-view")).to_be_hidden()
    expect(page.locator("#customer-name")).to_have_text("Acme Corp")
    expect(page.locator("#health-chart circle.point")).to_have_count(31)
    points = page.locator("#health-chart polyline").get_attribute("points") or ""
    assert len(points.split()) == 31
    expect(page.locator("#factors tbody tr")).to_have_count(3)
    expect(page.locator("#customer-alerts tbody tr")).to_have_count(2)
    expect(page.locator("#customer-tasks tbody tr")).to_have_count(1)
    page.screenshot(path=str(shots / "dashboard-customer.png"))

    page.go_back()
    expect(page.locator("#list-view")).to_be_visible()
    expect(rows).to_have_count(SCORED)
    assert errors == []
    assert (shots / "dashboard.png").stat().st_size > 10_000


def test_unknown_customer_shows_the_error_not_a_blank_page(page: Page, serve_url: str) -> None:
    page.goto(serve_url + "/#/customer/nobody")
    expect(page.locator("#status")).to_contain_text("unknown customer")
    expect(page.locator("#status")).to_have_class("status error")
