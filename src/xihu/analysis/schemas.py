"""Pydantic schemas of the analysis domain: figures for pages and the cockpit, warnings, briefs."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field


class CategoryCount(BaseModel):
    """Appeals received in one category."""

    category: str
    count: int


class DayCount(BaseModel):
    """Appeals received on a day, and how many of those are completed."""

    day: date
    received: int
    completed: int


class AreaFigures(BaseModel):
    """The headline rates of one child area (a street of the district, a community of a street)."""

    unit_id: int
    name: str
    received: int
    response_rate: float | None
    resolution_rate: float | None
    satisfaction_rate: float | None


class ChannelCount(BaseModel):
    """Appeals received through one channel."""

    channel: str
    label: str
    count: int


class AppealFigures(BaseModel):
    """Appeal figures of an area over a period, read from the rollups (appeals counted by the day received).

    Rates are None when their denominator is 0. Merged duplicates are not counted.
    """

    area_unit_id: int | None
    area_name: str
    start: date
    end: date
    received: int = 0
    open: int = 0
    completed: int = 0
    complete_due: int = 0
    completed_on_time: int = 0
    sign_due: int = 0
    signed_on_time: int = 0
    rated: int = 0
    satisfied: int = 0
    unsatisfied: int = 0
    response_rate: float | None = None  # 签收及时率 = signed_on_time / sign_due
    resolution_rate: float | None = None  # 办结率 = completed / received
    on_time_completion_rate: float | None = None  # 按时办结率 = completed_on_time / complete_due
    satisfaction_rate: float | None = None  # 满意率 = satisfied (满意+基本满意) / rated
    top_categories: list[CategoryCount] = Field(default_factory=list)
    by_channel: list[ChannelCount] = Field(default_factory=list)
    by_area: list[AreaFigures] = Field(default_factory=list)
    by_day: list[DayCount] = Field(default_factory=list)


class UnitRates(BaseModel):
    """The three assessment rates of a handling unit (by the lead unit of each appeal)."""

    unit_id: int
    name: str
    received: int
    completed: int
    response_rate: float | None
    resolution_rate: float | None
    satisfaction_rate: float | None
    on_time_completion_rate: float | None = None


class WarningRead(BaseModel):
    """A warning as lists, the cockpit and the detail page show it."""

    id: int
    kind: str
    kind_label: str
    severity: str
    severity_label: str
    severity_colour: str
    title: str
    summary: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    explanation: list[str] = Field(default_factory=list)
    area_unit_id: int | None = None
    area_name: str = ""
    owner_unit_id: int | None = None
    owner_name: str = ""
    state: str
    state_label: str
    state_colour: str
    created_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None
    close_note: str | None = None


class WarningFinding(BaseModel):
    """What a detector observed, before it becomes (or refreshes) a warning."""

    kind: str
    severity: str
    dedup_key: str
    title: str
    summary: str
    evidence: dict[str, Any]
    area_unit_id: int | None = None
    owner_unit_id: int | None = None


class DetectorRun(BaseModel):
    """The result of one run of every detector."""

    found: int
    raised: int
    refreshed: int
    by_kind: dict[str, int]


class AnalysisFilter(BaseModel):
    """Filters of the analysis pages."""

    start: date
    end: date
    area_unit_id: int | None = None
    category: str | None = None
    channel: str | None = None
