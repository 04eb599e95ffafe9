"""Open311 GeoReport v2 routes under /open311/v2: JSON or XML by the path's suffix, errors as the
specification spells them ([{"code", "description"}] or <errors><error>…</error></errors>)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine, Iterable
from datetime import datetime
from typing import Any, Literal
from xml.etree import ElementTree as ET

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from xihu.core import clock
from xihu.core.errors import DomainError, Invalid
from xihu.open311 import service as open311_service
from xihu.open311.schemas import (
    NewRequest,
    Open311Error,
    RequestCreated,
    RequestUpdate,
    Service,
    ServiceDefinition,
    ServiceRequest,
    TokenRead,
)
from xihu.web.deps import get_session

log = logging.getLogger("xihu.open311")
Fmt = Literal["json", "xml"]
SPEC_URL = "http://wiki.open311.org/GeoReport_v2"
CHANGESET = "2026-01-01T00:00:00+08:00"
# Container element -> element of each item, for the XML rendering of nested lists.
_ITEM_TAGS = {"attributes": "attribute", "values": "value", "endpoints": "endpoint", "formats": "format"}
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")  # not allowed in XML 1.0
_STATUS = {400: 400, 401: 403, 403: 403, 404: 404, 409: 400, 413: 400, 422: 400, 503: 503}


# ---------------------------------------------------------------- rendering


def _fill(parent: ET.Element, value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            child = ET.SubElement(parent, key)
            if isinstance(item, list):
                tag = _ITEM_TAGS.get(key, "item")
                for element in item:
                    _fill(ET.SubElement(child, tag), element)
            else:
                _fill(child, item)
    elif isinstance(value, bool):
        parent.text = "true" if value else "false"
    elif value is not None:
        parent.text = _NOT_XML.sub("\ufffd", str(value))


def _xml(root: str, item: str | None, data: Any) -> Response:
    element = ET.Element(root)
    if item is None:
        _fill(element, data)
    else:
        for entry in data:
            _fill(ET.SubElement(element, item), entry)
    body = ET.tostring(element, encoding="unicode")
    return Response('<?xml version="1.0" encoding="utf-8"?>\n' + body, media_type="text/xml; charset=utf-8")


def _dump(data: BaseModel | Iterable[BaseModel] | dict[str, Any]) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, dict):
        return data
    return [d.model_dump(mode="json") for d in data]


def _render(fmt: str, data: Any, *, root: str, item: str | None, status: int = 200) -> Response:
    payload = _dump(data)
    if fmt == "xml":
        response = _xml(root, item, payload)
        response.status_code = status
        return response
    return JSONResponse(payload, status_code=status)


def _error(fmt: str, status: int, description: str) -> Response:
    errors = [Open311Error(code=status, description=description)]
    return _render(fmt, errors, root="errors", item="error", status=status)


class Open311Route(APIRoute):
    """Routes whose errors (domain errors, invalid parameters) come out in the Open311 format; the
    request's session is rolled back first, so a refused request writes nothing."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            values = [*request.path_params.values(), *request.query_params.values()]
            if any("\x00" in str(v) for v in values):
                fmt = "xml" if request.path_params.get("fmt") == "xml" else "json"
                return _error(fmt, 400, "参数含有无效字符 (parameters may not contain NUL characters)")
            try:
                return await original(request)
            except (DomainError, RequestValidationError, DBAPIError) as exc:
                session = getattr(request.state, "open311_session", None)
                if session is not None:
                    session.rollback()
                fmt = "xml" if request.path_params.get("fmt") == "xml" else "json"
                if isinstance(exc, DomainError):
                    text = f"{exc.message} ({exc.english})" if exc.english else exc.message
                    return _error(fmt, _STATUS.get(exc.status_code, 400), text)
                if isinstance(exc, DBAPIError):
                    log.warning("database error: %s", exc)
                    return _error(fmt, 503, "系统繁忙，请稍后重试；提交未被保存 (database unavailable)")
                parts = []
                for err in exc.errors():
                    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
                    parts.append(f"{'.'.join(loc) or 'request'}: {err.get('msg', 'invalid')}")
                return _error(fmt, 400, "参数有误 (invalid parameters): " + "; ".join(parts))

        return handler


def _session(request: Request, session: Session = Depends(get_session)) -> Session:
    request.state.open311_session = session
    return session


def _base(request: Request) -> str:
    return str(request.app.state.settings.public_base_url).rstrip("/")


def _when(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
    except ValueError:
        raise Invalid(f"{name} 须为 ISO 8601 时间", english=f"{name} must be an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=clock.LOCAL_TZ)
    return clock.as_utc(parsed)


def _split(value: str | None) -> list[str] | None:
    parts = [p.strip() for p in (value or "").split(",") if p.strip()]
    return parts or None


XML_OK: dict[int | str, dict[str, Any]] = {200: {"content": {"text/xml": {}}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": list[Open311Error], "description": "invalid parameters"},
    404: {"model": list[Open311Error], "description": "not found"},
}

router = APIRouter(prefix="/open311/v2", tags=["open311"], route_class=Open311Route)


@router.get("/discovery.{fmt}", responses={**XML_OK, **ERRORS})
def discovery(fmt: Fmt, request: Request) -> Response:
    """Where the GeoReport v2 endpoint is and what it speaks."""
    data = {
        "changeset": CHANGESET,
        "contact": f"{request.app.state.settings.district_name}民呼我为·西湖码平台",
        "key_service": "api_key 由平台管理员签发 (xihu open311 create-key NAME)",
        "endpoints": [
            {
                "specification": SPEC_URL,
                "url": f"{_base(request)}/open311/v2",
                "changeset": CHANGESET,
                "type": "production",
                "formats": ["application/json", "text/xml"],
            }
        ],
    }
    return _render(fmt, data, root="discovery", item=None)


@router.get("/services.{fmt}", response_model=list[Service], responses={**XML_OK, **ERRORS})
def services(fmt: Fmt, jurisdiction_id: str | None = Query(default=None, max_length=64)) -> Response:
    """The service types: the dispatch categories, with their groups and keywords."""
    return _render(fmt, open311_service.list_services(), root="services", item="service")


@router.get(
    "/services/{service_code}.{fmt}", response_model=ServiceDefinition, responses={**XML_OK, **ERRORS}
)
def service_definition(
    service_code: str, fmt: Fmt, jurisdiction_id: str | None = Query(default=None, max_length=64)
) -> Response:
    """The attributes (e.g. 紧急程度 priority) a request of this service may carry."""
    definition = open311_service.service_definition(service_code=service_code)
    return _render(fmt, definition, root="service_definition", item=None)


@router.post(
    "/requests.{fmt}",
    response_model=list[RequestCreated],
    responses={**XML_OK, **ERRORS, 403: {"model": list[Open311Error], "description": "bad api_key"}},
)
def post_request(
    fmt: Fmt,
    request: Request,
    api_key: str | None = Form(default=None, max_length=200),
    api_key_query: str | None = Query(default=None, alias="api_key", max_length=200),
    jurisdiction_id: str | None = Form(default=None, max_length=64),
    service_code: str | None = Form(default=None, max_length=40),
    lat: float | None = Form(default=None),
    long: float | None = Form(default=None),
    address_string: str | None = Form(default=None, max_length=200),
    address_id: str | None = Form(default=None, max_length=16),
    description: str | None = Form(default=None, max_length=4000),
    media_url: str | None = Form(default=None, max_length=500),
    first_name: str | None = Form(default=None, max_length=32),
    last_name: str | None = Form(default=None, max_length=32),
    phone: str | None = Form(default=None, max_length=20),
    email: str | None = Form(default=None, max_length=200),
    attribute_priority: str | None = Form(default=None, alias="attribute[priority]", max_length=20),
    attribute_title: str | None = Form(default=None, alias="attribute[title]", max_length=120),
    session: Session = Depends(_session),
) -> Response:
    """Create a service request (an appeal on the open311 channel); needs the client's api_key."""
    attributes = {
        k: v for k, v in (("priority", attribute_priority), ("title", attribute_title)) if v is not None
    }
    created = open311_service.submit_request(
        session=session,
        api_key=api_key or api_key_query,
        data=NewRequest(
            service_code=service_code,
            lat=lat,
            long=long,
            address_string=address_string,
            address_id=address_id,
            description=description,
            media_url=media_url,
            first_name=first_name,
            last_name=last_name,
            phone=phone,
            email=email,
            attributes=attributes,
        ),
    )
    return _render(fmt, created, root="service_requests", item="request")


@router.get("/tokens/{token}.{fmt}", response_model=list[TokenRead], responses={**XML_OK, **ERRORS})
def token(token: str, fmt: Fmt, session: Session = Depends(_session)) -> Response:
    """The request id of a token (requests are created at once, so the token is the id)."""
    found = open311_service.resolve_token(session=session, token=token)
    return _render(fmt, found, root="service_requests", item="request")


@router.get("/requests.{fmt}", response_model=list[ServiceRequest], responses={**XML_OK, **ERRORS})
def requests(
    fmt: Fmt,
    request: Request,
    service_request_id: str | None = Query(default=None, max_length=2200),
    service_code: str | None = Query(default=None, max_length=400),
    start_date: str | None = Query(default=None, max_length=40),
    end_date: str | None = Query(default=None, max_length=40),
    status: str | None = Query(default=None, max_length=20),
    jurisdiction_id: str | None = Query(default=None, max_length=64),
    page: int = Query(default=1, ge=1, le=100000),
    page_size: int = Query(default=50, ge=1, description="at most 100 (larger values are capped)"),
    session: Session = Depends(_session),
) -> Response:
    """Requests by id list (overrides the rest), or by service, requested time window (≤ 90 days,
    default the last 90) and status; newest first, paged."""
    found = open311_service.list_requests(
        session=session,
        base_url=_base(request),
        request_ids=_split(service_request_id),
        service_codes=_split(service_code),
        start=_when(start_date, "start_date"),
        end=_when(end_date, "end_date"),
        statuses=_split(status),
        page=page,
        page_size=page_size,
    )
    return _render(fmt, found, root="service_requests", item="request")


@router.get(
    "/requests/{service_request_id}.{fmt}",
    response_model=list[ServiceRequest],
    responses={**XML_OK, **ERRORS},
)
def one_request(
    service_request_id: str,
    fmt: Fmt,
    request: Request,
    jurisdiction_id: str | None = Query(default=None, max_length=64),
    session: Session = Depends(_session),
) -> Response:
    """One request (as a list of one, like the specification)."""
    found = open311_service.get_request(
        session=session, base_url=_base(request), request_id=service_request_id
    )
    return _render(fmt, found, root="service_requests", item="request")


@router.get(
    "/servicerequestupdates.{fmt}", response_model=list[RequestUpdate], responses={**XML_OK, **ERRORS}
)
def updates(
    fmt: Fmt,
    start_date: str | None = Query(default=None, max_length=40),
    end_date: str | None = Query(default=None, max_length=40),
    jurisdiction_id: str | None = Query(default=None, max_length=64),
    session: Session = Depends(_session),
) -> Response:
    """mySociety's extension: public timeline steps as updates in a window (≤ 90 days)."""
    found = open311_service.list_updates(
        session=session, start=_when(start_date, "start_date"), end=_when(end_date, "end_date")
    )
    return _render(fmt, found, root="service_request_updates", item="request_update")
