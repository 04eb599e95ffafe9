"""Browser test of the three-level cockpit: district → street → community, charts drawn, screenshots taken.

Runs a real demo server (`xihu migrate`, `xihu demo --load-only`, `xihu serve`) and the system Chromium."""

from __future__ import annotations

import re

import pytest

from servers import CHROMIUM, LAUNCH_ARGS, SHOTS, demo_server
from servers import DEMO_PASSWORD as PASSWORD

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server():  # type: ignore[no-untyped-def]
    """A real server with the demo data (appeals and the illustrative street figures)."""
    if not CHROMIUM.exists():
        pytest.skip("system Chromium (/usr/bin/chromium) is not installed")
    with demo_server("xihu-cockpit-", appeals=200) as srv:
        yield srv


def _login(page, base: str, username: str, target: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base}/login?next={target}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(re.compile(r".*/cockpit(/.*)?$"))


def _charts_drawn(page, expect) -> None:  # type: ignore[no-untyped-def]
    """ECharts drew into canvases: the trend, the categories, the map and the sparklines."""
    expect(page.locator("html[data-cockpit-ready='1']")).to_have_count(1)
    for chart in ("#chart-trend", "#chart-categories", "#chart-map"):
        expect(page.locator(f"{chart} canvas")).to_have_count(1)
    # a drawn canvas has non-blank pixels somewhere
    painted = page.evaluate(
        """() => {
          const c = document.querySelector('#chart-trend canvas');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true;
          return false;
        }"""
    )
    assert painted


def test_district_street_community_with_charts_and_screenshots(server) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=10_000)
    base = server["base"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1366, "height": 900}, locale="zh-CN", timezone_id="Asia/Shanghai"
            )
            context.set_default_timeout(10_000)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            # District: the leader sees the whole district, the map with 12 street bubbles.
            _login(page, base, "leader", "/cockpit")
            expect(page.locator("h1")).to_contain_text("西湖区 · 共同富裕驾驶舱")
            _charts_drawn(page, expect)
            received = int(page.locator("#appeal-kpis .kpi strong").first.inner_text())
            assert received > 0
            expect(page.locator("#children tbody tr")).to_have_count(12)
            assert page.locator("#indicator-cards .icard").count() > 0
            bubbles = page.evaluate(
                "() => echarts.getInstanceByDom(document.getElementById('chart-map'))"
                ".getOption().series[0].data.length"
            )
            assert bubbles == 12
            page.screenshot(path=str(SHOTS / "cockpit_district.png"), full_page=True)

            # Drill down to 西溪街道 by its row; its communities are listed, sparklines drawn.
            page.locator("#children a", has_text="西溪街道").click()
            page.wait_for_url(re.compile(r".*/cockpit/street/\d+$"))
            expect(page.locator("h1")).to_contain_text("西溪街道 · 共同富裕驾驶舱")
            _charts_drawn(page, expect)
            expect(page.locator("#indicator-cards .spark canvas").first).to_be_visible()
            assert page.locator("#children tbody tr").count() >= 5
            page.screenshot(path=str(SHOTS / "cockpit_street.png"), full_page=True)

            # Drill down to a community of the street.
            page.locator("#children a").first.click()
            page.wait_for_url(re.compile(r".*/cockpit/community/\d+$"))
            expect(page.locator("h1")).to_contain_text("社区")
            expect(page.locator(".crumbs")).to_contain_text("西溪街道")
            _charts_drawn(page, expect)
            page.screenshot(path=str(SHOTS / "cockpit_community.png"), full_page=True)

            # Print layout: the navigation disappears, the charts stay.
            page.emulate_media(media="print")
            assert not page.locator(".topbar").is_visible()
            assert page.locator("#chart-trend canvas").is_visible()
            page.emulate_media(media="screen")

            # A street's grid staff land on their own street and are refused the district.
            other = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
            grid = other.new_page()
            _login(grid, base, "grid_004", "/cockpit")
            expect(grid.locator("h1")).to_contain_text("西溪街道")
            refused = grid.goto(f"{base}/cockpit/street/{_other_street_id(page, base)}")
            assert refused is not None and refused.status == 403
            other.close()
            assert errors == []
        finally:
            browser.close()


def _other_street_id(page, base: str) -> int:  # type: ignore[no-untyped-def]
    """The id of 翠苑街道, read from the district page's links."""
    page.goto(f"{base}/cockpit")
    href = page.locator("#children a", has_text="翠苑街道").get_attribute("href")
    assert href is not None
    return int(href.rsplit("/", 1)[-1])
