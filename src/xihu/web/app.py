"""The application factory: one FastAPI app composed from the domains' routers."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from xihu.core import crypto, security
from xihu.core.config import Settings, get_settings
from xihu.core.db import make_engine, make_session_factory
from xihu.core.errors import DomainError
from xihu.core.jobs import BackgroundLoop
from xihu.core.ratelimit import RateLimiter
from xihu.web.middleware import GuardMiddleware

log = logging.getLogger("xihu.web")
STATIC = Path(__file__).resolve().parent / "static"

FIELD_NAMES = {
    "description": "诉求内容",
    "citizen_phone": "联系电话",
    "citizen_name": "姓名",
    "title": "标题",
    "reason": "原因",
    "reply": "答复",
    "unit_id": "承办单位",
    "rating": "评价",
    "hours": "延期时长",
    "lat": "纬度",
    "lon": "经度",
    "address": "地址",
    "name": "名称",
    "local_hour": "时刻",
    "place_type": "地点类型",
    "category_hint": "类别",
}


class ErrorDetail(BaseModel):
    """An error: a stable code, a Chinese message for people and its English gloss."""

    code: str = Field(examples=["conflict"])
    message: str = Field(examples=["当前状态「已办结待评价」不能执行「签收」（可执行：评价、归档）"])
    message_en: str = Field(examples=["action sign is not allowed in state completed"])
    detail: Any = None


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer of the JSON API (Open311 routes use the GeoReport format)."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "请求有误 (bad request)",
        401: "请先登录 (login required)",
        403: "无权操作 (forbidden)",
        404: "不存在或不在办理范围内 (not found)",
        409: "当前状态不允许 (conflict)",
        413: "内容过大 (too large)",
        422: "输入有误 (invalid input)",
        429: "过于频繁 (rate limited)",
        503: "暂不可写 (unavailable)",
    }.items()
}


def _disk_full(exc: BaseException) -> bool:
    """Whether a database error says the storage is full (SQLITE_FULL, or PostgreSQL's SQLSTATE 53100)."""
    # SQLite rolls the whole transaction back on SQLITE_FULL, so what reaches us may be the failed
    # ROLLBACK TO SAVEPOINT that followed: look along the chain of causes for the full disk.
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        orig = getattr(seen, "orig", seen)
        if getattr(orig, "sqlstate", None) == "53100" or "database or disk is full" in str(orig):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


HTTP_MESSAGES = {
    404: ("not_found", "您访问的页面或资源不存在，请检查网址"),
    405: ("method_not_allowed", "不支持此请求方式"),
}


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith(("/api/", "/open311/")) or "application/json" in request.headers.get("accept", "")


def _error_response(
    request: Request, status: int, code: str, message: str, english: str, detail: object = None
) -> Response:
    if _wants_json(request):
        return JSONResponse(
            {"error": {"code": code, "message": message, "message_en": english, "detail": detail}},
            status_code=status,
        )
    from xihu.web.templating import render

    return render(request, "error.html", status_code=status, status=status, message=message)  # type: ignore[no-any-return]


def _validation_message(exc: RequestValidationError) -> tuple[str, list[dict[str, object]]]:
    parts: list[str] = []
    details: list[dict[str, object]] = []
    for err in exc.errors():
        loc = err.get("loc") or ("",)
        field = str(loc[-1])
        label = FIELD_NAMES.get(field, field)
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        ctx = err.get("ctx") or {}
        kind = err.get("type", "")
        if kind == "json_invalid":  # its location is the byte offset, which means nothing to a reader
            field, zh = "body", f"请求内容不是有效的 JSON（第 {loc[-1]} 个字符附近）"
        elif kind == "missing":
            zh = f"请填写{label}"
        elif kind == "string_too_short":
            zh = f"{label}至少 {ctx.get('min_length')} 个字"
        elif kind == "string_too_long":
            zh = f"{label}不能超过 {ctx.get('max_length')} 个字"
        elif kind.startswith(("int_", "float_")):
            zh = f"{label}必须是数字"
        elif kind in ("greater_than_equal", "less_than_equal"):
            zh = f"{label}超出允许范围"
        else:
            zh = f"{label}：{msg}"
        parts.append(zh)
        details.append({"field": field, "message": zh, "message_en": str(err.get("msg", ""))})
    return "；".join(parts) or "输入有误", details


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the platform's web application for the given settings."""
    settings = settings or get_settings()
    settings.check_secrets()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    crypto.configure(settings)  # refuses to start without XIHU_PII_KEY outside demo mode
    engine = make_engine(
        settings.database_url, pool_size=settings.db_pool_size, pool_timeout=settings.db_pool_timeout_seconds
    )
    factory = make_session_factory(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from xihu.analysis import rollup
        from xihu.dispatch import model_cache

        loop = None

        # The dispatch model trained on real appeals (0.1 s to load and prepare since
        # model files leave out the vocabulary dicts, 1.6 s before) and jieba's dictionary
        # (1.1 s) are loaded at start, not inside the first citizen's submission, which took 2.4 s without.
        def warm() -> None:
            rollup.warm()
            model_cache.warm(factory, settings.data_dir)

        threading.Thread(target=warm, name="xihu-warm", daemon=True).start()
        if settings.run_sweeper_in_process:
            loop = BackgroundLoop(factory, f"web-{os.getpid()}", settings.sweep_interval_seconds)
            loop.start()
        app.state.background_loop = loop  # requests that queue work wake it (see deps.wake_background_work)
        try:
            yield
        finally:
            if loop is not None:
                loop.stop()
            engine.dispose()

    app = FastAPI(
        title="西湖区共同富裕示范区平台 · 民呼我为·西湖码",
        version="0.1.0",
        lifespan=lifespan,
        description="民呼我为·西湖码 诉求受理、派单、处置、评价全流程接口。Errors carry a Chinese "
        "`message` and an English `message_en`.",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = factory

    def _is_staff(token: str) -> bool:
        with app.state.session_factory() as session:
            return security.actor_for_token(session=session, token=token).is_staff

    app.add_middleware(
        GuardMiddleware,
        settings=settings,
        limiter=RateLimiter(settings.rate_limit_per_minute),
        is_staff=_is_staff,
        error_response=_error_response,
    )

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        return _error_response(request, exc.status_code, exc.code, exc.message, exc.english, exc.detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # the framework's own errors (no such page, wrong method) in the same Chinese shape as ours
        code, message = HTTP_MESSAGES.get(exc.status_code, ("http_error", "请求无法处理"))
        response = _error_response(request, exc.status_code, code, message, str(exc.detail))
        response.headers.update(exc.headers or {})  # e.g. Allow on a 405
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        message, details = _validation_message(exc)
        return _error_response(request, 422, "invalid", message, "invalid input", details)

    @app.exception_handler(DataError)
    async def bad_value(request: Request, exc: DataError) -> Response:
        # The database refused a value the schemas let through (a number beyond its column's range, say):
        # that is the client's input, and the transaction was rolled back, so nothing was written.
        log.info("value refused by the database: %s", exc.orig)
        return _error_response(request, 422, "invalid", "输入的数值或内容超出允许范围", "value out of range")

    @app.exception_handler(PoolTimeout)
    async def pool_exhausted(request: Request, exc: Exception) -> Response:
        # every connection of this process stayed busy for db_pool_timeout_seconds: overloaded, not broken
        log.warning("no database connection free: %s", exc)
        return _error_response(
            request,
            503,
            "unavailable",
            "系统繁忙，请稍后重试；您的提交未被保存",
            "server busy; nothing was saved",
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def db_down(request: Request, exc: Exception) -> Response:
        if _disk_full(exc):
            # not transient like a restart: an operator has to free space, so say so at error level
            log.error("database error: storage is full: %s", exc)
            return _error_response(
                request,
                503,
                "unavailable",
                "系统存储空间已满，暂时无法保存，请稍后重试；您的提交未被保存",
                "database storage is full; nothing was saved",
            )
        log.warning("database error: %s", exc)
        return _error_response(
            request,
            503,
            "unavailable",
            "系统繁忙或数据库暂不可写，请稍后重试；您的提交未被保存",
            "database unavailable; nothing was saved",
        )

    @app.get("/healthz", tags=["ops"])
    def healthz() -> JSONResponse:
        """Ready when the database answers."""
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:  # noqa: BLE001 - any failure means not ready
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": engine.dialect.name})

    @app.get("/noop", tags=["ops"], include_in_schema=False)
    def noop() -> dict[str, bool]:
        """A no-op endpoint: the baseline that benchmarks compare against."""
        return {"ok": True}

    from xihu.analysis import api as analysis_api
    from xihu.analysis import jobs as _analysis_jobs  # noqa: F401 - registers the periodic detector run
    from xihu.analysis import pages as analysis_pages
    from xihu.appeals import api as appeals_api
    from xihu.appeals import jobs as _appeal_jobs  # noqa: F401 - registers the SLA sweeper
    from xihu.appeals import pages as appeals_pages
    from xihu.appeals import pages_queue as appeals_queue
    from xihu.core import outbox as _outbox  # noqa: F401 - registers the outbox delivery job
    from xihu.dispatch import api as dispatch_api
    from xihu.dispatch import api_rules as dispatch_rules_api
    from xihu.dispatch import jobs as _dispatch_jobs  # noqa: F401 - registers retraining runs
    from xihu.dispatch import pages as dispatch_pages
    from xihu.dispatch import pages_feedback as dispatch_feedback
    from xihu.dispatch import pages_report as dispatch_report
    from xihu.dispatch import pages_rules as dispatch_rules_pages
    from xihu.indicators import api as indicators_api
    from xihu.indicators import pages as indicators_pages
    from xihu.open311 import api as open311_api
    from xihu.places import api as places_api
    from xihu.places import pages as places_pages
    from xihu.web import api as web_api
    from xihu.web import cockpit as web_cockpit
    from xihu.web import pages as web_pages

    for router in (
        web_api.router,
        appeals_api.router,
        appeals_api.staff,
        appeals_api.imports,
        appeals_api.sla_router,
        places_api.router,
        dispatch_api.router,
        dispatch_pages.router,
        dispatch_report.api,
        dispatch_rules_api.router,
        dispatch_rules_pages.router,
        dispatch_report.router,
        dispatch_feedback.api,
        dispatch_feedback.router,
        open311_api.router,
        indicators_api.router,
        indicators_pages.router,
        web_cockpit.router,
        web_pages.router,
        appeals_pages.router,
        appeals_queue.router,
        places_pages.router,
        analysis_api.router,
        analysis_pages.router,
    ):
        app.include_router(router, responses=ERROR_RESPONSES)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> HTMLResponse:
        return HTMLResponse(status_code=204)

    return app
