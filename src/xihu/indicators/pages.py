"""HTML pages of the indicators domain: the list, 填报 (form and Excel), 审核 queue, 考核 ranking, weights."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from xihu.core import clock
from xihu.core.errors import DomainError, Invalid
from xihu.core.security import Actor, can
from xihu.indicators import assessment, reporting
from xihu.indicators import service as indicators_service
from xihu.indicators.enums import AssessedKind, ReportStatus
from xihu.indicators.schemas import ImportResult, ReportCreate, ReportDecision, SchemeUpdate
from xihu.web.deps import get_actor, get_session, verify_csrf_form
from xihu.web.downloads import xlsx_download
from xihu.web.pages import error_text, form_str, get_form, staff_or_redirect
from xihu.web.templating import render

router = APIRouter(include_in_schema=False)


def _this_year() -> int:
    local = clock.local(clock.now())
    assert local is not None
    return local.year


def _default_period() -> str:
    """Last year: annual figures are reported after the year ends."""
    return str(_this_year() - 1)


@router.get("/staff/indicators")
def indicator_list(
    request: Request, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> Response:
    """共富指标: every indicator of the district with target, latest approved value and status."""
    redirect = staff_or_redirect(request, actor, "indicator.view")
    if redirect is not None:
        return redirect
    # the district's indicators are public (GET /api/indicators); the cockpit's area scope does not apply here
    cards = indicators_service.indicator_cards(session=session, actor=Actor.system("指标列表"))
    pending = len(reporting.list_reports(session=session, actor=actor, status=ReportStatus.pending))
    return render(
        request,
        "indicators/list.html",
        actor=actor,
        cards=cards,
        counts=indicators_service.status_counts(cards),
        pending=pending,
    )


def _report_page(
    request: Request, session: Session, actor: Actor, status_code: int = 200, **extra: object
) -> Response:
    context: dict[str, object] = {
        "pairs": reporting.reportable(session=session, actor=actor),
        "mine": reporting.list_reports(session=session, actor=actor, limit=50),
        "period": _default_period(),
        "error": None,
        "ok": None,
        "result": None,
        "form": {},
    }
    context.update(extra)
    return render(request, "indicators/report.html", status_code, actor=actor, **context)


@router.get("/staff/indicators/report")
def report_form(
    request: Request, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> Response:
    """填报: the form for one value, the Excel template and upload, and the unit's submissions."""
    redirect = staff_or_redirect(request, actor, "indicator.report")
    if redirect is not None:
        return redirect
    return _report_page(request, session, actor)


@router.post("/staff/indicators/report", dependencies=[Depends(verify_csrf_form)])
def report_submit(
    request: Request,
    form: FormData = Depends(get_form),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """Submit one value; it waits for 审核."""
    redirect = staff_or_redirect(request, actor, "indicator.report")
    if redirect is not None:
        return redirect
    pair = form_str(form, "pair")
    code, _, unit = pair.partition("|")
    values = {k: form_str(form, k) for k in ("period", "value", "source", "note")}
    try:
        data = ReportCreate(
            indicator_code=code,
            period=values["period"],
            unit_id=int(unit) if unit.isascii() and unit.isdigit() else None,
            value=values["value"],  # type: ignore[arg-type]
            source=values["source"],
            note=values["note"],
        )
        made = reporting.submit_report(session=session, actor=actor, data=data)
    except (DomainError, ValidationError) as exc:
        message, status = error_text(exc)
        return _report_page(request, session, actor, status, error=message, form={"pair": pair, **values})
    return _report_page(
        request, session, actor, ok=f"已提交「{made.indicator_name}」{made.period} 的数值，等待审核"
    )


@router.get("/staff/indicators/template.xlsx")
def report_template(
    request: Request,
    period: str = "",
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """The Excel template of a period, prefilled with what the actor may report."""
    redirect = staff_or_redirect(request, actor, "indicator.report")
    if redirect is not None:
        return redirect
    period = period or _default_period()
    content = reporting.template_xlsx(session=session, actor=actor, period=period)
    return xlsx_download(content, f"指标填报模板_{period}.xlsx")


@router.post("/staff/indicators/import", dependencies=[Depends(verify_csrf_form)])
async def report_import(
    request: Request,
    form: FormData = Depends(get_form),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """Upload a filled template: all rows imported, or none and the errors by row."""
    redirect = staff_or_redirect(request, actor, "indicator.report")
    if redirect is not None:
        return redirect
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _report_page(request, session, actor, 422, error="请选择要上传的 Excel 文件")
    content = await upload.read()
    limit = request.app.state.settings.max_upload_bytes
    try:
        if len(content) > limit:
            raise Invalid("文件过大", english="file too large")
        result: ImportResult = reporting.import_xlsx(session=session, actor=actor, content=content)
    except DomainError as exc:
        return _report_page(request, session, actor, exc.status_code, error=exc.message)
    if result.errors:
        return _report_page(request, session, actor, 422, result=result, error="文件中有错误，未导入任何数据")
    return _report_page(
        request,
        session,
        actor,
        result=result,
        ok=f"已导入 {result.created} 条，等待审核（空白 {result.skipped_blank} 行未导入）",
    )


@router.get("/staff/indicators/review")
def review_queue(
    request: Request, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> Response:
    """审核 queue: pending values, oldest first, and the latest decisions."""
    redirect = staff_or_redirect(request, actor, "indicator.approve")
    if redirect is not None:
        return redirect
    pending = list(
        reversed(reporting.list_reports(session=session, actor=actor, status=ReportStatus.pending))
    )
    decided = [
        r for r in reporting.list_reports(session=session, actor=actor, limit=60) if r.status != "pending"
    ]
    error = request.query_params.get("error")
    return render(
        request, "indicators/review.html", actor=actor, pending=pending, decided=decided[:30], error=error
    )


@router.post("/staff/indicators/review/{report_id}", dependencies=[Depends(verify_csrf_form)])
def review_decide(
    request: Request,
    report_id: int,
    form: FormData = Depends(get_form),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """Approve or reject one pending value."""
    redirect = staff_or_redirect(request, actor, "indicator.approve")
    if redirect is not None:
        return redirect
    decision = ReportDecision(
        approve=form_str(form, "decision") == "approve", reason=form_str(form, "reason")
    )
    try:
        reporting.decide_report(session=session, actor=actor, report_id=report_id, decision=decision)
    except DomainError as exc:
        from urllib.parse import quote

        return RedirectResponse(f"/staff/indicators/review?error={quote(exc.message)}", status_code=303)
    return RedirectResponse("/staff/indicators/review", status_code=303)


# ---------------------------------------------------------------- 考核


def _kind(value: str) -> AssessedKind:
    try:
        return AssessedKind(value)
    except ValueError:
        return AssessedKind.street


@router.get("/staff/assessment")
def assessment_ranking(
    request: Request,
    kind: str = "street",
    period: str = "",
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """考核 ranking of the streets or the departments for a period."""
    redirect = staff_or_redirect(request, actor, "assessment.view")
    if redirect is not None:
        return redirect
    assessed = _kind(kind)
    period = period or str(_this_year())
    rows = assessment.score(session=session, actor=actor, kind=assessed, period=period)
    scheme = assessment.get_scheme(session=session, actor=actor, kind=assessed)
    return render(
        request,
        "indicators/assessment.html",
        actor=actor,
        rows=rows,
        scheme=scheme,
        kind=assessed,
        kinds=list(AssessedKind),
        period=period,
        labels=assessment.WEIGHT_LABELS,
        can_manage=can(actor, "assessment.manage"),
    )


@router.get("/staff/assessment/export.xlsx")
def assessment_export(
    request: Request,
    kind: str = "street",
    period: str = "",
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """The ranking as an Excel file."""
    redirect = staff_or_redirect(request, actor, "assessment.view")
    if redirect is not None:
        return redirect
    assessed = _kind(kind)
    period = period or str(_this_year())
    content = assessment.export_xlsx(session=session, actor=actor, kind=assessed, period=period)
    return xlsx_download(content, f"{assessed.label}考核_{period}.xlsx")


def _weights_page(
    request: Request, session: Session, actor: Actor, status_code: int = 200, **extra: object
) -> Response:
    schemes = {k: assessment.get_scheme(session=session, actor=actor, kind=k) for k in AssessedKind}
    context: dict[str, object] = {
        "schemes": schemes,
        "error": None,
        "ok": None,
        "labels": assessment.WEIGHT_LABELS,
    }
    context.update(extra)
    return render(
        request, "indicators/weights.html", status_code, actor=actor, kinds=list(AssessedKind), **context
    )


@router.get("/staff/assessment/weights")
def weights_form(
    request: Request, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> Response:
    """The 考核 weights of streets and departments (admins)."""
    redirect = staff_or_redirect(request, actor, "assessment.manage")
    if redirect is not None:
        return redirect
    return _weights_page(request, session, actor)


@router.post("/staff/assessment/weights", dependencies=[Depends(verify_csrf_form)])
def weights_save(
    request: Request,
    form: FormData = Depends(get_form),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> Response:
    """Save the weights of one kind of unit (each ≥ 0, sum 100)."""
    redirect = staff_or_redirect(request, actor, "assessment.manage")
    if redirect is not None:
        return redirect
    kind = _kind(form_str(form, "kind"))
    try:
        weights = SchemeUpdate(**{k: form_str(form, k) for k in assessment.WEIGHT_LABELS})  # type: ignore[arg-type]
        assessment.set_scheme(session=session, actor=actor, kind=kind, weights=weights)
    except (DomainError, ValidationError) as exc:
        message, status = error_text(exc)
        return _weights_page(request, session, actor, status, error=f"{kind.label}：{message}")
    return _weights_page(request, session, actor, ok=f"{kind.label}考核权重已保存")
