"""The detectors: each reads the rollups, compares what it observes with what history leads to expect, and
returns findings with their evidence (observed, expected, how unlikely, and the appeals or terms involved).

Thresholds are deliberately strict (a p-value and a minimum size and ratio together) because each detector
tests many series at once: quiet data must not raise warnings.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import date, datetime, time, timedelta
from typing import Any

from scipy.stats import binom, poisson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from xihu.analysis import topic_clusters
from xihu.analysis.enums import ACTIVE_STATES, Severity, WarningKind
from xihu.analysis.models import AnalysisWarning, AppealFact, StreetRollup, TermRollup, UnitRollup
from xihu.analysis.rollup import CELL_DEGREES
from xihu.analysis.schemas import WarningFinding
from xihu.appeals import service as appeal_service
from xihu.core import clock
from xihu.core.privacy import mask_phone
from xihu.places import service as places_service

BASELINE_WEEKS = 8
SPIKE_WINDOW = 3
SPIKE_P = 1e-5
TOPIC_P = 1e-6
HOTSPOT_P = 1e-5
HOTSPOT_MIN = 6
REPEAT_MIN = 4
REPEAT_WINDOW = 30
DISSATISFIED_P = 1e-4
DISSATISFIED_WINDOW = 14
SLA_MIN_PREDICTED = 3
MAX_IDS = 30


def _baseline_rate(mean: float, weeks: int = BASELINE_WEEKS, floor: float = 0.5) -> float:
    """The rate tested against: the baseline mean plus two standard errors (a short history is uncertain)."""
    return max(mean, floor) + 2 * math.sqrt(max(mean, floor) / weeks)


def _p(value: float) -> float:
    return float(f"{value:.3g}")


def _has_history(session: Session, since: date) -> bool:
    first = session.scalar(select(func.min(StreetRollup.day)))
    return first is not None and first <= since


def _names(session: Session, ids: set[int]) -> dict[int, str]:
    return places_service.unit_names(session=session, unit_ids={i for i in ids if i})


# ---------------------------------------------------------------- volume spikes


def spikes(session: Session, on: date) -> list[WarningFinding]:
    """Volume per category x street over the last 3 days against the same weekdays of the 8 weeks before."""
    start = on - timedelta(SPIKE_WINDOW - 1)
    first = start - timedelta(7 * BASELINE_WEEKS)
    if not _has_history(session, start - timedelta(7 * (BASELINE_WEEKS // 2))):
        return []
    rows = session.execute(
        select(
            StreetRollup.street_id, StreetRollup.category, StreetRollup.day, func.sum(StreetRollup.received)
        )
        .where(StreetRollup.day >= first, StreetRollup.day <= on, StreetRollup.category != "")
        .where(StreetRollup.street_id != 0)
        .group_by(StreetRollup.street_id, StreetRollup.category, StreetRollup.day)
    ).all()
    series: dict[tuple[int, str], dict[date, int]] = defaultdict(dict)
    for street, cat, day, n in rows:
        series[(int(street), cat)][day] = int(n)
    names = _names(session, {k[0] for k in series})
    out = []
    for (street, cat), by_day in series.items():

        def window(shift: int, by_day: dict[date, int] = by_day) -> int:
            return sum(
                by_day.get(start - timedelta(7 * shift) + timedelta(i), 0) for i in range(SPIKE_WINDOW)
            )

        observed = window(0)
        if observed < 6:
            continue
        baseline = [window(k) for k in range(BASELINE_WEEKS, 0, -1)]
        mean = sum(baseline) / len(baseline)
        var = sum((b - mean) ** 2 for b in baseline) / (len(baseline) - 1)
        p = float(poisson.sf(observed - 1, _baseline_rate(mean)))
        z = (observed - mean) / math.sqrt(max(var, mean, 1.0))
        if p >= SPIKE_P or z < 3 or observed < 2 * mean + 3:
            continue
        severity = Severity.critical if p < 1e-8 and observed >= 3 * mean + 5 else Severity.warning
        name = names.get(street, "")
        out.append(
            WarningFinding(
                kind=WarningKind.spike.value,
                severity=severity.value,
                dedup_key=f"spike:{street}:{cat}",
                title=f"{name}「{cat}」类诉求突增：近 {SPIKE_WINDOW} 天 {observed} 件，往常约 {mean:.1f} 件",
                summary=f"{name}「{cat}」类诉求 {start}～{on} 共 {observed} 件，"
                f"前 {BASELINE_WEEKS} 周同期平均 {mean:.1f} 件，偶然出现概率 {p:.1e}。",
                evidence={
                    "street_id": street,
                    "street_name": name,
                    "category": cat,
                    "window_days": SPIKE_WINDOW,
                    "start": start.isoformat(),
                    "end": on.isoformat(),
                    "observed": observed,
                    "expected": round(mean, 2),
                    "baseline": baseline,
                    "z": round(z, 1),
                    "p_value": _p(p),
                    "daily": [by_day.get(start + timedelta(i), 0) for i in range(SPIKE_WINDOW)],
                },
                area_unit_id=street,
                owner_unit_id=street,
            )
        )
    return out


# ---------------------------------------------------------------- hotspots


def _cell_xy(cell: str) -> tuple[int, int]:
    a, b = cell.split(":")
    return int(a), int(b)


def _neighbours(x: int, y: int) -> list[str]:
    return [f"{x + dx}:{y + dy}" for dx in (-1, 0, 1) for dy in (-1, 0, 1)]


def hotspots(session: Session, on: date) -> list[WarningFinding]:
    """Repeated appeals within about 450 m (3x3 cells of ~300 m) this week, against the 8 weeks before."""
    start = on - timedelta(6)
    counts: dict[str, int] = {
        str(c): int(n)
        for c, n in session.execute(
            select(AppealFact.cell, func.count())
            .where(AppealFact.day >= start, AppealFact.day <= on, AppealFact.cell.is_not(None))
            .where(AppealFact.received == 1)
            .group_by(AppealFact.cell)
        )
    }
    sums: dict[str, int] = {}
    for cell in counts:
        x, y = _cell_xy(cell)
        sums[cell] = sum(counts.get(n, 0) for n in _neighbours(x, y))
    candidates = sorted((c for c, s in sums.items() if s >= HOTSPOT_MIN), key=lambda c: -sums[c])
    if not candidates:
        return []
    wanted = {n for c in candidates for n in _neighbours(*_cell_xy(c))}
    base_start = start - timedelta(7 * BASELINE_WEEKS)
    base: dict[str, int] = {}
    for chunk in _chunks(sorted(wanted), 500):
        for c, n in session.execute(
            select(AppealFact.cell, func.count())
            .where(AppealFact.day >= base_start, AppealFact.day < start, AppealFact.cell.in_(chunk))
            .where(AppealFact.received == 1)
            .group_by(AppealFact.cell)
        ):
            base[str(c)] = int(n)
    active = _active_evidence(session, WarningKind.hotspot)
    chosen: list[tuple[int, int]] = []
    out = []
    for cell in candidates:
        x, y = _cell_xy(cell)
        if any(max(abs(x - a), abs(y - b)) <= 2 for a, b in chosen):
            continue
        observed = sums[cell]
        expected = sum(base.get(n, 0) for n in _neighbours(x, y)) / BASELINE_WEEKS
        p = float(poisson.sf(observed - 1, _baseline_rate(expected, floor=0.3)))
        if p >= HOTSPOT_P or observed < 3 * expected + 2:
            continue
        chosen.append((x, y))
        out.append(_hotspot_finding(session, cell, x, y, start, on, observed, expected, p, active))
    return out


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _active_evidence(session: Session, kind: WarningKind) -> list[tuple[str, dict[str, Any]]]:
    return [
        (w.dedup_key, w.evidence or {})
        for w in session.scalars(
            select(AnalysisWarning).where(
                AnalysisWarning.kind == kind.value,
                AnalysisWarning.state.in_([s.value for s in ACTIVE_STATES]),
            )
        )
    ]


def _hotspot_finding(
    session: Session,
    cell: str,
    x: int,
    y: int,
    start: date,
    on: date,
    observed: int,
    expected: float,
    p: float,
    active: list[tuple[str, dict[str, Any]]],
) -> WarningFinding:
    facts = list(
        session.execute(
            select(AppealFact.appeal_id, AppealFact.category, AppealFact.community_id, AppealFact.street_id)
            .where(AppealFact.day >= start, AppealFact.day <= on, AppealFact.cell.in_(_neighbours(x, y)))
            .where(AppealFact.received == 1)
            .order_by(AppealFact.appeal_id)
        )
    )
    cats = Counter(f.category for f in facts if f.category)
    communities = Counter(f.community_id for f in facts if f.community_id)
    streets = Counter(f.street_id for f in facts if f.street_id)
    area = (
        communities.most_common(1)[0][0]
        if communities
        else (streets.most_common(1)[0][0] if streets else None)
    )
    owner = streets.most_common(1)[0][0] if streets else None
    area_name = _names(session, {area} if area else set()).get(area or 0, "")
    lat, lon = round(x * CELL_DEGREES, 5), round(y * CELL_DEGREES, 5)
    # The same hotspot may be centred one cell over on the next run: it keeps its warning.
    key = f"hotspot:{cell}"
    for other_key, ev in active:
        ox, oy = ev.get("cell_xy", [None, None])
        if ox is not None and max(abs(x - ox), abs(y - oy)) <= 2:
            key = other_key
            break
    top = cats.most_common(1)[0][0] if cats else ""
    severity = Severity.critical if observed >= 3 * HOTSPOT_MIN and p < 1e-8 else Severity.warning
    label = f"{area_name}（{lat:.4f}, {lon:.4f}）附近"
    return WarningFinding(
        kind=WarningKind.hotspot.value,
        severity=severity.value,
        dedup_key=key,
        title=f"{label}诉求聚集：近 7 天 {observed} 件" + (f"，多为「{top}」" if top else ""),
        summary=f"{label}约 450 米范围内近 7 天 {observed} 件诉求，此前每周平均 {expected:.1f} 件。",
        evidence={
            "cell": cell,
            "cell_xy": [x, y],
            "center": [lat, lon],
            "center_label": label,
            "radius_m": 450,
            "window_days": 7,
            "start": start.isoformat(),
            "end": on.isoformat(),
            "observed": observed,
            "expected": round(expected, 2),
            "p_value": _p(p),
            "top_category": top,
            "categories": dict(cats.most_common(5)),
            "appeal_ids": [f.appeal_id for f in facts][:MAX_IDS],
        },
        area_unit_id=area,
        owner_unit_id=owner,
    )


# ---------------------------------------------------------------- emerging topics


def weekly_terms(session: Session, on: date) -> dict[str, list[int]]:
    """Each term's count per week: the 8 weeks before (oldest first), then the 7 days ending on `on`."""
    start = on - timedelta(6)
    first = start - timedelta(7 * BASELINE_WEEKS)
    rows = session.execute(
        select(TermRollup.term, TermRollup.day, TermRollup.count).where(
            TermRollup.day >= first, TermRollup.day <= on
        )
    ).all()
    weekly: dict[str, list[int]] = defaultdict(lambda: [0] * (BASELINE_WEEKS + 1))
    for term, day, n in rows:
        # Week k before this one (k = 1 is the last) holds the days start-7k .. start-7k+6; oldest first.
        idx = BASELINE_WEEKS - 1 - ((start - day).days - 1) // 7 if day < start else BASELINE_WEEKS
        weekly[term][idx] += int(n)
    return dict(weekly)


def topics(session: Session, on: date) -> list[WarningFinding]:
    """Words in appeal titles rising this week against the 8 weeks before, grouped into topics.

    Rising words that mostly name the same appeals (停水, 自来水, 水压) are one topic with one warning; the
    topic's figures are its most significant word's, and its appeals are those carrying any of its words.
    """
    start = on - timedelta(6)
    if not _has_history(session, start - timedelta(7 * (BASELINE_WEEKS // 2))):
        return []
    weekly = weekly_terms(session, on)
    rising = []
    for term, counts in weekly.items():
        observed = counts[-1]
        if observed < 5:
            continue
        mean = sum(counts[:-1]) / BASELINE_WEEKS
        p = float(poisson.sf(observed - 1, _baseline_rate(mean, floor=0.3)))
        if p < TOPIC_P and observed >= 3 * mean + 3:
            rising.append((p, term, observed, mean, counts))
    rising.sort()
    rising = rising[:10]
    stats = {term: (p, observed, mean, counts) for p, term, observed, mean, counts in rising}
    ranked = [term for _, term, *_ in rising]
    appeals = topic_clusters.appeals_by_term(session, ranked, start, on)
    out = []
    for group in topic_clusters.cluster_terms(ranked, appeals):
        term = group[0]
        p, observed, mean, counts = stats[term]
        related = [t for t in ranked if t not in group][:5]
        ids = sorted(set().union(*(appeals.get(t, set()) for t in group)))
        ratio = round(observed / max(mean, 0.5), 1)
        words = "、".join(f"「{t}」" for t in group)
        out.append(
            WarningFinding(
                kind=WarningKind.topic.value,
                severity=(Severity.warning if p < 1e-8 else Severity.info).value,
                dedup_key=f"topic:{term}",
                title=f"新兴话题「{term}」：本周 {observed} 次，往常每周约 {mean:.1f} 次",
                summary=(
                    f"{words}在近 7 天诉求中上升：「{term}」出现 {observed} 次，"
                    f"约为此前 8 周周均的 {ratio} 倍" + (f"，涉及 {len(ids)} 件诉求。" if ids else "。")
                ),
                evidence={
                    "term": term,
                    "terms": group,
                    "start": start.isoformat(),
                    "end": on.isoformat(),
                    "observed": observed,
                    "expected": round(mean, 2),
                    "weekly": counts[:-1],
                    "ratio": ratio,
                    "p_value": _p(p),
                    "appeals": len(ids),
                    "appeal_ids": ids[:MAX_IDS],
                    "related": related,
                },
            )
        )
    return out


# ---------------------------------------------------------------- repeat callers


def repeat_callers(session: Session, on: date) -> list[WarningFinding]:
    """The same phone (grouped by a keyed hash) submitting many appeals in 30 days; shown masked only."""
    start = on - timedelta(REPEAT_WINDOW - 1)
    window = (AppealFact.day >= start, AppealFact.day <= on, AppealFact.phone_hash.is_not(None))
    totals = session.execute(
        select(func.count(), func.count(func.distinct(AppealFact.phone_hash))).where(*window)
    ).one()
    per_caller = (int(totals[0]) / int(totals[1])) if totals[1] else 1.0
    rows = session.execute(
        select(AppealFact.phone_hash, func.count())
        .where(*window)
        .group_by(AppealFact.phone_hash)
        .having(func.count() >= REPEAT_MIN)
        .order_by(func.count().desc())
        .limit(50)
    ).all()
    out = []
    for phone_key, n in rows:
        facts = list(
            session.execute(
                select(AppealFact.appeal_id, AppealFact.category, AppealFact.day, AppealFact.street_id)
                .where(*window, AppealFact.phone_hash == phone_key)
                .order_by(AppealFact.appeal_id)
            )
        )
        sample = appeal_service.rollup_facts(session=session, appeal_ids=[facts[-1].appeal_id])
        masked = mask_phone(sample[0].citizen_phone) if sample else "***"
        observed = int(n)
        p = float(poisson.sf(observed - 1, max(per_caller, 1.0)))
        cats = Counter(f.category or "未分类" for f in facts)
        streets = Counter(f.street_id for f in facts if f.street_id)
        out.append(
            WarningFinding(
                kind=WarningKind.repeat_caller.value,
                severity=(Severity.critical if observed >= 2 * REPEAT_MIN else Severity.warning).value,
                dedup_key=f"repeat:{phone_key}",
                title=f"重复来电 {masked}：近 {REPEAT_WINDOW} 天 {observed} 件",
                summary=f"号码 {masked} 近 {REPEAT_WINDOW} 天提交 {observed} 件诉求，"
                f"主要为「{cats.most_common(1)[0][0]}」。",
                evidence={
                    "phone_masked": masked,
                    "window_days": REPEAT_WINDOW,
                    "observed": observed,
                    "expected": round(per_caller, 2),
                    "p_value": _p(p),
                    "categories": [c for c, _ in cats.most_common(5)],
                    "first_day": min(f.day for f in facts).isoformat(),
                    "last_day": max(f.day for f in facts).isoformat(),
                    "appeal_ids": [f.appeal_id for f in facts][:MAX_IDS],
                },
                area_unit_id=streets.most_common(1)[0][0] if streets else None,
            )
        )
    return out


# ---------------------------------------------------------------- SLA risk


def sla_risk(session: Session, on: date, now: datetime | None = None) -> list[WarningFinding]:
    """Units whose completion clocks due today exceed what their recent pace finishes before midnight."""
    now = now or clock.now()
    local_now = clock.local(now)
    assert local_now is not None
    end_local = datetime.combine(on + timedelta(1), time(0), tzinfo=clock.LOCAL_TZ)
    hours_left = max(0.0, (end_local - local_now).total_seconds() / 3600) if local_now.date() == on else 24.0
    queue = appeal_service.open_completion_due_by_unit(session=session, due_before=clock.as_utc(end_local))
    if not queue:
        return []
    pace_days = 14
    pace = {
        int(u): int(n) / pace_days
        for u, n in session.execute(
            select(UnitRollup.unit_id, func.sum(UnitRollup.completed))
            .where(UnitRollup.day > on - timedelta(pace_days), UnitRollup.day <= on)
            .where(UnitRollup.unit_id.in_(list(queue)))
            .group_by(UnitRollup.unit_id)
        )
    }
    names = _names(session, set(queue))
    out = []
    for unit, due in sorted(queue.items()):
        per_day = pace.get(unit, 0.0)
        capacity = per_day * hours_left / 24
        predicted = due - capacity
        if due < SLA_MIN_PREDICTED or predicted < SLA_MIN_PREDICTED:
            continue
        predicted_n = math.ceil(predicted)
        name = names.get(unit, str(unit))
        out.append(
            WarningFinding(
                kind=WarningKind.sla_risk.value,
                severity=(Severity.critical if predicted_n >= 10 else Severity.warning).value,
                dedup_key=f"sla:{unit}:{on.isoformat()}",
                title=f"{name} 今日预计 {predicted_n} 件超时（到期 {due} 件）",
                summary=f"{name} 今日到期未办结 {due} 件，"
                f"按近 {pace_days} 天日均办结 {per_day:.1f} 件的节奏，预计约 {predicted_n} 件超时。",
                evidence={
                    "unit_id": unit,
                    "unit_name": name,
                    "day": on.isoformat(),
                    "queue_due_today": due,
                    "pace_days": pace_days,
                    "pace_per_day": round(per_day, 2),
                    "hours_left": round(hours_left, 1),
                    "capacity": round(capacity, 1),
                    "predicted_breaches": predicted_n,
                },
                owner_unit_id=unit,
            )
        )
    return out


# ---------------------------------------------------------------- dissatisfaction


def dissatisfaction(session: Session, on: date) -> list[WarningFinding]:
    """Unsatisfied ratings clustering in a street x category or a unit, against the district's rate."""
    start = on - timedelta(DISSATISFIED_WINDOW - 1)
    base_start = start - timedelta(7 * BASELINE_WEEKS)
    rated, unsat = session.execute(
        select(
            func.coalesce(func.sum(StreetRollup.rated), 0),
            func.coalesce(func.sum(StreetRollup.unsatisfied), 0),
        ).where(StreetRollup.day >= base_start, StreetRollup.day < start)
    ).one()
    p0 = (int(unsat) + 1) / (int(rated) + 10) if int(rated) >= 30 else 0.1
    groups: list[tuple[str, int | None, int | None, str, int, int]] = []
    for street, cat, n, k in session.execute(
        select(
            StreetRollup.street_id,
            StreetRollup.category,
            func.sum(StreetRollup.rated),
            func.sum(StreetRollup.unsatisfied),
        )
        .where(StreetRollup.day >= start, StreetRollup.day <= on, StreetRollup.street_id != 0)
        .group_by(StreetRollup.street_id, StreetRollup.category)
    ):
        groups.append((f"dissat:street:{street}:{cat}", int(street), int(street), cat, int(n), int(k)))
    for unit, n, k in session.execute(
        select(UnitRollup.unit_id, func.sum(UnitRollup.rated), func.sum(UnitRollup.unsatisfied))
        .where(UnitRollup.day >= start, UnitRollup.day <= on, UnitRollup.unit_id != 0)
        .group_by(UnitRollup.unit_id)
    ):
        groups.append((f"dissat:unit:{unit}", None, int(unit), "", int(n), int(k)))
    names = _names(session, {g[2] for g in groups if g[2]})
    out = []
    for key, area, owner, cat, n, k in groups:
        if k < 4 or n == 0:
            continue
        p = float(binom.sf(k - 1, n, p0))
        if p >= DISSATISFIED_P or k / n < 2 * p0:
            continue
        name = names.get(owner or 0, "")
        scope = f"{name}「{cat or '未分类'}」类诉求" if area else f"{name}承办的诉求"
        out.append(
            WarningFinding(
                kind=WarningKind.dissatisfaction.value,
                severity=(Severity.critical if p < 1e-8 else Severity.warning).value,
                dedup_key=key,
                title=f"不满意聚集：{scope}近 {DISSATISFIED_WINDOW} 天不满意 {k}/{n} 件",
                summary=f"{scope}近 {DISSATISFIED_WINDOW} 天不满意率 {k / n * 100:.0f}%，"
                f"全区往常 {p0 * 100:.0f}%。",
                evidence={
                    "scope_label": scope,
                    "category": cat,
                    "window_days": DISSATISFIED_WINDOW,
                    "start": start.isoformat(),
                    "end": on.isoformat(),
                    "rated": n,
                    "unsatisfied": k,
                    "observed_rate": round(k / n, 4),
                    "expected_rate": round(p0, 4),
                    "expected": round(n * p0, 1),
                    "p_value": _p(p),
                },
                area_unit_id=area,
                owner_unit_id=owner,
            )
        )
    return out


DETECTORS = (spikes, hotspots, topics, repeat_callers, sla_risk, dissatisfaction)


def detect_all(*, session: Session, on: date) -> list[WarningFinding]:
    """Every detector's findings for a day."""
    out: list[WarningFinding] = []
    for fn in DETECTORS:
        out.extend(fn(session, on))
    return out
