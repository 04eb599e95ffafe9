"""填报 and 审核: a unit's staff submit the value of an indicator for a period, an approver accepts or
rejects it, and only accepted values become observations that count for progress. Every step is kept and
audited.

The Excel template lists the (indicator, unit) pairs the actor may report for a period; an upload is checked
row by row and imported all or nothing: one bad row imports nothing, and every bad row is reported with its
row number in the sheet."""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from xihu.core import audit, clock
from xihu.core.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from xihu.core.security import Actor, authorize, can
from xihu.indicators.enums import Level, ReportStatus
from xihu.indicators.models import Indicator, IndicatorReport, Observation
from xihu.indicators.schemas import (
    PERIOD_PATTERN,
    ImportResult,
    Reportable,
    ReportCreate,
    ReportDecision,
    ReportRead,
    RowError,
)
from xihu.places import service as places_service
from xihu.places.enums import UnitKind
from xihu.places.schemas import UnitRead

TEMPLATE_COLUMNS = (
    "指标代码",
    "指标名称",
    "计量单位",
    "统计期",
    "填报单位代码",
    "填报单位",
    "数值",
    "数据来源",
    "备注",
)
MAX_ROWS = 2000
LEVEL_LABELS = {"district": "区", "street": "街道", "community": "社区"}
_PERIOD = re.compile(PERIOD_PATTERN)

LEVEL_OF_KIND = {
    UnitKind.district.value: Level.district,
    UnitKind.street.value: Level.street,
    UnitKind.community.value: Level.community,
    UnitKind.village.value: Level.community,
}


def levels_of(indicator: Indicator) -> set[str]:
    """The levels an indicator exists at."""
    return {p.strip() for p in indicator.levels.split(",") if p.strip()}


def _district(session: Session) -> UnitRead:
    units = places_service.list_units(session=session, kinds=[UnitKind.district])
    if not units:
        raise NotFound("未找到区级单位", english="district unit missing")
    return units[0]


def _indicator_by_code(session: Session, code: str) -> Indicator:
    found = session.scalar(select(Indicator).where(Indicator.code == code.strip()))
    if found is None:
        raise NotFound(f"指标代码「{code}」不存在", english=f"indicator {code} not found")
    return found


def _target_unit(session: Session, unit_id: int | None) -> UnitRead | None:
    """The unit a value is for (None: the whole district; the district unit's id means the same)."""
    if unit_id is None:
        return None
    unit = places_service.get_unit(session=session, unit_id=unit_id)
    return None if unit.kind == UnitKind.district.value else unit


def check_may_report(session: Session, actor: Actor, indicator: Indicator, unit: UnitRead | None) -> None:
    """Raise unless the actor may report this indicator for this unit (None: the district figure).

    A district figure is reported by the indicator's owning department; a street's or a community's figure by
    that unit's own staff, and only where the indicator exists at that level. Admins may report any."""
    authorize(actor, "indicator.report")
    if unit is None:
        level = Level.district
    else:
        level = LEVEL_OF_KIND.get(unit.kind)  # type: ignore[assignment]
        if level is None:
            raise Invalid(
                f"「{unit.name}」不是区、街道或社区，不能填报指标",
                english="values are reported for the district, a street or a community",
            )
    if level.value not in levels_of(indicator):
        raise Invalid(
            f"指标「{indicator.name}」不在{LEVEL_LABELS[level.value]}层级统计",
            english=f"indicator {indicator.code} is not measured at {level.value} level",
        )
    if can(actor, "indicator.report_any"):
        return
    if unit is None:
        own = places_service.get_unit(session=session, unit_id=actor.unit_id) if actor.unit_id else None
        if own is None or indicator.owner not in (own.name, own.short_name):
            raise Forbidden(
                f"区级数值由责任单位「{indicator.owner}」填报", english="district values come from the owner"
            )
        return
    if actor.unit_id != unit.id:
        raise Forbidden("只能填报本单位的指标数据", english="staff report only for their own unit")


def _read(session: Session, report: IndicatorReport) -> ReportRead:
    indicator = session.get(Indicator, report.indicator_id)
    assert indicator is not None
    names = places_service.unit_names(session=session, unit_ids={report.unit_id} if report.unit_id else set())
    return ReportRead(
        id=report.id,
        indicator_id=report.indicator_id,
        indicator_code=indicator.code,
        indicator_name=indicator.name,
        indicator_unit=indicator.unit,
        period=report.period,
        unit_id=report.unit_id,
        unit_name=names.get(report.unit_id, "") if report.unit_id else "全区",
        value=report.value,
        source=report.source,
        note=report.note,
        status=report.status,
        status_label=ReportStatus(report.status).label,
        channel=report.channel,
        submitted_by_label=report.submitted_by_label,
        submitted_at=report.submitted_at,
        decided_by_label=report.decided_by_label,
        decided_at=report.decided_at,
        decision_reason=report.decision_reason,
    )


def _pending_exists(session: Session, indicator_id: int, period: str, unit_id: int | None) -> bool:
    stmt = select(IndicatorReport.id).where(
        IndicatorReport.indicator_id == indicator_id,
        IndicatorReport.period == period,
        IndicatorReport.status == ReportStatus.pending.value,
        IndicatorReport.unit_id.is_(None) if unit_id is None else IndicatorReport.unit_id == unit_id,
    )
    return session.scalar(stmt.limit(1)) is not None


def _create(
    session: Session,
    actor: Actor,
    indicator: Indicator,
    unit: UnitRead | None,
    data: ReportCreate,
    channel: str,
) -> IndicatorReport:
    unit_id = unit.id if unit else None
    if _pending_exists(session, indicator.id, data.period, unit_id):
        raise Conflict(
            f"「{indicator.name}」{data.period} 已有待审核的填报，请等待审核后再报",
            english="a report for this indicator, period and unit is already pending",
        )
    report = IndicatorReport(
        indicator_id=indicator.id,
        period=data.period,
        unit_id=unit_id,
        value=data.value,
        source=data.source.strip(),
        note=data.note.strip(),
        status=ReportStatus.pending.value,
        channel=channel,
        submitted_by_id=actor.user_id,
        submitted_by_label=actor.label[:64],
        submitted_at=clock.now(),
    )
    session.add(report)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="indicator.report",
        entity="indicator_report",
        entity_id=report.id,
        to_state=ReportStatus.pending.value,
        detail={"indicator": indicator.code, "period": data.period, "unit_id": unit_id, "value": data.value},
    )
    return report


def submit_report(*, session: Session, actor: Actor, data: ReportCreate, channel: str = "form") -> ReportRead:
    """填报: submit a value for (indicator, period, unit); it waits for 审核 before it counts."""
    authorize(actor, "indicator.report")
    indicator = _indicator_by_code(session, data.indicator_code)
    unit = _target_unit(session, data.unit_id)
    check_may_report(session, actor, indicator, unit)
    return _read(session, _create(session, actor, indicator, unit, data, channel))


def decide_report(*, session: Session, actor: Actor, report_id: int, decision: ReportDecision) -> ReportRead:
    """审核: approve a pending value (it becomes the observation of its period and unit) or reject it."""
    authorize(actor, "indicator.approve")
    report = session.get(IndicatorReport, report_id)
    if report is None:
        raise NotFound("填报记录不存在", english="report not found")
    if report.status != ReportStatus.pending.value:
        raise Conflict(
            f"该填报已{ReportStatus(report.status).label}，不能重复审核", english="report already decided"
        )
    if actor.user_id is not None and report.submitted_by_id == actor.user_id:
        raise Forbidden("不能审核自己填报的数据", english="approver must differ from the reporter")
    reason = decision.reason.strip()
    if not decision.approve and not reason:
        raise Invalid("退回时请填写原因", english="a rejection needs a reason")
    report.status = (ReportStatus.approved if decision.approve else ReportStatus.rejected).value
    report.decided_by_id = actor.user_id
    report.decided_by_label = actor.label[:64]
    report.decided_at = clock.now()
    report.decision_reason = reason
    detail: dict[str, object] = {"value": report.value, "period": report.period, "unit_id": report.unit_id}
    if decision.approve:
        obs = session.scalar(
            select(Observation).where(
                Observation.indicator_id == report.indicator_id,
                Observation.period == report.period,
                Observation.unit_id.is_(None)
                if report.unit_id is None
                else Observation.unit_id == report.unit_id,
            )
        )
        source = report.source + (f" (填报 #{report.id}，{report.submitted_by_label})")
        if obs is None:
            obs = Observation(
                indicator_id=report.indicator_id,
                period=report.period,
                unit_id=report.unit_id,
                value=report.value,
                source=source,
                status="approved",
                created_at=clock.now(),
            )
            session.add(obs)
        else:
            # the earlier figure stays in the audit row and in the report it came from
            detail["previous_value"] = obs.value
            detail["previous_source"] = obs.source
            obs.value, obs.source, obs.status = report.value, source, "approved"
        session.flush()
        report.observation_id = obs.id
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="indicator.approve" if decision.approve else "indicator.reject",
        entity="indicator_report",
        entity_id=report.id,
        from_state=ReportStatus.pending.value,
        to_state=report.status,
        reason=reason or None,
        detail=detail,
    )
    return _read(session, report)


def list_reports(
    *, session: Session, actor: Actor, status: ReportStatus | None = None, limit: int = 200
) -> list[ReportRead]:
    """Submissions, newest first: approvers see all, a unit's staff their unit's and their own."""
    authorize(actor, "indicator.view")
    stmt = select(IndicatorReport)
    if status is not None:
        stmt = stmt.where(IndicatorReport.status == status.value)
    if not can(actor, "indicator.approve"):
        own = IndicatorReport.submitted_by_id == actor.user_id
        stmt = stmt.where(own | (IndicatorReport.unit_id == actor.unit_id) if actor.unit_id else own)
    stmt = stmt.order_by(IndicatorReport.id.desc()).limit(limit)
    return [_read(session, r) for r in session.scalars(stmt)]


def report_history(
    *, session: Session, actor: Actor, indicator_code: str, unit_id: int | None = None
) -> list[ReportRead]:
    """Every submission for an indicator in a unit (None: the district), oldest first."""
    authorize(actor, "indicator.view")
    indicator = _indicator_by_code(session, indicator_code)
    stmt = select(IndicatorReport).where(
        IndicatorReport.indicator_id == indicator.id,
        IndicatorReport.unit_id.is_(None) if unit_id is None else IndicatorReport.unit_id == unit_id,
    )
    return [_read(session, r) for r in session.scalars(stmt.order_by(IndicatorReport.id))]


def reportable(*, session: Session, actor: Actor) -> list[Reportable]:
    """The (indicator, unit) pairs the actor may report: its own unit's, or every pair for an admin."""
    authorize(actor, "indicator.report")
    indicators = list(session.scalars(select(Indicator).order_by(Indicator.id)))
    district = _district(session)
    units: list[UnitRead | None]
    if can(actor, "indicator.report_any"):
        units = [None, *places_service.list_units(session=session, kinds=[UnitKind.street])]
    elif actor.unit_id is None:
        return []
    else:
        own = places_service.get_unit(session=session, unit_id=actor.unit_id)
        units = [None] if own.kind == UnitKind.department.value else [own]
    found: list[Reportable] = []
    for unit in units:
        for ind in indicators:
            try:
                check_may_report(session, actor, ind, unit)
            except DomainError:
                continue
            found.append(
                Reportable(
                    indicator_code=ind.code,
                    indicator_name=ind.name,
                    indicator_unit=ind.unit,
                    unit_id=unit.id if unit else None,
                    unit_code=unit.code if unit else district.code,
                    unit_name=unit.name if unit else f"{district.name}（全区）",
                )
            )
    return found


def template_xlsx(*, session: Session, actor: Actor, period: str) -> bytes:
    """The Excel template for a period, prefilled with every pair the actor may report."""
    if not _PERIOD.match(period):
        raise Invalid("统计期格式应为 2025 或 2025-06", english="period must be YYYY or YYYY-MM")
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "填报"
    sheet.append(list(TEMPLATE_COLUMNS))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDEBF7")
    for pair in reportable(session=session, actor=actor):
        sheet.append(
            [
                pair.indicator_code,
                pair.indicator_name,
                pair.indicator_unit,
                period,
                pair.unit_code,
                pair.unit_name,
                None,
                "",
                "",
            ]
        )
    for column, width in zip("ABCDEFGHI", (26, 30, 10, 10, 14, 22, 12, 30, 20), strict=True):
        sheet.column_dimensions[column].width = width
    notes = book.create_sheet("说明")
    for line in (
        "只填写“数值”“数据来源”“备注”三列；数值留空的行不导入。",
        "统计期填 2025（年度）或 2025-06（月度）。",
        "上传时逐行检查：任何一行有错，整份文件都不导入，并列出出错的行号和原因；改正后重新上传。",
        "导入的数值为“待审核”，审核通过后才计入指标进展。",
    ):
        notes.append([line])
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


@dataclass
class _Row:
    number: int
    indicator: Indicator
    unit: UnitRead | None
    data: ReportCreate


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _parse_row(
    session: Session, actor: Actor, number: int, cells: tuple[object, ...], district_code: str
) -> _Row | None | RowError:
    """A checked row, None for a row without a value, or the row's error."""
    code, period, unit_code = _cell_text(cells[0]), _cell_text(cells[3]), _cell_text(cells[4])
    raw_value, source, note = cells[6], _cell_text(cells[7]), _cell_text(cells[8])
    if raw_value is None or (isinstance(raw_value, str) and not raw_value.strip()):
        return None
    problems: list[str] = []
    if isinstance(raw_value, bool):
        value = None
    elif isinstance(raw_value, int | float):
        value = float(raw_value)
    else:
        try:
            value = float(str(raw_value).strip().replace(",", ""))
        except ValueError:
            value = None
    if value is None or not math.isfinite(value) or abs(value) > 1e12:
        problems.append(f"数值「{_cell_text(raw_value)}」不是有效数字")
    if not _PERIOD.match(period):
        problems.append(f"统计期「{period}」格式应为 2025 或 2025-06")
    if len(source) < 2:
        problems.append("请填写数据来源")
    if len(source) > 500 or len(note) > 500:
        problems.append("数据来源或备注超过 500 字")
    indicator = session.scalar(select(Indicator).where(Indicator.code == code)) if code else None
    if indicator is None:
        problems.append(f"指标代码「{code}」不存在")
    unit: UnitRead | None = None
    if unit_code and unit_code != district_code:
        try:
            unit = places_service.get_unit_by_code(session=session, code=unit_code)
        except NotFound:
            problems.append(f"填报单位代码「{unit_code}」不存在")
    elif not unit_code:
        problems.append("请填写填报单位代码")
    if indicator is not None and not problems:
        try:
            check_may_report(session, actor, indicator, unit)
        except DomainError as exc:
            problems.append(exc.message)
    if problems or indicator is None or value is None:
        return RowError(row=number, message="；".join(problems), message_en="invalid row")
    data = ReportCreate(
        indicator_code=indicator.code,
        period=period,
        unit_id=unit.id if unit else None,
        value=value,
        source=source,
        note=note,
    )
    return _Row(number=number, indicator=indicator, unit=unit, data=data)


def import_xlsx(*, session: Session, actor: Actor, content: bytes) -> ImportResult:
    """Import a filled template: every row checked, and nothing imported if any row is wrong."""
    authorize(actor, "indicator.report")
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input
        raise Invalid("无法读取文件，请上传由本平台下载的 .xlsx 模板", english="not an xlsx file") from exc
    sheet = book["填报"] if "填报" in book.sheetnames else book.worksheets[0]
    rows = sheet.iter_rows(values_only=True)
    header = tuple(_cell_text(c) for c in (next(rows, None) or ()))
    if header[: len(TEMPLATE_COLUMNS)] != TEMPLATE_COLUMNS:
        raise Invalid(
            "表头与模板不一致，请使用本平台下载的模板（第 1 行应为：" + "、".join(TEMPLATE_COLUMNS) + "）",
            english="header does not match the template",
        )
    district_code = _district(session).code
    result = ImportResult()
    checked: list[_Row] = []
    seen: dict[tuple[int, str, int | None], int] = {}
    for number, cells in enumerate(rows, start=2):
        if number - 1 > MAX_ROWS:
            raise Invalid(f"一次最多导入 {MAX_ROWS} 行", english=f"at most {MAX_ROWS} rows")
        padded = tuple(cells) + (None,) * (len(TEMPLATE_COLUMNS) - len(cells))
        if all(c is None or (isinstance(c, str) and not c.strip()) for c in padded):
            continue
        parsed = _parse_row(session, actor, number, padded, district_code)
        if parsed is None:
            result.skipped_blank += 1
            continue
        if isinstance(parsed, RowError):
            result.errors.append(parsed)
            continue
        key = (parsed.indicator.id, parsed.data.period, parsed.unit.id if parsed.unit else None)
        if key in seen:
            result.errors.append(
                RowError(row=number, message=f"与第 {seen[key]} 行重复（同一指标、统计期和单位）")
            )
            continue
        if _pending_exists(session, *key):
            result.errors.append(RowError(row=number, message="该指标本期已有待审核的填报"))
            continue
        seen[key] = number
        checked.append(parsed)
    if result.errors:
        return result
    for row in checked:
        _create(session, actor, row.indicator, row.unit, row.data, "excel")
    result.created = len(checked)
    return result
