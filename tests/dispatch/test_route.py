"""Routing with the trained model, the responsibility table and location, as intake uses it."""

from __future__ import annotations

import re

import pytest

import factories
from conftest import login
from xihu.appeals import pages_queue as queue_page
from xihu.appeals import service as appeal_service
from xihu.appeals.enums import Channel
from xihu.appeals.schemas import AppealCreate, DispatchIn
from xihu.core.audit import AuditEntry
from xihu.core.db import batch_memo
from xihu.core.security import Actor
from xihu.dispatch import model_cache, responsibility
from xihu.dispatch import service as dispatch_service
from xihu.dispatch.schemas import RoutingInput, RuleCreate, RuleUpdate, Suggestion
from xihu.places import service as places_service

ADMIN = Actor.system("测试管理员")
LAMP = "小区路灯坏了好几天，晚上很黑，物业一直不修"


def test_model_route_gives_top_candidates_with_reasons(session, demo_model) -> None:
    xixi = factories.unit(session, "330106004")
    result = dispatch_service.route(session=session, appeal=RoutingInput(description=LAMP, street_id=xixi))
    assert result.model_version == demo_model.version
    assert 1 <= len(result.candidates) <= 4
    best = result.best
    assert best is not None and best.category == "城乡建设"
    assert any(r.startswith("文本特征") for r in best.reasons)
    assert best.confidence == pytest.approx(max(c.confidence for c in result.candidates))
    assert result.auto == (best.confidence >= demo_model.threshold)


def _held_back(session):
    """The lamp appeal submitted while nothing is sure enough for the router: it waits in the queue."""
    model_cache.reset_cache()
    active = model_cache.active_model(session=session)
    assert active is not None
    active[0].threshold = 1.01
    appeal_in = AppealCreate(description=LAMP, street_id=factories.unit(session, "330106004"))
    return appeal_service.submit(
        session=session, actor=Actor.citizen(), appeal_in=appeal_in, channel=Channel.web
    )


def _held_back_with_its_decision(session):  # type: ignore[no-untyped-def]
    """`_held_back`, and the router's recorded decision for it."""
    submitted = _held_back(session)
    decision = dispatch_service.latest_decision(session=session, appeal_id=submitted.id)
    assert decision is not None
    return submitted, decision


def test_below_threshold_goes_to_the_manual_queue(session, demo_model) -> None:
    submitted = _held_back(session)
    assert submitted.state == "submitted"
    assert appeal_service.suggestions_for(session=session, actor=ADMIN, appeal_id=submitted.id)


def test_the_queue_offers_other_suggestions_and_dispatches_to_one(
    client, session, demo_model, make_user
) -> None:
    submitted = _held_back(session)
    candidates = appeal_service.suggestions_for(session=session, actor=ADMIN, appeal_id=submitted.id)
    assert len(candidates) >= 3
    session.commit()
    login(client, make_user("dispatcher").username)
    page = client.get("/staff/dispatch").text
    card = page[page.index(submitted.tracking_code) :]
    card = card[: card.index("</article>")]
    offered = re.findall(r'name="unit_id" value="(\d+)"', card)
    assert offered == [str(c["unit_id"]) for c in candidates[:3]]
    assert 'data-testid="dispatch-alternatives"' in card and candidates[1]["unit_name"] in card
    second = candidates[1]
    sent = client.post(
        f"/staff/appeals/{submitted.id}/dispatch",
        data={
            "csrf_token": client.cookies.get("xihu_csrf"),
            "unit_id": second["unit_id"],
            "category": second["category"],
            "next": "/staff/dispatch",
        },
        follow_redirects=False,
    )
    assert sent.status_code == 303 and sent.headers["location"] == "/staff/dispatch"
    session.expire_all()
    after = appeal_service.read(session=session, actor=ADMIN, appeal_id=submitted.id)
    assert (after.state, after.lead_unit_id) == ("dispatched", second["unit_id"])


def _returned_card(client, session, submitted, unit_id: int, category: str, actor_of, make_user) -> str:  # type: ignore[no-untyped-def]
    """Dispatch the appeal to a unit, have that unit return it, and read its card in the dispatch queue."""
    appeal_service.dispatch(
        session=session,
        actor=actor_of("dispatcher"),
        appeal_id=submitted.id,
        data=DispatchIn(unit_id=unit_id, category=category),
    )
    code = places_service.get_unit(session=session, unit_id=unit_id).code
    appeal_service.return_to_dispatcher(
        session=session, actor=actor_of("handler", code), appeal_id=submitted.id, reason="不归我们管"
    )
    session.commit()
    login(client, make_user("dispatcher").username)
    page = client.get("/staff/dispatch").text
    card = page[page.index(submitted.tracking_code) :]
    return card[: card.index("</article>")]


def _router_suggestions(card: str) -> str:
    """The card without its list of the likeliest category's other units (tested on its own)."""
    return re.sub(r'<div class="alts" data-testid="same-category-units">.*?</div>', "", card, flags=re.S)


def test_the_queue_does_not_offer_back_the_unit_that_returned_it(
    client, session, demo_model, make_user, actor_of, monkeypatch
) -> None:
    submitted = _held_back(session)
    candidates = appeal_service.suggestions_for(session=session, actor=ADMIN, appeal_id=submitted.id)
    first = candidates[0]
    # the demo model is sure of this text: let its next guess, however small, count as likely enough
    monkeypatch.setattr(queue_page, "PROMOTE_AFTER_RETURN", candidates[1]["confidence"])
    card = _returned_card(
        client, session, submitted, first["unit_id"], first["category"], actor_of, make_user
    )
    card = _router_suggestions(card)
    offered = re.findall(r'name="unit_id" value="(\d+)"', card)
    # the router's next guess is the one-click choice; the returning unit is still there, last and marked
    assert offered == [str(c["unit_id"]) for c in candidates[1:3]] + [str(first["unit_id"])]
    returned_button = card[card.rindex(f'value="{first["unit_id"]}"') :]
    assert "已退回" in returned_button and "已退回" not in card[: card.rindex(f'value="{first["unit_id"]}"')]
    # the appeal's own page preselects the next guess too, and marks the returning unit in its list
    detail = client.get(f"/staff/appeals/{submitted.id}").text
    assert re.findall(r'<option value="(\d+)" selected>', detail) == [str(candidates[1]["unit_id"])]
    listed = detail[detail.index("智能派单建议") :]
    assert listed.index(candidates[1]["unit_name"]) < listed.index("已退回")


def test_after_a_return_a_long_shot_is_not_offered_as_the_suggestion(
    client, session, demo_model, make_user, actor_of, monkeypatch
) -> None:
    submitted, decision = _held_back_with_its_decision(session)
    first = decision.candidates[0]
    # the router's next guess falls just short of what counts as likely enough after a return
    monkeypatch.setattr(queue_page, "PROMOTE_AFTER_RETURN", decision.candidates[1].confidence + 1e-9)
    card = _router_suggestions(
        _returned_card(client, session, submitted, first.unit_id, first.category, actor_of, make_user)
    )
    assert 'data-testid="dispatch-top"' not in card and 'data-testid="no-sure-suggestion"' in card
    assert len(re.findall(r'name="unit_id" value="(\d+)"', card)) == len(decision.candidates)


def test_after_a_return_the_queue_offers_the_likeliest_categorys_other_units(
    client, session, demo_model, make_user, actor_of
) -> None:
    submitted, decision = _held_back_with_its_decision(session)
    first = decision.candidates[0]
    other = factories.unit(session, "D-CG" if first.unit_id != factories.unit(session, "D-CG") else "D-ZJ")
    responsibility.create_rule(
        session=session,
        actor=ADMIN,
        rule_in=RuleCreate(category=first.category, keywords=["违建"], unit_id=other),
    )
    card = _returned_card(client, session, submitted, first.unit_id, first.category, actor_of, make_user)
    block = card[card.index('data-testid="same-category-units"') :]
    block = block[: block.index("</div>")]
    offered = [int(u) for u in re.findall(r'name="unit_id" value="(\d+)"', block)]
    xixi = factories.unit(session, "330106004")
    # the new rule's unit although the text has no 违建, and the appeal's own street; never the returning unit
    assert xixi in offered and other in offered and first.unit_id not in offered
    assert set(re.findall(r'name="category" value="([^"]+)"', block)) == {first.category}
    assert f"「{first.category}」的其他承办单位" in block and "类别多半无误" in card
    # the appeal's own page offers the same units, one click each
    detail = client.get(f"/staff/appeals/{submitted.id}").text
    listed = detail[detail.index('data-testid="same-category-units"') :]
    listed = listed[: listed.index("</div>")]
    assert [int(u) for u in re.findall(r'name="unit_id" value="(\d+)"', listed)] == offered
    sent = client.post(
        f"/staff/appeals/{submitted.id}/dispatch",
        data={
            "csrf_token": client.cookies.get("xihu_csrf"),
            "unit_id": xixi,
            "category": first.category,
            "next": "/staff/dispatch",
        },
        follow_redirects=False,
    )
    assert sent.status_code == 303
    session.expire_all()
    after = appeal_service.read(session=session, actor=ADMIN, appeal_id=submitted.id)
    assert (after.state, after.lead_unit_id, after.category) == ("dispatched", xixi, first.category)


def test_no_other_units_when_the_returning_unit_was_not_the_likeliest_categorys(
    client, session, demo_model, make_user, actor_of
) -> None:
    submitted, decision = _held_back_with_its_decision(session)
    second = decision.candidates[1]
    card = _returned_card(client, session, submitted, second.unit_id, second.category, actor_of, make_user)
    assert 'data-testid="same-category-units"' not in card and "类别多半无误" not in card
    assert 'data-testid="same-category-units"' not in client.get(f"/staff/appeals/{submitted.id}").text


def test_remapping_a_category_changes_the_unit_without_retraining(session, demo_model) -> None:
    xixi = factories.unit(session, "330106004")
    before = dispatch_service.route(
        session=session, appeal=RoutingInput(description=LAMP, street_id=xixi)
    ).best
    assert before is not None
    rule = next(
        r
        for r in responsibility.list_rules(session=session, actor=ADMIN)
        if r.category == before.category and not r.keywords and r.target == "unit"
    )
    cg = factories.unit(session, "D-CG")
    responsibility.update_rule(session=session, actor=ADMIN, rule_id=rule.id, rule_in=RuleUpdate(unit_id=cg))
    after = dispatch_service.route(
        session=session, appeal=RoutingInput(description=LAMP, street_id=xixi)
    ).best
    assert before.unit_id != cg
    assert after is not None and after.category == before.category and after.unit_id == cg


def test_location_from_text_when_no_place_is_given(session, demo_model) -> None:
    result = dispatch_service.route(session=session, appeal=RoutingInput(description="蒋村街道" + LAMP))
    assert result.street_id == factories.unit(session, "330106011")
    assert "蒋村" in result.location_reason


def test_a_batch_scored_ahead_routes_as_appeals_scored_one_by_one(session, demo_model, monkeypatch) -> None:
    xixi = factories.unit(session, "330106004")
    texts = [
        LAMP,
        "小区门口的饭店油烟很大，晚上还很吵",
        "孩子入学报名材料不知道怎么交",
        "公交车站搬走了，老人坐车很不方便",
    ]

    def route_all() -> list[Suggestion]:
        return [
            dispatch_service.route(session=session, appeal=RoutingInput(description=t, street_id=xixi))
            for t in texts
        ]

    alone = route_all()
    active = model_cache.active_model(session=session)
    assert active is not None
    asked: list[int] = []
    predict_proba = active[0].predict_proba

    def counting(batch: list[str]) -> list[dict[str, float]]:
        asked.append(len(batch))
        return predict_proba(batch)

    monkeypatch.setattr(active[0], "predict_proba", counting)
    with batch_memo(session):
        dispatch_service.score_ahead(
            session=session, texts=[dispatch_service.routing_text("", t) for t in texts]
        )
        batched = route_all()
    assert asked == [len(texts)]  # one pass for the batch, none per appeal
    for one, other in zip(alone, batched, strict=True):
        assert [(c.category, c.unit_id, c.reasons) for c in one.candidates] == [
            (c.category, c.unit_id, c.reasons) for c in other.candidates
        ]
        assert [c.confidence for c in one.candidates] == pytest.approx(
            [c.confidence for c in other.candidates]
        )
        assert one.auto == other.auto


def test_memoized_lookups_leave_the_batch_rows_pending(session) -> None:
    unit = factories.unit(session, "330106004")
    with batch_memo(session):
        session.add(AuditEntry(actor_kind="system", actor_label="测试", action="test.pending", entity="test"))
        places_service.get_unit(session=session, unit_id=unit)
        assert any(isinstance(obj, AuditEntry) for obj in session.new)


def test_the_citizen_timeline_names_the_unit_and_keeps_the_models_reasons_for_staff(
    session, demo_model
) -> None:
    model_cache.reset_cache()
    active = model_cache.active_model(session=session)
    assert active is not None
    active[0].threshold = 0.0  # the lamp report is dispatched automatically
    appeal_in = AppealCreate(description=LAMP, street_id=factories.unit(session, "330106004"))
    submitted = appeal_service.submit(
        session=session, actor=Actor.citizen(), appeal_in=appeal_in, channel=Channel.web
    )
    assert submitted.state == "dispatched"
    public = appeal_service.track(session=session, tracking_code=submitted.tracking_code)
    step = next(s for s in public.timeline if s.action == "dispatch")
    assert step.message is not None and "由智能派单系统自动分派" in step.message
    assert step.unit_name and step.unit_name in step.message
    assert "文本特征" not in step.message and "权责清单" not in step.message
    decision = appeal_service.suggestions_for(session=session, actor=ADMIN, appeal_id=submitted.id)
    assert any(r.startswith("文本特征") for r in decision[0]["reasons"])


def test_the_appeal_page_says_whether_the_router_dispatched_alone_and_with_which_model(
    client, session, demo_model, make_user
) -> None:
    held = _held_back(session)
    model_cache.reset_cache()  # the demo model's own threshold again
    sure = appeal_service.submit(
        session=session,
        actor=Actor.citizen(),
        appeal_in=AppealCreate(description=LAMP, street_id=factories.unit(session, "330106004")),
        channel=Channel.web,
    )
    assert sure.state != "submitted"  # the demo model is sure of the lamp
    login(client, make_user("admin").username)
    shown = {}
    for appeal_id in (held.id, sure.id):
        page = client.get(f"/staff/appeals/{appeal_id}").text
        meta = page.split('data-testid="decision-meta">', 1)[1].split("</p>", 1)[0]
        assert demo_model.version in meta
        shown[appeal_id] = meta
    assert "受理时把握不足" in shown[held.id] and "自动派单" not in shown[held.id]
    assert "受理时自动派单" in shown[sure.id]
