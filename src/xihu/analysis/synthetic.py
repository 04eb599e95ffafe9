"""Generated appeal facts for benchmarks, tests and demos, shaped exactly as the rollup upkeep writes them.

Nothing here touches real appeals: the rows stand for appeals that would exist, so that the rollups and the
detectors can be exercised at city scale (millions of appeals) without running the full intake path for each.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Table
from sqlalchemy.orm import Session

from xihu.analysis import rollup
from xihu.analysis.models import MEASURES, AppealFact

# A few words per category: a generated title is made of one or two of them.
VOCABULARY: dict[str, tuple[str, ...]] = {
    "城乡建设": ("路灯", "电梯", "物业", "违建", "井盖", "停车", "漏水", "绿化", "下水道"),
    "环境保护": ("噪音", "油烟", "污水", "扬尘", "异味", "河道", "垃圾"),
    "交通运输": ("公交", "红绿灯", "拥堵", "共享单车", "站台", "网约车"),
    "教育文体": ("学校", "幼儿园", "入学", "培训", "体育", "图书馆"),
    "劳动和社会保障": ("工资", "社保", "养老金", "医保", "公积金", "欠薪"),
    "卫生计生": ("医院", "疫苗", "诊所", "药店", "看病"),
    "商贸旅游": ("商家", "超市", "退款", "景区", "门票", "餐饮"),
}
CATEGORY_WEIGHTS = (30, 20, 12, 10, 10, 8, 10)
CHANNELS = ("hotline", "web", "qr", "import_12345")
CHANNEL_WEIGHTS = (50, 20, 20, 10)
# The district's bounding box (WGS-84, approximately): generated points fall inside it.
LAT_RANGE = (30.13, 30.33)
LON_RANGE = (119.99, 120.17)


@dataclass
class Geography:
    """Where generated appeals may fall: streets with their communities, and the handling units."""

    streets: list[tuple[int, list[int]]]
    units: list[int]
    centres: dict[int, tuple[float, float]] = field(default_factory=dict)


@dataclass
class Plan:
    """What to generate: a period, a daily volume and rates of the lifecycle outcomes."""

    start: date
    days: int
    per_day: float
    seed: int = 7
    first_id: int = 1
    completed: float = 0.9
    rated: float = 0.7
    unsatisfied: float = 0.08
    sign_on_time: float = 0.95
    complete_on_time: float = 0.9
    phone_pool: int = 1_000_000


def fact(
    *,
    appeal_id: int,
    day: date,
    category: str,
    street_id: int,
    community_id: int,
    channel: str = "hotline",
    unit_id: int = 0,
    lat: float | None = None,
    lon: float | None = None,
    phone: str | None = None,
    done: bool = True,
    rating: str | None = None,
    on_time: bool = True,
    terms: list[str] | None = None,
) -> dict[str, Any]:
    """One generated fact row (with its title terms under "terms")."""
    rated = rating is not None
    return {
        "appeal_id": appeal_id,
        "day": day,
        "category": category,
        "street_id": street_id,
        "community_id": community_id,
        "channel": channel,
        "unit_id": unit_id,
        "place_id": None,
        "cell": rollup.cell_of(lat, lon),
        "phone_hash": hashlib.sha256(phone.encode()).hexdigest()[:16] if phone else None,
        "received": 1,
        "open": int(not done),
        "completed": int(done),
        "complete_due": int(unit_id != 0),
        "completed_on_time": int(done and on_time and unit_id != 0),
        "sign_due": int(unit_id != 0),
        "signed_on_time": int(unit_id != 0 and on_time),
        "rated": int(rated),
        "satisfied": int(rated and rating != "unsatisfied"),
        "unsatisfied": int(rating == "unsatisfied"),
        "terms": terms or [],
    }


def generate(plan: Plan, geo: Geography) -> Iterator[dict[str, Any]]:
    """Quiet appeals: steady Poisson volume per day, outcomes at constant rates, points spread out."""
    rng = random.Random(plan.seed)
    cats = list(VOCABULARY)
    next_id = plan.first_id
    for offset in range(plan.days):
        day = plan.start + timedelta(offset)
        n = _poisson(rng, plan.per_day)
        for _ in range(n):
            cat = rng.choices(cats, CATEGORY_WEIGHTS)[0]
            street_id, communities = rng.choice(geo.streets)
            community = rng.choice(communities) if communities else 0
            unit = rng.choice(geo.units) if geo.units else 0
            done = rng.random() < plan.completed
            rating = None
            if done and rng.random() < plan.rated:
                rating = "unsatisfied" if rng.random() < plan.unsatisfied else "satisfied"
            words = rng.sample(VOCABULARY[cat], k=rng.choice((1, 1, 2)))
            yield fact(
                appeal_id=next_id,
                day=day,
                category=cat,
                street_id=street_id,
                community_id=community,
                channel=rng.choices(CHANNELS, CHANNEL_WEIGHTS)[0],
                unit_id=unit,
                lat=rng.uniform(*LAT_RANGE),
                lon=rng.uniform(*LON_RANGE),
                phone=f"1{rng.randrange(3, 10)}{rng.randrange(plan.phone_pool):09d}",
                done=done,
                rating=rating,
                on_time=rng.random() < plan.complete_on_time,
                terms=words,
            )
            next_id += 1


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method for small means, a rounded normal for large ones (fast enough for millions of draws).
    if lam > 30:
        return max(0, round(rng.gauss(lam, lam**0.5)))
    limit, k, p = pow(2.718281828459045, -lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def load(session: Session, rows: list[dict[str, Any]]) -> int:
    """Write generated facts and add them to the rollups the way the upkeep does (bulk statements)."""
    if not rows:
        return 0
    table: Table = AppealFact.__table__  # type: ignore[assignment]
    cols = {c.name for c in table.columns}
    session.execute(table.insert(), [{k: v for k, v in r.items() if k in cols} for r in rows])
    rollup.add_to_rollups(session, rows)
    terms: dict[tuple[date, str], int] = {}
    for r in rows:
        for t in r.get("terms", []):
            terms[(r["day"], t)] = terms.get((r["day"], t), 0) + 1
    rollup.add_terms(session, terms)
    session.flush()
    return len(rows)


def measures_of(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Summed measures of some rows (tests compare them with the rollups)."""
    return {m: sum(r[m] for r in rows) for m in MEASURES}


def geography(session: Session) -> Geography:
    """The district's streets, communities and departments, from the reference data."""
    from xihu.places import service as places_service
    from xihu.places.enums import UnitKind

    streets = places_service.list_units(session=session, kinds=[UnitKind.street])
    communities = places_service.list_units(session=session, kinds=[UnitKind.community, UnitKind.village])
    by_street: dict[int, list[int]] = {s.id: [] for s in streets}
    for c in communities:
        if c.parent_id in by_street:
            by_street[c.parent_id].append(c.id)
    departments = places_service.list_units(session=session, kinds=[UnitKind.department])
    return Geography(
        streets=sorted(by_street.items()), units=[d.id for d in departments] + [s.id for s in streets]
    )
