"""Staff corrections become labelled feedback, and the first-dispatch report counts them."""

from __future__ import annotations

from sqlalchemy import select

import factories
from conftest import login
from xihu.appeals import service as appeal_service
from xihu.appeals.schemas import DispatchIn, TransferIn
from xihu.core.security import Actor, Role
from xihu.dispatch.models import DispatchFeedback


def _feedback(session, appeal_id: int) -> list[DispatchFeedback]:
    return list(
        session.scalars(
            select(DispatchFeedback)
            .where(DispatchFeedback.appeal_id == appeal_id)
            .order_by(DispatchFeedback.id)
        )
    )


def test_manual_dispatch_return_and_redispatch_become_labels(session, make_user) -> None:
    dispatcher = make_user(Role.dispatcher).to_actor()
    handler = make_user(Role.handler, "D-ZJ").to_actor()
    appeal = factories.submitted(session, description="饭店油烟直排，异味很重，窗户都不敢开")
    zj, sthj = factories.unit(session, "D-ZJ"), factories.unit(session, "D-STHJ")
    appeal_service.dispatch(
        session=session,
        actor=dispatcher,
        appeal_id=appeal.id,
        data=DispatchIn(unit_id=zj, category="城乡建设"),
    )
    appeal_service.return_to_dispatcher(
        session=session, actor=handler, appeal_id=appeal.id, reason="油烟属于生态环境事项"
    )
    appeal_service.dispatch(
        session=session,
        actor=dispatcher,
        appeal_id=appeal.id,
        data=DispatchIn(unit_id=sthj, category="环境保护"),
    )
    rows = _feedback(session, appeal.id)
    assert [r.kind for r in rows] == ["manual", "return", "manual"]
    assert (rows[-1].category, rows[-1].unit_id) == ("环境保护", sthj)
    assert "油烟" in rows[-1].text
    assert rows[1].reason == "区住建局退回：油烟属于生态环境事项"  # the unit by name, not by its number


def test_transfer_names_the_right_unit_and_system_dispatch_is_not_a_label(session, make_user) -> None:
    appeal = factories.signed(session)  # dispatched by a system actor: not a human label
    assert _feedback(session, appeal.id) == []
    handler = make_user(Role.handler, "D-ZJ").to_actor()
    cg = factories.unit(session, "D-CG")
    appeal_service.transfer(
        session=session,
        actor=handler,
        appeal_id=appeal.id,
        data=TransferIn(unit_id=cg, reason="占道经营属城管"),
    )
    rows = _feedback(session, appeal.id)
    assert [(r.kind, r.unit_id) for r in rows] == [("transfer", cg)]


def test_first_dispatch_accuracy_and_return_rate(client, session, make_user) -> None:
    zj = factories.unit(session, "D-ZJ")
    kept = [factories.dispatched(session) for _ in range(3)]
    returned = factories.dispatched(session)
    appeal_service.return_to_dispatcher(
        session=session, actor=Actor.system(), appeal_id=returned.id, reason="不属于本单位"
    )
    session.commit()
    report = appeal_service.dispatch_quality(session=session, actor=Actor.system())
    row = next(r for r in report if r.unit_id == zj)
    assert (row.first_dispatched, row.first_correct, row.returned) == (4, 3, 1)
    assert row.first_accuracy == 0.75 and row.return_rate == 0.25
    assert len(kept) == 3
    login(client, make_user(Role.supervisor).username)
    page = client.get("/staff/dispatch/report")
    assert page.status_code == 200 and "75.0%" in page.text
    login(client, make_user(Role.handler, "D-ZJ").username)
    assert client.get("/api/dispatch/quality").status_code == 403
