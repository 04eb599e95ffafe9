"""In-process domain events: side effects fan out here instead of through imports."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

Handler = Callable[..., None]
_handlers: dict[str, list[Handler]] = defaultdict(list)


def subscribe(name: str) -> Callable[[Handler], Handler]:
    """Register a handler for an event; handlers run in the publisher's transaction."""

    def register(fn: Handler) -> Handler:
        if fn not in _handlers[name]:
            _handlers[name].append(fn)
        return fn

    return register


def publish(name: str, *, session: Session, **payload: Any) -> None:
    """Call every handler of the event inside the current unit of work."""
    for fn in list(_handlers[name]):
        fn(session=session, **payload)
