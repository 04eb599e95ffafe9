"""The 派单队列 page: the dispatcher decides from the citizen's text and from who returned it and why."""

from __future__ import annotations

import factories
from conftest import login
from xihu.appeals import service as appeal_service
from xihu.appeals.schemas import DispatchIn


def _card(page: str, tracking_code: str) -> str:
    start = page.index(tracking_code)
    return page[start : page.index("</article>", start)]


def test_queue_shows_the_text_and_every_return_with_its_reason(client, session, make_user, actor_of) -> None:
    text = "小区门口的路灯坏了好几天，晚上很黑，老人出门不方便"
    returned = factories.dispatched(session, "D-ZJ", description=text, address="西溪路 1 号")
    appeal_service.return_to_dispatcher(
        session=session, actor=actor_of("handler", "D-ZJ"), appeal_id=returned.id, reason="路灯归城管管养"
    )
    appeal_service.dispatch(
        session=session,
        actor=actor_of("dispatcher"),
        appeal_id=returned.id,
        data=DispatchIn(unit_id=factories.unit(session, "D-CG")),
    )
    appeal_service.return_to_dispatcher(
        session=session, actor=actor_of("handler", "D-CG"), appeal_id=returned.id, reason="小区内归物业"
    )
    fresh = factories.submitted(session, description="公园里的健身器材坏了")
    session.commit()
    login(client, make_user("dispatcher").username)
    page = client.get("/staff/dispatch").text

    card = _card(page, returned.tracking_code)
    assert text in card and "西溪路 1 号" in card
    returns = card[card.index('data-testid="queue-returns"') :]
    # both units, oldest first, each with its own reason (not the timeline's "退回派单员：" wording)
    assert returns.index("区住建局") < returns.index("路灯归城管管养") < returns.index("区城管局")
    assert "小区内归物业" in returns and "退回派单员" not in returns
    other = _card(page, fresh.tracking_code)
    assert "公园里的健身器材坏了" in other and "queue-returns" not in other


def test_returns_of_reads_only_the_asked_appeals(session, actor_of) -> None:
    one = factories.dispatched(session, "D-ZJ")
    two = factories.dispatched(session, "D-ZJ")
    for appeal in (one, two):
        appeal_service.return_to_dispatcher(
            session=session, actor=actor_of("handler", "D-ZJ"), appeal_id=appeal.id, reason=f"原因{appeal.id}"
        )
    got = appeal_service.returns_of(session=session, actor=actor_of("dispatcher"), appeal_ids=[two.id])
    assert list(got) == [two.id] and got[two.id][0].reason == f"原因{two.id}"
    assert appeal_service.returns_of(session=session, actor=actor_of("dispatcher"), appeal_ids=[]) == {}
