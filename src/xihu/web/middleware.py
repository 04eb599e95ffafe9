"""The request guard: refuses NUL, limits public writes per address, caps body size, adds security headers.

A plain ASGI middleware rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs the rest
of the app in a task with memory streams and re-wraps every response, which on a busy intake path cost more
CPU than the guard itself. Here the response passes through untouched except for its headers.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xihu.core.config import Settings
from xihu.core.ratelimit import RateLimiter
from xihu.web.deps import CSRF_COOKIE, SESSION_COOKIE

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; frame-ancestors 'none'; form-action 'self'"
    ),
}
HSTS = (b"strict-transport-security", b"max-age=31536000")

RATE_LIMITED_POSTS = (
    "/api/appeals",
    "/report",
    "/r/",
    "/t/",
    "/open311/v2/requests",
    "/api/auth/login",
    "/login",
)

ErrorResponder = Callable[..., Response]
StaffCheck = Callable[[str], bool]


def rate_limited(method: str, path: str) -> bool:
    """Public writes (intake, rating, login) and the public similarity search are limited per address."""
    if method == "POST":
        staff_write = path.startswith("/api/appeals/") and not path.startswith("/api/appeals/track/")
        return path.startswith(RATE_LIMITED_POSTS) and not staff_write
    return path == "/api/appeals/similar"


def _csrf_cookie_header(token: str, secure: bool) -> tuple[bytes, bytes]:
    carrier = Response()
    carrier.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="lax", secure=secure)
    return next((k, v) for k, v in carrier.raw_headers if k == b"set-cookie")


class BodyTooLarge(Exception):
    """A request body without Content-Length grew past the cap while it was being read."""


class GuardMiddleware:
    """Refuses NUL, limits public writes per address, caps bodies, adds security headers and CSRF cookie."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        limiter: RateLimiter,
        is_staff: StaffCheck,
        error_response: ErrorResponder,
    ) -> None:
        self.app = app
        self.settings = settings
        self.limiter = limiter
        self.is_staff = is_staff
        self.error_response = error_response
        self.max_body = settings.max_upload_bytes * (settings.max_photos + 1)
        self.limiting = limiter.rate > 0
        self.headers = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Guard one HTTP request and add the headers to whatever answers it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        request = Request(scope, receive)
        has_csrf = bool(request.cookies.get(CSRF_COOKIE))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = message["headers"] = list(message.get("headers", ()))
                present = {key.lower() for key, _ in raw}
                raw.extend((key, value) for key, value in self.headers if key not in present)
                if https and HSTS[0] not in present:
                    raw.append(HSTS)
                if not has_csrf:
                    token = scope.get("state", {}).get("new_csrf")
                    if token:
                        raw.append(_csrf_cookie_header(token, self.settings.secure_cookies or https))
            await send(message)

        refusal = await self._refusal(scope, request)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        if request.headers.get("content-length") is not None:  # already checked against the cap above
            await self.app(scope, receive, send_with_headers)
            return
        # A chunked body announces no length: count it as it arrives, so nothing past the cap is spooled.
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_with_headers(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            response = self.error_response(
                request, 413, "too_large", "提交内容过大", "request body too large"
            )
            await response(scope, receive, send_with_headers)

    async def _refusal(self, scope: Scope, request: Request) -> Response | None:
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            # PostgreSQL cannot compare text with NUL: refuse it as bad input rather than fail with a 503.
            return self.error_response(request, 400, "invalid", "请求中含有空字符 (NUL)", "NUL in request")
        if self.limiting and rate_limited(scope["method"], scope["path"]) and not await self._staff(request):
            client = scope.get("client")
            wait = self.limiter.retry_after(client[0] if client else "unknown")
            if wait:
                response = self.error_response(
                    request,
                    429,
                    "rate_limited",
                    f"提交过于频繁，请 {wait} 秒后再试",
                    f"too many requests; retry after {wait} s",
                )
                response.headers["Retry-After"] = str(wait)
                return response
        length = request.headers.get("content-length")
        if length and length.isascii() and length.isdigit() and int(length) > self.max_body:
            return self.error_response(request, 413, "too_large", "提交内容过大", "request body too large")
        return None

    async def _staff(self, request: Request) -> bool:
        # Hotline operators share one address and submit all day: logged-in staff are not limited. Only a
        # request with a session cookie needs the database (and so a trip to the thread pool).
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return False
        return await run_in_threadpool(self.is_staff, token)
