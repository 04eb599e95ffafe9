"""Open311 GeoReport v2: every JSON answer checked against the specification's JSON Schemas, XML roots as the
specification names them, errors in its format, keys, location and date rules, no personal data."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import factories
from xihu.appeals.models import Appeal
from xihu.core.audit import AuditEntry
from xihu.core.errors import Forbidden
from xihu.core.security import Actor, Role
from xihu.dispatch import service as dispatch_service
from xihu.open311 import service as open311_service
from xihu.open311.models import Open311Request

jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")

SCHEMAS = Path(__file__).resolve().parents[3] / "shared" / "data" / "open311" / "georeport-v2"
BASE = "/open311/v2"
NAME, SURNAME, PHONE, EMAIL = "小红", "李", "13912345678", "lixiaohong@example.com"
ERRORS_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["code", "description"],
        "properties": {"code": {"type": "integer"}, "description": {"type": "string", "minLength": 1}},
    },
}
UPDATES_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["update_id", "service_request_id", "status", "updated_datetime", "description"],
        "properties": {
            "update_id": {"type": "string"},
            "service_request_id": {"type": "string"},
            "status": {"enum": ["open", "closed"]},
            "updated_datetime": {"type": "string", "format": "date-time"},
            "description": {"type": "string"},
        },
    },
}


def _format_checker() -> Any:
    """The draft-7 checker plus date-time (RFC 3339, with an offset) and absolute http(s) URIs."""
    from datetime import datetime
    from urllib.parse import urlparse

    checker = jsonschema.FormatChecker()

    @checker.checks("date-time", raises=ValueError)
    def _date_time(value: object) -> bool:
        return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None

    @checker.checks("uri")
    def _uri(value: object) -> bool:
        return not isinstance(value, str) or bool(urlparse(value).scheme and urlparse(value).netloc)

    return checker


@pytest.fixture(scope="module")
def schemas() -> dict[str, Any]:
    """The specification's JSON Schemas, by file name (skips when the shared data is not checked out)."""
    if not SCHEMAS.is_dir():
        pytest.skip(f"Open311 JSON Schemas not found at {SCHEMAS} (../shared is not checked out)")
    loaded = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in SCHEMAS.glob("*.json")}
    swagger = loaded.pop("swagger.json")
    loaded["request-response.json"] = {
        "type": "array",
        "minItems": 1,
        "items": {**swagger["definitions"]["RequestResponse"], "required": ["service_request_id"]},
    }
    return loaded


def _validate(schemas: dict[str, Any], name: str, instance: Any) -> None:
    from referencing.jsonschema import DRAFT7

    registry = referencing.Registry().with_resources(
        (n, referencing.Resource.from_contents(s, default_specification=DRAFT7)) for n, s in schemas.items()
    )
    schema = schemas[name]
    validator = jsonschema.Draft7Validator(schema, registry=registry, format_checker=_format_checker())
    validator.validate(instance)


def _check(instance: Any, schema: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(schema, format_checker=_format_checker()).validate(instance)


@pytest.fixture
def api_key(session: Session) -> str:
    """A client application's key, issued as the CLI does."""
    _, key = open311_service.create_client(session=session, actor=Actor.system("测试"), name="测试应用")
    session.commit()
    return key


def _form(key: str | None, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "api_key": key,
        "service_code": "CXJS",
        "lat": "30.2592",
        "long": "120.1305",
        "description": "文三路口的路灯坏了三天，晚上很黑",
        "first_name": NAME,
        "last_name": SURNAME,
        "phone": PHONE,
        "email": EMAIL,
        "attribute[priority]": "urgent",
        "media_url": "https://example.com/photos/lamp.jpg",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def _counts(session: Session) -> tuple[int, int]:
    session.expire_all()
    return (
        session.scalar(select(func.count()).select_from(Appeal)) or 0,
        session.scalar(select(func.count()).select_from(Open311Request)) or 0,
    )


def _no_personal_data(text: str) -> None:
    for secret in (NAME, SURNAME + NAME, PHONE, EMAIL, "张三丰", "13812345678", "李*", "张**"):
        assert secret not in text
    for key in ("citizen_name", "citizen_phone", "first_name", "last_name", "phone", "email"):
        assert f'"{key}"' not in text and f"<{key}>" not in text


def _xml_root(resp: Any, tag: str) -> ET.Element:
    assert resp.headers["content-type"].startswith("text/xml"), resp.headers["content-type"]
    root = ET.fromstring(resp.content)
    assert root.tag == tag, resp.text
    return root


# ---------------------------------------------------------------- services


def test_services_are_the_dispatch_categories_with_groups_and_keywords(client, schemas) -> None:
    resp = client.get(f"{BASE}/services.json")
    assert resp.status_code == 200, resp.text
    services = resp.json()
    _validate(schemas, "services.json", services)
    by_name = {s["service_name"]: s for s in services}
    assert set(dispatch_service.categories()) <= set(by_name)
    for s in services:
        assert s["service_code"].isascii() and s["service_code"].isalnum()
        assert s["group"] and s["type"] == "realtime" and s["metadata"] is True
    assert by_name["城乡建设"]["service_code"] == "CXJS"
    assert "路灯" in by_name["城乡建设"]["keywords"].split(",")
    assert len({s["service_code"] for s in services}) == len(services)
    # stable: the same codes on every call
    assert [s["service_code"] for s in client.get(f"{BASE}/services.json").json()] == [
        s["service_code"] for s in services
    ]

    root = _xml_root(client.get(f"{BASE}/services.xml"), "services")
    codes = [el.findtext("service_code") for el in root.findall("service")]
    assert codes == [s["service_code"] for s in services]
    assert root.find("service/metadata").text == "true"  # type: ignore[union-attr]


def test_service_definition_has_the_priority_list(client, schemas) -> None:
    resp = client.get(f"{BASE}/services/CXJS.json")
    assert resp.status_code == 200, resp.text
    definition = resp.json()
    _validate(schemas, "service-definition.json", definition)
    priority = next(a for a in definition["attributes"] if a["code"] == "priority")
    assert priority["datatype"] == "singlevaluelist" and priority["required"] is False
    assert {v["key"] for v in priority["values"]} == {"urgent", "normal", "complex"}
    assert "紧急" in {v["name"] for v in priority["values"]}

    root = _xml_root(client.get(f"{BASE}/services/CXJS.xml"), "service_definition")
    assert root.findtext("service_code") == "CXJS"
    keys = [v.findtext("key") for v in root.findall("attributes/attribute/values/value")]
    assert "urgent" in keys


def test_unknown_service_is_404_in_open311_format(client, schemas) -> None:
    resp = client.get(f"{BASE}/services/NOPE.json")
    assert resp.status_code == 404
    _check(resp.json(), ERRORS_SCHEMA)
    assert resp.json()[0]["code"] == 404
    root = _xml_root(client.get(f"{BASE}/services/NOPE.xml"), "errors")
    assert root.findtext("error/code") == "404" and root.findtext("error/description")


def test_discovery(client) -> None:
    data = client.get(f"{BASE}/discovery.json").json()
    assert data["endpoints"][0]["url"].endswith("/open311/v2")
    assert "text/xml" in data["endpoints"][0]["formats"]
    root = _xml_root(client.get(f"{BASE}/discovery.xml"), "discovery")
    assert root.findtext("endpoints/endpoint/specification")
    assert [f.text for f in root.findall("endpoints/endpoint/formats/format")] == [
        "application/json",
        "text/xml",
    ]


def test_unsupported_format_is_refused_in_open311_format(client) -> None:
    resp = client.get(f"{BASE}/services.html")
    assert resp.status_code == 400
    _check(resp.json(), ERRORS_SCHEMA)


# ---------------------------------------------------------------- POST and GET requests


def test_post_then_get_round_trip(client, session: Session, schemas, api_key: str) -> None:
    resp = client.post(f"{BASE}/requests.json", data=_form(api_key))
    assert resp.status_code == 200, resp.text
    created = resp.json()
    _validate(schemas, "request-response.json", created)
    code = created[0]["service_request_id"]
    assert code.isdigit() and created[0]["service_notice"] and "account_id" in created[0]
    _no_personal_data(resp.text)

    appeal = session.get(Appeal, int(code))
    # Only the submitting application learns the tracking code (it lets its holder rate the appeal).
    assert appeal is not None and appeal.tracking_code in created[0]["service_notice"]
    assert appeal is not None and appeal.channel == "open311"
    assert appeal.priority == "urgent" and appeal.category_hint == "城乡建设"
    assert appeal.citizen_name == SURNAME + NAME and appeal.citizen_phone == PHONE

    one = client.get(f"{BASE}/requests/{code}.json")
    assert one.status_code == 200, one.text
    _validate(schemas, "requests.json", one.json())
    request = one.json()[0]
    _validate(schemas, "request.json", request)
    assert request["service_request_id"] == code
    assert request["status"] == "open"
    assert request["lat"] == pytest.approx(30.2592) and request["long"] == pytest.approx(120.1305)
    assert request["requested_datetime"].endswith("+08:00")
    assert request["updated_datetime"].endswith("+08:00")
    assert request["media_url"] == "https://example.com/photos/lamp.jpg"
    assert request["description"].startswith("文三路口的路灯坏了")
    assert request["status_notes"]
    _no_personal_data(one.text)
    assert appeal.tracking_code not in one.text

    listed = client.get(f"{BASE}/requests.json", params={"service_request_id": f"{code},999999999"})
    assert [r["service_request_id"] for r in listed.json()] == [code]
    _validate(schemas, "requests.json", listed.json())
    _no_personal_data(client.get(f"{BASE}/requests.json").text)

    token = client.get(f"{BASE}/tokens/{code}.json")
    assert token.status_code == 200 and token.json() == [{"service_request_id": code, "token": code}]

    root = _xml_root(client.get(f"{BASE}/requests/{code}.xml"), "service_requests")
    assert root.findtext("request/service_request_id") == code
    assert root.findtext("request/status") == "open"
    _no_personal_data(client.get(f"{BASE}/requests.xml").text)


def test_post_in_xml(client, api_key: str) -> None:
    resp = client.post(
        f"{BASE}/requests.xml", data=_form(api_key, lat=None, long=None, address_string="文三路")
    )
    assert resp.status_code == 200, resp.text
    root = _xml_root(resp, "service_requests")
    assert root.findtext("request/service_request_id", "").isdigit()
    _no_personal_data(resp.text)


@pytest.mark.parametrize("key", ["wrong-key", None])
def test_bad_api_key_is_403_and_writes_nothing(client, session: Session, api_key: str, key) -> None:
    before = _counts(session)
    resp = client.post(f"{BASE}/requests.json", data=_form(key))
    assert resp.status_code == 403
    _check(resp.json(), ERRORS_SCHEMA)
    assert resp.json()[0]["code"] == 403
    xml = client.post(f"{BASE}/requests.xml", data=_form(key))
    assert xml.status_code == 403
    assert _xml_root(xml, "errors").findtext("error/code") == "403"
    assert _counts(session) == before


@pytest.mark.parametrize(
    "overrides",
    [
        {"lat": None, "long": None},
        {"long": None},
        {"lat": None, "long": None, "address_string": "  "},
        {"service_code": None},
        {"service_code": "NOPE"},
        {"description": None},
        {"description": "短"},
        {"phone": "12345"},
        {"lat": "north"},
        {"attribute[priority]": "whenever"},
        {"media_url": "javascript:alert(1)"},
        {"lat": None, "long": None, "address_id": "NOSUCH"},
    ],
)
def test_bad_posts_are_400_and_write_nothing(client, session: Session, api_key: str, overrides) -> None:
    before = _counts(session)
    resp = client.post(f"{BASE}/requests.json", data=_form(api_key, **overrides))
    assert resp.status_code == 400, resp.text
    _check(resp.json(), ERRORS_SCHEMA)
    assert resp.json()[0]["code"] == 400
    assert _counts(session) == before


def test_address_id_is_a_place_code(client, session: Session, api_key: str) -> None:
    from xihu.places import service as places_service
    from xihu.places.schemas import PlaceCreate

    place = places_service.ensure_place(
        session=session,
        place_in=PlaceCreate(name="文三路口公交站", street_id=factories.unit(session, "330106004")),
    )
    session.commit()
    resp = client.post(
        f"{BASE}/requests.json", data=_form(api_key, lat=None, long=None, address_id=place.code)
    )
    assert resp.status_code == 200, resp.text
    code = resp.json()[0]["service_request_id"]
    assert session.scalar(select(Appeal.place_id).where(Appeal.id == int(code))) == place.id


# ---------------------------------------------------------------- reading requests


def test_requests_show_unit_deadline_status_and_reply(client, session: Session, schemas) -> None:
    open_one = factories.dispatched(session)
    done = factories.completed(session)
    session.commit()
    resp = client.get(f"{BASE}/requests.json")
    assert resp.status_code == 200
    _validate(schemas, "requests.json", resp.json())
    by_id = {r["service_request_id"]: r for r in resp.json()}
    opened, closed = by_id[str(open_one.id)], by_id[str(done.id)]
    assert not {open_one.tracking_code, done.tracking_code} & set(by_id)
    assert opened["status"] == "open" and closed["status"] == "closed"
    assert opened["agency_responsible"] == "区住建局"
    assert opened["service_code"] == "CXJS" and opened["service_name"] == "城乡建设"
    assert opened["expected_datetime"] and opened["expected_datetime"].endswith("+08:00")
    assert opened["expected_datetime"] > opened["requested_datetime"]
    assert closed["expected_datetime"] is None
    assert closed["status_notes"] == "已派人修复路灯，感谢反映。"
    _no_personal_data(resp.text)

    only_closed = client.get(f"{BASE}/requests.json", params={"status": "closed"}).json()
    assert str(done.id) in {r["service_request_id"] for r in only_closed}
    assert all(r["status"] == "closed" for r in only_closed)
    only_open = client.get(f"{BASE}/requests.json", params={"status": "open", "service_code": "CXJS"}).json()
    assert str(open_one.id) in {r["service_request_id"] for r in only_open}
    assert all(r["status"] == "open" and r["service_code"] == "CXJS" for r in only_open)
    assert client.get(f"{BASE}/requests.json", params={"service_code": "JTYS"}).json() == [] or all(
        r["service_code"] == "JTYS" for r in client.get(f"{BASE}/requests.json?service_code=JTYS").json()
    )


def test_paging_is_capped(client, session: Session) -> None:
    for _ in range(3):
        factories.submitted(session)
    session.commit()
    first = client.get(f"{BASE}/requests.json", params={"page_size": 2}).json()
    second = client.get(f"{BASE}/requests.json", params={"page_size": 2, "page": 2}).json()
    assert (
        len(first) == 2
        and second
        and not {r["service_request_id"] for r in first} & {r["service_request_id"] for r in second}
    )
    assert client.get(f"{BASE}/requests.json", params={"page_size": 5000}).status_code == 200
    assert len(client.get(f"{BASE}/requests.json", params={"page_size": 5000}).json()) <= 100


@pytest.mark.parametrize(
    "params",
    [
        {"start_date": "2026-01-01T00:00:00+08:00", "end_date": "2026-04-15T00:00:00+08:00"},
        {"start_date": "2026-03-01T00:00:00Z", "end_date": "2026-02-01T00:00:00Z"},
        {"start_date": "yesterday"},
        {"status": "pending"},
        {"service_code": "NOPE"},
        {"page": "0"},
    ],
)
def test_bad_queries_are_400(client, params) -> None:
    resp = client.get(f"{BASE}/requests.json", params=params)
    assert resp.status_code == 400, resp.text
    _check(resp.json(), ERRORS_SCHEMA)
    xml = client.get(f"{BASE}/requests.xml", params=params)
    assert xml.status_code == 400
    assert _xml_root(xml, "errors").findtext("error/description")


def test_date_window_of_90_days_is_fine(client, session: Session) -> None:
    r = factories.submitted(session)
    session.commit()
    from xihu.core import clock

    now = clock.local(clock.now())
    assert now is not None
    params = {
        "start_date": (now.replace(microsecond=0) - __import__("datetime").timedelta(days=89)).isoformat(),
        "end_date": (now.replace(microsecond=0) + __import__("datetime").timedelta(minutes=1)).isoformat(),
    }
    resp = client.get(f"{BASE}/requests.json", params=params)
    assert resp.status_code == 200, resp.text
    assert str(r.id) in {x["service_request_id"] for x in resp.json()}


def test_unknown_request_is_404(client, schemas) -> None:
    resp = client.get(f"{BASE}/requests/999999999.json")
    assert resp.status_code == 404
    _check(resp.json(), ERRORS_SCHEMA)
    assert _xml_root(client.get(f"{BASE}/requests/999999999.xml"), "errors").findtext("error/code") == "404"
    assert client.get(f"{BASE}/tokens/NOPE.json").status_code == 404


def test_service_request_updates(client, session: Session) -> None:
    done = factories.completed(session)
    session.commit()
    resp = client.get(f"{BASE}/servicerequestupdates.json")
    assert resp.status_code == 200, resp.text
    updates = resp.json()
    _check(updates, UPDATES_SCHEMA)
    mine = [u for u in updates if u["service_request_id"] == str(done.id)]
    assert done.tracking_code not in resp.text
    assert len(mine) >= 3 and mine[-1]["status"] == "closed" and mine[0]["status"] == "open"
    assert len({u["update_id"] for u in updates}) == len(updates)
    _no_personal_data(resp.text)
    root = _xml_root(client.get(f"{BASE}/servicerequestupdates.xml"), "service_request_updates")
    assert root.findall("request_update/update_id")
    bad = client.get(
        f"{BASE}/servicerequestupdates.json",
        params={"start_date": "2025-01-01T00:00:00Z", "end_date": "2025-12-01T00:00:00Z"},
    )
    assert bad.status_code == 400


def test_nul_characters_are_refused(client, api_key: str) -> None:
    assert client.get(f"{BASE}/requests/XH%00.json").status_code == 400
    assert client.get(f"{BASE}/requests.json", params={"service_code": "A\x00"}).status_code == 400
    assert (
        client.post(f"{BASE}/requests.json", data=_form(api_key, address_string="a\x00")).status_code == 400
    )


def test_native_api_keeps_its_error_format(client) -> None:
    resp = client.get("/api/appeals/track/XH000000NOPE")
    assert resp.status_code == 404 and "error" in resp.json()


# ---------------------------------------------------------------- client applications


def test_only_user_managers_create_clients(session: Session, actor_of) -> None:
    with pytest.raises(Forbidden):
        open311_service.create_client(session=session, actor=actor_of(Role.dispatcher), name="x")
    admin = actor_of(Role.admin, None)
    client, key = open311_service.create_client(session=session, actor=admin, name="  城市大脑  ")
    assert client.name == "城市大脑" and len(key) >= 32
    assert open311_service.client_for_key(session=session, api_key=key).id == client.id
    with pytest.raises(Forbidden):
        open311_service.client_for_key(session=session, api_key=key + "x")
    rows = session.scalars(select(AuditEntry).where(AuditEntry.action == "open311.client_create")).all()
    assert any(r.entity_id == str(client.id) and key not in json.dumps(r.detail) for r in rows)


def test_a_revoked_key_is_refused(client, session: Session, api_key: str) -> None:
    assert client.post(f"{BASE}/requests.json", data=_form(api_key)).status_code == 200
    admin = Actor.system("测试")
    [mine] = [c for c in open311_service.list_clients(session=session, actor=admin) if c.name == "测试应用"]
    open311_service.revoke_client(session=session, actor=admin, client_id=mine.id)
    session.commit()
    before = session.scalar(select(func.count()).select_from(Appeal))
    resp = client.post(f"{BASE}/requests.json", data=_form(api_key))
    assert resp.status_code == 403 and resp.json()[0]["code"] == 403
    assert session.scalar(select(func.count()).select_from(Appeal)) == before
