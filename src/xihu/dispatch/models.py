"""Tables of the dispatch domain: decisions, model versions, responsibility table, boundaries, feedback."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from xihu.core import clock
from xihu.core.db import Base, UTCDateTime


class DispatchDecision(Base):
    """What the router proposed for an appeal, and whether it dispatched alone."""

    __tablename__ = "dispatch_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    appeal_id: Mapped[int] = mapped_column(ForeignKey("appeals.id"), index=True)
    model_version: Mapped[str] = mapped_column(String(40))
    category: Mapped[str | None] = mapped_column(String(32), nullable=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True)
    confidence: Mapped[float] = mapped_column(Float, default=0.0)
    auto: Mapped[bool] = mapped_column(Boolean, default=False)
    # the 权责清单 rule that named the unit (no foreign key: a decision outlives edits of the table)
    rule_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now, index=True)


class ModelVersion(Base):
    """A trained category model on disk, with its metrics; one version is active at a time."""

    __tablename__ = "dispatch_model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(40), unique=True)
    path: Mapped[str] = mapped_column(String(255))
    threshold: Mapped[float] = mapped_column(Float, default=1.0)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    note: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class TrainingJob(Base):
    """A retraining run by a worker (core.longjobs): a web request would outlast a proxy's timeout."""

    __tablename__ = "dispatch_training_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(12), default="queued")  # queued | running | finished | failed
    note: Mapped[str] = mapped_column(String(200), default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    version: Mapped[str | None] = mapped_column(String(40), nullable=True)  # the version it trained
    error: Mapped[str] = mapped_column(String(300), default="")
    claimed_by: Mapped[str] = mapped_column(String(64), default="")  # the worker running it
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # see core.longjobs
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class ResponsibilityRule(Base):
    """权责清单: category (+ keywords, place type, hours, area) -> the responsible unit or the street."""

    __tablename__ = "dispatch_responsibility_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    category: Mapped[str] = mapped_column(String(32), index=True)
    keywords: Mapped[str] = mapped_column(String(255), default="")  # comma-separated; any one matches
    place_type: Mapped[str | None] = mapped_column(String(24), nullable=True)
    hour_from: Mapped[int | None] = mapped_column(Integer, nullable=True)  # local hour, inclusive
    hour_to: Mapped[int | None] = mapped_column(Integer, nullable=True)  # local hour, exclusive
    street_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True)
    target: Mapped[str] = mapped_column(String(12), default="unit")  # unit | street | community
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_by: Mapped[str] = mapped_column(String(64), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class ResponsibilityHistory(Base):
    """Every change of the responsibility table, with before and after."""

    __tablename__ = "dispatch_responsibility_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(Integer, index=True)
    action: Mapped[str] = mapped_column(String(12))  # create | update | delete
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    actor_label: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class Boundary(Base):
    """A street or community boundary (GeoJSON, stored in WGS84) for point-in-polygon location."""

    __tablename__ = "dispatch_boundaries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), unique=True)
    geometry: Mapped[dict[str, Any]] = mapped_column(JSON)
    min_lon: Mapped[float] = mapped_column(Float)
    min_lat: Mapped[float] = mapped_column(Float)
    max_lon: Mapped[float] = mapped_column(Float)
    max_lat: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(200), default="")
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class DispatchFeedback(Base):
    """A labelled correction: a return with the right unit/category, or a manual dispatch."""

    __tablename__ = "dispatch_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    appeal_id: Mapped[int] = mapped_column(ForeignKey("appeals.id"), index=True)
    kind: Mapped[str] = mapped_column(String(12))  # return | manual | transfer
    text: Mapped[str] = mapped_column(Text)  # title + description, so training never reads appeals tables
    category: Mapped[str | None] = mapped_column(String(32), nullable=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True)
    predicted_category: Mapped[str | None] = mapped_column(String(32), nullable=True)
    predicted_unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(40), nullable=True)
    reason: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now, index=True)
    # an admin may keep a wrong correction out of training (the row stays, for the record)
    excluded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    excluded_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    excluded_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
