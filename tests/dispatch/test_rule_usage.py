"""How each 权责清单 rule fared: the appeals it made the first suggestion for, and the ones staff sent
elsewhere, with the rule flagged when staff kept the category but changed the unit often."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

import factories
from conftest import login
from xihu.appeals import service as appeal_service
from xihu.appeals.enums import Channel
from xihu.appeals.schemas import AppealCreate, DispatchIn
from xihu.core import clock
from xihu.core.security import Actor
from xihu.dispatch import model_cache, responsibility, rule_usage
from xihu.dispatch import service as dispatch_service
from xihu.dispatch.schemas import RoutingInput, RuleCreate

ADMIN = Actor.system("测试管理员")
LAMP = "小区路灯坏了好几天，晚上很黑，物业一直不修"


def _queued(session: Session, n: int) -> list[int]:
    """`n` lamp appeals routed at intake but left in the dispatch queue (nothing is sure enough)."""
    active = model_cache.active_model(session=session)
    assert active is not None
    active[0].threshold = 1.01
    street = factories.unit(session, "330106004")
    return [
        appeal_service.submit(
            session=session,
            actor=Actor.citizen(),
            appeal_in=AppealCreate(description=f"{LAMP}（第 {i} 次反映）", street_id=street),
            channel=Channel.web,
        ).id
        for i in range(n)
    ]


def _suggested(session: Session, appeal_id: int) -> tuple[int, int, str]:
    """(rule id, unit id, category) of the router's first suggestion."""
    best = dispatch_service.latest_decision(session=session, appeal_id=appeal_id)
    assert best is not None and best.best is not None and best.best.rule_id is not None
    return best.best.rule_id, best.best.unit_id, best.best.category


def _scenario(session: Session, dispatcher: Actor) -> tuple[int, int]:
    """Five appeals under one rule: one dispatched as suggested, three to another unit under the same
    category, one under another category. Returns the rule and the unit it names."""
    ids = _queued(session, 5)
    rule_id, unit_id, category = _suggested(session, ids[0])
    assert {_suggested(session, i) for i in ids} == {(rule_id, unit_id, category)}
    other = factories.unit(session, "D-CG")
    transport = factories.unit(session, "D-JT")
    choices = [(unit_id, category)] + [(other, category)] * 3 + [(transport, "交通运输")]
    for appeal_id, (unit, cat) in zip(ids, choices, strict=True):
        appeal_service.dispatch(
            session=session,
            actor=dispatcher,
            appeal_id=appeal_id,
            data=DispatchIn(unit_id=unit, category=cat),
        )
    return rule_id, unit_id


def test_a_rule_whose_unit_staff_keep_changing_is_flagged(
    session: Session, demo_model: Any, actor_of: Any
) -> None:
    rule_id, _ = _scenario(session, actor_of("dispatcher"))
    found = rule_usage.usage(session=session, actor=ADMIN)
    tally = found[rule_id]
    assert (tally.decided, tally.auto, tally.elsewhere, tally.same_category) == (5, 0, 4, 3)
    assert tally.elsewhere_rate == 0.8 and tally.needs_review
    assert set(found) == {rule_id}  # rules that suggested nothing are absent
    # one same-category correction fewer and the rule is within what every mapping sees
    assert not rule_usage.RuleUsage(decided=5, elsewhere=4, same_category=2).needs_review
    assert not rule_usage.RuleUsage(decided=20, elsewhere=4, same_category=3).needs_review
    # only the period counts
    clock.advance(timedelta(days=rule_usage.DAYS + 1))
    assert rule_usage.usage(session=session, actor=ADMIN) == {}


def test_an_appeal_counts_once_under_the_rule_of_its_first_decision(
    session: Session, demo_model: Any, actor_of: Any
) -> None:
    [appeal_id] = _queued(session, 1)
    rule_id, unit_id, category = _suggested(session, appeal_id)
    # the table changes and the appeal is routed again (a worker retrying, say): it still counts once, under
    # the rule of the suggestion it arrived with
    xixi = factories.unit(session, "330106004")
    newer = responsibility.create_rule(
        session=session,
        actor=ADMIN,
        rule_in=RuleCreate(
            category=category, street_id=xixi, target="unit", unit_id=factories.unit(session, "D-CG")
        ),
    )
    again = dispatch_service.route(session=session, appeal=RoutingInput(description=LAMP, street_id=xixi))
    assert again.best is not None and again.best.rule_id == newer.id
    dispatch_service.record_decision(session=session, appeal_id=appeal_id, suggestion=again)
    appeal_service.dispatch(
        session=session,
        actor=actor_of("dispatcher"),
        appeal_id=appeal_id,
        data=DispatchIn(unit_id=unit_id, category=category),
    )
    found = rule_usage.usage(session=session, actor=ADMIN)
    assert set(found) == {rule_id} and (found[rule_id].decided, found[rule_id].elsewhere) == (1, 0)


def test_the_rules_page_shows_each_rules_record(
    client: Any, session: Session, demo_model: Any, actor_of: Any, make_user: Any
) -> None:
    rule_id, _ = _scenario(session, actor_of("dispatcher"))
    login(client, make_user("admin").username)
    page = client.get("/staff/dispatch/rules")
    assert page.status_code == 200
    cell = page.text.split(f'data-testid="usage-{rule_id}">', 1)[1].split("</td>", 1)[0]
    assert "首选 5 件" in cell and "改派 4 件（80%）" in cell and "同类别 3 件" in cell
    assert f'data-testid="review-{rule_id}"' in cell
