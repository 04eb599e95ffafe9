"""Tables of the analysis domain: per-appeal facts, the rollups read by pages and detectors, warnings."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from xihu.core import clock
from xihu.core.db import Base, UTCDateTime

# The measures every rollup carries; a fact row holds each as 0/1 for its appeal.
MEASURES: tuple[str, ...] = (
    "received",
    "open",
    "completed",
    "complete_due",
    "completed_on_time",
    "sign_due",
    "signed_on_time",
    "rated",
    "satisfied",
    "unsatisfied",
)


class _Measures:
    """Counters shared by the fact row and the rollups."""

    received: Mapped[int] = mapped_column(Integer, default=0)
    open: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    complete_due: Mapped[int] = mapped_column(Integer, default=0)
    completed_on_time: Mapped[int] = mapped_column(Integer, default=0)
    sign_due: Mapped[int] = mapped_column(Integer, default=0)
    signed_on_time: Mapped[int] = mapped_column(Integer, default=0)
    rated: Mapped[int] = mapped_column(Integer, default=0)
    satisfied: Mapped[int] = mapped_column(Integer, default=0)
    unsatisfied: Mapped[int] = mapped_column(Integer, default=0)


class RollupQueue(Base):
    """An appeal whose rollups a worker still has to update (XIHU_DEFER_TO_WORKERS); deleted once applied.

    Not unique per appeal on purpose: a request only inserts, so it never waits on a worker's lock.
    """

    __tablename__ = "analysis_rollup_queue"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    appeal_id: Mapped[int] = mapped_column(Integer)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class AppealFact(_Measures, Base):
    """What the rollups last counted for one appeal, so that a change applies as a delta.

    Dimensions use 0 / "" for "none" so that they can be part of the rollups' primary keys.
    """

    __tablename__ = "analysis_appeal_facts"
    __table_args__ = (
        Index("ix_analysis_facts_phone_day", "phone_hash", "day"),
        Index("ix_analysis_facts_cell_day", "cell", "day"),
        Index("ix_analysis_facts_place_day", "place_id", "day"),
    )

    appeal_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    day: Mapped[date] = mapped_column(Date, index=True)
    category: Mapped[str] = mapped_column(String(32), default="")
    street_id: Mapped[int] = mapped_column(Integer, default=0)
    community_id: Mapped[int] = mapped_column(Integer, default=0)
    channel: Mapped[str] = mapped_column(String(16), default="")
    unit_id: Mapped[int] = mapped_column(Integer, default=0)
    place_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cell: Mapped[str | None] = mapped_column(String(24), nullable=True)
    phone_hash: Mapped[str | None] = mapped_column(String(16), nullable=True)


class DistrictRollup(_Measures, Base):
    """Counts by day x category x channel: the smallest rollup, read by the district-wide figures."""

    __tablename__ = "analysis_rollup_district"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)


class AreaRollup(_Measures, Base):
    """Counts by day x category x street x community x channel (community-level analysis)."""

    __tablename__ = "analysis_rollup_area"
    __table_args__ = (
        Index("ix_analysis_rollup_area_community_day", "community_id", "day"),
        Index("ix_analysis_rollup_area_street_day", "street_id", "day"),
    )

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    street_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    community_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)


class StreetRollup(_Measures, Base):
    """Counts by day x category x street x channel: the coarse rollup the district views read."""

    __tablename__ = "analysis_rollup_street"
    __table_args__ = (Index("ix_analysis_rollup_street_street_day", "street_id", "day"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    street_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)


class StreetDayRollup(_Measures, Base):
    """Counts by day x street only: the district's per-street figures when no category or channel is set."""

    __tablename__ = "analysis_rollup_street_day"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    street_id: Mapped[int] = mapped_column(Integer, primary_key=True)


class CommunityDayRollup(_Measures, Base):
    """Counts by day x community only: a street's per-community figures and a community's daily series when
    no category or channel is set (a few rows a day per street instead of hundreds)."""

    __tablename__ = "analysis_rollup_community_day"
    __table_args__ = (Index("ix_analysis_rollup_community_day_community_day", "community_id", "day"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    street_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    community_id: Mapped[int] = mapped_column(Integer, primary_key=True)


class UnitRollup(_Measures, Base):
    """Counts by day x lead unit x category (assessment of handling units, SLA risk)."""

    __tablename__ = "analysis_rollup_unit"
    __table_args__ = (Index("ix_analysis_rollup_unit_unit_day", "unit_id", "day"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    unit_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True)


class DistrictMonthRollup(_Measures, Base):
    """DistrictRollup by calendar month (``month`` is its first day): long periods read whole months here."""

    __tablename__ = "analysis_rollup_district_month"

    month: Mapped[date] = mapped_column(Date, primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)


class AreaMonthRollup(_Measures, Base):
    """AreaRollup by calendar month."""

    __tablename__ = "analysis_rollup_area_month"
    __table_args__ = (
        Index("ix_analysis_rollup_area_month_community_month", "community_id", "month"),
        Index("ix_analysis_rollup_area_month_street_month", "street_id", "month"),
    )

    month: Mapped[date] = mapped_column(Date, primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    street_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    community_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)


class StreetMonthRollup(_Measures, Base):
    """StreetRollup by calendar month."""

    __tablename__ = "analysis_rollup_street_month"
    __table_args__ = (Index("ix_analysis_rollup_street_month_street_month", "street_id", "month"),)

    month: Mapped[date] = mapped_column(Date, primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    street_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)


class StreetTotalMonthRollup(_Measures, Base):
    """StreetDayRollup by calendar month (per street only, no category or channel)."""

    __tablename__ = "analysis_rollup_street_total_month"

    month: Mapped[date] = mapped_column(Date, primary_key=True)
    street_id: Mapped[int] = mapped_column(Integer, primary_key=True)


class CommunityTotalMonthRollup(_Measures, Base):
    """CommunityDayRollup by calendar month."""

    __tablename__ = "analysis_rollup_community_total_month"

    month: Mapped[date] = mapped_column(Date, primary_key=True)
    street_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    community_id: Mapped[int] = mapped_column(Integer, primary_key=True)


class UnitMonthRollup(_Measures, Base):
    """UnitRollup by calendar month."""

    __tablename__ = "analysis_rollup_unit_month"
    __table_args__ = (Index("ix_analysis_rollup_unit_month_unit_month", "unit_id", "month"),)

    month: Mapped[date] = mapped_column(Date, primary_key=True)
    unit_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True)


class TermRollup(Base):
    """How many appeals received on a day use a term (emerging topics)."""

    __tablename__ = "analysis_rollup_term"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    term: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class AnalysisWarning(Base):
    """A warning raised by a detector: severity, evidence, an owner; closed by supervisors."""

    __tablename__ = "analysis_warnings"
    __table_args__ = (Index("ix_analysis_warnings_state_created", "state", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    severity: Mapped[str] = mapped_column(String(12))
    dedup_key: Mapped[str] = mapped_column(String(200), index=True)
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    area_unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True, index=True)
    owner_unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="open")
    seen_count: Mapped[int] = mapped_column(SmallInteger, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    close_note: Mapped[str | None] = mapped_column(String(500), nullable=True)
