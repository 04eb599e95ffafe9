"""A supervisor in a real browser: the analysis page draws its charts and map; a demo warning is handled."""

from __future__ import annotations

import pytest

from servers import CHROMIUM, LAUNCH_ARGS, SHOTS, demo_server, staff_page

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server():  # type: ignore[no-untyped-def]
    """A real server with the demo data (including the demo warnings), on a free port."""
    if not CHROMIUM.exists():
        pytest.skip("system Chromium (/usr/bin/chromium) is not installed")
    with demo_server("xihu-e2e-analysis-", appeals=40, XIHU_IN_PROCESS_WORKER="0") as srv:
        yield srv


def test_supervisor_reads_the_analysis_and_handles_a_warning(server) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=10_000)
    base = server["base"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page, errors = staff_page(browser, base, "supervisor")
            page.click("nav.staffnav a[href='/staff/analysis']")
            expect(page.get_by_test_id("kpis")).to_contain_text("受理诉求")
            for chart in ("chart-days", "chart-categories", "chart-channels", "chart-map"):
                expect(page.locator(f"#{chart} canvas").first).to_be_visible()
            page.wait_for_timeout(800)  # the map's outline is fetched, then drawn
            page.screenshot(path=str(SHOTS / "analysis_district.png"), full_page=True)
            assert not errors, errors

            page.goto(f"{base}/staff/warnings")
            rows = page.get_by_test_id("warnings").locator("tbody tr a")
            expect(rows.first).to_be_visible()
            expect(page.get_by_test_id("warnings")).to_contain_text("重复来电")
            page.get_by_test_id("warnings").locator("a", has_text="重复来电").first.click()
            expect(page.get_by_test_id("explanation")).to_contain_text("139****0000")
            assert "13905710000" not in page.content()
            page.click("button:has-text('确认预警')")
            expect(page.locator("body")).to_contain_text("已确认处理中")
            page.fill("textarea[name=note]", "已安排城管夜间巡查并回访来电人")
            page.click("button:has-text('关闭预警')")
            expect(page.locator("body")).to_contain_text("已安排城管夜间巡查并回访来电人")
            page.screenshot(path=str(SHOTS / "analysis_warning.png"), full_page=True)

            page.goto(f"{base}/staff/briefs?kind=weekly")
            expect(page.get_by_test_id("brief-title")).to_contain_text("周报")
            page.screenshot(path=str(SHOTS / "analysis_brief.png"), full_page=True)
        finally:
            browser.close()
