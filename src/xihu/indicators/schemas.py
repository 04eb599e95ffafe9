"""Pydantic schemas of the indicators domain."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


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
