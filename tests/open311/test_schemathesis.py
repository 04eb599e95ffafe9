"""Property-based run (schemathesis, bounded) over the OpenAPI of the native appeal intake/tracking routes and
the Open311 routes: no 5xx, every 4xx carries a readable message, and a refused request writes nothing."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from xihu.appeals.models import Appeal
from xihu.core.security import Actor
from xihu.open311 import service as open311_service
from xihu.open311.models import Open311Client, Open311Request

schemathesis = pytest.importorskip("schemathesis")

PATHS = r"^/(open311/v2/.*|api/appeals|api/appeals/track/\{code\})$"
EXAMPLES = 20


@pytest.fixture
def api_key(session: Session) -> str:
    """A valid key, sent with about half of the generated Open311 posts (the others carry random keys)."""
    _, key = open311_service.create_client(session=session, actor=Actor.system("测试"), name="schemathesis")
    session.commit()
    return key


def _counts(session: Session) -> tuple[int, int, int]:
    session.expire_all()
    return (
        session.scalar(select(func.count()).select_from(Appeal)) or 0,
        session.scalar(select(func.count()).select_from(Open311Request)) or 0,
        session.scalar(select(func.count()).select_from(Open311Client)) or 0,
    )


def _message(status: int, content_type: str, body: bytes) -> str:
    """The human-readable message of an error answer, whichever of our formats it uses."""
    if content_type.startswith("text/xml"):
        root = ET.fromstring(body)
        assert root.tag == "errors", body
        return " ".join(e.findtext("description") or "" for e in root.findall("error"))
    data: Any = json.loads(body)
    if isinstance(data, list):  # Open311: [{"code", "description"}]
        assert all(isinstance(e, dict) and e.get("code") == status for e in data), data
        return " ".join(str(e.get("description") or "") for e in data)
    if "error" in data:  # the platform's native format
        return str(data["error"].get("message") or "")
    return str(data.get("detail") or "")  # Starlette's own 404/405 for paths that match no route


def _check(case: Any, session: Session, api_key: str, seen: dict[int, int]) -> None:
    posting = case.method == "POST" and case.path.startswith("/open311/") and isinstance(case.body, dict)
    if posting and len(json.dumps(case.body, default=str)) % 2:
        case.body["api_key"] = api_key
    before = _counts(session)
    response = case.call()
    status = response.status_code
    seen[status] = seen.get(status, 0) + 1
    where = f"{case.method} {case.formatted_path}"
    assert status < 500, f"{where}: {status} {response.text[:500]}"
    if status >= 400:
        ctype = response.headers.get("content-type") or ""
        ctype = ctype[0] if isinstance(ctype, list) else ctype
        text = _message(status, ctype, response.content)
        assert text.strip(), f"{where}: {status} without a message"
        assert _counts(session) == before, f"refused {where} wrote rows"
    if case.path.startswith("/open311/") and status == 200:
        assert "citizen_phone" not in response.text and "citizen_name" not in response.text


def test_no_server_errors_and_refusals_write_nothing(app, session: Session, api_key: str) -> None:  # type: ignore[no-untyped-def]
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).include(path_regex=PATHS)
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {f"{op.method.upper()} {op.path}" for op in operations}
    assert "POST /open311/v2/requests.{fmt}" in labels and "POST /api/appeals" in labels
    assert len(operations) >= 11, labels
    seen: dict[int, int] = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            _check(case, session, api_key, seen)

        run()
    assert sum(seen.values()) >= len(operations) and any(400 <= s < 500 for s in seen), seen
