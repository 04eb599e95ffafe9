"""HTML pages of the 权责清单: list, add, edit, deactivate, history, and 试派单 (admins)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from xihu.core.errors import DomainError
from xihu.core.security import Actor
from xihu.dispatch import responsibility, rule_usage, rules
from xihu.dispatch import service as dispatch_service
from xihu.dispatch.schemas import PreviewIn, RuleCreate, RuleHistoryRead, RuleUpdate
from xihu.places import service as places_service
from xihu.places.enums import PlaceType, UnitKind
from xihu.web.deps import get_actor, get_session, verify_csrf_form
from xihu.web.pages import error_text, form_str, get_form, staff_or_redirect
from xihu.web.templating import render

router = APIRouter(include_in_schema=False)

PAGE = "/staff/dispatch/rules"
TRY_PAGE = PAGE + "/try"
PERMISSION = "dispatch.manage"
TRY_FIELDS = ("description", "title", "area_id", "address", "place_type", "local_hour", "category_hint")
FIELDS = ("category", "keywords", "place_type", "hour_from", "hour_to", "street_id", "target", "unit_id")
FIELD_LABELS = {
    "category": "类别",
    "keywords": "关键词",
    "place_type": "地点类型",
    "hour_from": "开始时刻",
    "hour_to": "结束时刻",
    "street_id": "区域",
    "target": "责任主体",
    "unit_id": "责任单位",
    "active": "有效",
}


def _values(form: FormData) -> dict[str, str]:
    return {name: form_str(form, name) for name in FIELDS}


def _payload(values: dict[str, str]) -> dict[str, Any]:
    """Form strings -> the rule fields; blanks become None."""
    out: dict[str, Any] = {name: (values.get(name) or None) for name in FIELDS}
    out["keywords"] = values.get("keywords", "")
    out["target"] = values.get("target") or "unit"
    return out


def _describe(h: RuleHistoryRead, names: dict[int, str]) -> list[str]:
    """What changed, in words."""

    def show(key: str, value: Any) -> str:
        if value is None or value == [] or value == "":
            return "—"
        if key in ("unit_id", "street_id"):
            return names.get(int(value), str(value))
        if key == "keywords":
            return "、".join(value)
        if key == "place_type":
            return PlaceType(value).label if value in PlaceType._value2member_map_ else str(value)
        if key == "target":
            return responsibility.TARGET_LABELS.get(value, value)
        if key == "active":
            return "是" if value else "否"
        return str(value)

    before, after = h.before or {}, h.after or {}
    keys = [k for k in FIELD_LABELS if k in before or k in after]
    if not before:
        shown = [k for k in keys if after.get(k) not in (None, [], "")]
        return [f"{FIELD_LABELS[k]}：{show(k, after.get(k))}" for k in shown]
    return [
        f"{FIELD_LABELS[k]}：{show(k, before.get(k))} → {show(k, after.get(k))}"
        for k in keys
        if before.get(k) != after.get(k)
    ]


def _areas(session: Session) -> tuple[list[Any], dict[int, list[Any]]]:
    """Streets, and each street's communities/villages (for the area pickers)."""
    streets = places_service.list_units(session=session, kinds=[UnitKind.street])
    communities = places_service.list_units(session=session, kinds=[UnitKind.community, UnitKind.village])
    by_street: dict[int, list[Any]] = {s.id: [] for s in streets}
    for c in communities:
        if c.parent_id in by_street:
            by_street[c.parent_id].append(c)
    return streets, by_street


def _page(
    request: Request,
    session: Session,
    actor: Actor,
    *,
    edit_id: int | None = None,
    values: dict[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    table = responsibility.list_rules(session=session, actor=actor, include_inactive=True)
    changes = responsibility.history(session=session, actor=actor, limit=50)
    streets, by_street = _areas(session)
    departments = places_service.list_units(session=session, kinds=[UnitKind.department])
    ids = {
        int(v)
        for h in changes
        for d in (h.before or {}, h.after or {})
        for k, v in d.items()
        if k in ("unit_id", "street_id") and v
    }
    names = places_service.unit_names(session=session, unit_ids=ids)
    editing = next((r for r in table if r.id == edit_id), None) if edit_id else None
    if values is None and editing is not None:
        values = {
            "category": editing.category,
            "keywords": "，".join(editing.keywords),
            "place_type": editing.place_type or "",
            "hour_from": "" if editing.hour_from is None else str(editing.hour_from),
            "hour_to": "" if editing.hour_to is None else str(editing.hour_to),
            "street_id": str(editing.street_id or ""),
            "target": editing.target,
            "unit_id": str(editing.unit_id or ""),
        }
    return render(
        request,
        "dispatch/rules.html",
        status,
        actor=actor,
        table=table,
        usage=rule_usage.usage(session=session, actor=actor),
        usage_days=rule_usage.DAYS,
        changes=[(h, _describe(h, names)) for h in changes],
        editing=editing,
        values=values or {"target": "unit"},
        error=error,
        done=request.query_params.get("done", ""),
        categories=rules.CATEGORIES,
        place_types=list(PlaceType),
        targets=responsibility.TARGET_LABELS,
        streets=streets,
        communities_by_street=by_street,
        departments=departments,
        page=PAGE,
    )


@router.get(PAGE)
def rules_page(
    request: Request,
    edit: int | None = None,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """权责清单: every rule with its conditions and responsible unit, a form to add or edit, the history."""
    redirect = staff_or_redirect(request, actor, PERMISSION)
    if redirect is not None:
        return redirect
    return _page(request, session, actor, edit_id=edit)


def _messages(exc: ValidationError) -> list[str]:
    # rule-level checks have an empty location, which the shared translator does not expect
    parts = []
    for err in exc.errors():
        field = FIELD_LABELS.get(str(err["loc"][-1]), "") if err.get("loc") else ""
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        parts.append(f"{field}：{msg}" if field else msg)
    return parts


def _failed(
    request: Request, session: Session, actor: Actor, exc: Exception, what: str, **kw: Any
) -> Response:
    session.rollback()
    if isinstance(exc, ValidationError):
        message, status = "；".join(_messages(exc)) or "输入有误", 422
    else:
        message, status = error_text(exc)
    return _page(request, session, actor, error=f"{what}未成功：{message}", status=status, **kw)


@router.get(TRY_PAGE)
def try_page(
    request: Request,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """试派单: type an appeal and see which category, rule and unit routing would choose; nothing is saved."""
    redirect = staff_or_redirect(request, actor, PERMISSION)
    if redirect is not None:
        return redirect
    values = {name: request.query_params.get(name, "").strip() for name in TRY_FIELDS}
    streets, by_street = _areas(session)
    result, error, status = None, None, 200
    if values["description"]:
        area = int(values["area_id"]) if values["area_id"].isascii() and values["area_id"].isdigit() else None
        parent = {c.id: s for s, cs in by_street.items() for c in cs}
        try:
            ask = PreviewIn.model_validate(
                {
                    "description": values["description"],
                    "title": values["title"],
                    "street_id": parent.get(area, area) if area else None,
                    "community_id": area if area in parent else None,
                    "address": values["address"],
                    "place_type": values["place_type"] or None,
                    "category_hint": values["category_hint"] or None,
                    "local_hour": values["local_hour"] or None,
                }
            )
            result = dispatch_service.preview(
                session=session, actor=actor, appeal=ask, local_hour=ask.local_hour
            )
        except ValidationError as exc:
            error, status = error_text(exc)
    return render(
        request,
        "dispatch/try.html",
        status,
        actor=actor,
        values=values,
        result=result,
        error=error,
        categories=rules.CATEGORIES,
        place_types=list(PlaceType),
        streets=streets,
        communities_by_street=by_street,
        page=PAGE,
    )


@router.post(PAGE, dependencies=[Depends(verify_csrf_form)])
def create(
    request: Request,
    form: FormData = Depends(get_form),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """Add a rule from the form."""
    redirect = staff_or_redirect(request, actor, PERMISSION)
    if redirect is not None:
        return redirect
    values = _values(form)
    try:
        rule = responsibility.create_rule(
            session=session, actor=actor, rule_in=RuleCreate.model_validate(_payload(values))
        )
    except (ValidationError, DomainError) as exc:
        return _failed(request, session, actor, exc, "新增规则", values=values)
    return RedirectResponse(f"{PAGE}?done=created-{rule.id}", status_code=303)


@router.post(PAGE + "/{rule_id}", dependencies=[Depends(verify_csrf_form)])
def update(
    rule_id: int,
    request: Request,
    form: FormData = Depends(get_form),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """Save an edited rule (every field of the form replaces the rule's)."""
    redirect = staff_or_redirect(request, actor, PERMISSION)
    if redirect is not None:
        return redirect
    values = _values(form)
    try:
        responsibility.update_rule(
            session=session, actor=actor, rule_id=rule_id, rule_in=RuleUpdate.model_validate(_payload(values))
        )
    except (ValidationError, DomainError) as exc:
        return _failed(request, session, actor, exc, "修改规则", values=values, edit_id=rule_id)
    return RedirectResponse(f"{PAGE}?done=updated-{rule_id}", status_code=303)


@router.post(PAGE + "/{rule_id}/deactivate", dependencies=[Depends(verify_csrf_form)])
def deactivate(
    rule_id: int,
    request: Request,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """Stop using a rule."""
    redirect = staff_or_redirect(request, actor, PERMISSION)
    if redirect is not None:
        return redirect
    try:
        responsibility.deactivate_rule(session=session, actor=actor, rule_id=rule_id)
    except DomainError as exc:
        return _failed(request, session, actor, exc, "停用规则")
    return RedirectResponse(f"{PAGE}?done=deactivated-{rule_id}", status_code=303)


@router.post(PAGE + "/{rule_id}/activate", dependencies=[Depends(verify_csrf_form)])
def activate(
    rule_id: int,
    request: Request,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """Use a deactivated rule again."""
    redirect = staff_or_redirect(request, actor, PERMISSION)
    if redirect is not None:
        return redirect
    try:
        responsibility.update_rule(
            session=session, actor=actor, rule_id=rule_id, rule_in=RuleUpdate(active=True)
        )
    except DomainError as exc:
        return _failed(request, session, actor, exc, "恢复规则")
    return RedirectResponse(f"{PAGE}?done=activated-{rule_id}", status_code=303)
