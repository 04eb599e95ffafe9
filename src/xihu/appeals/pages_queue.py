"""The dispatcher's queue page (派单队列): urgent and longest waiting first, by street, with the router's
suggestions and, after a return, the likeliest category's other units."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from xihu.appeals import service as appeal_service
from xihu.appeals.schemas import DB_INT_MAX, AppealRead
from xihu.core import clock
from xihu.core.errors import Invalid
from xihu.core.security import Actor
from xihu.dispatch import service as dispatch_service
from xihu.places import service as places_service
from xihu.web.deps import get_actor, get_session
from xihu.web.pages import staff_or_redirect
from xihu.web.templating import render

router = APIRouter(include_in_schema=False)

QUEUE_PAGE = 50  # appeals per page of the dispatch queue


def _street_filter(value: str) -> int | None:
    """The queue's street filter: None for all, 0 for appeals whose street is not known, else a unit id."""
    value = value.strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or int(value) > DB_INT_MAX:
        raise Invalid("街道筛选参数无效", english=f"street must be a unit id, got {value!r}")
    return int(value)


# the seeds promise 30 minutes from receipt to a unit at work: a wait longer than this is shown in red
QUEUE_WAIT_WARN_MINUTES = 30


def _waited(since: datetime, now: datetime) -> dict[str, Any]:
    """How long an appeal has waited in the dispatch queue since it came in, and whether that is too long."""
    minutes = max(0, int((now - clock.as_utc(since)).total_seconds() // 60))
    if minutes >= 24 * 60:
        amount = f"{minutes // 1440} 天 {minutes % 1440 // 60} 小时"
    elif minutes >= 60:
        amount = f"{minutes // 60} 小时 {minutes % 60} 分"
    else:
        amount = f"{minutes} 分"
    return {"text": f"已等待 {amount}", "late": minutes > QUEUE_WAIT_WARN_MINUTES}


# after a return, the router's next guess is offered as the one-click choice only when it is this likely: a
# long-shot guess in the big button would be taken for advice
PROMOTE_AFTER_RETURN = 0.1


def after_returns(
    suggestions: list[dict[str, Any]], returns: list[appeal_service.ReturnNote]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The router's candidates, units that returned the appeal marked and moved last; and the one to offer.

    The router guessed before the return: a unit that sent the appeal back is not offered again as the
    suggestion (it stays listed, marked, for when the return itself was wrong).
    """
    returned_by = {r.unit_id for r in returns}
    for candidate in suggestions:
        candidate["returned"] = candidate["unit_id"] in returned_by
    ordered = sorted(suggestions, key=lambda c: c["returned"])
    if not ordered or ordered[0]["returned"]:
        return None, ordered
    if returned_by and ordered[0]["confidence"] < PROMOTE_AFTER_RETURN:
        return None, ordered
    return ordered[0], ordered


@router.get("/staff/dispatch")
def dispatch_queue(
    request: Request,
    page: int = 1,
    street: str = Query(default="", max_length=20),  # the filter form sends "" for all streets
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """派单员's queue: appeals the router was not sure enough about, urgent and longest waiting first, each
    with the router's suggestions; all streets or one (a district may split the queue among dispatchers)."""
    redirect = staff_or_redirect(request, actor, "appeal.dispatch")
    if redirect is not None:
        return redirect
    street_id = _street_filter(street)
    result = appeal_service.awaiting_dispatch(
        session=session, actor=actor, page=page, size=QUEUE_PAGE, street_id=street_id
    )
    waiting = appeal_service.awaiting_by_street(session=session, actor=actor)
    names = places_service.unit_names(session=session, unit_ids=set(waiting) - {0})
    streets = [(sid, names.get(sid, ""), n) for sid, n in sorted(waiting.items()) if sid]
    if 0 in waiting:
        streets.append((0, "街道未识别", waiting[0]))
    returns = appeal_service.returns_of(
        session=session, actor=actor, appeal_ids=[item.id for item in result.items]
    )
    rows = []
    for item in result.items:
        sugg = appeal_service.suggestions_for(session=session, actor=actor, appeal_id=item.id)
        same_category = same_category_others(session, item, sugg, returns.get(item.id, []))
        top, sugg = after_returns(sugg, returns.get(item.id, []))
        rows.append(
            {
                "appeal": item,
                "top": top,
                "others": sugg[1:] if top else sugg,
                "returns": returns.get(item.id, []),
                "same_category": same_category,
            }
        )
    now = clock.now()
    return render(
        request,
        "appeals/dispatch.html",
        actor=actor,
        rows=rows,
        total=result.total,
        result=result,
        pages=max(1, -(-result.total // result.size)),
        street=street_id,
        streets=streets,
        waiting_total=sum(waiting.values()),
        waited={item.id: _waited(item.created_at, now) for item in result.items},
    )


# after a return, this many other units of the likeliest category are offered
SAME_CATEGORY_UNITS = 6


def same_category_others(
    session: Session,
    item: AppealRead,
    suggestions: list[dict[str, Any]],
    returns: list[appeal_service.ReturnNote],
) -> list[dict[str, Any]]:
    """When a unit returned the appeal the router's likeliest category named, the other units the 权责清单
    and the appeal's place offer for that category: the category is usually right and the unit wrong."""
    returned_by = frozenset(r.unit_id for r in returns if r.unit_id is not None)
    if not returned_by or not suggestions:
        return []
    likeliest = max(suggestions, key=lambda c: c["confidence"])
    if likeliest["unit_id"] not in returned_by:
        return []
    offered = {c["unit_id"] for c in suggestions if c["category"] == likeliest["category"]}
    others = dispatch_service.other_units(
        session=session,
        category=likeliest["category"],
        confidence=likeliest["confidence"],
        street_id=item.street_id,
        community_id=item.community_id,
        exclude=returned_by | offered,
    )
    return [c.model_dump() for c in others[:SAME_CATEGORY_UNITS]]
