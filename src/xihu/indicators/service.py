"""Use cases of the indicators domain: progress by compound annual growth (OpenSDG / Statistics Canada), the
list with latest values and statuses, the indicators at risk, and the catalog loaders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from xihu.core.errors import Forbidden
from xihu.core.security import Actor, authorize
from xihu.indicators.catalog import load_catalog, load_observations
from xihu.indicators.enums import AT_RISK, Direction, Level, ObservationStatus, ProgressStatus
from xihu.indicators.models import Indicator, Observation
from xihu.indicators.schemas import IndicatorCard, IndicatorRead, Progress, SeriesPoint
from xihu.places import service as places_service
from xihu.places.enums import UnitKind

__all__ = [
    "at_risk",
    "check_area",
    "cockpit_home",
    "cockpit_scope",
    "indicator_cards",
    "latest",
    "list_indicators",
    "load_catalog",
    "load_observations",
    "progress",
    "status_counts",
]

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
    return int(head) if head.isascii() and head.isdigit() else None


def latest(observations: Sequence[_Value]) -> _Value | None:
    """The observation of the latest period (periods like "2021" or "2021-11-01")."""
    dated = [o for o in observations if _year(o.period) is not None]
    return max(dated, key=lambda o: o.period) if dated else None


def _met(direction: str, value: float, target: float) -> bool:
    return value <= target if direction == Direction.LOWER else value >= target


def _earliest_before(observations: Sequence[_Value], year: int | None) -> _Value | None:
    if year is None:
        return None
    earlier = [o for o in observations if (y := _year(o.period)) is not None and y < year]
    return min(earlier, key=lambda o: o.period) if earlier else None


def progress(
    indicator: _Target, observations: Sequence[_Value], *, own_baseline: bool = False
) -> tuple[ProgressStatus, Progress]:
    """Status of an indicator against its target, and the detail (CAGRs, their ratio, forecast).

    With baseline b in year y0, latest value v in year y1 and target t in year T: observed CAGR
    (v/b)^(1/(y1-y0)) - 1, required CAGR (t/b)^(1/(T-y0)) - 1 (ratios inverted when lower is better),
    ratio = observed/required; forecast v·(1+observed)^(T-y1) (divided when lower is better).
    As in OpenSDG, the base is the catalog's baseline, or else the series' earliest value before the latest
    one; a street's or a community's series always uses its own earliest value (`own_baseline`), because the
    district's baseline is not its starting point."""
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
    if own_baseline or b is None or y0 is None:
        first = _earliest_before(observations, y1)
        b, y0 = (first.value, _year(first.period)) if first else (None, None)
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
    # only approved figures count: reported values wait for 审核 (see reporting.decide_report)
    stmt = select(Observation).where(Observation.status == ObservationStatus.approved.value)
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


# ---------------------------------------------------------------- cockpit reads (驾驶舱)

_DISTRICT_WIDE = frozenset({"district", "department"})


def cockpit_scope(*, session: Session, actor: Actor) -> set[int] | None:
    """The units whose cockpit the actor may open: None for all (district staff and departments), else the
    actor's street with its communities, or the actor's community (a grid's staff: its community)."""
    authorize(actor, "cockpit.view")
    if actor.kind == "system" or actor.unit_id is None:
        return None
    unit = places_service.get_unit(session=session, unit_id=actor.unit_id)
    if unit.kind in _DISTRICT_WIDE:
        return None
    home = unit
    if unit.kind == UnitKind.grid.value and unit.parent_id is not None:
        home = places_service.get_unit(session=session, unit_id=unit.parent_id)
    return places_service.descendants(session=session, unit_id=home.id)


def cockpit_home(*, session: Session, actor: Actor) -> int | None:
    """The area the actor's cockpit opens at: None for the district, else its street or community."""
    scope = cockpit_scope(session=session, actor=actor)
    if scope is None or actor.unit_id is None:
        return None
    unit = places_service.get_unit(session=session, unit_id=actor.unit_id)
    if unit.kind == UnitKind.grid.value and unit.parent_id is not None:
        return unit.parent_id
    return unit.id


def check_area(*, session: Session, actor: Actor, area_unit_id: int | None) -> None:
    """Raise unless the actor may see this area's cockpit (None: the whole district)."""
    scope = cockpit_scope(session=session, actor=actor)
    if scope is None:
        return
    if area_unit_id is None or area_unit_id not in scope:
        raise Forbidden("您只能查看本街道或本社区的驾驶舱", english="cockpit is limited to the actor's area")


def _level_for(session: Session, unit_id: int | None) -> Level:
    if unit_id is None:
        return Level.district
    kind = places_service.get_unit(session=session, unit_id=unit_id).kind
    if kind == UnitKind.street.value:
        return Level.street
    if kind in (UnitKind.community.value, UnitKind.village.value):
        return Level.community
    return Level.district


def indicator_cards(
    *, session: Session, actor: Actor, unit_id: int | None = None, limit: int | None = None
) -> list[IndicatorCard]:
    """Indicators of an area (the district, a street or a community) with status, forecast and the approved
    series; the actor must be allowed to see that area."""
    check_area(session=session, actor=actor, area_unit_id=unit_id)
    level = _level_for(session, unit_id)
    by_indicator = _observations(session, unit_id)
    cards: list[IndicatorCard] = []
    for ind in session.scalars(select(Indicator).order_by(Indicator.id)):
        if level.value not in {p.strip() for p in ind.levels.split(",")}:
            continue
        series = sorted(by_indicator.get(ind.id, []), key=lambda o: o.period)
        status, detail = progress(ind, series, own_baseline=unit_id is not None)
        cards.append(
            IndicatorCard(
                code=ind.code,
                name=ind.name,
                unit=ind.unit,
                direction=ind.direction,
                target_value=ind.target_value,
                target_year=ind.target_year,
                latest_value=detail.latest_value,
                latest_period=detail.latest_period,
                status=status.value,
                status_label=status.label,
                status_colour=status.colour,
                forecast=detail.forecast,
                owner=ind.owner,
                series=[SeriesPoint(period=o.period, value=o.value) for o in series],
            )
        )
    # cards with figures first, the ones at risk at the top: what a leader should look at
    order = {s: i for i, s in enumerate(_CARD_ORDER)}
    cards.sort(key=lambda c: order[ProgressStatus(c.status)])
    return cards[:limit] if limit else cards


_CARD_ORDER = (
    ProgressStatus.deterioration,
    ProgressStatus.limited,
    ProgressStatus.moderate,
    ProgressStatus.substantial,
    ProgressStatus.achieved,
    ProgressStatus.no_data,
)


def status_counts(cards: Sequence[IndicatorCard]) -> list[tuple[str, str, str, int]]:
    """(status, label, colour, count) of a list of cards, in the order of the statuses."""
    counts = {s: 0 for s in _CARD_ORDER}
    for card in cards:
        counts[ProgressStatus(card.status)] += 1
    return [(s.value, s.label, s.colour, counts[s]) for s in _CARD_ORDER]
