"""Domain errors that every entry point turns into the same HTTP answer."""

from __future__ import annotations


class DomainError(Exception):
    """Base error: a status code and a Chinese message with an English gloss."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, english: str = "", detail: object | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.english = english
        self.detail = detail


class NotFound(DomainError):
    """The thing does not exist, or the actor may not know that it does."""

    status_code = 404
    code = "not_found"


class Forbidden(DomainError):
    """The actor is known but not allowed to do this."""

    status_code = 403
    code = "forbidden"


class Unauthenticated(DomainError):
    """Login is required."""

    status_code = 401
    code = "unauthenticated"


class Conflict(DomainError):
    """The action is not allowed in the current state."""

    status_code = 409
    code = "conflict"


class Invalid(DomainError):
    """The input is not acceptable."""

    status_code = 422
    code = "invalid"


class TooLarge(DomainError):
    """The upload or body is over the limit."""

    status_code = 413
    code = "too_large"


class Unavailable(DomainError):
    """The database cannot take writes right now."""

    status_code = 503
    code = "unavailable"
