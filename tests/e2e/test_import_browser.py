"""A clerk imports a 12345 export in a real browser: progress, the first failed rows, all of them as CSV."""

from __future__ import annotations

import csv
import io

import pytest

from servers import CHROMIUM, LAUNCH_ARGS, SHOTS, demo_server, staff_page

pytestmark = pytest.mark.e2e
TEXT = "小区门口垃圾桶已经两天没有清运，气味很大"


@pytest.fixture(scope="module")
def server():  # type: ignore[no-untyped-def]
    """A real server with a little demo data whose own loop runs imports, on a free port."""
    if not CHROMIUM.exists():
        pytest.skip("system Chromium (/usr/bin/chromium) is not installed")
    with demo_server("xihu-e2e-import-", appeals=5, XIHU_IN_PROCESS_WORKER="1") as srv:
        yield srv


def test_clerk_sees_progress_the_first_failed_rows_and_downloads_all(server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    base = server["base"]
    # 150 rows: every fifth names a street the district has (by its office's name), the rest a made-up one
    lines = ["工单编号,诉求内容,街道"] + [
        f"E2E-{i:03d},{TEXT},{'西溪街道办事处' if i % 5 == 0 else '火星街道'}" for i in range(150)
    ]
    upload = tmp_path / "12345导出.csv"
    upload.write_text("\n".join(lines), encoding="utf-8-sig")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page, errors = staff_page(browser, base, "intake")
            page.goto(f"{base}/staff/import")
            # the page's own Chinese button opens the file chooser and then names the file chosen
            picker = page.locator(".file-pick-button")
            expect(picker).to_have_text("选择文件")
            expect(page.locator(".file-pick-names")).to_have_text("未选择文件")
            with page.expect_file_chooser() as chooser:
                picker.click()
            chooser.value.set_files(str(upload))
            expect(page.locator(".file-pick-names")).to_have_text(upload.name)
            page.click("#import-form button[type=submit]")
            status = page.locator("#import-status")
            expect(status).to_contain_text("已完成")
            expect(status).to_contain_text("新建 30 件")
            expect(status).to_contain_text("错误 120 行")
            rows = page.locator("#import-errors table tr")
            expect(rows).to_have_count(101)  # a header and the first 100 failed rows
            expect(rows.nth(1)).to_contain_text("E2E-001：街道「火星街道」不存在")
            link = page.get_by_test_id("import-errors-csv")
            expect(link).to_contain_text("120 行")
            page.screenshot(path=str(SHOTS / "import_errors_desktop.png"))  # the top: status, download link
            with page.expect_download() as download:
                link.click()
            saved = tmp_path / "errors.csv"
            download.value.save_as(saved)
            table = list(csv.reader(io.StringIO(saved.read_text(encoding="utf-8-sig"))))
            assert table[0] == ["行号", "工单编号", "错误"] and len(table) == 121
            assert table[-1][:2] == ["151", "E2E-149"]
            # the page stays (the upload went by fetch): the next file can go at once
            expect(page.locator("#import-form button[type=submit]")).to_be_enabled()
            assert not errors, errors
        finally:
            browser.close()
