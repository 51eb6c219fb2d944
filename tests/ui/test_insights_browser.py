"""The Journeys and Experiments pages in a real browser (Debian's chromium driven by Playwright),
signed in as a marketing user: the Sankey, funnel and lift charts render, the calculator answers
in place, and a support user has neither page (screenshots to $PANORAMA_SCREENSHOTS)."""

from __future__ import annotations

import pytest

from . import insights_project, test_browser
from .test_browser import _page, _shot, _sign_in

insights_server = insights_project.insights_server  # the fixtures
browser = test_browser.browser

pytestmark = pytest.mark.xdist_group("ui")


def _errors(page) -> list[str]:
    return [e for e in page.errors if "favicon" not in e]


def test_journeys_page_draws_the_sankey(insights_server, browser):
    page = _page(browser)
    _sign_in(page, insights_server.url, "marketing")
    assert "Journeys" in page.inner_text("nav") and "Experiments" in page.inner_text("nav")
    page.click("nav >> text=Journeys")
    page.wait_for_selector("[data-chart='fig-sankey'][data-rendered='1']", timeout=30_000)
    # plotly draws a Sankey's links as paths and its nodes with their labels
    assert page.locator("[data-chart='fig-sankey'] path.sankey-link").count() >= 2
    labels = page.locator("[data-chart='fig-sankey'] .node-label").all_text_contents()
    assert "1. awareness" in labels and "2. consideration" in labels
    page.wait_for_selector("[data-chart='fig-funnel'][data-rendered='1']", timeout=15_000)
    assert (
        page.locator("[data-chart='fig-funnel'] .funnel").count() >= 1
        or page.locator("[data-chart='fig-funnel'] g.trace").count() >= 1
    )
    assert page.locator("#funnel-table tbody tr").count() == 5  # the five default stages
    # the period selector narrows the map
    page.fill("#j-from", "2025-02-01")
    page.fill("#j-to", "2025-02-08")
    page.click("#journey-form button[type=submit]")
    page.wait_for_selector("[data-chart='fig-sankey'][data-rendered='1']", timeout=30_000)
    assert "from=2025-02-01" in page.url
    _shot(page, "journeys-marketing-1366")
    assert not _errors(page), page.errors
    page.context.close()


def test_experiments_page_draws_the_lift(insights_server, browser):
    page = _page(browser)
    _sign_in(page, insights_server.url, "marketing")
    page.goto(insights_server.url + "/experiments")
    page.wait_for_selector("[data-chart='fig-lift-0'][data-rendered='1']", timeout=30_000)
    lift = page.locator("[data-chart='fig-lift-0']")
    assert lift.locator("g.errorbar").count() == 1  # the confidence interval
    assert "treatment beats control" in page.inner_text("#exp-0 h2")
    assert "sample ratio" in page.inner_text("#exp-0") and "fixed horizon" in page.inner_text(
        "#exp-0"
    )
    # the hypothesis links to its experiment
    page.click("#hypotheses >> text=EXP-UI")
    assert page.url.endswith("#exp-0")
    # the calculator answers in place (HTMX)
    page.fill("#pw-baseline", "0.17")
    page.fill("#pw-mde", "0.18")
    page.click("#power-form button[type=submit]")
    page.wait_for_selector("#power-result >> text=2,530")
    assert page.url.endswith("/experiments#exp-0")  # no navigation
    _shot(page, "experiments-marketing-1366")
    assert not _errors(page), page.errors
    page.context.close()


def test_support_has_neither_page(insights_server, browser):
    page = _page(browser)
    _sign_in(page, insights_server.url, "support")
    nav = page.inner_text("nav")
    assert "Journeys" not in nav and "Experiments" not in nav
    for path in ("/journeys", "/experiments"):
        assert page.goto(insights_server.url + path).status == 403
    page.context.close()
