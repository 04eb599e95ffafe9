"""Dispatch use cases: route an appeal to a category and a responsible unit."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from xihu.core import clock
from xihu.core.db import memo, remember
from xihu.dispatch import feedback as _feedback  # noqa: F401 - subscribes to staff corrections
from xihu.dispatch import location, model_cache, responsibility, rules
from xihu.dispatch.models import DispatchDecision
from xihu.dispatch.schemas import Candidate, RoutingInput, Suggestion
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


def route(*, session: Session, appeal: RoutingInput) -> Suggestion:
    """Category (trained model, else keyword rules) -> unit (权责清单) at the located place.

    `auto` only when the category probability reaches the model's threshold (chosen by cross-validation for
    the target precision) and the responsibility table names a unit; otherwise the dispatcher decides
    among the top suggestions and their reasons.
    """
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
    local = clock.local(clock.now())
    hour = local.hour if local is not None else None
    candidates: list[Candidate] = []
    for category, p, why in scored:
        unit_id, unit_reason = responsibility.resolve(
            session=session,
            category=category,
            text=text,
            place_type=appeal.place_type,
            local_hour=hour,
            street_id=street_id,
            community_id=community_id,
        )
        if unit_id is None:
            continue
        name = places_service.unit_names(session=session, unit_ids={unit_id}).get(unit_id, "")
        reasons = [f"类别「{category}」概率 {p:.0%}", *why, unit_reason, location_reason]
        candidates.append(
            Candidate(
                category=category,
                unit_id=unit_id,
                unit_name=name,
                confidence=round(min(max(p, 0.0), 1.0), 4),
                reasons=[r for r in reasons if r],
            )
        )
    best = candidates[0] if candidates else None
    auto = best is not None and scored[0][0] == best.category and best.confidence >= threshold
    return Suggestion(
        candidates=candidates,
        auto=auto,
        model_version=version,
        street_id=street_id,
        community_id=community_id,
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


def categories() -> list[str]:
    """The categories dispatch knows."""
    return list(rules.CATEGORIES)
