"""The 派单队列 page: the dispatcher decides from the citizen's text and from who returned it and why."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

import factories
from conftest import login
from xihu.appeals import pages_queue as queue_page
from xihu.appeals import service as appeal_service
from xihu.appeals.models import Appeal
from xihu.appeals.schemas import DispatchIn
from xihu.core import clock
from xihu.core.errors import Forbidden


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


def _waiting(session, hours_ago: float, priority: str = "normal") -> str:  # type: ignore[no-untyped-def]
    """A queued appeal received `hours_ago`; its tracking code."""
    made = factories.submitted(session, description=f"等了 {hours_ago} 小时的诉求")
    row = session.get(Appeal, made.id)
    row.created_at = clock.now() - timedelta(hours=hours_ago)
    row.priority = priority
    session.flush()
    return made.tracking_code


def test_the_queue_puts_urgent_then_longest_waiting_first_and_pages_the_rest(
    client, session, make_user, actor_of, monkeypatch: pytest.MonkeyPatch
) -> None:
    newest, oldest, urgent, middle = (
        _waiting(session, 1),
        _waiting(session, 30),
        _waiting(session, 0.5, "urgent"),
        _waiting(session, 5),
    )
    factories.dispatched(session, "D-ZJ")  # not waiting: never listed
    dispatcher = actor_of("dispatcher")
    listed = appeal_service.awaiting_dispatch(session=session, actor=dispatcher, size=3)
    assert [a.tracking_code for a in listed.items] == [urgent, oldest, middle] and listed.total == 4
    rest = appeal_service.awaiting_dispatch(session=session, actor=dispatcher, page=2, size=3)
    assert [a.tracking_code for a in rest.items] == [newest]
    beyond = appeal_service.awaiting_dispatch(session=session, actor=dispatcher, page=9, size=3)
    assert beyond.page == 2 and [a.tracking_code for a in beyond.items] == [newest]
    with pytest.raises(Forbidden):
        appeal_service.awaiting_dispatch(session=session, actor=actor_of("handler", "D-ZJ"))

    session.commit()
    monkeypatch.setattr(queue_page, "QUEUE_PAGE", 3)
    login(client, make_user("dispatcher").username)
    first = client.get("/staff/dispatch").text
    codes = re.findall(r'class="mono" href="/staff/appeals/\d+">(\w+)</a>', first)
    assert codes == [urgent, oldest, middle] and "待人工派单 4 件" in first
    assert 'href="/staff/dispatch?page=2"' in first and "第 1 / 2 页" in first
    # how long each has waited, in red past the 30 minutes the district promises
    assert re.search(
        r'class="due due-over" data-testid="queue-waited">已等待 1 天 6 小时<', _card(first, oldest)
    )
    assert re.search(r'class="due due-ok" data-testid="queue-waited">已等待 30 分<', _card(first, urgent))
    second = client.get("/staff/dispatch?page=2").text
    assert re.findall(r'class="mono" href="/staff/appeals/\d+">(\w+)</a>', second) == [newest]
    bad = client.get("/staff/dispatch?page=abc")
    assert bad.status_code == 422 and "page" in bad.text


def test_the_queue_can_be_split_by_street(client, session, make_user, actor_of) -> None:
    xixi, wenxin = factories.unit(session, "330106004"), factories.unit(session, "330106005")
    in_xixi = [factories.submitted(session, street_id=xixi).tracking_code for _ in range(2)]
    in_wenxin = factories.submitted(session, street_id=wenxin).tracking_code
    nowhere = factories.submitted(session, street_id=None).tracking_code
    dispatcher = actor_of("dispatcher")
    assert appeal_service.awaiting_by_street(session=session, actor=dispatcher) == {xixi: 2, wenxin: 1, 0: 1}
    with pytest.raises(Forbidden):
        appeal_service.awaiting_by_street(session=session, actor=actor_of("handler", "D-ZJ"))
    session.commit()
    login(client, make_user("dispatcher").username)

    def codes(url: str) -> list[str]:
        return re.findall(r'class="mono" href="/staff/appeals/\d+">(\w+)</a>', client.get(url).text)

    everything = client.get("/staff/dispatch?street=").text  # the form's 全部街道
    assert "全部街道（4）" in everything and "西溪街道（2）" in everything and "街道未识别（1）" in everything
    assert sorted(codes("/staff/dispatch?street=")) == sorted([*in_xixi, in_wenxin, nowhere])
    assert codes(f"/staff/dispatch?street={xixi}") == in_xixi
    assert codes("/staff/dispatch?street=0") == [nowhere]
    one = client.get(f"/staff/dispatch?street={wenxin}").text
    assert codes(f"/staff/dispatch?street={wenxin}") == [in_wenxin] and "所选街道 1 件" in one
    assert f'<option value="{wenxin}" selected>' in one
    for bad in ("abc", "-1", "99999999999", "²"):
        refused = client.get(f"/staff/dispatch?street={bad}")
        assert refused.status_code in (400, 422) and "街道" in refused.text, bad
