"""Use cases of the indicators domain: progress by compound annual growth (OpenSDG / Statistics Canada), the
list with latest values and statuses, the indicators at risk, and the catalog loaders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from xihu.indicators.catalog import load_catalog, load_observations
from xihu.indicators.enums import AT_RISK, Direction, ProgressStatus
from xihu.indicators.models import Indicator, Observation
from xihu.indicators.schemas import IndicatorRead, Progress

__all__ = ["at_risk", "latest", "list_indicators", "load_catalog", "load_observations", "progress"]

SUBSTANTIAL = 0.95
MODERATE = 0.5


class _Target(Protocol):
    direction: str
    baseline_value: float | None
    baseline_year: int | None
    target_value: float | None
    target_year: int | None


class _Value(Protocol):
    period: str
    value: float


def _year(period: str) -> int | None:
    head = period.strip()[:4]
    return int(head) if head.isdigit() else None


def latest(observations: Sequence[_Value]) -> _Value | None:
    """The observation of the latest period (periods like "2021" or "2021-11-01")."""
    dated = [o for o in observations if _year(o.period) is not None]
    return max(dated, key=lambda o: o.period) if dated else None


def _met(direction: str, value: float, target: float) -> bool:
    return value <= target if direction == Direction.LOWER else value >= target


def progress(indicator: _Target, observations: Sequence[_Value]) -> tuple[ProgressStatus, Progress]:
    """Status of an indicator against its target, and the detail (CAGRs, their ratio, forecast).

    With baseline b in year y0, latest value v in year y1 and target t in year T: observed CAGR
    (v/b)^(1/(y1-y0)) - 1, required CAGR (t/b)^(1/(T-y0)) - 1 (ratios inverted when lower is better),
    ratio = observed/required; forecast v·(1+observed)^(T-y1) (divided when lower is better)."""
    last = latest(observations)
    detail = Progress(latest_value=last.value if last else None, latest_period=last.period if last else None)
    t, big_t = indicator.target_value, indicator.target_year
    if last is None or t is None:
        return ProgressStatus.no_data, detail
    direction = indicator.direction
    v, y1 = last.value, _year(last.period)
    if _met(direction, v, t):
        return ProgressStatus.achieved, detail
    b, y0 = indicator.baseline_value, indicator.baseline_year
    if b is None or y0 is None or big_t is None or y1 is None or y1 <= y0 or big_t <= y0 or b <= 0 or v <= 0:
        return ProgressStatus.no_data, detail
    if t <= 0:
        return ProgressStatus.no_data, detail
    lower = direction == Direction.LOWER
    observed = ((b / v) if lower else (v / b)) ** (1 / (y1 - y0)) - 1
    required = ((b / t) if lower else (t / b)) ** (1 / (big_t - y0)) - 1
    growth = (1 + observed) ** max(big_t - y1, 0)
    detail.observed_cagr = observed
    detail.required_cagr = required
    detail.forecast = v / growth if lower else v * growth
    if required <= 0:
        # the baseline already met the target, but the latest value does not: the indicator went backwards
        return ProgressStatus.deterioration, detail
    ratio = observed / required
    detail.ratio = ratio
    if ratio >= SUBSTANTIAL:
        return ProgressStatus.substantial, detail
    if ratio >= MODERATE:
        return ProgressStatus.moderate, detail
    if ratio > 0:
        return ProgressStatus.limited, detail
    return ProgressStatus.deterioration, detail


def _observations(session: Session, unit_id: int | None) -> dict[int, list[Observation]]:
    stmt = select(Observation)
    stmt = stmt.where(Observation.unit_id.is_(None) if unit_id is None else Observation.unit_id == unit_id)
    found: dict[int, list[Observation]] = {}
    for obs in session.scalars(stmt):
        found.setdefault(obs.indicator_id, []).append(obs)
    return found


def list_indicators(*, session: Session, unit_id: int | None = None) -> list[IndicatorRead]:
    """Every indicator with its target, latest value and progress status (district level unless a unit)."""
    by_indicator = _observations(session, unit_id)
    rows = []
    for ind in session.scalars(select(Indicator).order_by(Indicator.id)):
        status, detail = progress(ind, by_indicator.get(ind.id, []))
        rows.append(
            IndicatorRead(
                code=ind.code,
                name=ind.name,
                unit=ind.unit,
                direction=ind.direction,
                target_value=ind.target_value,
                target_year=ind.target_year,
                latest_value=detail.latest_value,
                latest_period=detail.latest_period,
                status=status.value,
            )
        )
    return rows


def at_risk(*, session: Session, unit_id: int | None = None) -> list[IndicatorRead]:
    """The indicators whose progress is limited or going backwards."""
    risky = {s.value for s in AT_RISK}
    return [row for row in list_indicators(session=session, unit_id=unit_id) if row.status in risky]
