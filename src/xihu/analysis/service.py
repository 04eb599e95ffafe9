"""Use cases of the analysis domain: figures from the rollups, warnings and their handling, detector runs.

Every read here goes to the rollups (``analysis_rollup_*``), never to the appeals table, so that its cost
grows with days x categories x areas and not with the number of appeals.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from xihu.analysis import rollup, spans
from xihu.analysis.enums import ACTIVE_STATES, Severity, WarningKind, WarningState
from xihu.analysis.models import (
    MEASURES,
    AnalysisWarning,
    AreaRollup,
    CommunityDayRollup,
    DistrictRollup,
    StreetDayRollup,
    StreetRollup,
    UnitRollup,
)
from xihu.analysis.schemas import (
    AppealFigures,
    AreaFigures,
    CategoryCount,
    ChannelCount,
    DayCount,
    UnitRates,
    WarningFinding,
    WarningRead,
)
from xihu.appeals.enums import Channel
from xihu.core import audit, clock, outbox
from xihu.core.errors import Conflict, Invalid, NotFound
from xihu.core.security import Actor, Role, User, authorize, list_users_with_role
from xihu.places import service as places_service
from xihu.places.enums import UnitKind

MAX_DAYS = 3 * 366 + 1


def rate(numerator: int, denominator: int) -> float | None:
    """A ratio, or None when nothing was counted."""
    return round(numerator / denominator, 4) if denominator else None


def today() -> date:
    """Today in Asia/Shanghai."""
    local = clock.local(clock.now())
    assert local is not None
    return local.date()


def _check_period(start: date, end: date) -> None:
    if end < start:
        raise Invalid("结束日期不能早于开始日期", english="end is before start")
    if (end - start).days > MAX_DAYS:
        raise Invalid("统计区间不能超过 3 年", english="period longer than 3 years")


def _sums(columns: Any) -> list[Any]:
    """Summed measures of a model or of a subquery's columns (``rows.c``), labelled by measure."""
    return [func.coalesce(func.sum(getattr(columns, m)), 0).label(m) for m in MEASURES]


class _Scope:
    """Which day rollups answer an area: the main one for its figures, the cheapest one holding its per-day
    series, and a finer one for its child areas; each with the column values that select the area."""

    def __init__(
        self,
        name: str,
        model: Any,
        match: dict[str, Any],
        series_model: Any = None,
        child_model: Any = None,
        child_col: str = "",
        children: list[tuple[int, str]] | None = None,
    ) -> None:
        self.name, self.model, self.match = name, model, match
        self.series_model = series_model if series_model is not None else model
        self.child_model, self.child_col = child_model, child_col
        self.children = children or []


def _scope(session: Session, area_unit_id: int | None, filtered: bool = False) -> _Scope:
    if area_unit_id is None:
        streets = [
            (s.id, s.name) for s in places_service.list_units(session=session, kinds=[UnitKind.street])
        ]
        # Without a category or channel filter the per-street figures and the per-day series come from the
        # 12-rows-a-day rollup.
        child = StreetRollup if filtered else StreetDayRollup
        return _Scope(
            "西湖区",
            DistrictRollup,
            {},
            DistrictRollup if filtered else StreetDayRollup,
            child,
            "street_id",
            streets,
        )
    unit = places_service.get_unit(session=session, unit_id=area_unit_id)
    if unit.kind == UnitKind.street.value:
        # Unfiltered, the per-community figures come from the day x community rollup (~20 rows a day).
        children = places_service.list_units(
            session=session, kinds=[UnitKind.community, UnitKind.village], parent_id=unit.id
        )
        return _Scope(
            unit.name,
            StreetRollup,
            {"street_id": unit.id},
            StreetRollup if filtered else StreetDayRollup,
            AreaRollup if filtered else CommunityDayRollup,
            "community_id",
            [(c.id, c.name) for c in children],
        )
    if unit.kind in (UnitKind.community.value, UnitKind.village.value):
        series = AreaRollup if filtered else CommunityDayRollup
        return _Scope(unit.name, AreaRollup, {"community_id": unit.id}, series)
    if unit.kind == UnitKind.district.value:
        return _scope(session, None, filtered)
    raise Invalid("区域只能是街道/镇或社区/村", english="area must be a street or a community")


def _measures(row: Any) -> dict[str, int]:
    return {m: int(getattr(row, m) or 0) for m in MEASURES}


def _main_figures(
    session: Session, model: Any, match: dict[str, Any], start: date, end: date
) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Totals, per category and per channel of a rollup over a period, from one small grouped query.

    Grouped by category x channel (at most a few dozen rows), then added up here: the same statement on
    SQLite and PostgreSQL, reading month rows for the whole months.
    """
    total = dict.fromkeys(MEASURES, 0)
    cats: dict[str, int] = {}
    chans: dict[str, int] = {}
    rows = spans.span(model, start, end, match, ["category", "channel"])
    stmt = select(rows.c.category, rows.c.channel, *_sums(rows.c)).group_by(rows.c.category, rows.c.channel)
    for row in session.execute(stmt):
        m = _measures(row)
        for k, v in m.items():
            total[k] += v
        cats[row.category] = cats.get(row.category, 0) + m["received"]
        chans[row.channel] = chans.get(row.channel, 0) + m["received"]
    return total, cats, chans


def _day_series(
    session: Session, model: Any, match: dict[str, Any], start: date, end: date
) -> dict[date, list[int]]:
    """Received and completed per day (the only figures that need day rows for the whole period)."""
    where = [model.day >= start, model.day <= end]
    where += [getattr(model, k) == v for k, v in match.items() if v is not None]
    stmt = (
        select(model.day, func.sum(model.received), func.sum(model.completed))
        .where(*where)
        .group_by(model.day)
    )
    return {d: [int(r or 0), int(c or 0)] for d, r, c in session.execute(stmt)}


def appeal_figures(
    *,
    session: Session,
    actor: Actor,
    area_unit_id: int | None,
    start: date,
    end: date,
    category: str | None = None,
    channel: str | None = None,
) -> AppealFigures:
    """Appeal figures of the district, a street or a community over [start, end] (local days, inclusive).

    Three queries whatever the period: totals, categories and channels over the area's rollup (whole months
    from its month rows), the per-day series, and the child areas over the finer rollup.
    """
    authorize(actor, "analysis.view")
    _check_period(start, end)
    rollup.apply_pending(session)
    scope = _scope(session, area_unit_id, bool(category or channel))
    match = {**scope.match, "category": category or None, "channel": channel or None}
    total, cats, chans = _main_figures(session, scope.model, match, start, end)
    days = _day_series(session, scope.series_model, match, start, end)
    figures = AppealFigures(area_unit_id=area_unit_id, area_name=scope.name, start=start, end=end, **total)
    _fill_rates(figures)
    # Ties in count are listed by name, so that the order does not depend on the query plan.
    figures.top_categories = [
        CategoryCount(category=c or "未分类", count=n)
        for c, n in sorted(cats.items(), key=lambda kv: (-kv[1], kv[0]))
        if n
    ]
    figures.by_channel = [
        ChannelCount(channel=c, label=_channel_label(c), count=n)
        for c, n in sorted(chans.items(), key=lambda kv: (-kv[1], kv[0]))
        if n
    ]
    figures.by_day = [
        DayCount(day=d, received=days.get(d, [0, 0])[0], completed=days.get(d, [0, 0])[1])
        for d in (start + timedelta(n) for n in range((end - start).days + 1))
    ]
    if scope.child_model is not None:
        rows = spans.span(scope.child_model, start, end, match, [scope.child_col])
        col = rows.c[scope.child_col]
        child_rows = {
            int(r[0]): _measures(r) for r in session.execute(select(col, *_sums(rows.c)).group_by(col))
        }
        for unit_id, name in scope.children:
            m = child_rows.get(unit_id, dict.fromkeys(MEASURES, 0))
            figures.by_area.append(
                AreaFigures(
                    unit_id=unit_id,
                    name=name,
                    received=m["received"],
                    response_rate=rate(m["signed_on_time"], m["sign_due"]),
                    resolution_rate=rate(m["completed"], m["received"]),
                    satisfaction_rate=rate(m["satisfied"], m["rated"]),
                )
            )
    return figures


def _channel_label(value: str) -> str:
    try:
        return Channel(value).label
    except ValueError:
        return value


def _fill_rates(f: AppealFigures) -> None:
    f.response_rate = rate(f.signed_on_time, f.sign_due)
    f.resolution_rate = rate(f.completed, f.received)
    f.on_time_completion_rate = rate(f.completed_on_time, f.complete_due)
    f.satisfaction_rate = rate(f.satisfied, f.rated)


def unit_rates(
    *, session: Session, actor: Actor, unit_ids: list[int] | None, start: date, end: date
) -> list[UnitRates]:
    """签收及时率, 办结率 and 满意率 per handling unit (the lead unit of each appeal), for 考核."""
    authorize(actor, "analysis.view")
    _check_period(start, end)
    rollup.apply_pending(session)
    if unit_ids is not None and not unit_ids:
        return []
    rows_of = spans.span(UnitRollup, start, end, {}, ["unit_id"])
    stmt = (
        select(rows_of.c.unit_id, *_sums(rows_of.c)).where(rows_of.c.unit_id != 0).group_by(rows_of.c.unit_id)
    )
    if unit_ids is not None:
        stmt = stmt.where(rows_of.c.unit_id.in_(unit_ids))
    rows = {int(r[0]): _measures(r) for r in session.execute(stmt)}
    wanted = list(unit_ids) if unit_ids is not None else sorted(rows)
    names = places_service.unit_names(session=session, unit_ids=set(wanted))
    out = []
    for uid in wanted:
        m = rows.get(uid, dict.fromkeys(MEASURES, 0))
        out.append(
            UnitRates(
                unit_id=uid,
                name=names.get(uid, str(uid)),
                received=m["received"],
                completed=m["completed"],
                response_rate=rate(m["signed_on_time"], m["sign_due"]),
                resolution_rate=rate(m["completed"], m["received"]),
                satisfaction_rate=rate(m["satisfied"], m["rated"]),
                on_time_completion_rate=rate(m["completed_on_time"], m["complete_due"]),
            )
        )
    return out


def rebuild(*, session: Session, actor: Actor) -> int:
    """Recount every rollup from the appeals; returns the number of appeals counted."""
    authorize(actor, "analysis.manage")
    return rollup.rebuild(session)


# ---------------------------------------------------------------- warnings


def _user_names(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(session.execute(select(User.id, User.display_name).where(User.id.in_(ids))).all())


def _to_read(session: Session, rows: list[AnalysisWarning]) -> list[WarningRead]:
    from xihu.analysis.explain import explain

    unit_ids = {u for w in rows for u in (w.area_unit_id, w.owner_unit_id) if u}
    names = places_service.unit_names(session=session, unit_ids=unit_ids)
    users = _user_names(session, {u for w in rows for u in (w.acknowledged_by_id, w.closed_by_id) if u})
    out = []
    for w in rows:
        kind, sev, state = WarningKind(w.kind), Severity(w.severity), WarningState(w.state)
        out.append(
            WarningRead(
                id=w.id,
                kind=kind.value,
                kind_label=kind.label,
                severity=sev.value,
                severity_label=sev.label,
                severity_colour=sev.colour,
                title=w.title,
                summary=w.summary,
                evidence=w.evidence or {},
                explanation=explain(kind, w.evidence or {}),
                area_unit_id=w.area_unit_id,
                area_name=names.get(w.area_unit_id, "西湖区") if w.area_unit_id else "西湖区",
                owner_unit_id=w.owner_unit_id,
                owner_name=names.get(w.owner_unit_id, "") if w.owner_unit_id else "",
                state=state.value,
                state_label=state.label,
                state_colour=state.colour,
                created_at=w.created_at,
                acknowledged_at=w.acknowledged_at,
                acknowledged_by=users.get(w.acknowledged_by_id) if w.acknowledged_by_id else None,
                closed_at=w.closed_at,
                closed_by=users.get(w.closed_by_id) if w.closed_by_id else None,
                close_note=w.close_note,
            )
        )
    return out


def _area_filter(session: Session, stmt: Select[Any], area_unit_id: int | None) -> Select[Any]:
    if area_unit_id is None:
        return stmt
    area = places_service.descendants(session=session, unit_id=area_unit_id)
    return stmt.where(AnalysisWarning.area_unit_id.in_(area))


def list_open_warnings(
    *, session: Session, actor: Actor, area_unit_id: int | None = None, limit: int = 20
) -> list[WarningRead]:
    """Warnings not yet closed (open or acknowledged), most serious and newest first."""
    authorize(actor, "analysis.view")
    stmt = select(AnalysisWarning).where(AnalysisWarning.state.in_([s.value for s in ACTIVE_STATES]))
    stmt = _area_filter(session, stmt, area_unit_id)
    rows = list(session.scalars(stmt.order_by(AnalysisWarning.created_at.desc(), AnalysisWarning.id.desc())))
    rows.sort(key=lambda w: (-Severity(w.severity).rank, w.state != WarningState.open.value))
    return _to_read(session, rows[: max(1, min(limit, 500))])


def list_warnings(
    *,
    session: Session,
    actor: Actor,
    state: str | None = None,
    kind: str | None = None,
    area_unit_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 200,
) -> list[WarningRead]:
    """Warnings with filters, newest first."""
    authorize(actor, "analysis.view")
    stmt = select(AnalysisWarning)
    if state == "active":
        stmt = stmt.where(AnalysisWarning.state.in_([s.value for s in ACTIVE_STATES]))
    elif state:
        stmt = stmt.where(AnalysisWarning.state == WarningState(state).value)
    if kind:
        stmt = stmt.where(AnalysisWarning.kind == WarningKind(kind).value)
    if since is not None:
        stmt = stmt.where(AnalysisWarning.created_at >= since)
    if until is not None:
        stmt = stmt.where(AnalysisWarning.created_at < until)
    stmt = _area_filter(session, stmt, area_unit_id)
    rows = list(
        session.scalars(
            stmt.order_by(AnalysisWarning.created_at.desc(), AnalysisWarning.id.desc()).limit(max(1, limit))
        )
    )
    return _to_read(session, rows)


def get_warning(*, session: Session, actor: Actor, warning_id: int) -> WarningRead:
    """One warning with its evidence."""
    authorize(actor, "analysis.view")
    row = session.get(AnalysisWarning, warning_id)
    if row is None:
        raise NotFound("预警不存在", english="warning not found")
    return _to_read(session, [row])[0]


def _load_for_update(session: Session, warning_id: int) -> AnalysisWarning:
    row = session.scalar(select(AnalysisWarning).where(AnalysisWarning.id == warning_id).with_for_update())
    if row is None:
        raise NotFound("预警不存在", english="warning not found")
    return row


def acknowledge(*, session: Session, actor: Actor, warning_id: int) -> WarningRead:
    """确认: a supervisor takes the warning in hand."""
    authorize(actor, "warning.handle")
    row = _load_for_update(session, warning_id)
    if row.state != WarningState.open.value:
        raise Conflict(
            f"预警当前为「{WarningState(row.state).label}」，不能确认", english="warning is not open"
        )
    before = row.state
    row.state = WarningState.acknowledged.value
    row.acknowledged_at = clock.now()
    row.acknowledged_by_id = actor.user_id
    row.updated_at = clock.now()
    audit.record(
        session=session,
        actor=actor,
        action="warning.acknowledge",
        entity="warning",
        entity_id=row.id,
        from_state=before,
        to_state=row.state,
    )
    session.flush()
    return _to_read(session, [row])[0]


def close_warning(*, session: Session, actor: Actor, warning_id: int, note: str) -> WarningRead:
    """关闭 with a note on what was done (or why it was a false alarm)."""
    authorize(actor, "warning.handle")
    note = (note or "").strip()
    if not 2 <= len(note) <= 500:
        raise Invalid(
            "请填写关闭说明（2 到 500 字）", english="a closing note of 2-500 characters is required"
        )
    row = _load_for_update(session, warning_id)
    if row.state == WarningState.closed.value:
        raise Conflict("预警已关闭", english="warning is already closed")
    before = row.state
    row.state = WarningState.closed.value
    row.closed_at = clock.now()
    row.closed_by_id = actor.user_id
    row.close_note = note
    row.updated_at = clock.now()
    audit.record(
        session=session,
        actor=actor,
        action="warning.close",
        entity="warning",
        entity_id=row.id,
        from_state=before,
        to_state=row.state,
        reason=note,
    )
    session.flush()
    return _to_read(session, [row])[0]


def _notify(session: Session, warning: AnalysisWarning) -> None:
    """Tell supervisors (and the owner unit's staff, if any) through the outbox."""
    kind = WarningKind(warning.kind)
    recipients = {u.id for u in list_users_with_role(session=session, role=(Role.supervisor, Role.admin))}
    if warning.owner_unit_id:
        recipients |= {
            u.id
            for u in list_users_with_role(
                session=session, role=(Role.handler, Role.grid), unit_id=warning.owner_unit_id
            )
        }
    for user_id in sorted(recipients):
        outbox.enqueue(
            session=session,
            channel="inapp",
            user_id=user_id,
            subject=f"【{Severity(warning.severity).label}】{kind.label}：{warning.title}",
            body=warning.summary,
            link=f"/staff/warnings/{warning.id}",
        )


def raise_findings(*, session: Session, findings: list[WarningFinding]) -> tuple[int, int]:
    """Turn findings into warnings: new ones are raised and notified; an active one is refreshed instead."""
    raised = refreshed = 0
    if not findings:
        return 0, 0
    keys = {f.dedup_key for f in findings}
    active = {
        w.dedup_key: w
        for w in session.scalars(
            select(AnalysisWarning).where(
                AnalysisWarning.dedup_key.in_(keys),
                AnalysisWarning.state.in_([s.value for s in ACTIVE_STATES]),
            )
        )
    }
    now = clock.now()
    for f in findings:
        existing = active.get(f.dedup_key)
        if existing is not None:
            existing.evidence = f.evidence
            existing.summary = f.summary
            existing.seen_count = min(existing.seen_count + 1, 30000)
            existing.updated_at = now
            if Severity(f.severity).rank > Severity(existing.severity).rank:
                existing.severity = f.severity
            refreshed += 1
            continue
        w = AnalysisWarning(
            kind=f.kind,
            severity=f.severity,
            dedup_key=f.dedup_key,
            title=f.title[:200],
            summary=f.summary,
            evidence=f.evidence,
            area_unit_id=f.area_unit_id,
            owner_unit_id=f.owner_unit_id,
            state=WarningState.open.value,
            created_at=now,
            updated_at=now,
        )
        session.add(w)
        session.flush()
        active[f.dedup_key] = w
        _notify(session, w)
        raised += 1
    session.flush()
    return raised, refreshed


def run_detectors(*, session: Session, actor: Actor, on: date | None = None) -> dict[str, Any]:
    """Run every detector over the rollups and raise (or refresh) warnings; returns counts by kind."""
    authorize(actor, "analysis.manage")
    from xihu.analysis import detectors

    rollup.apply_pending(session)
    findings = detectors.detect_all(session=session, on=on or today())
    raised, refreshed = raise_findings(session=session, findings=findings)
    by_kind: dict[str, int] = {}
    for f in findings:
        by_kind[f.kind] = by_kind.get(f.kind, 0) + 1
    return {"found": len(findings), "raised": raised, "refreshed": refreshed, "by_kind": by_kind}


def counts_by_kind(*, session: Session, actor: Actor) -> dict[str, int]:
    """Active warnings per kind (for badges)."""
    authorize(actor, "analysis.view")
    stmt = (
        select(AnalysisWarning.kind, func.count())
        .where(AnalysisWarning.state.in_([s.value for s in ACTIVE_STATES]))
        .group_by(AnalysisWarning.kind)
    )
    return {k: int(n) for k, n in session.execute(stmt)}
