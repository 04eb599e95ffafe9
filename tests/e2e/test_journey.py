"""Browser journey: a citizen scans a 西湖码, staff dispatch, sign, handle and complete, the citizen rates.

Runs a real server (`xihu migrate`, `xihu demo --load-only`, `xihu serve`) in a subprocess on a free port
with a fresh data directory, and drives the system Chromium with Playwright. Screenshots of the key pages
are written to var/screenshots/ (docs/screenshots/ with XIHU_UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import pytest

from servers import CHROMIUM, LAUNCH_ARGS, SHOTS, demo_server
from servers import DEMO_PASSWORD as PASSWORD

PLACE = "XHDEMO01"

pytestmark = pytest.mark.e2e


def _tiny_png(path: Path) -> Path:
    """A valid 8x8 PNG (a blue square), written without any imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\x1f\x5f\xbf" * 8 for _ in range(8))
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    path.write_bytes(png)
    return path


@pytest.fixture(scope="module")
def server():  # type: ignore[no-untyped-def]
    """A real server with the demo data, on a free port; stopped afterwards."""
    if not CHROMIUM.exists():
        pytest.skip("system Chromium (/usr/bin/chromium) is not installed")
    with demo_server("xihu-e2e-", XIHU_SWEEP_INTERVAL_SECONDS="1", XIHU_IN_PROCESS_WORKER="1") as srv:
        yield srv


def _login(page, base: str, username: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(re.compile(r".*/staff$"))


def test_citizen_to_staff_to_rating(server) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect, sync_playwright

    # CI machines are slow and run two test files at once; 5 s (the default) proved too short.
    expect.set_options(timeout=10_000)
    base = server["base"]
    photo = _tiny_png(server["tmp"] / "lamp.png")
    SHOTS.mkdir(parents=True, exist_ok=True)
    description = "小区3号楼旁的路灯已经连续三个晚上不亮了，晚上出门很黑，老人孩子走路不安全，请尽快维修。"
    reply = "经现场核查，3号楼旁路灯线路老化，已更换线路和灯具，今晚起恢复照明。感谢您的反映！"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            mobile = browser.new_context(
                viewport={"width": 390, "height": 844},
                device_scale_factor=2,
                is_mobile=True,
                has_touch=True,
                locale="zh-CN",
                timezone_id="Asia/Shanghai",
            )
            mobile.set_default_timeout(10_000)
            citizen = mobile.new_page()

            # 1. The QR landing: the place is shown, the citizen writes and attaches a photo.
            citizen.goto(f"{base}/r/{PLACE}")
            expect(citizen.locator(".place-banner")).to_contain_text("您正在反映")
            citizen.fill("textarea[name=description]", description)
            citizen.fill("input[name=citizen_name]", "王女士")
            citizen.fill("input[name=citizen_phone]", "13812345678")
            citizen.set_input_files("input[name=photos]", str(photo))
            expect(citizen.locator("#photo-preview img")).to_have_count(1)
            citizen.screenshot(path=str(SHOTS / "report_form_mobile.png"), full_page=True)
            citizen.click("#report-form button[type=submit]")
            citizen.wait_for_url(re.compile(r".*/t/XH[0-9A-Z]+$"))
            code = citizen.url.rsplit("/", 1)[-1]
            expect(citizen.locator("body")).to_contain_text("已受理")
            expect(citizen.get_by_test_id("phone")).to_have_text("138****5678")
            expect(citizen.locator(".photos img")).to_have_count(1)

            desktop = browser.new_context(
                viewport={"width": 1280, "height": 800}, locale="zh-CN", timezone_id="Asia/Shanghai"
            )

            # 2. The dispatcher sends it to 区住建局 (unless the router already did).
            desktop.set_default_timeout(10_000)
            dispatcher = desktop.new_page()
            _login(dispatcher, base, "dispatcher")
            dispatcher.goto(f"{base}/staff/dispatch")
            dispatcher.screenshot(path=str(SHOTS / "dispatch_queue_desktop.png"), full_page=True)
            in_queue = dispatcher.locator(f".queue-item:has-text('{code}')").count() > 0
            dispatcher.goto(f"{base}/staff?state=&q={code}")
            found = dispatcher.locator(f"[data-testid=inbox] tr:has-text('{code}')")
            expect(found).to_have_count(1)
            routed_to = found.inner_text()
            found.locator("td.mono a").click()
            dispatcher.wait_for_url(re.compile(r".*/staff/appeals/\d+$"))
            if in_queue:
                form = dispatcher.locator("form#act-dispatch")
                form.locator("select[name=unit_id]").select_option(label="区住建局")
                form.locator("select[name=category]").select_option("城乡建设")
                form.locator("button[type=submit]").click()
                expect(dispatcher.get_by_test_id("state")).to_have_text("已派单待签收")
            elif "区住建局" not in routed_to:
                # The router chose another unit with confidence; the dispatcher corrects it (改派).
                form = dispatcher.locator("form#act-transfer")
                form.locator("select[name=unit_id]").select_option(label="区住建局")
                form.locator("textarea[name=reason]").fill("路灯线路属住建部门维护")
                with dispatcher.expect_response(lambda r: r.url.endswith("/transfer")) as moved:
                    form.locator("button[type=submit]").click()
                assert moved.value.status == 303, dispatcher.locator(".alert").all_inner_texts()
            # Wherever it went first, it now waits at 区住建局 (the row says where it is when it does not).
            dispatcher.goto(f"{base}/staff?state=&q={code}")
            expect(found).to_have_count(1)
            expect(found, found.inner_text()).to_contain_text("区住建局")
            dispatcher.close()

            # 3. The handler of 区住建局 signs, starts and completes it from the inbox.
            handler_ctx = browser.new_context(
                viewport={"width": 1280, "height": 800}, locale="zh-CN", timezone_id="Asia/Shanghai"
            )
            handler_ctx.set_default_timeout(10_000)
            handler = handler_ctx.new_page()
            _login(handler, base, "zj_handler")
            row = handler.locator(f"[data-testid=inbox] tr:has-text('{code}')")
            expect(row).to_have_count(1)
            expect(row.locator(".due")).to_contain_text(re.compile("剩余|已超时"))
            handler.screenshot(path=str(SHOTS / "staff_inbox_desktop.png"), full_page=True)
            row.locator("td.mono a").click()
            handler.wait_for_url(re.compile(r".*/staff/appeals/\d+$"))
            handler.click("form#act-sign button[type=submit]")
            expect(handler.get_by_test_id("state")).to_have_text("已签收")
            handler.click("form#act-start button[type=submit]")
            expect(handler.get_by_test_id("state")).to_have_text("处置中")
            handler.fill("form#act-complete textarea[name=reply]", reply)
            handler.screenshot(path=str(SHOTS / "appeal_detail_desktop.png"), full_page=True)
            handler.click("form#act-complete button[type=submit]")
            expect(handler.get_by_test_id("state")).to_have_text("已办结待评价")
            handler_ctx.close()

            # 4. The citizen sees every step and the reply, and rates.
            citizen.reload()
            timeline = citizen.get_by_test_id("timeline")
            for label in ("受理", "派单", "签收", "开始处置", "办结"):
                expect(timeline.locator(".tl-action", has_text=label).first).to_be_visible()
            expect(citizen.get_by_test_id("reply")).to_have_text(reply)
            citizen.screenshot(path=str(SHOTS / "tracking_timeline_mobile.png"), full_page=True)
            citizen.click("label.choice-satisfied")
            citizen.fill("textarea[name=comment]", "修得很快，谢谢！")
            # The page is already at /t/CODE, so wait for the POST itself rather than for a URL.
            with citizen.expect_response(
                lambda r: r.url.endswith("/rate") and r.request.method == "POST"
            ) as rated:
                citizen.click(".rate-card button[type=submit]")
            assert rated.value.status == 303, citizen.locator(".alert").all_inner_texts()
            citizen.wait_for_load_state()
            expect(citizen.get_by_test_id("state")).to_have_text(re.compile("已评价|已归档"))
            expect(citizen.locator(".rated")).to_contain_text("满意")
            expect(timeline.locator(".tl-action", has_text="评价").first).to_be_visible()
            expect(citizen.locator(".rate-card")).to_have_count(0)
            mobile.close()

            # 5. The printable A4 sheet of the place's 西湖码.
            a4 = browser.new_context(viewport={"width": 900, "height": 1200}, locale="zh-CN")
            sheet = a4.new_page()
            sheet.goto(f"{base}/places/{PLACE}/sheet")
            expect(sheet.locator(".sheet-slogan")).to_have_text("扫码反映问题 · 民呼我为 西湖码")
            sheet.wait_for_function(
                "() => { const i = document.querySelector('.sheet-qr img');"
                " return i.complete && i.naturalWidth > 0 }"
            )
            sheet.screenshot(path=str(SHOTS / "qr_sheet_a4.png"), full_page=True)
            a4.close()
            desktop.close()
        finally:
            browser.close()


def test_admin_manages_dispatch_models_rules_and_sees_quality(server) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=10_000)

    base = server["base"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            desktop = browser.new_context(
                viewport={"width": 1280, "height": 800}, locale="zh-CN", timezone_id="Asia/Shanghai"
            )
            desktop.set_default_timeout(10_000)
            admin = desktop.new_page()
            _login(admin, base, "admin")
            # The demo trained and activated a model from the project's own examples.
            admin.goto(f"{base}/staff/dispatch/models")
            expect(admin.get_by_test_id("active-badge")).to_have_count(1)
            expect(admin.get_by_test_id("rollback")).to_have_count(0)  # nothing to go back to yet
            # Retraining on the active version's examples plus the corrections gives a new, inactive version.
            admin.get_by_test_id("retrain").click()
            # the server's worker round picks the run up; the page reloads when it has ended
            expect(admin.get_by_test_id("trained")).to_contain_text("未启用", timeout=30_000)
            expect(admin.locator("[data-testid=model-versions] tbody tr")).to_have_count(2)
            expect(admin.get_by_test_id("active-badge")).to_have_count(1)
            admin.screenshot(path=str(SHOTS / "dispatch_models_desktop.png"), full_page=True)
            # The demo's hasty re-dispatches are flagged for review; one is excluded with the offered reason.
            admin.get_by_test_id("review-feedback").click()
            flagged = admin.locator("[data-testid=feedback] tbody tr.row-flag")
            expect(flagged.first).to_be_visible()
            before = flagged.count()
            expect(admin.get_by_test_id("view-excluded")).to_contain_text("0")
            flagged.first.locator("button", has_text="排除").click()
            expect(admin.get_by_test_id("done")).to_contain_text("已排除")
            expect(flagged).to_have_count(before - 1)
            expect(admin.get_by_test_id("view-excluded")).to_contain_text("1")
            admin.screenshot(path=str(SHOTS / "dispatch_feedback_desktop.png"), full_page=True)
            admin.goto(f"{base}/staff/dispatch/rules")
            expect(admin.locator("body")).to_contain_text("区住建局")
            # each rule's record over the demo's appeals
            expect(admin.locator("[data-testid^=usage-]", has_text="首选").first).to_be_visible()
            admin.screenshot(path=str(SHOTS / "responsibility_rules_desktop.png"), full_page=True)
            # 试派单: an evening appeal at a named place, shown with each category's rule and unit
            admin.get_by_test_id("try-link").click()
            admin.fill(
                "textarea[name=description]", "翠苑一区北门晚上有人占道摆摊卖菜，垃圾扔一地，车子也开不进来"
            )
            admin.fill("input[name=local_hour]", "21")
            admin.locator("[data-testid=try-form] button[type=submit]").click()
            expect(admin.get_by_test_id("try-result")).to_contain_text("按 21 时来件")
            expect(admin.locator("[data-testid=try-rows] tbody tr").first).to_contain_text("权责清单第")
            admin.screenshot(path=str(SHOTS / "dispatch_try_desktop.png"), full_page=True)
            admin.goto(f"{base}/staff/dispatch/report")
            expect(admin.locator("h1")).to_contain_text("派单质量")
            expect(admin.locator("table").first).to_contain_text("W")
            admin.screenshot(path=str(SHOTS / "dispatch_quality_desktop.png"), full_page=True)
        finally:
            browser.close()


def test_hotline_operator_is_told_of_similar_appeals_nearby(server) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=10_000)
    base = server["base"]
    text = "西溪路公交站台的顶棚被大风吹坏了，下雨天候车的人都淋着雨，请尽快修复。"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            ctx = browser.new_context(
                viewport={"width": 1280, "height": 800}, locale="zh-CN", timezone_id="Asia/Shanghai"
            )
            citizen = ctx.new_page()
            citizen.goto(f"{base}/report")
            citizen.select_option("#street-select", label="西溪街道")
            citizen.fill("textarea[name=description]", text)
            citizen.click("#report-form button[type=submit]")
            citizen.wait_for_url(re.compile(r".*/t/XH[0-9A-Z]+$"))

            operator = browser.new_context(
                viewport={"width": 1280, "height": 800}, locale="zh-CN", timezone_id="Asia/Shanghai"
            ).new_page()
            errors: list[str] = []
            operator.on("pageerror", lambda exc: errors.append(str(exc)))
            _login(operator, base, "intake")
            operator.goto(f"{base}/staff/hotline")
            # the operator's browser is not where the caller is
            expect(operator.locator("[data-geolocate]")).to_have_count(0)
            hint = operator.get_by_test_id("similar-hint")
            operator.fill("textarea[name=description]", "西溪路公交站台顶棚被风吹坏了，下雨天没法躲雨")
            operator.wait_for_timeout(1500)  # past the hint's debounce: no place chosen yet, so no hint
            expect(hint).to_be_hidden()
            operator.select_option("#street-select", label="西溪街道")
            expect(hint).to_be_visible()
            expect(hint).to_contain_text("近 7 天附近已有类似反映")
            expect(hint).to_contain_text("告知来电群众")
            operator.screenshot(path=str(SHOTS / "hotline_similar_desktop.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
