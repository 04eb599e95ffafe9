"""Open311 GeoReport v2 use cases: client keys, the service list, and requests over the appeals service."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from xihu.appeals import service as appeal_service
from xihu.appeals.enums import Channel, Priority
from xihu.appeals.schemas import AppealCreate
from xihu.core import audit, clock
from xihu.core.errors import Forbidden, Invalid, NotFound
from xihu.core.security import Actor, authorize
from xihu.dispatch import rules
from xihu.dispatch import service as dispatch_service
from xihu.open311.models import Open311Client, Open311Request
from xihu.open311.schemas import (
    AttributeValue,
    ClientRead,
    NewRequest,
    RequestCreated,
    RequestUpdate,
    Service,
    ServiceAttribute,
    ServiceDefinition,
    ServiceRequest,
    TokenRead,
)

MAX_RANGE = timedelta(days=90)
MAX_PAGE_SIZE = 100
MAX_IDS = 100

# Stable ASCII service codes (pinyin initials); a category added later gets a code derived from its name.
SERVICE_CODES: dict[str, str] = {
    "城乡建设": "CXJS",
    "环境保护": "HJBH",
    "交通运输": "JTYS",
    "教育文体": "JYWT",
    "劳动和社会保障": "LDSB",
    "卫生计生": "WSJS",
    "商贸旅游": "SMLY",
}
OTHER_CODE = "QT"
OTHER_NAME = "其他"
GROUPS: dict[str, str] = {
    "城乡建设": "城市建设与管理",
    "环境保护": "城市建设与管理",
    "交通运输": "城市建设与管理",
    "教育文体": "社会民生",
    "劳动和社会保障": "社会民生",
    "卫生计生": "社会民生",
    "商贸旅游": "市场与消费",
}
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


# ---------------------------------------------------------------- client applications


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_client(*, session: Session, actor: Actor, name: str) -> tuple[ClientRead, str]:
    """Register a client application; returns it and its api_key, which is shown only this once."""
    authorize(actor, "users.manage")
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise Invalid("应用名称应为 1 到 100 个字", english="name must have 1-100 characters")
    key = secrets.token_urlsafe(32)
    client = Open311Client(name=name, key_hash=_key_hash(key), created_at=clock.now(), active=True)
    session.add(client)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="open311.client_create",
        entity="open311_client",
        entity_id=client.id,
        detail={"name": name},
    )
    return ClientRead.model_validate(client), key


def revoke_client(*, session: Session, actor: Actor, client_id: int) -> ClientRead:
    """Stop a client application's api_key from working (its earlier requests stay)."""
    authorize(actor, "users.manage")
    client = session.get(Open311Client, client_id)
    if client is None:
        raise NotFound("应用不存在", english="client application not found")
    client.active = False
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="open311.client_revoke",
        entity="open311_client",
        entity_id=client.id,
        detail={"name": client.name},
    )
    return ClientRead.model_validate(client)


def list_clients(*, session: Session, actor: Actor) -> list[ClientRead]:
    """Client applications, newest first."""
    authorize(actor, "users.manage")
    return [
        ClientRead.model_validate(c)
        for c in session.scalars(select(Open311Client).order_by(Open311Client.id.desc()))
    ]


def client_for_key(*, session: Session, api_key: str | None) -> ClientRead:
    """The active client application holding this key; anything else is refused."""
    if not api_key:
        raise Forbidden("缺少 api_key", english="api_key is required")
    client = session.scalar(select(Open311Client).where(Open311Client.key_hash == _key_hash(api_key)))
    if client is None or not client.active:
        raise Forbidden("api_key 无效或已停用", english="invalid api_key")
    return ClientRead.model_validate(client)


# ---------------------------------------------------------------- services


def code_for(category: str | None) -> str:
    """The stable service code of a category (unclassified -> the "other" service)."""
    if not category:
        return OTHER_CODE
    return SERVICE_CODES.get(category) or "C" + hashlib.sha256(category.encode()).hexdigest()[:6].upper()


def _categories() -> dict[str, str]:
    return {code_for(c): c for c in dispatch_service.categories()}


def category_for(code: str) -> str | None:
    """The category of a service code (None for the "other" service); unknown codes are not found."""
    if code == OTHER_CODE:
        return None
    category = _categories().get(code)
    if category is None:
        raise NotFound(f"服务类型 {code[:40]} 不存在", english="service_code not found")
    return category


def list_services() -> list[Service]:
    """Every dispatch category as a service, with its group and keywords, plus "other"."""
    out = [
        Service(
            service_code=code,
            service_name=category,
            description=f"{category}类群众诉求（民呼我为·西湖码）",
            metadata=True,
            type="realtime",
            keywords=",".join(rules.KEYWORDS.get(category, ())) or None,
            group=GROUPS.get(category, OTHER_NAME),
        )
        for code, category in _categories().items()
    ]
    out.append(
        Service(
            service_code=OTHER_CODE,
            service_name=OTHER_NAME,
            description="不确定类别的诉求，由派单员分类后派单",
            metadata=True,
            type="realtime",
            keywords=None,
            group=OTHER_NAME,
        )
    )
    return out


def _attributes() -> list[ServiceAttribute]:
    return [
        ServiceAttribute(
            variable=True,
            code="priority",
            datatype="singlevaluelist",
            required=False,
            datatype_description="紧急程度",
            order=1,
            description="紧急程度（不填为一般）",
            values=[AttributeValue(key=p.value, name=p.label) for p in Priority],
        ),
        ServiceAttribute(
            variable=True,
            code="title",
            datatype="string",
            required=False,
            datatype_description="不超过 120 个字",
            order=2,
            description="标题（不填则按诉求内容自动生成）",
        ),
    ]


def service_definition(*, service_code: str) -> ServiceDefinition:
    """The attributes a client may send with a request of this service."""
    category_for(service_code)
    return ServiceDefinition(service_code=service_code, attributes=_attributes())


# ---------------------------------------------------------------- requests


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in Asia/Shanghai with its +08:00 offset."""
    local = clock.local(value)
    return local.isoformat(timespec="seconds") if local else None


def _bad_input(exc: ValidationError) -> Invalid:
    names = {"description": "description", "citizen_phone": "phone", "citizen_name": "first_name/last_name"}
    parts = []
    for err in exc.errors():
        field = str((err.get("loc") or ("",))[-1])
        parts.append(f"{names.get(field, field)}: {str(err.get('msg', '')).removeprefix('Value error, ')}")
    return Invalid("提交内容有误：" + "；".join(parts), english="invalid request: " + "; ".join(parts))


def submit_request(*, session: Session, api_key: str | None, data: NewRequest) -> list[RequestCreated]:
    """POST requests: check the client's key, then submit an appeal on the open311 channel."""
    client = client_for_key(session=session, api_key=api_key)
    texts = [v for v in data.model_dump(exclude={"attributes"}).values() if isinstance(v, str)]
    if any("\x00" in t for t in [*texts, *data.attributes.values()]):
        raise Invalid("提交内容含有无效字符", english="text fields may not contain NUL characters")
    if not data.service_code:
        raise Invalid("缺少 service_code", english="service_code is required")
    try:
        category = category_for(data.service_code)
    except NotFound:
        raise Invalid("service_code 不存在", english="unknown service_code") from None
    if (data.lat is None) != (data.long is None):
        raise Invalid("lat 与 long 须同时提供", english="lat and long must be given together")
    if data.lat is None and not (data.address_string or "").strip() and not (data.address_id or "").strip():
        raise Invalid(
            "须提供位置：lat+long、address_string 或 address_id",
            english="a location is required: lat+long, address_string or address_id",
        )
    if not (data.description or "").strip():
        raise Invalid("缺少 description（诉求内容）", english="description is required")
    if data.media_url and (len(data.media_url) > 500 or not _URL.match(data.media_url)):
        raise Invalid("media_url 须为 http(s) 地址", english="media_url must be an http(s) URL")
    priority = data.attributes.get("priority") or Priority.normal.value
    if priority not in {p.value for p in Priority}:
        raise Invalid("attribute[priority] 取值无效", english="attribute[priority] has no such value")
    name = f"{data.last_name or ''}{data.first_name or ''}".strip()[:32] or None
    try:
        appeal_in = AppealCreate(
            description=data.description or "",
            title=data.attributes.get("title") or None,
            category_hint=category,
            place_code=(data.address_id or "").strip() or None,
            address=(data.address_string or "").strip(),
            lat=data.lat,
            lon=data.long,
            citizen_name=name,
            citizen_phone=data.phone or None,
            priority=Priority(priority),
        )
    except ValidationError as exc:
        raise _bad_input(exc) from None
    submitter = Actor(kind="citizen", display_name=f"Open311 应用「{client.name}」"[:64])
    try:
        result = appeal_service.submit(
            session=session, actor=submitter, appeal_in=appeal_in, channel=Channel.open311
        )
    except NotFound as exc:  # an address_id that is no 西湖码 place
        raise Invalid(
            "address_id 不是有效的西湖码地点编号", english="address_id is not a known place code"
        ) from exc
    session.add(
        Open311Request(client_id=client.id, tracking_code=result.tracking_code, media_url=data.media_url)
    )
    session.flush()
    return [
        RequestCreated(
            # The public id is the appeal's number, never its tracking code: the code lets its holder rate
            # and reopen the appeal, so only the submitting application learns it (in the notice).
            service_request_id=str(result.id),
            service_notice=f"诉求已受理（{result.state_label}），可凭受理编号 {result.tracking_code} 查询",
            account_id=str(client.id),  # citizens have no accounts: the submitting application's
        )
    ]


def _media(session: Session, codes: list[str]) -> dict[str, str]:
    if not codes:
        return {}
    rows = session.execute(
        select(Open311Request.tracking_code, Open311Request.media_url).where(
            Open311Request.tracking_code.in_(codes), Open311Request.media_url.is_not(None)
        )
    )
    return {code: url for code, url in rows if url}


def to_request(view: dict[str, Any], *, base_url: str, media_url: str | None = None) -> ServiceRequest:
    """A service request from the appeals service's public view of an appeal."""
    category = view["category"] if view["category"] in _categories().values() else None
    area = " ".join(n for n in (view["street_name"], view["community_name"]) if n)
    return ServiceRequest(
        service_request_id=str(view["id"]),
        status="open" if view["open"] else "closed",
        status_notes=view["notes"],
        service_name=category or OTHER_NAME,
        service_code=code_for(category),
        description=view["description"],
        agency_responsible=view["lead_unit_name"],
        requested_datetime=iso(view["created_at"]) or "",
        updated_datetime=iso(view["updated_at"]),
        expected_datetime=iso(view["complete_due_at"]),
        address=view["address"] or area or None,
        lat=view["lat"],
        long=view["lon"],
        media_url=media_url,
    )


def date_range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """The requested window, at most 90 days; a missing end is 90 days after the start (or now)."""
    if start is None and end is None:
        end = clock.now()
    if start is None:
        assert end is not None
        start = end - MAX_RANGE
    if end is None:
        end = start + MAX_RANGE
    if end < start:
        raise Invalid("end_date 早于 start_date", english="end_date is before start_date")
    if end - start > MAX_RANGE:
        raise Invalid(
            "start_date 与 end_date 相差不能超过 90 天", english="date range may not exceed 90 days"
        )
    return start, end


def list_requests(
    *,
    session: Session,
    base_url: str,
    request_ids: list[str] | None = None,
    service_codes: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    statuses: list[str] | None = None,
    page: int = 1,
    page_size: int = 50,
) -> list[ServiceRequest]:
    """GET requests: by id list (which overrides everything else), or by service, window and status."""
    page_size = max(1, min(page_size, MAX_PAGE_SIZE))
    if page < 1:
        raise Invalid("page 须为正整数", english="page must be positive")
    if request_ids:
        if len(request_ids) > MAX_IDS:
            raise Invalid("一次最多查询 100 个 service_request_id", english="at most 100 ids")
        numbers = [
            int(r) for r in (x.strip() for x in request_ids) if r.isascii() and r.isdigit() and len(r) < 12
        ]
        views = appeal_service.list_public(session=session, ids=numbers, page=page, size=page_size)
    else:
        categories: list[str | None] | None = None
        if service_codes:
            try:
                categories = [category_for(c) for c in service_codes]
            except NotFound:
                raise Invalid("service_code 不存在", english="unknown service_code") from None
        open_: bool | None = None
        if statuses:
            wanted = set(statuses)
            if not wanted <= {"open", "closed"}:
                raise Invalid("status 只能是 open 或 closed", english="status must be open or closed")
            open_ = None if len(wanted) == 2 else "open" in wanted
        since, until = date_range(start, end)
        views = appeal_service.list_public(
            session=session,
            categories=categories,
            since=since,
            until=until,
            open_=open_,
            page=page,
            size=page_size,
        )
    media = _media(session, [v["tracking_code"] for v in views])
    return [to_request(v, base_url=base_url, media_url=media.get(v["tracking_code"])) for v in views]


def get_request(*, session: Session, base_url: str, request_id: str) -> list[ServiceRequest]:
    """GET requests/{id}: a list of one, as the specification returns it."""
    found = list_requests(session=session, base_url=base_url, request_ids=[request_id[:40]])
    if not found:
        raise NotFound("受理编号不存在", english="service_request_id not found")
    return found


def resolve_token(*, session: Session, token: str) -> list[TokenRead]:
    """GET tokens/{token}: requests are created synchronously, so the token is the request id."""
    token = token.strip()
    views = (
        appeal_service.list_public(session=session, ids=[int(token)], size=1)
        if token.isascii() and token.isdigit() and len(token) < 12
        else []
    )
    if not views:
        raise NotFound("token 不存在", english="token not found")
    request_id = str(views[0]["id"])
    return [TokenRead(service_request_id=request_id, token=request_id)]


def list_updates(
    *, session: Session, start: datetime | None = None, end: datetime | None = None
) -> list[RequestUpdate]:
    """Public timeline steps in the window (at most 90 days, 1000 updates), oldest first."""
    since, until = date_range(start, end)
    return [
        RequestUpdate(
            update_id=str(u["id"]),
            service_request_id=str(u["appeal_id"]),
            status="open" if u["open"] else "closed",
            updated_datetime=iso(u["at"]) or "",
            description=u["message"],
        )
        for u in appeal_service.public_updates(session=session, since=since, until=until)
    ]
