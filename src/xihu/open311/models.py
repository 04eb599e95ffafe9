"""Tables of the Open311 interface: client applications (api keys) and the requests they posted."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from xihu.core import clock
from xihu.core.db import Base, UTCDateTime


class Open311Client(Base):
    """A client application allowed to post service requests; only the key's SHA-256 is kept."""

    __tablename__ = "open311_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Open311Request(Base):
    """Which client posted which appeal, with the media URL it gave (the appeal keeps everything else)."""

    __tablename__ = "open311_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("open311_clients.id"), index=True)
    tracking_code: Mapped[str] = mapped_column(String(20), unique=True)
    media_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
