"""Indicators (catalog with baseline and target) and their observations by period and unit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from xihu.core import clock
from xihu.core.db import Base, UTCDateTime


class Indicator(Base):
    """One indicator of the common-prosperity system, with the sentence of the plan it comes from."""

    __tablename__ = "indicators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    unit: Mapped[str] = mapped_column(String(32), default="")
    direction: Mapped[str] = mapped_column(String(8), default="higher")
    baseline_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    baseline_year: Mapped[int | None] = mapped_column(Integer, nullable=True)
    target_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    target_year: Mapped[int | None] = mapped_column(Integer, nullable=True)
    owner: Mapped[str] = mapped_column(String(64), default="")
    levels: Mapped[str] = mapped_column(String(64), default="district")
    source_seed: Mapped[str] = mapped_column(String(64), default="")
    source_sentence: Mapped[str] = mapped_column(Text, default="")


class Observation(Base):
    """A value of an indicator for a period in a unit (no unit: the whole district)."""

    __tablename__ = "indicator_observations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    indicator_id: Mapped[int] = mapped_column(ForeignKey("indicators.id"), index=True)
    period: Mapped[str] = mapped_column(String(16))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True, index=True)
    value: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="approved")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class IndicatorReport(Base):
    """One submission (填报) of a value by the owning unit, and the approver's decision (审核).

    Rows are never deleted: a correction is a new report, so the history of every figure is kept."""

    __tablename__ = "indicator_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    indicator_id: Mapped[int] = mapped_column(ForeignKey("indicators.id"), index=True)
    period: Mapped[str] = mapped_column(String(16))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True, index=True)
    value: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(Text, default="")
    note: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    channel: Mapped[str] = mapped_column(String(8), default="form")
    submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    submitted_by_label: Mapped[str] = mapped_column(String(64), default="")
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    decided_by_label: Mapped[str] = mapped_column(String(64), default="")
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decision_reason: Mapped[str] = mapped_column(Text, default="")
    observation_id: Mapped[int | None] = mapped_column(ForeignKey("indicator_observations.id"), nullable=True)


class AssessmentScheme(Base):
    """The weights of the 考核 of one kind of unit (streets or departments), in points that sum to 100."""

    __tablename__ = "assessment_schemes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    unit_kind: Mapped[str] = mapped_column(String(16), unique=True)
    w_indicators: Mapped[float] = mapped_column(Float, default=40.0)
    w_response: Mapped[float] = mapped_column(Float, default=20.0)
    w_resolution: Mapped[float] = mapped_column(Float, default=20.0)
    w_satisfaction: Mapped[float] = mapped_column(Float, default=20.0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_by_label: Mapped[str] = mapped_column(String(64), default="")
