"""Admins configure SLA policies and auto-sign over HTTP; others cannot."""

from __future__ import annotations

from sqlalchemy import func, select

import factories
from conftest import login
from xihu.appeals.models import Deadline, SlaPolicy
from xihu.core.audit import AuditEntry
from xihu.core.security import Role


def test_admin_sets_a_policy_that_new_clocks_follow(client, session, make_user, unit_id) -> None:
    login(client, make_user(Role.admin).username)
    body = {"priority": "urgent", "sign_minutes": 2, "handle_minutes": 10, "complete_minutes": 120}
    resp = client.put("/api/sla/policies", json=body)
    assert resp.status_code == 200, resp.text
    again = client.put("/api/sla/policies", json={**body, "complete_minutes": 180})
    assert again.json()["id"] == resp.json()["id"]  # the same combination is replaced, not duplicated
    assert session.scalar(select(func.count()).select_from(SlaPolicy)) == 1
    appeal = factories.dispatched(session, priority="urgent")
    clocks = {d.kind: d for d in session.scalars(select(Deadline).where(Deadline.appeal_id == appeal.id))}
    assert (clocks["complete"].due_at - clocks["complete"].started_at).total_seconds() == 180 * 60
    assert (
        session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "sla.save"))
        == 2
    )
    assert client.delete(f"/api/sla/policies/{resp.json()['id']}").status_code == 204
    assert client.get("/api/sla/policies").json() == []


def test_inconsistent_or_unauthorised_policies_are_refused(client, session, make_user) -> None:
    login(client, make_user(Role.admin).username)
    bad = client.put("/api/sla/policies", json={"sign_minutes": 60, "handle_minutes": 30})
    assert bad.status_code == 422 and "签收" in bad.json()["error"]["message"]
    login(client, make_user(Role.supervisor).username)
    assert client.put("/api/sla/policies", json={"sign_minutes": 1}).status_code == 403
    assert session.scalar(select(func.count()).select_from(SlaPolicy)) == 0


def test_admin_turns_on_auto_sign(client, session, make_user, unit_id) -> None:
    login(client, make_user(Role.handler, "D-ZJ").username)
    assert client.put(f"/api/units/{unit_id('D-JT')}/auto-sign", json={"enabled": True}).status_code == 403
    login(client, make_user(Role.admin).username)
    resp = client.put(f"/api/units/{unit_id('D-JT')}/auto-sign", json={"enabled": True})
    assert resp.status_code == 200 and resp.json()["auto_sign"] is True
    appeal = factories.dispatched(session, unit_code="D-JT")
    assert (
        factories.appeal_service.read(session=session, actor=factories.SYSTEM, appeal_id=appeal.id).state
        == "signed"
    )
