"""HTML pages through the real app: the citizen's report and tracking pages, login, staff pages."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

import factories
from conftest import PASSWORD, login
from xihu.appeals import service as appeal_service
from xihu.core.security import Actor

SYSTEM = Actor.system("测试")


def _name(role: str) -> str:
    return f"pg_{role}_{secrets.token_hex(4)}"


def _hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert match, f"hidden field {name} missing"
    return match.group(1)


def _count(session: Session, text: str) -> int:
    return appeal_service.search(session=session, actor=SYSTEM, q=text, states=None).total


def _report_form(client: TestClient) -> dict[str, str]:
    page = client.get("/report")
    assert page.status_code == 200
    return {name: _hidden(page.text, name) for name in ("csrf_token", "idempotency_key")}


def test_report_form_has_csrf_and_idempotency_fields(client: TestClient) -> None:
    page = client.get("/report")
    assert page.status_code == 200
    assert 'lang="zh-CN"' in page.text
    assert _hidden(page.text, "csrf_token") == client.cookies.get("xihu_csrf")
    key = _hidden(page.text, "idempotency_key")
    assert len(key) >= 16
    assert key != _hidden(client.get("/report").text, "idempotency_key")  # a fresh key per render
    assert 'name="photos"' in page.text and 'accept="image/*"' in page.text and "multiple" in page.text
    assert "<script>" not in page.text  # CSP: no inline scripts


def test_same_idempotency_key_twice_creates_one_appeal(client: TestClient, session: Session) -> None:
    hidden = _report_form(client)
    form = {
        **hidden,
        "description": "幂等测试：公园长椅坏了一条腿，坐上去会翻倒",
        "citizen_phone": "13812345678",
    }
    first = client.post("/report", data=form, follow_redirects=False)
    second = client.post("/report", data=form, follow_redirects=False)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert first.headers["location"].startswith("/t/XH")
    assert _count(session, "幂等测试") == 1


def test_post_without_csrf_is_refused_and_creates_nothing(client: TestClient, session: Session) -> None:
    hidden = _report_form(client)
    form = {"idempotency_key": hidden["idempotency_key"], "description": "跨站测试：这条诉求不应被保存下来"}
    resp = client.post("/report", data=form, follow_redirects=False)
    assert resp.status_code == 403
    assert "页面已过期" in resp.text
    wrong = client.post("/report", data={**form, "csrf_token": "forged-token"}, follow_redirects=False)
    assert wrong.status_code == 403
    assert _count(session, "跨站测试") == 0


def test_invalid_report_is_shown_again_with_the_input_kept(client: TestClient, session: Session) -> None:
    hidden = _report_form(client)
    resp = client.post(
        "/report", data={**hidden, "description": "短", "citizen_name": "李四", "address": "保俶路 1 号"}
    )
    assert resp.status_code == 422
    assert "诉求内容至少 5 个字" in resp.text
    assert 'value="李四"' in resp.text and 'value="保俶路 1 号"' in resp.text
    bad_phone = client.post(
        "/report", data={**hidden, "description": "电话格式测试：井盖缺失很危险", "citizen_phone": "12"}
    )
    assert bad_phone.status_code == 422
    assert "电话号码格式不正确" in bad_phone.text
    assert _count(session, "电话格式测试") == 0


def test_report_with_photo_shows_it_on_the_tracking_page(client: TestClient) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    hidden = _report_form(client)
    resp = client.post(
        "/report",
        data={**hidden, "description": "照片测试：人行道地砖松动，雨天溅水"},
        files=[("photos", ("a.png", png, "image/png"))],
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    page = client.get(resp.headers["location"])
    src = re.search(r'<img src="(/api/appeals/track/[^"]+/photos/\d+)"', page.text)
    assert src, page.text
    assert client.get(src.group(1)).content == png


def test_unknown_tracking_code_is_404_in_chinese(client: TestClient) -> None:
    resp = client.get("/t/UNKNOWN")
    assert resp.status_code == 404
    assert "受理编号不存在" in resp.text
    assert client.get("/t?code=xh1", follow_redirects=False).headers["location"] == "/t/XH1"


def test_unknown_qr_code_is_404(client: TestClient) -> None:
    resp = client.get("/r/NOPE1234")
    assert resp.status_code == 404
    assert "二维码无效" in resp.text


def test_no_such_page_or_method_answers_in_chinese(client: TestClient) -> None:
    page = client.get("/staff/no-such-page", headers={"accept": "text/html"})
    assert page.status_code == 404 and "页面或资源不存在" in page.text and "<html" in page.text
    api = client.get("/api/no-such-thing")
    assert api.status_code == 404
    assert api.json()["error"] == {
        "code": "not_found",
        "message": "您访问的页面或资源不存在，请检查网址",
        "message_en": "Not Found",
        "detail": None,
    }
    wrong = client.delete("/api/auth/login")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["allow"]


def test_tracking_page_masks_the_phone(client: TestClient, session: Session) -> None:
    appeal = factories.submitted(session, citizen_phone="13812345678", citizen_name="张三丰")
    session.commit()
    page = client.get(f"/t/{appeal.tracking_code}")
    assert page.status_code == 200
    assert "138****5678" in page.text
    assert "13812345678" not in page.text
    assert "张三丰" not in page.text and "张**" in page.text
    assert "已受理待派单" in page.text
    assert 'http-equiv="refresh"' in page.text  # an open appeal refreshes itself


def test_staff_pages_redirect_anonymous_to_login(client: TestClient) -> None:
    for path in ("/staff", "/staff/dispatch", "/staff/appeals/1", "/staff/messages", "/staff/places"):
        resp = client.get(path, follow_redirects=False)
        assert resp.status_code == 303, path
        assert resp.headers["location"].startswith("/login?next=")
    assert client.get("/login").status_code == 200


def test_wrong_role_gets_403_page(client: TestClient, make_user: Callable[..., Any]) -> None:
    user = make_user("handler", "D-ZJ", username=_name("handler"))
    login(client, user.username)
    resp = client.get("/staff/dispatch")
    assert resp.status_code == 403
    assert "无权" in resp.text


def test_login_form_and_logout(client: TestClient, make_user: Callable[..., Any]) -> None:
    user = make_user("dispatcher", None, username=_name("dispatcher"))
    token = _hidden(client.get("/login").text, "csrf_token")
    bad = client.post(
        "/login", data={"csrf_token": token, "username": user.username, "password": "wrong-pass"}
    )
    assert bad.status_code == 401
    assert "用户名或密码错误" in bad.text
    ok = client.post(
        "/login",
        data={"csrf_token": token, "username": user.username, "password": PASSWORD, "next": "/staff"},
        follow_redirects=False,
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/staff"
    assert client.get("/staff").status_code == 200
    assert client.get("/staff/dispatch").status_code == 200
    out = client.post("/logout", data={"csrf_token": client.cookies.get("xihu_csrf")}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/staff", follow_redirects=False).status_code == 303


def test_handler_signs_from_detail_page_and_sees_errors(
    client: TestClient, session: Session, make_user: Callable[..., Any]
) -> None:
    appeal = factories.dispatched(session, "D-ZJ")
    session.commit()
    user = make_user("handler", "D-ZJ", username=_name("handler"))
    login(client, user.username)
    csrf = client.cookies.get("xihu_csrf")
    inbox = client.get("/staff")
    assert appeal.tracking_code in inbox.text
    assert re.search(r"剩余 \d+ (分|秒)", inbox.text)
    detail = client.get(f"/staff/appeals/{appeal.id}")
    assert detail.status_code == 200
    assert "13812345678" in detail.text  # handlers may see the citizen's contact
    assert 'id="act-sign"' in detail.text and 'id="act-dispatch"' not in detail.text
    signed = client.post(
        f"/staff/appeals/{appeal.id}/sign", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert signed.status_code == 303
    again = client.post(f"/staff/appeals/{appeal.id}/sign", data={"csrf_token": csrf})
    assert again.status_code == 409
    assert "不能执行「签收」" in again.text
    short = client.post(f"/staff/appeals/{appeal.id}/complete", data={"csrf_token": csrf, "reply": "好"})
    assert short.status_code in (409, 422)
    page = client.get(f"/t/{appeal.tracking_code}")
    assert "签收" in page.text


def test_batch_sign_from_inbox(client: TestClient, session: Session, make_user: Callable[..., Any]) -> None:
    a = factories.dispatched(session, "D-ZJ")
    b = factories.dispatched(session, "D-ZJ")
    session.commit()
    user = make_user("handler", "D-ZJ", username=_name("handler"))
    login(client, user.username)
    resp = client.post(
        "/staff/batch",
        data={"csrf_token": client.cookies.get("xihu_csrf"), "action": "sign", "ids": [str(a.id), str(b.id)]},
    )
    assert resp.status_code == 200
    assert "成功 2 件" in resp.text


def test_hotline_form_shows_the_tracking_code(client: TestClient, make_user: Callable[..., Any]) -> None:
    user = make_user("intake", None, username=_name("intake"))
    login(client, user.username)
    page = client.get("/staff/hotline")
    assert page.status_code == 200
    # the operator's browser is not where the caller is: no location button; the similar-appeals hint is there
    assert "data-geolocate" not in page.text and 'name="lat"' not in page.text
    assert 'data-similar-url="/api/appeals/similar"' in page.text and "告知来电群众" in page.text
    resp = client.post(
        "/staff/hotline",
        data={
            "csrf_token": client.cookies.get("xihu_csrf"),
            "idempotency_key": _hidden(page.text, "idempotency_key"),
            "description": "热线测试：楼下餐馆油烟很大，影响居民开窗",
            "priority": "urgent",
            "citizen_phone": "13900001111",
        },
    )
    assert resp.status_code == 200
    assert re.search(r'data-testid="tracking-code">XH\w+<', resp.text)


def test_import_template_and_place_sheet(client: TestClient, make_user: Callable[..., Any]) -> None:
    tpl = client.get("/staff/import/template.csv")
    assert tpl.status_code == 200 and "诉求内容" in tpl.content.decode("utf-8-sig")
    user = make_user("admin", None, username=_name("admin"))
    login(client, user.username)
    assert client.get("/staff/import").status_code == 200
    assert client.get("/staff/places").status_code == 200
    assert client.get("/places/NOPE/sheet").status_code == 404


def test_report_form_keeps_the_browser_location(client, session) -> None:
    from sqlalchemy import select

    from xihu.appeals.models import Appeal

    page = client.get("/report")
    assert 'name="lat"' in page.text and "data-geolocate" in page.text
    token = client.cookies.get("xihu_csrf")
    form = {
        "csrf_token": token,
        "description": "文三路口路灯不亮好几天了",
        "lat": "30.2778",
        "lon": "120.1372",
        "idempotency_key": "geo-test-0001",
    }
    resp = client.post("/report", data=form, follow_redirects=False)
    assert resp.status_code == 303, resp.text
    code = resp.headers["location"].split("/")[-1]
    appeal = session.scalar(select(Appeal).where(Appeal.tracking_code == code))
    assert (appeal.lat, appeal.lon) == (30.2778, 120.1372)
