"""Illustrative street and community figures for the demo (invented by the project, labelled as such).

The district's figures are the real ones loaded from the facts table; the seeds publish no street or
community figures, so the demo invents a few years of them for the indicators measured at those levels,
and sends them through the real 填报 → 审核 workflow, so that the history and the audit log look as they
would.
A few values are left pending for the 审核 queue. Running it again adds nothing."""

from __future__ import annotations

import random

from sqlalchemy import select
from sqlalchemy.orm import Session

from xihu.core.security import Actor, Role, User, create_user
from xihu.indicators import reporting
from xihu.indicators.catalog import load_catalog
from xihu.indicators.models import IndicatorReport
from xihu.indicators.schemas import ReportCreate, ReportDecision
from xihu.places import service as places_service
from xihu.places.enums import UnitKind

DEMO_SOURCE = "示范数据（项目自编，仅供演示）"
LEADER = ("leader", "区领导 沈主任", Role.leader, "330106")
# indicator -> (value around 2021, yearly drift, spread): rates and densities that make sense for an area
SERIES = {
    "childcare_places": (3.0, 0.35, 0.5),
    "culture_facility_area": (3600.0, 160.0, 500.0),
    "good_habits": (82.0, 2.2, 4.0),
    "litigation_rate": (70.0, -2.5, 8.0),
}
YEARS = (2021, 2022, 2023, 2024)
DEMO_STREET = "330106004"  # 西溪街道: its communities get figures too


def _ensure_leader(session: Session, password: str) -> None:
    username, name, role, unit_code = LEADER
    if session.scalar(select(User.id).where(User.username == username)) is None:
        unit = places_service.get_unit_by_code(session=session, code=unit_code)
        create_user(
            session=session,
            username=username,
            password=password,
            display_name=name,
            role=role,
            unit_id=unit.id,
        )


def load_demo_figures(*, session: Session, password: str, seed: int = 2026) -> list[str]:
    """Invent street/community series through the real workflow (idempotent); returns summary lines."""
    load_catalog(session=session)
    _ensure_leader(session, password)
    if session.scalar(select(IndicatorReport.id).where(IndicatorReport.source == DEMO_SOURCE).limit(1)):
        return ["共富指标示范数据：已存在"]
    rng = random.Random(seed)
    system = Actor.system("示范数据")
    approve = ReportDecision(approve=True)
    streets = places_service.list_units(session=session, kinds=[UnitKind.street])
    xixi = next(s for s in streets if s.code == DEMO_STREET)
    communities = places_service.list_units(
        session=session, kinds=[UnitKind.community, UnitKind.village], parent_id=xixi.id
    )
    approved = pending = 0
    for unit in [*streets, *communities]:
        levels = "street" if unit.kind == UnitKind.street.value else "community"
        for code, (start, drift, spread) in SERIES.items():
            if levels == "community" and code == "litigation_rate":
                continue  # measured down to streets only
            base = start + rng.uniform(-spread, spread)
            trend = drift * rng.uniform(-0.6, 1.6)
            for i, year in enumerate(YEARS):
                value = round(base + trend * i + rng.uniform(-spread, spread) * 0.1, 2)
                data = ReportCreate(
                    indicator_code=code, period=str(year), unit_id=unit.id, value=value, source=DEMO_SOURCE
                )
                made = reporting.submit_report(session=session, actor=system, data=data, channel="demo")
                # the latest year of a few streets waits in the 审核 queue
                if year == YEARS[-1] and levels == "street" and rng.random() < 0.15:
                    pending += 1
                    continue
                reporting.decide_report(session=session, actor=system, report_id=made.id, decision=approve)
                approved += 1
    session.flush()
    return [
        f"共富指标示范数据：{approved} 条已审核、{pending} 条待审核（街道与西溪街道各社区，虚构，仅供演示）",
        f"{LEADER[0]:<14} {LEADER[2].label:<10} 密码 {password}  {LEADER[1]}（驾驶舱）",
    ]
