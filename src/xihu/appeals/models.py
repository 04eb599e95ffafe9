"""Tables of the appeals domain: appeals, their units, timeline, deadlines, supervision, photos."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from xihu.core import clock
from xihu.core.crypto import EncryptedString
from xihu.core.db import Base, UTCDateTime


class Appeal(Base):
    """A citizen's appeal (诉求) from any channel."""

    __tablename__ = "appeals"
    __table_args__ = (
        Index("ix_appeals_state_created", "state", "created_at"),
        Index("ix_appeals_created_id", "created_at", "id"),  # the lists' order: a page reads only its rows
        Index("ix_appeals_lead_state", "lead_unit_id", "state"),
        # a unit's or an area's newest appeals, read without passing the rest (see service.search)
        Index("ix_appeals_lead_created", "lead_unit_id", "created_at", "id"),
        Index("ix_appeals_street_created", "street_id", "created_at", "id"),
        Index("ix_appeals_community_created", "community_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tracking_code: Mapped[str] = mapped_column(String(20), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text)
    category_hint: Mapped[str | None] = mapped_column(String(32), nullable=True)
    category: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    priority: Mapped[str] = mapped_column(String(12), default="normal")
    state: Mapped[str] = mapped_column(String(16), default="submitted")
    place_id: Mapped[int | None] = mapped_column(ForeignKey("places.id"), nullable=True, index=True)
    street_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True)
    community_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True)
    address: Mapped[str] = mapped_column(String(200), default="")
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Encrypted at rest (core.crypto); never filtered on, so not indexed. Repeat callers are grouped by the
    # analysis rollups' keyed hash of the phone.
    citizen_name: Mapped[str | None] = mapped_column(EncryptedString("appeals.citizen_name"), nullable=True)
    citizen_phone: Mapped[str | None] = mapped_column(EncryptedString("appeals.citizen_phone"), nullable=True)
    lead_unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True)
    reply: Mapped[str | None] = mapped_column(Text, nullable=True)
    rating: Mapped[str | None] = mapped_column(String(16), nullable=True)
    rating_comment: Mapped[str | None] = mapped_column(String(500), nullable=True)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    return_count: Mapped[int] = mapped_column(Integer, default=0)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("appeals.id"), nullable=True)
    external_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AppealUnit(Base):
    """A unit handling an appeal: the lead, or a co-handler (协办)."""

    __tablename__ = "appeal_units"
    __table_args__ = (
        UniqueConstraint("appeal_id", "unit_id"),
        # a unit's co-handled appeals, found without passing those it leads (see service.search)
        Index("ix_appeal_units_unit_role", "unit_id", "role"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    appeal_id: Mapped[int] = mapped_column(ForeignKey("appeals.id"), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    role: Mapped[str] = mapped_column(String(8))


class AppealEvent(Base):
    """One step of the timeline; public steps are shown to the citizen."""

    __tablename__ = "appeal_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    appeal_id: Mapped[int] = mapped_column(ForeignKey("appeals.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    action: Mapped[str] = mapped_column(String(24))
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(String(16))
    actor_label: Mapped[str] = mapped_column(String(64))
    actor_kind: Mapped[str] = mapped_column(String(8), default="staff")  # staff | citizen | system
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    public: Mapped[bool] = mapped_column(Boolean, default=True)


class Deadline(Base):
    """An SLA clock: a row with an indexed due time that the sweeper watches."""

    __tablename__ = "deadlines"
    __table_args__ = (Index("ix_deadlines_open_due", "open", "due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    appeal_id: Mapped[int] = mapped_column(ForeignKey("appeals.id"), index=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(12))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    open: Mapped[bool] = mapped_column(Boolean, default=True)
    met_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RoutingTask(Base):
    """An acknowledged appeal waiting for the router (XIHU_DEFER_TO_WORKERS); deleted once routed."""

    __tablename__ = "routing_tasks"

    appeal_id: Mapped[int] = mapped_column(ForeignKey("appeals.id"), primary_key=True)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(300), nullable=True)


class Supervision(Base):
    """A 督办 record: raised by a supervisor, or automatically when a deadline is breached."""

    __tablename__ = "supervisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    appeal_id: Mapped[int] = mapped_column(ForeignKey("appeals.id"), index=True)
    deadline_id: Mapped[int | None] = mapped_column(ForeignKey("deadlines.id"), nullable=True, unique=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(8))  # auto | manual
    reason: Mapped[str] = mapped_column(String(500))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class ExtensionRequest(Base):
    """A request to move the completion deadline (延期), decided by a supervisor."""

    __tablename__ = "extension_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    appeal_id: Mapped[int] = mapped_column(ForeignKey("appeals.id"), index=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True)
    hours: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(12), default="pending")
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Photo(Base):
    """A photo attached to an appeal, stored on disk under the data directory."""

    __tablename__ = "appeal_photos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    appeal_id: Mapped[int] = mapped_column(ForeignKey("appeals.id"), index=True)
    stored_name: Mapped[str] = mapped_column(String(80), unique=True)
    content_type: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class IdempotencyKey(Base):
    """Remembers a submission so that its retry returns the same appeal."""

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    appeal_id: Mapped[int] = mapped_column(ForeignKey("appeals.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class SlaPolicy(Base):
    """SLA minutes for a category / priority / unit; the most specific match wins."""

    __tablename__ = "sla_policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    category: Mapped[str | None] = mapped_column(String(32), nullable=True)
    priority: Mapped[str | None] = mapped_column(String(12), nullable=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True)
    sign_minutes: Mapped[int] = mapped_column(Integer, default=1)
    handle_minutes: Mapped[int] = mapped_column(Integer, default=30)
    complete_minutes: Mapped[int] = mapped_column(Integer, default=24 * 60)
    calendar: Mapped[str] = mapped_column(String(12), default="always")  # always | workhours


class ImportJob(Base):
    """A bulk import of a 12345 export, with progress and per-row errors; run by a worker (core.longjobs)."""

    __tablename__ = "import_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    filename: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(12), default="queued")  # queued | running | finished | failed
    total: Mapped[int] = mapped_column(Integer, default=0)
    processed: Mapped[int] = mapped_column(Integer, default=0)
    created_count: Mapped[int] = mapped_column(Integer, default=0)
    skipped_count: Mapped[int] = mapped_column(Integer, default=0)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    claimed_by: Mapped[str] = mapped_column(String(64), default="")  # the worker running it
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # see core.longjobs
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class ImportRowError(Base):
    """Why a row of an import was not imported (row None: the job itself was interrupted).

    Rows of their own, added chunk by chunk: a file whose every row fails (a misspelt street column, say)
    would otherwise rewrite an ever longer list with each chunk.
    """

    __tablename__ = "import_row_errors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("import_jobs.id"), index=True)
    row: Mapped[int | None] = mapped_column(Integer, nullable=True)  # line in the file; the header is line 1
    ref: Mapped[str] = mapped_column(String(64), default="")  # the row's 工单编号, when it has one
    error: Mapped[str] = mapped_column(String(500))
