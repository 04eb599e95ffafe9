"""The one source of time: UTC in storage, Asia/Shanghai on screen, movable in tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
_offset = timedelta(0)
_frozen: datetime | None = None


def now() -> datetime:
    """Current time as an aware UTC datetime (respecting test offsets)."""
    if _frozen is not None:
        return _frozen
    return datetime.now(UTC) + _offset


def advance(delta: timedelta) -> None:
    """Move the clock forward (tests and simulations)."""
    global _offset, _frozen
    if _frozen is not None:
        _frozen = _frozen + delta
    else:
        _offset += delta


def freeze(at: datetime | None) -> None:
    """Stop the clock at a moment, or release it with None."""
    global _frozen
    _frozen = as_utc(at) if at is not None else None


def reset() -> None:
    """Return to real time."""
    global _offset, _frozen
    _offset = timedelta(0)
    _frozen = None


def as_utc(value: datetime) -> datetime:
    """Treat naive datetimes (as SQLite returns them) as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def local(value: datetime | None) -> datetime | None:
    """Convert a stored UTC time to Asia/Shanghai for display."""
    if value is None:
        return None
    return as_utc(value).astimezone(LOCAL_TZ)


def fmt(value: datetime | None, pattern: str = "%Y-%m-%d %H:%M") -> str:
    """Format a stored time for Chinese pages."""
    loc = local(value)
    return loc.strftime(pattern) if loc else ""
