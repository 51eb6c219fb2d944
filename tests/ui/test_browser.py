"""In a real browser (Debian's chromium driven by Playwright): sign in as each role, search,
open a profile, see what the role may and may not see, charts render, keyboard navigation,
screenshots at 1366x768 and at phone width (written to $PANORAMA_SCREENSHOTS, by default
<tmp>/panorama-ui-screenshots)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from .conftest import ANN, PASSWORD, ROLES

pytestmark = pytest.mark.xdist_group("ui")

CHROMIUM = os.environ.get("PANORAMA_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
SHOTS = Path(os.environ.get("PANORAMA_SCREENSHOTS", Path(tempfile.gettempdir()) / "panorama-ui-screenshots"))

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed (tests/run_suite.py installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _page(browser, width=1366, height=768, mobile=False):
    context = browser.new_context(viewport={"width": width, "height": height}, is_mobile=mobile,
                                  has_touch=mobile, device_scale_factor=1)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.errors = errors  # type: ignore[attr-defined]
    return page


def _sign_in(page, url, role):
    page.goto(url + "/login")
    page.fill("#username", role)
    page.fill("#password", PASSWORD.format(role=role))
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "/login" not in page.url, page.content()[:500]


def _shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_in_the_browser(ui_server, browser, role):
    page = _page(browser)
    _sign_in(page, ui_server.url, role)
    ann = ui_server.profile_of(ANN["email"])
    if role == "analyst":
        page.goto(ui_server.url + "/search?q=C001")
    else:
        page.goto(ui_server.url + "/search")
        page.fill("#q", "ann smyth")  # a typo: fuzzy search
        page.wait_for_selector("a.hit-name")
    page.click("a.hit-name")
    page.wait_for_url(f"**/profiles/{ann}")
    text = page.inner_text("main")
    if role == "analyst":
        assert "Smith" not in text and ANN["email"] not in text and "anon:" in text
    else:
        assert "Ann Smith" in text and ANN["email"] in text
    if role in ("admin", "support"):
        assert "Parcel never arrived" in text
    else:
        assert "Parcel never arrived" not in text
    if role in ("support",):
        assert "does not see predictions" in text
    # the role badge and the pages it may not reach
    assert page.inner_text(".role-badge") == role
    nav = page.inner_text("nav")
    assert ("Users & tokens" in nav) == (role == "admin")
    response = page.goto(ui_server.url + "/admin/users")
    assert response.status == (200 if role == "admin" else 403)
    _shot(page, f"admin-users-{role}")
    page.errors.clear()  # the 403 above is logged as a console error
    page.goto(ui_server.url + f"/profiles/{ann}")
    page.wait_for_load_state("networkidle")
    _shot(page, f"profile-{role}-1366")
    assert not [e for e in page.errors if "favicon" not in e], page.errors
    page.context.close()


def test_charts_render_and_timeline_pages(ui_server, browser):
    page = _page(browser)
    _sign_in(page, ui_server.url, "admin")
    ann = ui_server.profile_of(ANN["email"])
    page.goto(ui_server.url + f"/profiles/{ann}")
    page.wait_for_selector("[data-chart='fig-surveys'][data-rendered='1']", timeout=15_000)
    assert page.locator("[data-chart='fig-surveys'] svg.main-svg").count() >= 1
    before = page.locator(".tl-event").count()
    assert before == 25
    page.click("#tl-more button")
    page.locator(".tl-event").nth(before).wait_for()  # (no wait_for_function: the CSP forbids eval)
    expect(page.locator(".tl-event")).to_have_count(33)
    page.select_option("#tl-source", "shop")
    expect(page.locator(".tl-event")).to_have_count(1)
    assert "Order Completed" in page.inner_text("#timeline")
    page.goto(ui_server.url + "/dashboards")
    page.wait_for_selector("#metrics", timeout=15_000)
    _shot(page, "dashboards-1366")
    assert not [e for e in page.errors if "favicon" not in e], page.errors
    page.context.close()


def test_keyboard_navigation(ui_server, browser):
    page = _page(browser)
    page.goto(ui_server.url + "/login")
    assert page.evaluate("document.activeElement.id") == "username"  # autofocus
    page.keyboard.type("sales")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD.format(role="sales"))
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "/login" not in page.url, page.inner_text("main")[:300]
    page.goto(ui_server.url + "/dashboards")
    # the skip link comes first in the tab order, shows when focused and jumps to the content
    first = page.evaluate("document.querySelector('a[href], button, input, select, textarea').className")
    assert first == "skip-link"
    page.focus(".skip-link")
    assert page.locator(".skip-link").bounding_box()["x"] >= 0
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.goto(ui_server.url + "/search")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type("Bob Jones")
    page.wait_for_selector("a.hit-name")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert "Bob Jones" in focused
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "/profiles/" in page.url and "Bob Jones" in page.inner_text("h1")
    # focus is visible
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline is not None
    page.context.close()


def test_phone_width(ui_server, browser):
    page = _page(browser, width=390, height=844, mobile=True)
    _sign_in(page, ui_server.url, "support")
    ann = ui_server.profile_of(ANN["email"])
    page.goto(ui_server.url + f"/profiles/{ann}")
    page.wait_for_load_state("networkidle")
    _shot(page, "profile-support-phone")
    # nothing wider than the screen
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, overflow
    page.goto(ui_server.url + "/search?q=smith")
    _shot(page, "search-support-phone")
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1
    page.context.close()


def test_marketing_builds_a_segment_support_cannot(ui_server, browser):
    page = _page(browser)
    _sign_in(page, ui_server.url, "marketing")
    page.goto(ui_server.url + "/segments")
    page.click("#new-segment")
    page.wait_for_url("**/segments/new")
    page.fill("#seg-name", "first_buyers")
    page.fill("#seg-desc", "Customers with an order")
    expr = page.locator("#seg-expr")
    expr.fill("performed('Order Completed') >= 1")
    expect(page.locator("#seg-count")).to_have_text("1")
    expr.fill("last_seen_at IS NOT NULL")  # everyone: the live count changes
    expect(page.locator("#seg-count")).not_to_have_text("1")
    assert int(page.inner_text("#seg-count").replace(",", "")) > 1
    expr.fill("last_sen_at IS NOT NULL")  # a typo: the error names the closest column
    expect(page.locator("#seg-error")).to_contain_text("did you mean last_seen_at")
    _shot(page, "segment-builder-error-1366")
    expr.fill("performed('Order Completed') >= 1")
    expect(page.locator("#seg-count")).to_have_text("1")
    _shot(page, "segment-builder-1366")
    with page.expect_navigation():
        page.click("#seg-save")
    assert "/segments/first_buyers" in page.url
    expect(page.locator("#saved")).to_be_visible()
    expect(page.locator("#seg-total")).to_have_text("1")
    page.goto(ui_server.url + "/segments")
    expect(page.locator('a[href="/segments/first_buyers"]')).to_be_visible()
    assert "performed('Order Completed') &gt;= 1" in page.content()
    assert not page.errors, page.errors
    page.context.close()

    page = _page(browser)
    _sign_in(page, ui_server.url, "support")
    page.goto(ui_server.url + "/segments")
    assert page.locator("#new-segment").count() == 0
    page.click('a[href="/segments/first_buyers"]')
    page.wait_for_url("**/segments/first_buyers")
    assert page.locator("#seg-expr").count() == 0 and page.locator("#seg-save").count() == 0
    assert "not edit" in page.inner_text("main")
    response = page.goto(ui_server.url + "/segments/new")
    assert response.status == 403
    page.context.close()


def test_builder_at_phone_width_and_docs_offline(ui_server, browser):
    page = _page(browser, width=390, height=844, mobile=True)
    _sign_in(page, ui_server.url, "marketing")
    page.goto(ui_server.url + "/segments/new")
    page.fill("#seg-expr", "performed('Order Completed') >= 1")
    expect(page.locator("#seg-count")).to_have_text("1")
    _shot(page, "segment-builder-phone")
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1
    # the API docs render with no request leaving this server (the machine is offline)
    outside: list[str] = []

    def only_local(route):
        if route.request.url.startswith(ui_server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(ui_server.url + "/docs")
    expect(page.locator(".opblock").first).to_be_visible(timeout=20_000)
    assert "/api/v1/profiles/{key}" in page.inner_text("body")
    assert not outside, outside
    page.context.close()
