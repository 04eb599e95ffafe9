"""One appeal travels the whole way through the HTTP API."""

from __future__ import annotations

from conftest import login
from xihu.core.security import Role


def test_citizen_to_rating_over_http(client, make_user, unit_id) -> None:
    resp = client.post(
        "/api/appeals",
        json={
            "description": "翠苑一区北门路灯坏了，晚上很黑",
            "street_id": unit_id("330106005"),
            "citizen_phone": "13812345678",
        },
        headers={"Idempotency-Key": "smoke-key-0001"},
    )
    assert resp.status_code == 201, resp.text
    code, appeal_id = resp.json()["tracking_code"], resp.json()["id"]
    dispatcher = make_user(Role.dispatcher)
    handler = make_user(Role.handler, "D-ZJ")
    login(client, dispatcher.username)
    state = client.get(f"/api/appeals/{appeal_id}").json()["state"]
    if state == "submitted":
        r = client.post(f"/api/appeals/{appeal_id}/dispatch", json={"unit_id": unit_id("D-ZJ")})
        assert r.status_code == 200, r.text
    login(client, handler.username)
    assert client.post(f"/api/appeals/{appeal_id}/sign", json={}).status_code == 200
    assert client.post(f"/api/appeals/{appeal_id}/start", json={}).status_code == 200
    r = client.post(f"/api/appeals/{appeal_id}/complete", json={"reply": "已修复路灯，感谢您的反映"})
    assert r.json()["state"] == "completed"
    public = client.get(f"/api/appeals/track/{code}").json()
    assert [s["action"] for s in public["timeline"]][-1] == "complete"
    assert public["citizen_phone"] == "138****5678"
    r = client.post(f"/api/appeals/track/{code}/rate", json={"rating": "satisfied"})
    assert r.json()["state"] == "closed"
