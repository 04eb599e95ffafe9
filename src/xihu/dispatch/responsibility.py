"""权责清单: category (+ keywords, place type, hours, area) -> the responsible unit, editable with history.

The table is data, not model weights: a district re-maps a category to another unit by editing a row, and
`resolve` answers differently at once, without retraining anything.

Specificity: among the active rules that match, the one with the most specific conditions wins, weighted
area (8) > keywords (4) > place type (2) > hours (1) > the plain category (0), so a rule limited to an area
beats any rule that is not, whatever else it has. Ties go to the most recently changed rule.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from xihu.core import audit, clock
from xihu.core.errors import Conflict, Invalid, NotFound
from xihu.core.security import Actor, authorize
from xihu.dispatch import rules
from xihu.dispatch.models import ResponsibilityHistory, ResponsibilityRule
from xihu.dispatch.schemas import RuleCreate, RuleHistoryRead, RuleRead, RuleUpdate
from xihu.places import service as places_service
from xihu.places.enums import PlaceType, UnitKind

SEED_ACTOR = Actor.system("默认权责清单")
TARGET_LABELS = {"unit": "指定单位", "street": "属地街道/镇", "community": "属地社区/村（无社区时为街道/镇）"}
ACTION_LABELS = {"create": "新增", "update": "修改", "delete": "停用"}
AREA_KINDS = {UnitKind.street.value, UnitKind.community.value, UnitKind.village.value}
_WEIGHTS = {"area": 8, "keywords": 4, "place_type": 2, "hours": 1}


# ---------------------------------------------------------------- helpers


def _keywords(rule: ResponsibilityRule) -> list[str]:
    return [k for k in rule.keywords.split(",") if k]


def _snapshot(rule: ResponsibilityRule) -> dict[str, Any]:
    """The rule's conditions and target as a JSON-safe dict (for history and audit)."""
    return {
        "category": rule.category,
        "keywords": _keywords(rule),
        "place_type": rule.place_type,
        "hour_from": rule.hour_from,
        "hour_to": rule.hour_to,
        "street_id": rule.street_id,
        "target": rule.target,
        "unit_id": rule.unit_id,
        "active": rule.active,
    }


def _conditions(rule: ResponsibilityRule) -> tuple[object, ...]:
    return (
        rule.category,
        tuple(sorted(_keywords(rule))),
        rule.place_type,
        rule.hour_from,
        rule.hour_to,
        rule.street_id,
    )


def _to_read(session: Session, rules_: list[ResponsibilityRule]) -> list[RuleRead]:
    ids = {u for r in rules_ for u in (r.unit_id, r.street_id) if u}
    names = places_service.unit_names(session=session, unit_ids=ids)
    return [
        RuleRead(
            id=r.id,
            category=r.category,
            keywords=_keywords(r),
            place_type=r.place_type,
            place_type_label=PlaceType(r.place_type).label if r.place_type else None,
            hour_from=r.hour_from,
            hour_to=r.hour_to,
            street_id=r.street_id,
            street_name=names.get(r.street_id) if r.street_id else None,
            target=r.target,
            target_label=TARGET_LABELS.get(r.target, r.target),
            unit_id=r.unit_id,
            unit_name=names.get(r.unit_id) if r.unit_id else None,
            active=r.active,
            updated_by=r.updated_by,
            updated_at=r.updated_at,
        )
        for r in rules_
    ]


def _check(session: Session, data: RuleCreate) -> None:
    if data.category not in rules.CATEGORIES:
        raise Invalid(
            f"未知类别「{data.category}」，可选：{'、'.join(rules.CATEGORIES)}", english="unknown category"
        )
    if data.unit_id is not None:
        try:
            places_service.get_unit(session=session, unit_id=data.unit_id)
        except NotFound:
            raise Invalid("责任单位不存在", english="unknown unit") from None
    if data.street_id is not None:
        try:
            area = places_service.get_unit(session=session, unit_id=data.street_id)
        except NotFound:
            raise Invalid("所选区域不存在", english="unknown area") from None
        if area.kind not in AREA_KINDS:
            raise Invalid("区域必须是街道/镇或社区/村", english="area must be a street or community")


def _same_conditions(session: Session, rule: ResponsibilityRule, exclude_id: int | None) -> None:
    """Refuse two active rules with identical conditions: the answer would depend on edit order."""
    mine = _conditions(rule)
    for other in session.scalars(
        select(ResponsibilityRule).where(
            ResponsibilityRule.category == rule.category, ResponsibilityRule.active.is_(True)
        )
    ):
        if other.id != exclude_id and other is not rule and _conditions(other) == mine:
            raise Conflict(
                f"已有条件相同的有效规则（第 {other.id} 条），请直接修改该规则",
                english=f"an active rule with the same conditions exists (#{other.id})",
            )


def _log(
    session: Session,
    actor: Actor,
    rule: ResponsibilityRule,
    action: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    reset_cache()  # this process sees its own change at once
    session.add(
        ResponsibilityHistory(
            rule_id=rule.id,
            action=action,
            before=before,
            after=after,
            actor_label=actor.label[:64],
            at=clock.now(),
        )
    )
    audit.record(
        session=session,
        actor=actor,
        action=f"dispatch.rule_{action}",
        entity="responsibility_rule",
        entity_id=rule.id,
        detail={"before": before, "after": after},
    )


def _apply(rule: ResponsibilityRule, data: RuleCreate, actor: Actor) -> None:
    rule.category = data.category
    rule.keywords = ",".join(data.keywords)
    rule.place_type = data.place_type.value if data.place_type else None
    rule.hour_from = data.hour_from
    rule.hour_to = data.hour_to
    rule.street_id = data.street_id
    rule.target = data.target
    rule.unit_id = data.unit_id
    rule.updated_by = actor.label[:64]
    rule.updated_at = clock.now()


# ---------------------------------------------------------------- use cases


@dataclass(frozen=True)
class _Rule:
    """An immutable copy of an active rule, kept in the process cache."""

    id: int
    category: str
    words: tuple[str, ...]
    place_type: str | None
    hour_from: int | None
    hour_to: int | None
    street_id: int | None
    target: str
    unit_id: int | None
    updated_ts: float


# Rules are read on every routing; a process keeps them for CACHE_SECONDS (its own changes apply at once,
# another process's within that time) instead of querying per candidate.
CACHE_SECONDS = 5.0
_cache_lock = threading.Lock()
_cache: tuple[float, dict[str, list[_Rule]]] | None = None


def reset_cache() -> None:
    """Forget the cached rules (after a change, and between tests)."""
    global _cache
    with _cache_lock:
        _cache = None


def _active_rules(session: Session) -> dict[str, list[_Rule]]:
    global _cache
    now = time.monotonic()
    with _cache_lock:
        if _cache is not None and now - _cache[0] < CACHE_SECONDS:
            return _cache[1]
    by_category: dict[str, list[_Rule]] = {}
    for r in session.scalars(select(ResponsibilityRule).where(ResponsibilityRule.active.is_(True))):
        by_category.setdefault(r.category, []).append(
            _Rule(
                id=r.id,
                category=r.category,
                words=tuple(_keywords(r)),
                place_type=r.place_type,
                hour_from=r.hour_from,
                hour_to=r.hour_to,
                street_id=r.street_id,
                target=r.target,
                unit_id=r.unit_id,
                updated_ts=clock.as_utc(r.updated_at).timestamp(),
            )
        )
    with _cache_lock:
        _cache = (now, by_category)
    return by_category


def seed_defaults(*, session: Session) -> int:
    """Add the default table (idempotent): each category -> its department; grid matters -> the community.

    A default that exists, even deactivated by an admin, is not added again. Returns the rules added.
    """
    existing = {_conditions(r) for r in session.scalars(select(ResponsibilityRule))}
    wanted: list[RuleCreate] = []
    for category, code in rules.RESPONSIBLE.items():
        unit = places_service.get_unit_by_code(session=session, code=code)
        wanted.append(RuleCreate(category=category, target="unit", unit_id=unit.id))
    wanted.append(RuleCreate(category="城乡建设", keywords=list(rules.GRID_KEYWORDS), target="community"))
    added = 0
    for data in wanted:
        rule = ResponsibilityRule(active=True)
        _apply(rule, data, SEED_ACTOR)
        if _conditions(rule) in existing:
            continue
        session.add(rule)
        session.flush()
        existing.add(_conditions(rule))
        _log(session, SEED_ACTOR, rule, "create", None, _snapshot(rule))
        added += 1
    session.flush()
    return added


def _hour_ok(rule: _Rule | ResponsibilityRule, local_hour: int | None) -> bool:
    if rule.hour_from is None or rule.hour_to is None:
        return True
    if local_hour is None:
        return False
    start, end = rule.hour_from % 24, rule.hour_to % 24
    if start < end:
        return start <= local_hour < end
    return local_hour >= start or local_hour < end  # spans midnight, e.g. 22 -> 6


class Resolution(NamedTuple):
    """What the table answers for a category at a place: the unit (None: the dispatcher decides), why, and
    the rule that decided (None when none applies)."""

    unit_id: int | None
    reason: str
    rule_id: int | None


def resolve(
    *,
    session: Session,
    category: str,
    text: str,
    place_type: str | None = None,
    local_hour: int | None = None,
    street_id: int | None = None,
    community_id: int | None = None,
) -> Resolution:
    """(responsible unit id, Chinese reason, rule id) by the most specific active matching rule.

    A rule targeting the street/community answers with the appeal's own street or community, or None when
    the location is unknown (the dispatcher then decides).
    """
    best_key: tuple[int, float, int] | None = None
    best: tuple[_Rule, list[str]] | None = None
    for rule in _active_rules(session).get(category, ()):
        parts: list[str] = []
        score = 0
        if rule.street_id is not None:
            if rule.street_id not in (street_id, community_id):
                continue
            score += _WEIGHTS["area"]
            parts.append("area")
        hits = [w for w in rule.words if w in text]
        if rule.words:
            if not hits:
                continue
            score += _WEIGHTS["keywords"]
            parts.append("关键词「" + "、".join(hits) + "」")
        if rule.place_type is not None:
            if rule.place_type != place_type:
                continue
            score += _WEIGHTS["place_type"]
            parts.append("地点类型：" + PlaceType(rule.place_type).label)
        if rule.hour_from is not None:
            if not _hour_ok(rule, local_hour):
                continue
            score += _WEIGHTS["hours"]
            parts.append(f"时段 {rule.hour_from}–{rule.hour_to} 时")
        key = (score, rule.updated_ts, rule.id)
        if best_key is None or key > best_key:
            best_key, best = key, (rule, parts)
    if best is None:
        return Resolution(None, f"权责清单中没有适用于「{category}」的规则，由派单员确定责任单位", None)
    rule, parts = best
    names = places_service.unit_names(
        session=session, unit_ids={u for u in (rule.street_id, rule.unit_id, street_id, community_id) if u}
    )
    conds = [f"区域：{names.get(rule.street_id, '')}" if p == "area" and rule.street_id else p for p in parts]
    head = f"权责清单第 {rule.id} 条：{category}" + ("，" + "，".join(conds) if conds else "")
    if rule.target == "unit":
        return Resolution(rule.unit_id, f"{head} → {names.get(rule.unit_id or 0, '')}", rule.id)
    if rule.target == "community" and community_id is not None:
        return Resolution(community_id, f"{head} → 属地社区/村 {names.get(community_id, '')}", rule.id)
    if street_id is not None:
        return Resolution(street_id, f"{head} → 属地街道/镇 {names.get(street_id, '')}", rule.id)
    return Resolution(None, f"{head} → 属地办理，但位置不明，由派单员确定", rule.id)


def other_units(
    *,
    session: Session,
    category: str,
    street_id: int | None = None,
    community_id: int | None = None,
    exclude: frozenset[int] = frozenset(),
) -> list[Resolution]:
    """Every unit the table could name for a category at this place, whatever the text, hour or place type
    say, then the place's own street and community (属地); units in `exclude` left out.

    After a return the category is usually right and the unit wrong: the rule's conditions (keywords, place
    type, hours) picked one unit of several, and the dispatcher wants the others at hand, not a search.
    """
    found: dict[int, Resolution] = {}
    names = places_service.unit_names(
        session=session,
        unit_ids={u for u in (street_id, community_id) if u}
        | {r.unit_id for r in _active_rules(session).get(category, ()) if r.unit_id},
    )
    for rule in sorted(_active_rules(session).get(category, ()), key=lambda r: r.id):
        if rule.street_id is not None and rule.street_id not in (street_id, community_id):
            continue
        if rule.target == "unit":
            unit = rule.unit_id
        else:
            unit = community_id if rule.target == "community" and community_id is not None else street_id
        if unit is None or unit in exclude or unit in found:
            continue
        found[unit] = Resolution(
            unit, f"权责清单第 {rule.id} 条：{category} → {names.get(unit, '')}", rule.id
        )
    for unit, kind in ((street_id, "街道/镇"), (community_id, "社区/村")):
        if unit is not None and unit not in exclude and unit not in found:
            found[unit] = Resolution(unit, f"属地{kind} {names.get(unit, '')}", None)
    return list(found.values())


def list_rules(*, session: Session, actor: Actor, include_inactive: bool = False) -> list[RuleRead]:
    """The responsibility table, by category."""
    authorize(actor, "dispatch.report")
    stmt = select(ResponsibilityRule)
    if not include_inactive:
        stmt = stmt.where(ResponsibilityRule.active.is_(True))
    order = (ResponsibilityRule.category, ResponsibilityRule.active.desc(), ResponsibilityRule.id)
    rows = list(session.scalars(stmt.order_by(*order)))
    return _to_read(session, rows)


def get_rule(*, session: Session, actor: Actor, rule_id: int) -> RuleRead:
    """One rule."""
    authorize(actor, "dispatch.report")
    rule = session.get(ResponsibilityRule, rule_id)
    if rule is None:
        raise NotFound("规则不存在", english="rule not found")
    return _to_read(session, [rule])[0]


def create_rule(*, session: Session, actor: Actor, rule_in: RuleCreate) -> RuleRead:
    """Add a rule; history and audit record it."""
    authorize(actor, "dispatch.manage")
    _check(session, rule_in)
    rule = ResponsibilityRule(active=True)
    _apply(rule, rule_in, actor)
    _same_conditions(session, rule, None)
    session.add(rule)
    session.flush()
    _log(session, actor, rule, "create", None, _snapshot(rule))
    session.flush()
    return _to_read(session, [rule])[0]


def update_rule(*, session: Session, actor: Actor, rule_id: int, rule_in: RuleUpdate) -> RuleRead:
    """Change the fields sent (`active=true` reactivates a rule); history keeps before and after."""
    authorize(actor, "dispatch.manage")
    rule = session.get(ResponsibilityRule, rule_id, with_for_update=True)
    if rule is None:
        raise NotFound("规则不存在", english="rule not found")
    before = _snapshot(rule)
    merged = {k: v for k, v in before.items() if k != "active"}
    merged.update(rule_in.model_dump(exclude_unset=True, exclude={"active"}))
    if rule_in.target is not None and rule_in.target != "unit" and "unit_id" not in rule_in.model_fields_set:
        merged["unit_id"] = None
    try:
        data = RuleCreate.model_validate(merged)
    except ValidationError as exc:
        msg = "；".join(str(e.get("msg", "")).removeprefix("Value error, ") for e in exc.errors())
        raise Invalid(msg or "规则无效", english="invalid rule") from None
    _check(session, data)
    _apply(rule, data, actor)
    if rule_in.active is not None:
        rule.active = rule_in.active
    session.flush()
    if rule.active:
        _same_conditions(session, rule, rule.id)
    after = _snapshot(rule)
    if after != before:
        _log(session, actor, rule, "update", before, after)
    session.flush()
    return _to_read(session, [rule])[0]


def deactivate_rule(*, session: Session, actor: Actor, rule_id: int) -> RuleRead:
    """Stop using a rule (rows are never deleted, so the history stays readable)."""
    authorize(actor, "dispatch.manage")
    rule = session.get(ResponsibilityRule, rule_id, with_for_update=True)
    if rule is None:
        raise NotFound("规则不存在", english="rule not found")
    if not rule.active:
        raise Conflict("规则已停用", english="rule already inactive")
    before = _snapshot(rule)
    rule.active = False
    rule.updated_by = actor.label[:64]
    rule.updated_at = clock.now()
    session.flush()
    _log(session, actor, rule, "delete", before, _snapshot(rule))
    session.flush()
    return _to_read(session, [rule])[0]


def history(
    *, session: Session, actor: Actor, rule_id: int | None = None, limit: int = 200
) -> list[RuleHistoryRead]:
    """Changes of the table (or of one rule), newest first."""
    authorize(actor, "dispatch.report")
    stmt = select(ResponsibilityHistory)
    if rule_id is not None:
        stmt = stmt.where(ResponsibilityHistory.rule_id == rule_id)
    rows = session.scalars(
        stmt.order_by(ResponsibilityHistory.at.desc(), ResponsibilityHistory.id.desc()).limit(limit)
    )
    return [
        RuleHistoryRead(
            id=h.id,
            rule_id=h.rule_id,
            action=h.action,
            action_label=ACTION_LABELS.get(h.action, h.action),
            before=h.before,
            after=h.after,
            actor_label=h.actor_label,
            at=h.at,
        )
        for h in rows
    ]
