"""Dispatch use cases: route an appeal to a category and a responsible unit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from xihu.core import clock
from xihu.core.db import memo, remember
from xihu.core.security import Actor, authorize
from xihu.dispatch import feedback as _feedback  # noqa: F401 - subscribes to staff corrections
from xihu.dispatch import location, model_cache, responsibility, rules
from xihu.dispatch.models import DispatchDecision
from xihu.dispatch.schemas import Candidate, PreviewRow, RoutePreview, RoutingInput, Suggestion
from xihu.places import service as places_service

RULES_VERSION = "rules-v1"
TOP_K = 3


def _scored(version: str, text: str) -> tuple[str, str, str]:
    # the batch memo's key of a text's category probabilities (shared by score_ahead and route)
    return ("category_proba", version, text)


def _category_scores(
    session: Session, text: str, hint: str | None
) -> tuple[list[tuple[str, float, list[str]]], float, str]:
    """(category, probability, reasons) best first, the auto threshold, and the model version used."""
    active = model_cache.active_model(session=session)
    if active is not None:
        model, version = active
        probs = memo(session, _scored(version, text), lambda: model.predict_proba([text])[0])
        ranked = sorted(probs.items(), key=lambda kv: -kv[1])
        top = ranked[:TOP_K]
        if hint and hint in probs and hint not in {c for c, _ in top}:
            top.append((hint, probs[hint]))
        scored = []
        for category, p in top:
            # Explaining an unlikely category costs time and says little.
            terms = model.top_terms(text, category, k=4) if p >= 0.05 else []
            why = [f"文本特征：{'、'.join(terms)}"] if terms else []
            if category == hint:
                why.append("与群众所选类别一致")
            scored.append((category, float(p), why))
        return scored, model.threshold, version
    # No trained model yet: keyword rules, never confident enough to dispatch alone unless unambiguous.
    hits = rules.score(text)
    if hint and hint in rules.RESPONSIBLE:
        hits = [(hint, 1, ["群众选择的类别"])] + [h for h in hits if h[0] != hint]
    total = sum(h[1] for h in hits) or 1
    scored = [(c, n / total, [f"关键词：{'、'.join(words)}"]) for c, n, words in hits[:TOP_K]]
    unambiguous = bool(hits) and (
        (len(hits) == 1 and hits[0][1] >= 2) or (len(hits) > 1 and hits[0][1] >= 2 * hits[1][1] + 1)
    )
    return scored, (0.0 if unambiguous else 1.01), RULES_VERSION


def routing_text(title: str, description: str) -> str:
    """The text the category model reads: title and description."""
    return f"{title} {description}"


def score_ahead(*, session: Session, texts: Sequence[str]) -> None:
    """Score a batch's texts in one pass, for the `route` calls that follow in the same `batch_memo` block.

    A worker routes a batch appeal by appeal; one matrix for all of them saves the model's per-call work.
    """
    active = model_cache.active_model(session=session)
    if active is None or not texts:
        return
    model, version = active
    for text, probs in zip(texts, model.predict_proba(texts), strict=True):
        remember(session, _scored(version, text), probs)


class _Routed(NamedTuple):
    """One scored category and what the responsibility table makes of it at the located place."""

    category: str
    probability: float
    why: list[str]
    unit_id: int | None
    unit_reason: str
    rule_id: int | None


def _routed(
    session: Session, appeal: RoutingInput, local_hour: int | None
) -> tuple[list[_Routed], float, str, tuple[int | None, int | None, str]]:
    """Each scored category with its unit, the auto threshold, the model version and the location found."""
    text = routing_text(appeal.title, appeal.description)
    street_id, community_id, location_reason = location.locate(
        session=session,
        place_street_id=appeal.street_id,
        place_community_id=appeal.community_id,
        lon=appeal.lon,
        lat=appeal.lat,
        text=f"{appeal.address} {text}",
    )
    if appeal.street_id is not None and appeal.place_type is None:
        location_reason = "群众选择或受理员填写的地点"
    scored, threshold, version = _category_scores(session, text, appeal.category_hint)
    rows = []
    for category, p, why in scored:
        unit_id, unit_reason, rule_id = responsibility.resolve(
            session=session,
            category=category,
            text=text,
            place_type=appeal.place_type,
            local_hour=local_hour,
            street_id=street_id,
            community_id=community_id,
        )
        rows.append(_Routed(category, float(p), why, unit_id, unit_reason, rule_id))
    return rows, threshold, version, (street_id, community_id, location_reason)


def _confidence(probability: float) -> float:
    return round(min(max(probability, 0.0), 1.0), 4)


def _is_auto(rows: Sequence[_Routed], threshold: float) -> bool:
    """Sure enough to dispatch alone: the top category reaches the threshold and the table names its unit."""
    return bool(rows) and rows[0].unit_id is not None and _confidence(rows[0].probability) >= threshold


def _local_hour() -> int | None:
    local = clock.local(clock.now())
    return local.hour if local is not None else None


def route(*, session: Session, appeal: RoutingInput) -> Suggestion:
    """Category (trained model, else keyword rules) -> unit (权责清单) at the located place.

    `auto` only when the category probability reaches the model's threshold (chosen by cross-validation for
    the target precision) and the responsibility table names a unit; otherwise the dispatcher decides
    among the top suggestions and their reasons.
    """
    rows, threshold, version, (street_id, community_id, location_reason) = _routed(
        session, appeal, _local_hour()
    )
    names = places_service.unit_names(session=session, unit_ids={r.unit_id for r in rows if r.unit_id})
    candidates = [
        Candidate(
            category=r.category,
            unit_id=r.unit_id,
            unit_name=names.get(r.unit_id, ""),
            confidence=_confidence(r.probability),
            rule_id=r.rule_id,
            reasons=[
                x
                for x in (
                    f"类别「{r.category}」概率 {r.probability:.0%}",
                    *r.why,
                    r.unit_reason,
                    location_reason,
                )
                if x
            ],
        )
        for r in rows
        if r.unit_id is not None
    ]
    return Suggestion(
        candidates=candidates,
        auto=_is_auto(rows, threshold),
        model_version=version,
        street_id=street_id,
        community_id=community_id,
        location_reason=location_reason,
    )


def preview(
    *, session: Session, actor: Actor, appeal: RoutingInput, local_hour: int | None = None
) -> RoutePreview:
    """试派单: what routing would do with an appeal, every scored category shown, nothing recorded.

    For admins checking the 权责清单 before and after a change; `local_hour` (0-23) asks as if the appeal
    arrived at that hour (default: now).
    """
    authorize(actor, "dispatch.report")
    hour = _local_hour() if local_hour is None else local_hour
    rows, threshold, version, (street_id, community_id, location_reason) = _routed(session, appeal, hour)
    names = places_service.unit_names(
        session=session, unit_ids={u for u in (street_id, community_id, *(r.unit_id for r in rows)) if u}
    )
    return RoutePreview(
        rows=[
            PreviewRow(
                category=r.category,
                probability=round(r.probability, 4),
                features=r.why,
                unit_id=r.unit_id,
                unit_name=names.get(r.unit_id, "") if r.unit_id else "",
                rule=r.unit_reason,
                rule_id=r.rule_id,
            )
            for r in rows
        ],
        auto=_is_auto(rows, threshold),
        threshold=threshold,
        model_version=version,
        local_hour=hour,
        street_name=names.get(street_id, "") if street_id else "",
        community_name=names.get(community_id, "") if community_id else "",
        location_reason=location_reason,
    )


def record_decision(*, session: Session, appeal_id: int, suggestion: Suggestion) -> None:
    """Keep the routing decision with the appeal, for staff and for learning."""
    best = suggestion.best
    session.add(
        DispatchDecision(
            appeal_id=appeal_id,
            model_version=suggestion.model_version,
            category=best.category if best else None,
            unit_id=best.unit_id if best else None,
            rule_id=best.rule_id if best else None,
            confidence=best.confidence if best else 0.0,
            auto=suggestion.auto,
            candidates=[c.model_dump() for c in suggestion.candidates],
        )
    )


def latest_decision(*, session: Session, appeal_id: int) -> Suggestion | None:
    """The last routing decision recorded for an appeal."""
    row = session.scalar(
        select(DispatchDecision)
        .where(DispatchDecision.appeal_id == appeal_id)
        .order_by(DispatchDecision.id.desc())
        .limit(1)
    )
    if row is None:
        return None
    return Suggestion(
        candidates=[Candidate(**c) for c in row.candidates], auto=row.auto, model_version=row.model_version
    )


def other_units(
    *,
    session: Session,
    category: str,
    confidence: float,
    street_id: int | None,
    community_id: int | None,
    exclude: frozenset[int],
) -> list[Candidate]:
    """The other units the 权责清单 could name for a category at a place, and the place's own street and
    community, as candidates carrying the category's `confidence` (for the queue after a return)."""
    found = responsibility.other_units(
        session=session, category=category, street_id=street_id, community_id=community_id, exclude=exclude
    )
    names = places_service.unit_names(session=session, unit_ids={r.unit_id for r in found if r.unit_id})
    return [
        Candidate(
            category=category,
            unit_id=r.unit_id,
            unit_name=names.get(r.unit_id, ""),
            confidence=confidence,
            reasons=[r.reason],
            rule_id=r.rule_id,
        )
        for r in found
        if r.unit_id is not None
    ]


def categories() -> list[str]:
    """The categories dispatch knows."""
    return list(rules.CATEGORIES)
