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
