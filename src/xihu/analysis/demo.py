"""Demo warnings: a few illustrative appeals that a supervisor would want flagged, then a detector run."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from xihu.analysis import rollup, service
from xihu.appeals import service as appeal_service
from xihu.appeals.enums import Channel
from xihu.appeals.schemas import AppealCreate
from xihu.core import clock
from xihu.core.db import unit_of_work
from xihu.core.security import Actor

DEMO_ACTOR = Actor.system("示范数据")
# One caller, one corner, several days in a row: both a repeat caller and a hotspot (illustrative only).
NOISE = (
    "文三路与学院路口夜间施工噪音很大，凌晨还在施工，严重影响休息",
    "学院路口工地又在夜间施工，噪音扰民，之前反映过还没有解决",
    "文三路学院路口施工噪音，晚上十一点以后还在打桩",
    "再次反映文三路学院路口夜间施工噪音问题，希望尽快处理",
    "学院路口夜间施工噪音持续一周，居民无法入睡",
    "文三路学院路口工地夜间施工，噪音扰民，请督促整改",
    "学院路口工地凌晨运渣车进出，噪音和灰尘很大",
    "第八次反映文三路学院路口夜间施工噪音，至今没有改善",
)


def load_demo_warnings(factory: sessionmaker[Session]) -> list[str]:
    """Add the illustrative appeals (once), recount the rollups and run the detectors."""
    real_now = clock.now()
    try:
        for i, text in enumerate(NOISE):
            clock.freeze(real_now - timedelta(days=(len(NOISE) - i) * 5 / len(NOISE), hours=3))
            with unit_of_work(factory) as session:
                appeal_service.submit(
                    session=session,
                    actor=DEMO_ACTOR,
                    appeal_in=AppealCreate(
                        description=text,
                        address="文三路与学院路交叉口",
                        lat=30.2772 + 0.0003 * (i % 2),
                        lon=120.1275 - 0.0002 * (i % 3),
                        citizen_name="刘女士",
                        citizen_phone="13905710000",
                        external_id=f"DEMO-NOISE-{i}",
                    ),
                    channel=Channel.hotline,
                    auto_route=True,
                )
    finally:
        clock.reset()
    with unit_of_work(factory) as session:
        counted = rollup.rebuild(session)
    with unit_of_work(factory) as session:
        result = service.run_detectors(session=session, actor=Actor.system("预警研判"))
    found = "，".join(f"{k}={v}" for k, v in sorted(result["by_kind"].items())) or "无"
    return [f"预警研判 (analysis): 汇总 {counted} 件诉求，在办预警 {result['raised']} 条新增（{found}）"]
