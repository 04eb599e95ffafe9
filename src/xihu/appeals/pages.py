"""HTML pages of the appeals domain: the citizen's report and tracking pages, the staff workbench."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from xihu.appeals import duplicates, importer
from xihu.appeals import photos as photo_store
from xihu.appeals import service as appeal_service
from xihu.appeals.enums import OPEN_STATES, Action, Channel, Priority, Rating, State
from xihu.appeals.pages_queue import after_returns, same_category_others
from xihu.appeals.schemas import (
    AppealCreate,
    CompleteIn,
    DecideExtensionIn,
    DispatchIn,
    ExtensionIn,
    MergeIn,
    RateIn,
    ReasonIn,
    TransferIn,
)
from xihu.core import clock
from xihu.core.errors import DomainError, NotFound
from xihu.core.security import Actor
from xihu.dispatch import service as dispatch_service
from xihu.places import service as places_service
from xihu.places.enums import UnitKind
from xihu.places.schemas import PlaceDetail
from xihu.web.deps import get_actor, get_session, verify_csrf_form, wake_background_work
from xihu.web.pages import error_text, form_str, get_form, safe_next, staff_or_redirect
from xihu.web.templating import render

router = APIRouter(include_in_schema=False)

FORM_FIELDS = (
    "description",
    "title",
    "category_hint",
    "street_id",
    "community_id",
    "address",
    "citizen_name",
    "citizen_phone",
    "priority",
    "lat",
    "lon",
)
LEAD_ONLY = {"sign", "start", "return", "transfer", "complete", "request_extension"}


# ---------------------------------------------------------------- shared helpers


def _areas(session: Session) -> dict[str, Any]:
    streets = places_service.list_units(session=session, kinds=[UnitKind.street])
    communities = places_service.list_units(session=session, kinds=[UnitKind.community, UnitKind.village])
    by_street: dict[int, list[Any]] = {s.id: [] for s in streets}
    for c in communities:
        if c.parent_id in by_street:
            by_street[c.parent_id].append(c)
    return {"streets": streets, "communities_by_street": by_street}


def _unit_groups(session: Session) -> list[tuple[str, list[Any]]]:
    """Units an appeal may be dispatched to, grouped for a <select>."""
    areas = _areas(session)
    groups: list[tuple[str, list[Any]]] = [
        ("区级部门", places_service.list_units(session=session, kinds=[UnitKind.department])),
        ("街道/镇", areas["streets"]),
    ]
    for street in areas["streets"]:
        groups.append((f"{street.name} · 社区/村", areas["communities_by_street"][street.id]))
    return groups


def _opt_int(value: str) -> str | None:
    return value or None


def _form_values(form: FormData) -> dict[str, str]:
    return {name: form_str(form, name) for name in FORM_FIELDS}


def _uploads(form: FormData) -> list[photo_store.Upload]:
    out = []
    for item in form.getlist("photos"):
        if isinstance(item, UploadFile) and item.filename:
            data = item.file.read()
            if data:
                out.append(photo_store.Upload(item.filename, data))
    return out


def _appeal_in(values: dict[str, str], place_code: str | None) -> AppealCreate:
    return AppealCreate(
        description=values["description"],
        title=values["title"] or None,
        category_hint=values["category_hint"] or None,
        place_code=place_code,
        street_id=None if place_code else _opt_int(values["street_id"]),  # type: ignore[arg-type]
        community_id=None if place_code else _opt_int(values["community_id"]),  # type: ignore[arg-type]
        address=values["address"],
        lat=values["lat"] or None,  # type: ignore[arg-type]
        lon=values["lon"] or None,  # type: ignore[arg-type]
        citizen_name=values["citizen_name"] or None,
        citizen_phone=values["citizen_phone"] or None,
        priority=values["priority"] or Priority.normal.value,  # type: ignore[arg-type]
    )


def _report_page(
    request: Request,
    session: Session,
    *,
    values: dict[str, str] | None = None,
    place: PlaceDetail | None = None,
    error: str | None = None,
    status: int = 200,
    template: str = "appeals/report.html",
    **extra: Any,
) -> Response:
    return render(
        request,
        template,
        status,
        values=values or {},
        place=place,
        error=error,
        categories=dispatch_service.categories(),
        priorities=list(Priority),
        idempotency_key=secrets.token_urlsafe(18),
        **_areas(session),
        **extra,
    )


def _due(next_due_at: datetime | None, now: datetime) -> dict[str, Any] | None:
    """The SLA countdown of a row: minutes left, or minutes over."""
    if next_due_at is None:
        return None
    seconds = (clock.as_utc(next_due_at) - now).total_seconds()
    minutes = int(abs(seconds) // 60)
    if minutes >= 120:
        amount = f"{minutes // 60} 小时 {minutes % 60} 分"
    elif minutes == 0:
        amount = f"{int(abs(seconds))} 秒"
    else:
        amount = f"{minutes} 分"
    over = seconds < 0
    return {"over": over, "text": ("已超时 " if over else "剩余 ") + amount, "iso": clock.as_utc(next_due_at)}


# ---------------------------------------------------------------- citizen pages


@router.get("/report")
def report_form(request: Request, session: Session = Depends(get_session)) -> Response:
    """我要反映: the citizen's report form."""
    return _report_page(request, session)


def _submit_report(
    request: Request, form: FormData, session: Session, actor: Actor, place: PlaceDetail | None
) -> Response:
    values = _form_values(form)
    channel = Channel.qr if place else Channel.web
    try:
        uploads = _uploads(form)
        result = appeal_service.submit(
            session=session,
            actor=actor,
            appeal_in=_appeal_in(values, place.code if place else None),
            channel=channel,
            idempotency_key=form_str(form, "idempotency_key") or None,
            uploads=uploads,
        )
    except (ValidationError, DomainError) as exc:
        session.rollback()
        message, status = error_text(exc)
        if status == 422 or isinstance(exc, ValidationError):
            status = 422
        if form.getlist("photos") and any(
            isinstance(p, UploadFile) and p.filename for p in form.getlist("photos")
        ):
            message += "（出于安全原因，请重新选择照片）"
        return _report_page(request, session, values=values, place=place, error=message, status=status)
    return RedirectResponse(f"/t/{result.tracking_code}", status_code=303)


@router.post("/report", dependencies=[Depends(verify_csrf_form)])
def report_submit(
    request: Request,
    background: BackgroundTasks,
    form: FormData = Depends(get_form),
    session: Session = Depends(get_session),
    actor: Actor = Depends(get_actor),
) -> Response:
    """Accept the citizen's report and show its tracking page."""
    place = None
    code = form_str(form, "place_code")
    if code:
        place = places_service.get_place_by_code(session=session, code=code)
    return _submit_report(request, form, session, actor, place)


@router.get("/r/{place_code}")
def qr_landing(place_code: str, request: Request, session: Session = Depends(get_session)) -> Response:
    """Where a 西湖码 leads: the report form for that place."""
    place = places_service.get_place_by_code(session=session, code=place_code)
    return _report_page(request, session, place=place)


@router.get("/t")
def track_lookup(request: Request, code: str = "") -> Response:
    """查询进度: enter a tracking code."""
    code = code.strip().upper()
    if code:
        return RedirectResponse(f"/t/{code}", status_code=303)
    return render(request, "appeals/lookup.html")


def _track_page(
    request: Request, session: Session, code: str, *, error: str | None = None, status: int = 200
) -> Response:
    appeal = appeal_service.track(session=session, tracking_code=code)
    live = State(appeal.state) in OPEN_STATES
    return render(
        request,
        "appeals/track.html",
        status,
        appeal=appeal,
        error=error,
        live=live,
        ratings=list(Rating),
        steps=list(reversed(appeal.timeline)),
    )


@router.get("/t/{code}")
def track(code: str, request: Request, session: Session = Depends(get_session)) -> Response:
    """The public progress page of an appeal (personal data masked)."""
    return _track_page(request, session, code)


@router.post("/t/{code}/rate", dependencies=[Depends(verify_csrf_form)])
def rate(
    code: str, request: Request, form: FormData = Depends(get_form), session: Session = Depends(get_session)
) -> Response:
    """The citizen's rating of the result."""
    try:
        data = RateIn(rating=form_str(form, "rating"), comment=form_str(form, "comment"))  # type: ignore[arg-type]
        appeal_service.rate(session=session, tracking_code=code, data=data)
    except (ValidationError, DomainError) as exc:
        session.rollback()
        message, status = error_text(exc)
        if isinstance(exc, ValidationError):
            message = "请选择评价：满意、基本满意或不满意"
        return _track_page(request, session, code, error=message, status=status)
    return RedirectResponse(f"/t/{code}", status_code=303)


@router.post("/t/{code}/reopen", dependencies=[Depends(verify_csrf_form)])
def reopen(
    code: str, request: Request, form: FormData = Depends(get_form), session: Session = Depends(get_session)
) -> Response:
    """The citizen asks once for the appeal to be handled again."""
    try:
        data = ReasonIn(reason=form_str(form, "reason"))
        appeal_service.reopen(session=session, tracking_code=code, reason=data.reason)
    except (ValidationError, DomainError) as exc:
        session.rollback()
        message, status = error_text(exc)
        return _track_page(request, session, code, error=message, status=status)
    return RedirectResponse(f"/t/{code}", status_code=303)


# ---------------------------------------------------------------- staff workbench


# An inbox counts its appeals this far and pages through as many; past it, the search box narrows them down.
INBOX_COUNT_LIMIT = 1000


@router.get("/staff")
def inbox(
    request: Request,
    state: str = "open",
    overdue: bool = False,
    flagged: bool = False,
    q: str = "",
    page: int = 1,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """The unit's inbox: what to sign, handle and finish, with the SLA countdown."""
    redirect = staff_or_redirect(request, actor, "appeal.read")
    if redirect is not None:
        return redirect
    return _inbox_page(request, session, actor, state=state, overdue=overdue, flagged=flagged, q=q, page=page)


def _inbox_page(
    request: Request,
    session: Session,
    actor: Actor,
    *,
    state: str = "open",
    overdue: bool = False,
    flagged: bool = False,
    q: str = "",
    page: int = 1,
    results: list[dict[str, Any]] | None = None,
) -> Response:
    if state == "open":
        states: list[State] | None = sorted(OPEN_STATES, key=list(State).index)
    elif state in State.__members__:
        states = [State(state)]
    else:
        states, state = None, ""
    result = appeal_service.search(
        session=session,
        actor=actor,
        states=states,
        q=q[:50] or None,
        overdue=overdue,
        flagged=flagged,
        page=max(1, min(page, INBOX_COUNT_LIMIT // 20)),
        size=20,
        count_up_to=INBOX_COUNT_LIMIT,
    )
    now = clock.now()
    due = {a.id: _due(a.next_due_at, now) for a in result.items}
    pages = max(1, (result.total + result.size - 1) // result.size)
    return render(
        request,
        "appeals/inbox.html",
        actor=actor,
        result=result,
        due=due,
        pages=pages,
        filters={"state": state, "overdue": overdue, "flagged": flagged, "q": q},
        states=list(State),
        results=results,
        can_batch=bool({"appeal.sign", "appeal.start"} & actor.permissions),
    )


@router.post("/staff/batch", dependencies=[Depends(verify_csrf_form)])
def batch(
    request: Request,
    background: BackgroundTasks,
    form: FormData = Depends(get_form),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """Sign or start the ticked appeals; each row succeeds or fails on its own."""
    redirect = staff_or_redirect(request, actor, "appeal.read")
    if redirect is not None:
        return redirect
    action = form_str(form, "action")
    ids = [int(v) for v in form.getlist("ids") if isinstance(v, str) and v.isascii() and v.isdigit()]
    if action not in ("sign", "start") or not ids:
        results = [{"id": 0, "ok": False, "error": "请先勾选诉求，再选择批量签收或批量开始处置"}]
    else:
        results = appeal_service.batch(session=session, actor=actor, ids=ids[:100], action=action)
    return _inbox_page(request, session, actor, results=results)


def _detail_page(
    request: Request,
    session: Session,
    actor: Actor,
    appeal_id: int,
    *,
    error: str | None = None,
    status: int = 200,
    values: dict[str, str] | None = None,
) -> Response:
    appeal = appeal_service.read(session=session, actor=actor, appeal_id=appeal_id)
    returns = appeal_service.returns_of(session=session, actor=actor, appeal_ids=[appeal_id])
    decision = appeal_service.routing_decision(session=session, actor=actor, appeal_id=appeal_id)
    candidates = [c.model_dump() for c in decision.candidates] if decision else []
    same_category = same_category_others(session, appeal, candidates, returns.get(appeal_id, []))
    suggested, suggestions = after_returns(candidates, returns.get(appeal_id, []))
    similar = duplicates.similar_to_appeal(session=session, actor=actor, appeal_id=appeal_id)
    actions = [a for a in appeal.allowed_actions if f"appeal.{a}" in actor.permissions]
    if actor.unit_scoped and actor.unit_id != appeal.lead_unit_id:
        actions = [a for a in actions if a not in LEAD_ONLY]
    pending = appeal.pending_extension_hours is not None
    if "decide_extension" in actions and not pending:
        actions.remove("decide_extension")
    if "request_extension" in actions and pending:
        actions.remove("request_extension")
    now = clock.now()
    return render(
        request,
        "appeals/detail.html",
        status,
        actor=actor,
        appeal=appeal,
        suggestions=suggestions,
        suggested=suggested,
        same_category=same_category,
        decision=decision,
        similar=similar,
        actions=actions,
        due=_due(appeal.next_due_at, now),
        unit_groups=_unit_groups(session) if {"dispatch", "transfer"} & set(actions) else [],
        categories=dispatch_service.categories(),
        error=error,
        values=values or {},
        action_labels={a.value: a.label for a in Action},
    )


@router.get("/staff/appeals/{appeal_id}")
def detail(
    appeal_id: int,
    request: Request,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """One appeal: every field, the clocks, the full timeline, routing suggestions and the action forms."""
    redirect = staff_or_redirect(request, actor, "appeal.read")
    if redirect is not None:
        return redirect
    return _detail_page(request, session, actor, appeal_id)


def _ints(form: FormData, name: str) -> list[int]:
    return [int(v) for v in form.getlist(name) if isinstance(v, str) and v.isascii() and v.isdigit()]


def _action_call(action: str, form: FormData) -> Callable[..., Any]:
    """Build the service call for an action from the form (validation errors raise here)."""
    f = lambda name: form_str(form, name)  # noqa: E731
    if action == "dispatch":
        data = DispatchIn(
            unit_id=f("unit_id") or None,  # type: ignore[arg-type]
            co_unit_ids=_ints(form, "co_unit_ids"),
            category=f("category") or None,
            message=f("message"),
        )
        return lambda **kw: appeal_service.dispatch(data=data, **kw)
    if action in ("sign", "start"):
        fn = appeal_service.sign if action == "sign" else appeal_service.start
        return lambda **kw: fn(message=MessageText(f("message")), **kw)
    if action == "return":
        reason = ReasonIn(reason=f("reason")).reason
        return lambda **kw: appeal_service.return_to_dispatcher(reason=reason, **kw)
    if action == "transfer":
        tdata = TransferIn(unit_id=f("unit_id") or None, reason=f("reason"))  # type: ignore[arg-type]
        return lambda **kw: appeal_service.transfer(data=tdata, **kw)
    if action == "assist":
        return lambda **kw: appeal_service.assist(message=MessageText(f("message")), **kw)
    if action in ("request_extension", "extension"):
        edata = ExtensionIn(hours=f("hours") or None, reason=f("reason"))  # type: ignore[arg-type]
        return lambda **kw: appeal_service.request_extension(data=edata, **kw)
    if action in ("decide_extension", "extension_decide"):
        ddata = DecideExtensionIn(approve=f("approve") == "1", note=f("note"))
        return lambda **kw: appeal_service.decide_extension(data=ddata, **kw)
    if action == "supervise":
        sreason = ReasonIn(reason=f("reason")).reason
        return lambda **kw: appeal_service.supervise(reason=sreason, **kw)
    if action == "complete":
        cdata = CompleteIn(reply=f("reply"))
        return lambda **kw: appeal_service.complete(data=cdata, **kw)
    if action == "close":
        return lambda **kw: appeal_service.close(reason=MessageText(f("message")), **kw)
    if action == "merge":
        mdata = MergeIn(into_tracking_code=f("into_tracking_code"))
        return lambda **kw: appeal_service.merge(data=mdata, **kw)
    raise NotFound("没有这个操作", english=f"unknown action {action}")


def MessageText(value: str) -> str:  # noqa: N802 - reads like a schema at the call sites
    """A free-text message of at most 500 characters (as MessageIn allows)."""
    if len(value) > 500:
        from xihu.core.errors import Invalid

        raise Invalid("意见不能超过 500 个字", english="message too long")
    return value


@router.post("/staff/appeals/{appeal_id}/{action}", dependencies=[Depends(verify_csrf_form)])
def act(
    appeal_id: int,
    action: str,
    request: Request,
    background: BackgroundTasks,
    form: FormData = Depends(get_form),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """One lifecycle action from the detail page (or the dispatch queue); errors are shown on the page."""
    redirect = staff_or_redirect(request, actor)
    if redirect is not None:
        return redirect
    target = safe_next(form_str(form, "next"), f"/staff/appeals/{appeal_id}")
    try:
        call = _action_call(action, form)
        call(session=session, actor=actor, appeal_id=appeal_id)
    except (ValidationError, DomainError) as exc:
        if isinstance(exc, NotFound) and exc.english.startswith("unknown action"):
            raise
        session.rollback()
        message, status = error_text(exc)
        label = Action(action).label if action in Action._value2member_map_ else action
        return _detail_page(
            request,
            session,
            actor,
            appeal_id,
            error=f"「{label}」未成功：{message}",
            status=status,
            values={k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"},
        )
    if action in ("return", "transfer") and actor.unit_scoped and target.startswith("/staff/appeals/"):
        target = "/staff"  # the appeal has left this unit's scope
    return RedirectResponse(target, status_code=303)


# ---------------------------------------------------------------- hotline intake and import


@router.get("/staff/hotline")
def hotline_form(
    request: Request, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> Response:
    """受理员's form for an appeal taken by phone."""
    redirect = staff_or_redirect(request, actor, "appeal.create")
    if redirect is not None:
        return redirect
    return _report_page(request, session, template="appeals/hotline.html", actor=actor, done=None)


@router.post("/staff/hotline", dependencies=[Depends(verify_csrf_form)])
def hotline_submit(
    request: Request,
    background: BackgroundTasks,
    form: FormData = Depends(get_form),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """Record a phone appeal and show the tracking code to read to the caller."""
    redirect = staff_or_redirect(request, actor, "appeal.create")
    if redirect is not None:
        return redirect
    values = _form_values(form)
    try:
        result = appeal_service.submit(
            session=session,
            actor=actor,
            appeal_in=_appeal_in(values, None),
            channel=Channel.hotline,
            idempotency_key=form_str(form, "idempotency_key") or None,
        )
    except (ValidationError, DomainError) as exc:
        session.rollback()
        message, status = error_text(exc)
        return _report_page(
            request,
            session,
            template="appeals/hotline.html",
            values=values,
            error=message,
            status=422 if isinstance(exc, ValidationError) else status,
            actor=actor,
            done=None,
        )
    return _report_page(request, session, template="appeals/hotline.html", actor=actor, done=result)


@router.get("/staff/import")
def import_form(request: Request, actor: Actor = Depends(get_actor)) -> Response:
    """Upload a 12345 export; progress and row errors are shown as the import runs."""
    redirect = staff_or_redirect(request, actor, "appeal.import")
    if redirect is not None:
        return redirect
    return render(request, "appeals/import.html", actor=actor, job=None, error=None)


@router.post("/staff/import", dependencies=[Depends(verify_csrf_form)])
def import_upload(
    request: Request,
    background: BackgroundTasks,
    form: FormData = Depends(get_form),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """The no-JavaScript path: the file is posted as a form; the page then polls the job."""
    redirect = staff_or_redirect(request, actor, "appeal.import")
    if redirect is not None:
        return redirect
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return render(request, "appeals/import.html", 422, actor=actor, job=None, error="请选择要导入的文件")
    settings = request.app.state.settings
    try:
        job = importer.create_job(
            session=session,
            actor=actor,
            filename=upload.filename,
            data=upload.file.read(),
            data_dir=settings.data_dir,
        )
    except DomainError as exc:
        session.rollback()
        return render(
            request, "appeals/import.html", exc.status_code, actor=actor, job=None, error=exc.message
        )
    wake_background_work(request, background)
    return render(request, "appeals/import.html", 202, actor=actor, job=job, error=None)


@router.get("/staff/import/template.csv")
def import_template() -> Response:
    """The CSV template with the accepted column names and one example row."""
    return Response(
        importer.template_csv(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="12345-import-template.csv"'},
    )
