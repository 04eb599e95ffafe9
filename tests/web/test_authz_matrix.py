"""Every route of the app x every role (plus anonymous and a handler of another unit), from the route table.

A route the matrix does not classify fails the test, so nobody adds an unprotected route silently: add one
line to ROUTES (or a prefix to PREFIXES) saying who may use it. The requests are real, through the app, with
real logins; each actor's request runs in a savepoint that is rolled back, so every actor meets the same data.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

import factories
from conftest import PASSWORD
from xihu.core.audit import AuditEntry
from xihu.core.security import PERMISSIONS, Role, User, create_user

PHONE = "13812345678"
NAME = "张三丰"
STREET = "330106004"  # 西溪街道, where the planted appeal is
LEAD = "D-ZJ"  # the unit the planted appeal is dispatched to
OTHER = "D-CG"  # a unit with nothing to do with it
CSRF = "matrix-csrf-token"

# actor name -> (role, unit code); None is the anonymous visitor. Every role is in, new ones included.
UNIT_OF_ROLE = {Role.handler: LEAD, Role.grid: STREET}
ACTORS: dict[str, tuple[Role, str | None] | None] = {
    "anonymous": None,
    **{role.value: (role, UNIT_OF_ROLE.get(role, "330106")) for role in Role},
    "handler_other_unit": (Role.handler, OTHER),
}

PUBLIC = "public"  # anyone, logged in or not
LOGIN = "login"  # any staff member; anonymous visitors are sent to log in
# Coarse class for routes other domains add under their prefixes: anonymous visitors are refused (or their
# request is invalid before any handler runs); staff get whatever the owning domain's permission says.
STAFF = "staff"


@dataclass
class Ctx:
    """The data every request is built from."""

    appeal_id: int
    tracking_code: str
    other_code: str  # the tracking code of a second appeal (merge target)
    place_code: str
    unit_id: int
    street_id: int
    rule_id: int
    login_user: str


Build = Callable[[Ctx], dict[str, Any]]


@dataclass(frozen=True)
class Rule:
    """Who may use a route: PUBLIC, LOGIN or a permission; `unit` when it concerns the planted appeal."""

    access: str
    unit: bool = False
    build: Build | None = None  # request keyword arguments (json=..., data=..., params=..., files=...)
    path: dict[str, Callable[[Ctx], object]] = field(default_factory=dict)
    expect: dict[str, str] = field(default_factory=dict)  # per-actor outcome where domain rules say more
    shows_personal: bool = False  # the full view: personal data shown to those who may see it (and audited)
    # False only where a request cannot run inside the test's transaction (the health check opens its own
    # connection, which would wait for the test's SQLite write lock); tests/web covers such routes.
    probe: bool = True


def _form(**fields: Any) -> Build:
    return lambda c: {
        "data": {"csrf_token": CSRF, **{k: v(c) if callable(v) else v for k, v in fields.items()}}
    }


def _json(**fields: Any) -> Build:
    return lambda c: {"json": {k: v(c) if callable(v) else v for k, v in fields.items()}}


CSV = "诉求内容,联系电话\n门口路灯坏了很久了,13900001111\n".encode()
APPEAL = {"appeal_id": lambda c: c.appeal_id}
TRACK = {"code": lambda c: c.tracking_code}
PLACE = {"code": lambda c: c.place_code}
ABSENT = {"photo_id": lambda c: 999_999, "job_id": lambda c: 999_999, "policy_id": lambda c: 999_999}
NO_SUCH = {n: (lambda c: 999_999) for n in ("report_id", "warning_id")}
BRIEF = {"kind": lambda c: "daily", "day": lambda c: "2026-11-20"}
# Only the lead unit's own staff sign, start, complete ... an appeal; the street's grid sees it but may not.
LEAD_ONLY = {"grid": "forbidden"}
# Routes whose target does not exist (no photo, no job): an allowed actor gets 404, a refused one 401/403.


def _missing_for(permission: str) -> dict[str, str]:
    return {a: "hidden" for a, spec in ACTORS.items() if spec and permission in PERMISSIONS[spec[0]]}


def _refused_without(permission: str) -> dict[str, str]:
    """A public route that logged-in staff use in their own name: refused to staff without the permission."""
    return {a: "forbidden" for a, spec in ACTORS.items() if spec and permission not in PERMISSIONS[spec[0]]}


ROUTES: dict[tuple[str, str], Rule] = {
    # ---- operations, documentation and static
    ("GET", "/healthz"): Rule(PUBLIC, probe=False),
    ("GET", "/noop"): Rule(PUBLIC),
    ("GET", "/favicon.ico"): Rule(PUBLIC),
    ("GET", "/openapi.json"): Rule(PUBLIC),
    ("GET", "/docs"): Rule(PUBLIC),
    ("GET", "/docs/oauth2-redirect"): Rule(PUBLIC),
    ("GET", "/redoc"): Rule(PUBLIC),
    # ---- sessions
    ("POST", "/api/auth/login"): Rule(
        PUBLIC, build=lambda c: {"json": {"username": c.login_user, "password": PASSWORD}}
    ),
    ("POST", "/api/auth/logout"): Rule(PUBLIC),
    ("GET", "/api/me"): Rule(LOGIN),
    ("GET", "/api/messages"): Rule(LOGIN),
    ("GET", "/"): Rule(PUBLIC),
    ("GET", "/login"): Rule(PUBLIC),
    ("POST", "/login"): Rule(PUBLIC, build=_form(username=lambda c: c.login_user, password=PASSWORD)),
    ("POST", "/logout"): Rule(PUBLIC, build=_form()),
    ("GET", "/staff/messages"): Rule(LOGIN),
    # ---- appeals: the citizen's side
    ("POST", "/api/appeals"): Rule(
        PUBLIC,
        build=_json(description="楼道里的灯坏了，晚上看不见路", citizen_phone="13900002222"),
        expect=_refused_without("appeal.create"),
    ),
    ("GET", "/api/appeals/track/{code}"): Rule(PUBLIC, path=TRACK),
    ("POST", "/api/appeals/track/{code}/rate"): Rule(PUBLIC, path=TRACK, build=_json(rating="satisfied")),
    ("POST", "/api/appeals/track/{code}/reopen"): Rule(
        PUBLIC, path=TRACK, build=_json(reason="还是没有修好")
    ),
    ("GET", "/api/appeals/track/{code}/photos/{photo_id}"): Rule(
        PUBLIC, path={**TRACK, **ABSENT}, expect={a: "hidden" for a in ACTORS}
    ),
    ("GET", "/api/appeals/similar"): Rule(PUBLIC, build=lambda c: {"params": {"text": "路灯坏了"}}),
    ("GET", "/report"): Rule(PUBLIC),
    ("POST", "/report"): Rule(
        PUBLIC, build=_form(description="小区门口垃圾很多没人清理", citizen_phone="13900003333")
    ),
    ("GET", "/r/{place_code}"): Rule(PUBLIC, path={"place_code": lambda c: c.place_code}),
    ("GET", "/t"): Rule(PUBLIC),
    ("GET", "/t/{code}"): Rule(PUBLIC, path=TRACK),
    ("POST", "/t/{code}/rate"): Rule(PUBLIC, path=TRACK, build=_form(rating="satisfied")),
    ("POST", "/t/{code}/reopen"): Rule(PUBLIC, path=TRACK, build=_form(reason="还是没有修好")),
    # ---- appeals: staff JSON
    ("GET", "/api/appeals"): Rule("appeal.read"),
    ("GET", "/api/appeals/{appeal_id}"): Rule("appeal.read", unit=True, path=APPEAL, shows_personal=True),
    ("GET", "/api/appeals/{appeal_id}/suggestions"): Rule("appeal.read", unit=True, path=APPEAL),
    ("GET", "/api/appeals/{appeal_id}/similar"): Rule("appeal.read", unit=True, path=APPEAL),
    ("GET", "/api/appeals/{appeal_id}/photos/{photo_id}"): Rule(
        "appeal.read", unit=True, path={**APPEAL, **ABSENT}, expect=_missing_for("appeal.read")
    ),
    ("POST", "/api/appeals/{appeal_id}/dispatch"): Rule(
        "appeal.dispatch", unit=True, path=APPEAL, build=_json(unit_id=lambda c: c.unit_id)
    ),
    ("POST", "/api/appeals/{appeal_id}/sign"): Rule("appeal.sign", True, _json(), APPEAL, LEAD_ONLY),
    ("POST", "/api/appeals/{appeal_id}/start"): Rule("appeal.start", True, _json(), APPEAL, LEAD_ONLY),
    ("POST", "/api/appeals/{appeal_id}/return"): Rule(
        "appeal.return", True, _json(reason="不属于本单位"), APPEAL, LEAD_ONLY
    ),
    ("POST", "/api/appeals/{appeal_id}/transfer"): Rule(
        "appeal.transfer", True, _json(unit_id=lambda c: c.unit_id, reason="属于城管职责"), APPEAL, LEAD_ONLY
    ),
    ("POST", "/api/appeals/{appeal_id}/assist"): Rule(
        "appeal.assist", True, _json(message="已协助"), APPEAL, LEAD_ONLY
    ),
    ("POST", "/api/appeals/{appeal_id}/extension"): Rule(
        "appeal.request_extension", True, _json(hours=24, reason="等待配件"), APPEAL, LEAD_ONLY
    ),
    ("POST", "/api/appeals/{appeal_id}/extension/decide"): Rule(
        "appeal.decide_extension", True, _json(approve=True), APPEAL
    ),
    ("POST", "/api/appeals/{appeal_id}/supervise"): Rule(
        "appeal.supervise", True, _json(reason="请尽快办理"), APPEAL
    ),
    ("POST", "/api/appeals/{appeal_id}/complete"): Rule(
        "appeal.complete", True, _json(reply="已经派人修好了路灯"), APPEAL, LEAD_ONLY
    ),
    ("POST", "/api/appeals/{appeal_id}/close"): Rule("appeal.close", True, _json(reason="重复诉求"), APPEAL),
    ("POST", "/api/appeals/{appeal_id}/merge"): Rule(
        "appeal.merge", True, _json(into_tracking_code=lambda c: c.other_code), APPEAL
    ),
    ("POST", "/api/appeals/batch"): Rule(
        "appeal.read", build=_json(ids=lambda c: [c.appeal_id], action="sign")
    ),
    ("POST", "/api/imports"): Rule(
        "appeal.import", build=lambda c: {"files": {"file": ("a.csv", io.BytesIO(CSV), "text/csv")}}
    ),
    ("GET", "/api/imports/{job_id}"): Rule(
        "appeal.import", path=ABSENT, expect=_missing_for("appeal.import")
    ),
    ("GET", "/api/imports/{job_id}/errors.csv"): Rule(
        "appeal.import", path=ABSENT, expect=_missing_for("appeal.import")
    ),
    ("GET", "/api/sla/policies"): Rule("sla.manage"),
    ("PUT", "/api/sla/policies"): Rule("sla.manage", build=_json(category="城乡建设", sign_minutes=5)),
    ("DELETE", "/api/sla/policies/{policy_id}"): Rule(
        "sla.manage", path=ABSENT, expect=_missing_for("sla.manage")
    ),
    # ---- appeals: staff pages
    ("GET", "/staff"): Rule("appeal.read"),
    ("POST", "/staff/batch"): Rule("appeal.read", build=_form(action="sign", ids=lambda c: str(c.appeal_id))),
    ("GET", "/staff/appeals/{appeal_id}"): Rule("appeal.read", unit=True, path=APPEAL, shows_personal=True),
    ("POST", "/staff/appeals/{appeal_id}/{action}"): Rule(
        "appeal.sign", True, _form(), {**APPEAL, "action": lambda c: "sign"}, LEAD_ONLY
    ),
    ("GET", "/staff/dispatch"): Rule("appeal.dispatch"),
    ("GET", "/staff/hotline"): Rule("appeal.create"),
    ("POST", "/staff/hotline"): Rule(
        "appeal.create", build=_form(description="热线来电：路灯坏了很多天", citizen_phone="13900004444")
    ),
    ("GET", "/staff/import"): Rule("appeal.import"),
    ("POST", "/staff/import"): Rule(
        "appeal.import",
        build=lambda c: {
            "data": {"csrf_token": CSRF},
            "files": {"file": ("a.csv", io.BytesIO(CSV), "text/csv")},
        },
    ),
    ("GET", "/staff/import/template.csv"): Rule(PUBLIC),
    # ---- places
    ("GET", "/api/units"): Rule(PUBLIC),
    ("GET", "/api/places/{code}"): Rule(PUBLIC, path=PLACE),
    ("POST", "/api/places"): Rule(
        "places.manage", build=_json(name="测试公园", street_id=lambda c: c.street_id)
    ),
    ("GET", "/places/{code}/qr.png"): Rule(PUBLIC, path=PLACE),
    ("GET", "/places/{code}/qr.svg"): Rule(PUBLIC, path=PLACE),
    ("GET", "/places/{code}/sheet"): Rule(PUBLIC, path=PLACE),
    ("PUT", "/api/units/{unit_id}/auto-sign"): Rule(
        "places.manage", path={"unit_id": lambda c: c.unit_id}, build=_json(enabled=True)
    ),
    ("GET", "/staff/places"): Rule(LOGIN),
    # ---- dispatch: model registry, responsibility table, quality report
    ("GET", "/api/dispatch/models"): Rule("dispatch.manage"),
    ("POST", "/api/dispatch/models/rollback"): Rule("dispatch.manage"),
    ("POST", "/api/dispatch/models/retrain"): Rule("dispatch.manage"),
    ("GET", "/api/dispatch/training-jobs/{job_id}"): Rule(
        "dispatch.manage", path={"job_id": lambda c: 999_999}, expect=_missing_for("dispatch.manage")
    ),
    ("POST", "/api/dispatch/models/{version_id}/activate"): Rule(
        "dispatch.manage", path={"version_id": lambda c: 999_999}, expect=_missing_for("dispatch.manage")
    ),
    ("GET", "/staff/dispatch/models"): Rule("dispatch.manage"),
    ("POST", "/staff/dispatch/models/rollback"): Rule("dispatch.manage", build=_form()),
    ("POST", "/staff/dispatch/models/retrain"): Rule("dispatch.manage", build=_form()),
    ("POST", "/staff/dispatch/models/{version_id}/activate"): Rule(
        "dispatch.manage",
        build=_form(),
        path={"version_id": lambda c: 999_999},
        expect=_missing_for("dispatch.manage"),
    ),
    ("GET", "/api/dispatch/feedback"): Rule("dispatch.manage"),
    ("GET", "/staff/dispatch/feedback"): Rule("dispatch.manage"),
    ("POST", "/api/dispatch/feedback/{feedback_id}/exclude"): Rule(
        "dispatch.manage",
        path={"feedback_id": lambda c: 999_999},
        build=_json(reason="类别标错了"),
        expect=_missing_for("dispatch.manage"),
    ),
    ("POST", "/api/dispatch/feedback/{feedback_id}/restore"): Rule(
        "dispatch.manage", path={"feedback_id": lambda c: 999_999}, expect=_missing_for("dispatch.manage")
    ),
    ("POST", "/staff/dispatch/feedback/{feedback_id}/exclude"): Rule(
        "dispatch.manage",
        path={"feedback_id": lambda c: 999_999},
        build=_form(reason="类别标错了"),
        expect=_missing_for("dispatch.manage"),
    ),
    ("POST", "/staff/dispatch/feedback/{feedback_id}/restore"): Rule(
        "dispatch.manage",
        path={"feedback_id": lambda c: 999_999},
        build=_form(),
        expect=_missing_for("dispatch.manage"),
    ),
    ("GET", "/api/dispatch/quality"): Rule("dispatch.report"),
    ("GET", "/staff/dispatch/report"): Rule("dispatch.report"),
    ("GET", "/staff/dispatch/report.xlsx"): Rule("dispatch.report"),
    # dispatchers and supervisors read the responsibility table; only admins change it
    ("GET", "/api/dispatch/rules"): Rule("dispatch.report"),
    ("GET", "/api/dispatch/rules/history"): Rule("dispatch.report"),
    ("POST", "/api/dispatch/rules"): Rule(
        "dispatch.manage", build=_json(category="城乡建设", target="unit", unit_id=lambda c: c.unit_id)
    ),
    ("PUT", "/api/dispatch/rules/{rule_id}"): Rule(
        "dispatch.manage", path={"rule_id": lambda c: c.rule_id}, build=_json(keywords=["路灯"])
    ),
    ("DELETE", "/api/dispatch/rules/{rule_id}"): Rule(
        "dispatch.manage", path={"rule_id": lambda c: c.rule_id}
    ),
    ("POST", "/api/dispatch/boundaries"): Rule(
        "dispatch.manage", build=_json(type="FeatureCollection", features=[])
    ),
    ("GET", "/staff/dispatch/rules"): Rule("dispatch.manage"),
    ("GET", "/staff/dispatch/rules/try"): Rule(
        "dispatch.manage", build=lambda c: {"params": {"description": "门口路灯坏了"}}
    ),
    ("POST", "/api/dispatch/preview"): Rule("dispatch.report", build=_json(description="门口路灯坏了")),
    ("POST", "/staff/dispatch/rules"): Rule(
        "dispatch.manage", build=_form(category="城乡建设", target="unit", unit_id=lambda c: str(c.unit_id))
    ),
    ("POST", "/staff/dispatch/rules/{rule_id}"): Rule(
        "dispatch.manage", path={"rule_id": lambda c: c.rule_id}, build=_form(keywords="路灯")
    ),
    ("POST", "/staff/dispatch/rules/{rule_id}/deactivate"): Rule(
        "dispatch.manage", path={"rule_id": lambda c: c.rule_id}, build=_form()
    ),
    ("POST", "/staff/dispatch/rules/{rule_id}/activate"): Rule(
        "dispatch.manage", path={"rule_id": lambda c: c.rule_id}, build=_form()
    ),
    # ---- Open311 GeoReport v2: public by design; its data is masked
    ("GET", "/open311/v2/discovery.{fmt}"): Rule(PUBLIC, path={"fmt": lambda c: "json"}),
    ("GET", "/open311/v2/services.{fmt}"): Rule(PUBLIC, path={"fmt": lambda c: "json"}),
    ("GET", "/open311/v2/services/{service_code}.{fmt}"): Rule(
        PUBLIC,
        path={"fmt": lambda c: "json", "service_code": lambda c: "no-such-service"},
        expect={a: "hidden" for a in ACTORS},
    ),
    # A GeoReport client must present its api_key; nobody's login replaces it.
    ("POST", "/open311/v2/requests.{fmt}"): Rule(
        PUBLIC,
        expect={a: "forbidden" for a in ACTORS},
        path={"fmt": lambda c: "json"},
        build=lambda c: {
            "data": {
                "service_code": "城乡建设",
                "description": "路灯坏了很多天",
                "lat": "30.27",
                "long": "120.13",
            }
        },
    ),
    ("GET", "/open311/v2/tokens/{token}.{fmt}"): Rule(
        PUBLIC,
        path={"fmt": lambda c: "json", "token": lambda c: "no-such-token"},
        expect={a: "hidden" for a in ACTORS},
    ),
    ("GET", "/open311/v2/requests.{fmt}"): Rule(PUBLIC, path={"fmt": lambda c: "json"}),
    ("GET", "/open311/v2/requests/{service_request_id}.{fmt}"): Rule(
        PUBLIC, path={"fmt": lambda c: "json", "service_request_id": lambda c: c.appeal_id}
    ),
    ("GET", "/open311/v2/servicerequestupdates.{fmt}"): Rule(
        PUBLIC,
        path={"fmt": lambda c: "json"},
        build=lambda c: {"params": {"start_date": "2026-01-01T00:00:00Z"}},
    ),
    # ---- indicators
    ("GET", "/api/indicators"): Rule(PUBLIC),
    # 填报 / 审核 (the matrix's database has no indicator catalog, so an allowed actor meets a 404 there)
    ("GET", "/api/indicators/reports"): Rule("indicator.view"),
    ("POST", "/api/indicators/reports"): Rule(
        "indicator.report",
        build=_json(indicator_code="good_habits", period="2024", value=80, source="台账"),
        expect=_missing_for("indicator.report"),
    ),
    ("POST", "/api/indicators/reports/{report_id}/decision"): Rule(
        "indicator.approve",
        path={"report_id": lambda c: 999_999},
        build=_json(approve=True),
        expect=_missing_for("indicator.approve"),
    ),
    ("GET", "/staff/indicators"): Rule("indicator.view"),
    ("GET", "/staff/indicators/report"): Rule("indicator.report"),
    ("POST", "/staff/indicators/report"): Rule(
        "indicator.report",
        build=_form(pair="good_habits|", period="2024", value="80", source="台账"),
        expect=_missing_for("indicator.report"),
    ),
    ("GET", "/staff/indicators/template.xlsx"): Rule("indicator.report"),
    ("POST", "/staff/indicators/import"): Rule("indicator.report"),
    ("GET", "/staff/indicators/review"): Rule("indicator.approve"),
    # a decision on a report that does not exist goes back to the queue with the error shown
    ("POST", "/staff/indicators/review/{report_id}"): Rule(
        "indicator.approve", path={"report_id": lambda c: 999_999}, build=_form(decision="approve")
    ),
    # ---- 考核 and the cockpit
    ("GET", "/staff/assessment"): Rule("assessment.view"),
    ("GET", "/staff/assessment/export.xlsx"): Rule("assessment.view"),
    ("GET", "/staff/assessment/weights"): Rule("assessment.manage"),
    ("POST", "/staff/assessment/weights"): Rule("assessment.manage"),
    ("GET", "/cockpit"): Rule("cockpit.view"),
    # every actor with the cockpit here is district-wide or of 西溪街道 (the grid), so all may open it
    ("GET", "/cockpit/street/{unit_id}"): Rule("cockpit.view", path={"unit_id": lambda c: c.street_id}),
    ("GET", "/cockpit/community/{unit_id}"): Rule(
        "cockpit.view", path={"unit_id": lambda c: c.street_id}, expect=_missing_for("cockpit.view")
    ),
    ("GET", "/cockpit/assets/{name}"): Rule(PUBLIC, path={"name": lambda c: "cockpit.js"}),
    # ---- analysis: 预警和研判 (read by supervisors and leaders; warnings handled by supervisors and admins)
    ("GET", "/api/analysis/figures"): Rule("analysis.view"),
    ("GET", "/api/analysis/unit-rates"): Rule("analysis.view"),
    ("POST", "/api/analysis/detect"): Rule("analysis.manage"),
    ("GET", "/api/warnings"): Rule("analysis.view"),
    ("GET", "/api/warnings/{warning_id}"): Rule(
        "analysis.view", path=NO_SUCH, expect=_missing_for("analysis.view")
    ),
    ("POST", "/api/warnings/{warning_id}/acknowledge"): Rule(
        "warning.handle", path=NO_SUCH, expect=_missing_for("warning.handle")
    ),
    ("POST", "/api/warnings/{warning_id}/close"): Rule(
        "warning.handle", path=NO_SUCH, build=_json(note="已处理完毕"), expect=_missing_for("warning.handle")
    ),
    ("GET", "/staff/analysis/analysis.js"): Rule(PUBLIC),
    ("GET", "/staff/analysis"): Rule("analysis.view"),
    ("GET", "/staff/warnings"): Rule("analysis.view"),
    ("GET", "/staff/warnings/{warning_id}"): Rule(
        "analysis.view", path=NO_SUCH, expect=_missing_for("analysis.view")
    ),
    ("POST", "/staff/warnings/{warning_id}/{action}"): Rule(
        "warning.handle",
        path={**NO_SUCH, "action": lambda c: "acknowledge"},
        build=_form(),
        expect=_missing_for("warning.handle"),
    ),
    ("GET", "/staff/briefs"): Rule("analysis.view"),
    ("GET", "/staff/briefs/{kind}/{day}.xlsx"): Rule("analysis.view", path=BRIEF),
    ("GET", "/staff/briefs/{kind}/{day}.pdf"): Rule("analysis.view", path=BRIEF),
}

# A fallback for routes the analysis, indicators and cockpit work adds under its own prefixes before they get
# an exact line above: anonymous visitors must be refused, and no one without appeal.read_personal may see
# the planted phone number or name. Path parameters come from DEFAULT_PATH (ids that do not exist).
PREFIXES: list[tuple[str, Rule]] = [
    (prefix, Rule(STAFF))
    for prefix in (
        "/cockpit",
        "/staff/analysis",
        "/staff/warnings",
        "/staff/briefs",
        "/staff/indicators",
        "/staff/assessment",
        "/api/analysis",
        "/api/warnings",
        "/api/indicators/",
    )
]


# Path parameters of routes classified only by their prefix: ids that do not exist, a plausible day.
DEFAULT_PATH = {
    "unit_id": "999999",
    "kind": "daily",
    "day": "2026-11-20",
    "action": "acknowledge",
    "name": "x",
}
DEFAULT_PATH |= {f"{n}_id": "999999" for n in ("report", "warning", "brief", "indicator", "job", "rule")}


def _routes(app: Any) -> Iterator[tuple[str, str]]:
    for ctx in iter_route_contexts(app.routes):
        methods = ctx.methods or set()
        path = ctx.path
        if path is None or path.startswith("/static"):
            continue
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            yield method, path


def _rule(method: str, path: str) -> Rule | None:
    if (method, path) in ROUTES:
        return ROUTES[(method, path)]
    for prefix, rule in PREFIXES:
        if path.startswith(prefix):
            return rule
    return None


def _all_routes() -> list[tuple[str, str]]:
    from xihu.core.config import get_settings
    from xihu.web.app import create_app

    return sorted(set(_routes(create_app(get_settings()))))


ALL_ROUTES = _all_routes()


def test_every_route_is_classified() -> None:
    """A route nobody has classified is a route nobody has thought about: the matrix refuses it."""
    missing = [f"{m} {p}" for m, p in ALL_ROUTES if _rule(m, p) is None]
    assert not missing, "routes not in the authorization matrix (add them to ROUTES/PREFIXES): " + ", ".join(
        missing
    )
    stale = [f"{m} {p}" for (m, p) in ROUTES if (m, p) not in ALL_ROUTES]
    assert not stale, "matrix entries for routes that no longer exist: " + ", ".join(stale)


def _expected(actor: str, rule: Rule) -> str:
    if actor in rule.expect:
        return rule.expect[actor]
    spec = ACTORS[actor]
    if rule.access == PUBLIC:
        return "ok"
    if spec is None:
        return "login|invalid" if rule.access == STAFF else "login"
    if rule.access == STAFF:
        return "ok|forbidden|hidden"
    role = spec[0]
    if rule.access != LOGIN and rule.access not in PERMISSIONS[role]:
        return "forbidden"
    if rule.unit and actor == "handler_other_unit":
        return "hidden"
    return "ok"


def _outcome(resp: Any) -> str:
    status = resp.status_code
    if status >= 500:
        return f"error {status}"
    if status == 401 or (status in (302, 303, 307) and resp.headers.get("location", "").startswith("/login")):
        return "login"
    return {403: "forbidden", 404: "hidden", 422: "invalid"}.get(status, "ok")


@dataclass
class World:
    """The planted data, the logged-in actors' cookies and the test's connection."""

    ctx: Ctx
    cookies: dict[str, dict[str, str]]
    connection: Connection


@pytest.fixture
def world(client: TestClient, session: Session, connection: Connection) -> World:
    """One appeal with personal data dispatched to LEAD in STREET, another to merge into, and every actor."""
    from xihu.dispatch import responsibility
    from xihu.places import service as places_service
    from xihu.places.schemas import PlaceCreate

    planted = factories.dispatched(
        session, LEAD, citizen_phone=PHONE, citizen_name=NAME, description=f"路灯坏了，请回电{PHONE}"
    )
    other = factories.submitted(session, description="另一条诉求：井盖松动了，容易绊倒")
    place = places_service.create_place(
        session=session,
        actor=factories.SYSTEM,
        place_in=PlaceCreate(name="矩阵测试公园", street_id=factories.unit(session, STREET)),
    )
    rules = responsibility.list_rules(session=session, actor=factories.SYSTEM)
    login_user = create_user(
        session=session,
        username="matrix_login",
        password=PASSWORD,
        display_name="登录",
        role=Role.intake,
        unit_id=None,
    )
    session.commit()
    cookies: dict[str, dict[str, str]] = {}
    for name, spec in ACTORS.items():
        jar = {"xihu_csrf": CSRF}
        if spec is not None:
            user: User = create_user(
                session=session,
                username=f"m_{name}",
                password=PASSWORD,
                display_name=f"矩阵{name}",
                role=spec[0],
                unit_id=factories.unit(session, spec[1]) if spec[1] else None,
            )
            session.commit()
            client.cookies.clear()
            resp = client.post("/api/auth/login", json={"username": user.username, "password": PASSWORD})
            assert resp.status_code == 200, resp.text
            jar["xihu_session"] = resp.cookies["xihu_session"]
        cookies[name] = jar
    client.cookies.clear()
    ctx = Ctx(
        appeal_id=planted.id,
        tracking_code=planted.tracking_code,
        other_code=other.tracking_code,
        place_code=place.code,
        unit_id=factories.unit(session, OTHER),
        street_id=factories.unit(session, STREET),
        rule_id=rules[0].id,
        login_user=login_user.username,
    )
    return World(ctx=ctx, cookies=cookies, connection=connection)


def _request(client: TestClient, world: World, actor: str, method: str, path: str, rule: Rule) -> Any:
    url = path
    for name, value in rule.path.items():
        url = url.replace("{" + name + "}", str(value(world.ctx)))
    for name, value in DEFAULT_PATH.items():  # routes classified by prefix only
        url = url.replace("{" + name + "}", value)
    assert "{" not in url, f"no value for a path parameter of {path}: add it to the rule's path"
    kwargs = rule.build(world.ctx) if rule.build else {}
    if method != "GET" and "json" not in kwargs and "data" not in kwargs and "files" not in kwargs:
        kwargs = {"json": {}} if path.startswith("/api/") else {"data": {"csrf_token": CSRF}}
    client.cookies.clear()
    for key, value in world.cookies[actor].items():
        client.cookies.set(key, value)
    return client.request(method, url, headers={"X-CSRF-Token": CSRF}, follow_redirects=False, **kwargs)


def _view_audits(connection: Connection) -> int:
    return connection.execute(
        select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "appeal.view_personal")
    ).scalar_one()


PROBED = [(m, p) for m, p in ALL_ROUTES if (r := _rule(m, p)) is not None and r.probe]


@pytest.mark.parametrize(("method", "path"), PROBED, ids=[f"{m} {p}" for m, p in PROBED])
def test_route_for_every_actor(client: TestClient, world: World, method: str, path: str) -> None:
    """Each actor gets the outcome the matrix says; no one without the right sees a phone number or name."""
    rule = _rule(method, path)
    assert rule is not None
    failures = []
    for actor, spec in ACTORS.items():
        savepoint = world.connection.begin_nested()
        try:
            audits_before = _view_audits(world.connection)
            resp = _request(client, world, actor, method, path, rule)
            got, want = _outcome(resp), _expected(actor, rule)
            body = resp.text
            personal = spec is not None and "appeal.read_personal" in PERMISSIONS[spec[0]]
            # an allowed actor's invalid input (422) still means the authorization check let it through
            if got not in want.split("|") and not (got == "invalid" and "ok" in want.split("|")):
                failures.append(f"{actor}: expected {want}, got {got} ({resp.status_code}) {body[:200]}")
            if (
                resp.headers.get("x-content-type-options") != "nosniff"
                or "x-frame-options" not in resp.headers
            ):
                failures.append(f"{actor}: security headers missing")
            if not personal and (PHONE in body or NAME in body):
                failures.append(f"{actor}: personal data of the planted appeal unmasked in the response")
            if actor == "handler_other_unit" and rule.access != PUBLIC and world.ctx.tracking_code in body:
                failures.append(f"{actor}: another unit's appeal is visible")
            if rule.shows_personal and want == "ok" and got == "ok":
                shown = PHONE in body
                audited = _view_audits(world.connection) - audits_before
                if personal and not (shown and audited == 1):
                    failures.append(f"{actor}: full view shows phone={shown}, audited {audited} times")
        finally:
            savepoint.rollback()
    assert not failures, f"{method} {path}:\n" + "\n".join(failures)


# ---------------------------------------------------------------- CSRF, sessions, headers, cookies

# Writes that need no CSRF token, and why.
CSRF_EXEMPT = {
    # no session exists yet; a JSON body cannot be sent cross-site without a CORS preflight, which is refused
    ("POST", "/api/auth/login"),
    # the citizen's tracking code is the credential; no cookie is used, so a forged request gains nothing
    ("POST", "/api/appeals/track/{code}/rate"),
    ("POST", "/api/appeals/track/{code}/reopen"),
}
WRITES = [
    (m, p)
    for m, p in ALL_ROUTES
    if m in ("POST", "PUT", "PATCH", "DELETE") and (m, p) not in CSRF_EXEMPT and not p.startswith("/open311/")
]


@pytest.mark.parametrize(("method", "path"), WRITES, ids=[f"{m} {p}" for m, p in WRITES])
def test_write_without_csrf_token_is_refused(
    client: TestClient, world: World, method: str, path: str
) -> None:
    """Every form post and every cookie-authenticated API write is refused without the token (as admin)."""
    rule = _rule(method, path) or Rule(PUBLIC)
    kwargs = rule.build(world.ctx) if rule.build else {}
    if isinstance(kwargs.get("data"), dict):
        kwargs = {**kwargs, "data": {k: v for k, v in kwargs["data"].items() if k != "csrf_token"}}
    url = path
    for name, value in rule.path.items():
        url = url.replace("{" + name + "}", str(value(world.ctx)))
    for jar in (world.cookies["admin"], {"xihu_session": world.cookies["admin"]["xihu_session"]}):
        client.cookies.clear()
        for key, value in jar.items():
            client.cookies.set(key, value)
        audits = _view_audits(world.connection)
        resp = client.request(method, url, follow_redirects=False, **kwargs)
        assert resp.status_code == 403, (
            f"{method} {path} without CSRF token: {resp.status_code} {resp.text[:200]}"
        )
        assert "页面已过期或请求来源不明" in resp.text or "CSRF" in resp.text
        assert _view_audits(world.connection) == audits


def test_login_rotates_the_session_and_ends_the_old_one(client: TestClient, world: World) -> None:
    """Session fixation: a token planted or held before login never becomes (or stays) a logged-in session."""
    client.cookies.clear()
    client.cookies.set("xihu_session", "attacker-chosen-token")
    client.cookies.set("xihu_csrf", CSRF)
    resp = client.post(
        "/login",
        data={"csrf_token": CSRF, "username": "m_admin", "password": PASSWORD},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    fresh = resp.cookies["xihu_session"]
    assert fresh != "attacker-chosen-token" and len(fresh) >= 32
    client.cookies.set("xihu_session", fresh)
    assert client.get("/api/me").json()["username"] == "m_admin"
    # logging in again (another account on the same browser) replaces the session and ends the old one
    resp = client.post(
        "/login",
        data={"csrf_token": CSRF, "username": "m_intake", "password": PASSWORD},
        follow_redirects=False,
    )
    second = resp.cookies["xihu_session"]
    assert second != fresh
    client.cookies.clear()
    client.cookies.set("xihu_session", fresh)
    assert client.get("/api/me").status_code == 401
    client.cookies.set("xihu_session", second)
    assert client.get("/api/me").json()["username"] == "m_intake"
    client.cookies.set("xihu_csrf", CSRF)
    assert client.post("/logout", data={"csrf_token": CSRF}, follow_redirects=False).status_code == 303
    client.cookies.clear()
    client.cookies.set("xihu_session", second)
    assert client.get("/api/me").status_code == 401


def test_repeated_wrong_passwords_lock_the_account(client: TestClient, world: World) -> None:
    """Login throttling: after 5 wrong passwords even the right one is refused for a while."""
    client.cookies.clear()
    for _ in range(5):
        assert (
            client.post("/api/auth/login", json={"username": "m_admin", "password": "wrong-pass"}).status_code
            == 401
        )
    resp = client.post("/api/auth/login", json={"username": "m_admin", "password": PASSWORD})
    assert resp.status_code == 403
    assert "登录失败次数过多" in resp.json()["error"]["message"]


HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


@pytest.mark.parametrize(
    "url",
    ["/", "/login", "/staff", "/api/units", "/api/appeals", "/no-such-page", "/static/app.css", "/noop"],
)
def test_security_headers_on_every_kind_of_response(client: TestClient, url: str) -> None:
    """Pages, JSON, errors, redirects and static files all carry the security headers."""
    resp = client.get(url, follow_redirects=False)
    for key, value in HEADERS.items():
        assert resp.headers.get(key) == value, (url, key)
    csp = resp.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "strict-transport-security" not in resp.headers  # plain http: HSTS would be meaningless


def _cookie(resp: Any, name: str) -> str:
    found = [h for h in resp.headers.get_list("set-cookie") if h.startswith(name + "=")]
    assert found, f"no {name} cookie set"
    return found[0].lower()


@pytest.mark.parametrize("mode", ["http", "https", "setting"])
def test_cookie_flags(settings: Any, session_factory: Any, session: Session, mode: str) -> None:
    """Session and CSRF cookies are HttpOnly and SameSite=Lax; Secure under XIHU_SECURE_COOKIES or https."""
    from xihu.places import service as places_service
    from xihu.web.app import create_app

    user = create_user(
        session=session,
        username="cookie_u",
        password=PASSWORD,
        display_name="饼",
        role=Role.intake,
        unit_id=None,
    )
    session.commit()
    application = create_app(settings.model_copy(update={"secure_cookies": mode == "setting"}))
    application.state.session_factory = session_factory
    places_service._reset_gazetteer()
    base = "https://testserver" if mode == "https" else "http://testserver"
    with TestClient(application, base_url=base) as c:
        page = c.get("/login")
        login = c.post("/api/auth/login", json={"username": user.username, "password": PASSWORD})
    assert login.status_code == 200
    for cookie in (_cookie(page, "xihu_csrf"), _cookie(login, "xihu_session")):
        assert "httponly" in cookie and "samesite=lax" in cookie
        assert ("; secure" in cookie) == (mode != "http"), cookie
    assert ("strict-transport-security" in page.headers) == (mode == "https")
