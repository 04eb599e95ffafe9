"""Submitting an appeal: retries with an Idempotency-Key, 12345 import ids, and input validation."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import factories
from conftest import login
from xihu.appeals import service as appeal_service
from xihu.appeals.enums import Channel
from xihu.appeals.models import Appeal, AppealEvent, IdempotencyKey
from xihu.appeals.schemas import AppealCreate
from xihu.core.security import Actor, Role


def _counts(session: Session) -> tuple[int, int, int]:
    session.expire_all()
    return (
        session.scalar(select(func.count()).select_from(Appeal)) or 0,
        session.scalar(select(func.count()).select_from(AppealEvent)) or 0,
        session.scalar(select(func.count()).select_from(IdempotencyKey)) or 0,
    )


def _body(unit_id, **overrides):  # type: ignore[no-untyped-def]
    body = {
        "description": "文一路公交站的遮雨棚破了，下雨天没法等车",
        "street_id": unit_id("330106004"),
        "citizen_name": "李四",
        "citizen_phone": "13912345678",
    }
    body.update(overrides)
    return body


def _key() -> str:
    return f"test-{uuid.uuid4().hex}"


def test_same_key_same_body_replays_the_same_appeal(client, session, unit_id) -> None:
    before = _counts(session)
    key = _key()
    first = client.post("/api/appeals", json=_body(unit_id), headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.text
    second = client.post("/api/appeals", json=_body(unit_id), headers={"Idempotency-Key": key})
    assert second.status_code == 200, second.text
    assert (second.json()["id"], second.json()["tracking_code"]) == (
        first.json()["id"],
        first.json()["tracking_code"],
    )
    assert first.json()["created"] is True and second.json()["created"] is False
    after = _counts(session)
    assert after[0] == before[0] + 1
    assert after[2] == before[2] + 1
    assert (
        session.scalar(select(func.count()).where(Appeal.tracking_code == first.json()["tracking_code"])) == 1
    )


def test_same_key_different_body_is_409_and_creates_nothing(client, session, unit_id) -> None:
    key = _key()
    assert (
        client.post("/api/appeals", json=_body(unit_id), headers={"Idempotency-Key": key}).status_code == 201
    )
    before = _counts(session)
    resp = client.post(
        "/api/appeals",
        json=_body(unit_id, description="完全不同的一件事：小区垃圾没人清运"),
        headers={"Idempotency-Key": key},
    )
    assert resp.status_code == 409
    assert "Idempotency-Key" in resp.json()["error"]["message"]
    assert "不同" in resp.json()["error"]["message"]
    assert _counts(session) == before


def test_different_keys_make_two_appeals(client, session, unit_id) -> None:
    before = _counts(session)
    a = client.post("/api/appeals", json=_body(unit_id), headers={"Idempotency-Key": _key()})
    b = client.post("/api/appeals", json=_body(unit_id), headers={"Idempotency-Key": _key()})
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]
    assert a.json()["tracking_code"] != b.json()["tracking_code"]
    assert _counts(session)[0] == before[0] + 2


def test_bad_key_length_is_refused(client, session, unit_id) -> None:
    before = _counts(session)
    resp = client.post("/api/appeals", json=_body(unit_id), headers={"Idempotency-Key": "short"})
    assert resp.status_code == 422
    assert "Idempotency-Key" in resp.json()["error"]["message"]
    assert _counts(session) == before


def test_external_id_submitted_twice_is_one_appeal_over_http(client, session, make_user, unit_id) -> None:
    login(client, make_user(Role.intake).username)
    ext = f"12345-{uuid.uuid4().hex[:10]}"
    before = _counts(session)
    first = client.post("/api/appeals", json=_body(unit_id, external_id=ext))
    assert first.status_code == 201, first.text
    again = client.post(
        "/api/appeals", json=_body(unit_id, external_id=ext, description="工单再次推送，内容略有改动")
    )
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert _counts(session)[0] == before[0] + 1
    assert session.scalar(select(func.count()).where(Appeal.external_id == ext)) == 1
    stored = session.get(Appeal, first.json()["id"])
    assert stored is not None and stored.channel == "hotline"


def test_external_id_import_is_one_appeal(session) -> None:
    ext = f"12345-{uuid.uuid4().hex[:10]}"
    data = AppealCreate(description="西溪路某小区楼道堆放杂物存在消防隐患", external_id=ext)
    system = Actor.system("12345 导入")
    a = appeal_service.submit(
        session=session, actor=system, appeal_in=data, channel=Channel.import_12345, auto_route=False
    )
    b = appeal_service.submit(
        session=session, actor=system, appeal_in=data, channel=Channel.import_12345, auto_route=False
    )
    assert a.created and not b.created
    assert a.id == b.id
    assert session.scalar(select(func.count()).where(Appeal.external_id == ext)) == 1


@pytest.mark.parametrize(
    ("change", "drop", "words"),
    [
        ({}, "description", "请填写诉求内容"),
        ({"description": "路灯"}, None, "诉求内容至少 5 个字"),
        ({"citizen_phone": "12345"}, None, "电话号码格式不正确"),
        ({"street_id": 999999}, None, "所选街道/镇不存在"),
        ({"community_id": "OTHER"}, None, "所选社区/村不在该街道/镇内"),
        ({"lat": 200}, None, "纬度超出允许范围"),
        ({"lon": -200}, None, "经度超出允许范围"),
    ],
    ids=[
        "missing-description",
        "short-description",
        "bad-phone",
        "unknown-street",
        "foreign-community",
        "lat",
        "lon",
    ],
)
def test_bad_input_is_422_in_chinese_and_writes_nothing(
    client, session, unit_id, change, drop, words
) -> None:
    body = _body(unit_id, **change)
    if drop:
        del body[drop]
    if body.get("community_id") == "OTHER":
        body["community_id"] = unit_id("330106005051")  # a community of 翠苑街道, not of 西溪街道
    before = _counts(session)
    resp = client.post("/api/appeals", json=body, headers={"Idempotency-Key": _key()})
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "invalid"
    assert words in error["message"]
    assert _counts(session) == before


def test_valid_community_in_its_street_is_accepted(client, session, unit_id) -> None:
    community = unit_id("330106004053")
    resp = client.post("/api/appeals", json=_body(unit_id, community_id=community))
    assert resp.status_code == 201, resp.text
    appeal = session.get(Appeal, resp.json()["id"])
    assert appeal is not None and (appeal.street_id, appeal.community_id) == (unit_id("330106004"), community)


def test_factory_appeal_is_not_a_replay(session) -> None:
    """Two identical submissions without a key or external id are two appeals (only keys deduplicate)."""
    a = factories.submitted(session)
    b = factories.submitted(session)
    assert a.id != b.id and a.created and b.created


@pytest.fixture
def handled_by_fastapi(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths of the requests that went through FastAPI's general parameter handling."""
    import fastapi.routing

    seen: list[str] = []
    solve = fastapi.routing.solve_dependencies

    async def counting(*, request, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(request.url.path)
        return await solve(request=request, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    return seen


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "application/merge-patch+json"]
)
def test_intake_answers_alike_on_its_lean_way_and_on_fastapis(
    client, session, unit_id, handled_by_fastapi, content_type
) -> None:
    """A valid JSON body skips FastAPI's parameter handling, another content type takes it: same answers."""
    lean = content_type.startswith("application/json")
    key = _key()
    body = json.dumps(_body(unit_id), ensure_ascii=False).encode()
    headers = {"Idempotency-Key": key, "Content-Type": content_type}
    before = _counts(session)
    first = client.post("/api/appeals", content=body, headers=headers)
    again = client.post("/api/appeals", content=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200), first.text
    assert first.headers["content-type"] == "application/json"
    assert set(first.json()) == {"id", "tracking_code", "state", "state_label", "created", "tracking_url"}
    assert (first.json()["created"], again.json()["created"]) == (True, False)
    assert again.json()["id"] == first.json()["id"]
    assert _counts(session)[0] == before[0] + 1
    assert handled_by_fastapi.count("/api/appeals") == (0 if lean else 2)


def test_intake_errors_take_fastapis_way(client, session, unit_id, handled_by_fastapi) -> None:
    """Broken JSON, invalid fields and an overlong key are worded by FastAPI's handling, as on every route."""
    before = _counts(session)
    broken = client.post(
        "/api/appeals", content=b'{"description": ', headers={"Content-Type": "application/json"}
    )
    short = client.post("/api/appeals", json=_body(unit_id, description="路灯"))
    long_key = client.post("/api/appeals", json=_body(unit_id), headers={"Idempotency-Key": "k" * 81})
    assert (broken.status_code, short.status_code, long_key.status_code) == (422, 422, 422)
    assert "诉求内容至少 5 个字" in short.json()["error"]["message"]
    assert "Idempotency-Key" in long_key.json()["error"]["message"]
    assert broken.json()["error"]["code"] == "invalid"
    assert "请求内容不是有效的 JSON" in broken.json()["error"]["message"]
    # FastAPI refuses the broken JSON before its parameter handling; the other two went through it
    assert handled_by_fastapi.count("/api/appeals") == 2
    assert _counts(session) == before
