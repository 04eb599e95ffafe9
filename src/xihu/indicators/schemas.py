"""Pydantic schemas of the indicators domain."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class IndicatorRead(BaseModel):
    """An indicator with its target, latest value and progress status (the /api/indicators contract)."""

    code: str
    name: str
    unit: str
    direction: str
    target_value: float | None
    target_year: int | None
    latest_value: float | None
    latest_period: str | None
    status: str


class ObservationRead(BaseModel):
    """One observed value."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    indicator_id: int
    period: str
    unit_id: int | None
    value: float
    source: str
    status: str


class Progress(BaseModel):
    """The detail of a progress assessment."""

    observed_cagr: float | None = None
    required_cagr: float | None = None
    ratio: float | None = None
    forecast: float | None = None
    latest_value: float | None = None
    latest_period: str | None = None


PERIOD_PATTERN = r"^\d{4}(-(0[1-9]|1[0-2]))?$"


class ReportCreate(BaseModel):
    """A value submitted (填报) by a unit: for the district when unit_id is None."""

    indicator_code: str = Field(min_length=1, max_length=64)
    period: str = Field(pattern=PERIOD_PATTERN, description="统计期: 年 (2025) 或 月 (2025-06)")
    unit_id: int | None = None
    value: float = Field(allow_inf_nan=False, ge=-1e12, le=1e12)
    source: str = Field(min_length=2, max_length=500, description="数据来源 (统计公报、台账等)")
    note: str = Field(default="", max_length=500)


class ReportDecision(BaseModel):
    """An approver's decision (审核): approve, or reject with a reason."""

    approve: bool
    reason: str = Field(default="", max_length=500)


class ReportRead(BaseModel):
    """A submission with its decision."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    indicator_id: int
    indicator_code: str
    indicator_name: str
    indicator_unit: str
    period: str
    unit_id: int | None
    unit_name: str
    value: float
    source: str
    note: str
    status: str
    status_label: str
    channel: str
    submitted_by_label: str
    submitted_at: datetime
    decided_by_label: str
    decided_at: datetime | None
    decision_reason: str


class Reportable(BaseModel):
    """An (indicator, unit) pair the actor may report for."""

    indicator_code: str
    indicator_name: str
    indicator_unit: str
    unit_id: int | None
    unit_code: str
    unit_name: str


class RowError(BaseModel):
    """One bad row of an uploaded Excel file, at its row number in the sheet."""

    row: int
    message: str
    message_en: str = ""


class ImportResult(BaseModel):
    """What an upload did: either every row imported, or nothing and the errors."""

    created: int = 0
    skipped_blank: int = 0
    errors: list[RowError] = Field(default_factory=list)


class SeriesPoint(BaseModel):
    """One approved value of a series, for trend lines."""

    period: str
    value: float


class IndicatorCard(BaseModel):
    """An indicator at one level (district or a unit): target, latest value, status and its series."""

    code: str
    name: str
    unit: str
    direction: str
    target_value: float | None
    target_year: int | None
    latest_value: float | None
    latest_period: str | None
    status: str
    status_label: str
    status_colour: str
    forecast: float | None = None
    owner: str = ""
    series: list[SeriesPoint] = Field(default_factory=list)


class SchemeRead(BaseModel):
    """The 考核 weights of one kind of unit (points; they sum to 100)."""

    model_config = ConfigDict(from_attributes=True)

    unit_kind: str
    w_indicators: float
    w_response: float
    w_resolution: float
    w_satisfaction: float
    updated_by_label: str = ""


class SchemeUpdate(BaseModel):
    """New 考核 weights: each at least 0, together 100."""

    w_indicators: float = Field(ge=0, le=100, allow_inf_nan=False)
    w_response: float = Field(ge=0, le=100, allow_inf_nan=False)
    w_resolution: float = Field(ge=0, le=100, allow_inf_nan=False)
    w_satisfaction: float = Field(ge=0, le=100, allow_inf_nan=False)


class ScoreRow(BaseModel):
    """One unit's 考核 result for a period: the four parts (0–100 each, None without data) and the total."""

    rank: int
    unit_id: int
    unit_name: str
    indicator_score: float | None
    indicators_counted: int
    response_rate: float | None
    resolution_rate: float | None
    satisfaction_rate: float | None
    appeals: int
    total: float | None
