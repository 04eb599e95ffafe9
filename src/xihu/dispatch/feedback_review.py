"""Review of corrections before retraining (纠错反馈核对): list, flag the doubtful, exclude or restore.

Manual dispatches become training labels. A wrong one (a category picked in a hurry, one kind of appeal put
under two categories) teaches the next version the wrong thing and can wreck its confidence. The active
model flags a correction it confidently disagrees with (its probability for another category reaches its
auto-dispatch threshold); an admin reads the text and keeps the label or excludes it from training. Rows are
never deleted: an excluded correction stays on record with who excluded it and why, and can be restored.
"""

from __future__ import annotations

import math
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from xihu.core import clock
from xihu.core.audit import record
from xihu.core.errors import Invalid, NotFound
from xihu.core.security import Actor, authorize
from xihu.dispatch import model_cache, training
from xihu.dispatch.models import DispatchFeedback
from xihu.dispatch.schemas import FEEDBACK_VIEWS, FeedbackPage, FeedbackRead

__all__ = ["CONFLICT_SCAN", "KIND_LABELS", "PER_PAGE", "exclude", "restore", "review"]

PERMISSION = "dispatch.manage"
ENTITY = "dispatch_feedback"
PER_PAGE = 50
# the conflicts view scores this many of the newest corrections with the active model (about 0.3 ms each)
CONFLICT_SCAN = 2000
KIND_LABELS = {"manual": "人工派单", "return": "退回", "transfer": "改派"}
_LABELLED = training.LABELLED


def _read(row: DispatchFeedback, used: set[int], latest: dict[int, int]) -> FeedbackRead:
    excluded = row.excluded_at is not None
    return FeedbackRead(
        id=row.id,
        appeal_id=row.appeal_id,
        kind=row.kind,
        kind_label=KIND_LABELS.get(row.kind, row.kind),
        text=row.text,
        category=row.category,
        predicted_category=row.predicted_category,
        model_version=row.model_version,
        reason=row.reason or "",
        created_at=row.created_at,
        excluded=excluded,
        excluded_at=row.excluded_at,
        excluded_by=row.excluded_by or "",
        excluded_reason=row.excluded_reason or "",
        superseded=not excluded and latest.get(row.appeal_id, row.id) != row.id,
        used=row.id in used,
    )


def _context(session: Session, rows: list[DispatchFeedback]) -> tuple[set[int], dict[int, int]]:
    """Which of `rows` training uses, and the latest usable correction of each of their appeals."""
    ids = [r.id for r in rows]
    appeal_ids = {r.appeal_id for r in rows}
    used = set(
        session.scalars(
            select(DispatchFeedback.id).where(DispatchFeedback.id.in_(ids), training.usable_feedback())
        )
    )
    latest = dict(
        session.execute(
            select(DispatchFeedback.appeal_id, func.max(DispatchFeedback.id))
            .where(
                *_LABELLED,
                DispatchFeedback.excluded_at.is_(None),
                DispatchFeedback.appeal_id.in_(appeal_ids),
            )
            .group_by(DispatchFeedback.appeal_id)
        ).all()
    )
    return used, latest


def _score(session: Session, items: list[FeedbackRead], data_dir: Path | None) -> str | None:
    """Fill in the active model's reading of each item; the model's version, or None when there is none."""
    loaded = model_cache.active_model(session=session, data_dir=data_dir)
    if loaded is None or not items:
        return loaded[1] if loaded is not None else None
    model, version = loaded
    known = _readings_of((version, id(model)))
    todo = [i for i in items if i.id not in known]
    if todo:
        known.update(zip([i.id for i in todo], model.predict([i.text for i in todo]), strict=True))
    for item in items:
        label, probability, confident = known[item.id]
        item.model_category, item.model_probability = label, round(probability, 4)
        item.conflicts = confident and label != item.category
    return version


# The model's reading of a correction never changes (its text is stored once; a model version is fixed), and
# every view scans up to CONFLICT_SCAN of them: read once per loaded model, a view costs its queries alone
_READINGS: dict[tuple[str, int], dict[int, tuple[str, float, bool]]] = {}


def _readings_of(model_key: tuple[str, int]) -> dict[int, tuple[str, float, bool]]:
    """The remembered readings of the loaded model `(version, id(model))`; a new model starts afresh."""
    known = _READINGS.get(model_key)
    if known is None or len(known) > 4 * CONFLICT_SCAN:
        _READINGS.clear()
        known = _READINGS.setdefault(model_key, {})
    return known


def review(
    *,
    session: Session,
    actor: Actor,
    view: str = "all",
    page: int = 1,
    data_dir: Path | None = None,
) -> FeedbackPage:
    """One page of labelled corrections, newest first: all, those the active model doubts, or the excluded."""
    authorize(actor, PERMISSION)
    if view not in FEEDBACK_VIEWS:
        raise Invalid(f"未知的视图 {view}", english=f"unknown view {view!r}; one of {FEEDBACK_VIEWS}")
    if page < 1:
        raise Invalid("页码须为正整数", english="page must be >= 1")
    base = select(DispatchFeedback).where(*_LABELLED).order_by(DispatchFeedback.id.desc())
    kept = base.where(DispatchFeedback.excluded_at.is_(None))
    excluded = base.where(DispatchFeedback.excluded_at.is_not(None))
    counts = {
        "all": session.scalar(select(func.count()).select_from(base.subquery())) or 0,
        "excluded": session.scalar(select(func.count()).select_from(excluded.subquery())) or 0,
    }
    # the doubtful ones among the corrections training would use: scored newest first, up to CONFLICT_SCAN
    scanned = list(session.scalars(kept.where(training.usable_feedback()).limit(CONFLICT_SCAN)))
    used, latest = _context(session, scanned)
    candidates = [_read(r, used, latest) for r in scanned]
    version = _score(session, candidates, data_dir)
    doubtful = [c for c in candidates if c.conflicts]
    counts["conflicts"] = len(doubtful)
    total = counts[view]
    pages = max(1, math.ceil(total / PER_PAGE))
    page = min(page, pages)  # after excluding the last row of the last page, show the page before it
    start = (page - 1) * PER_PAGE
    if view == "conflicts":
        items = doubtful[start : start + PER_PAGE]
    else:
        rows = list(session.scalars((base if view == "all" else excluded).offset(start).limit(PER_PAGE)))
        scored = {c.id: c for c in candidates}  # most of a page of all was just read and scored
        used, latest = _context(session, [r for r in rows if r.id not in scored])
        items = [scored.get(r.id) or _read(r, used, latest) for r in rows]
        _score(session, [i for i in items if i.id not in scored], data_dir)
    return FeedbackPage(
        view=view,
        items=items,
        page=page,
        pages=pages,
        total=total,
        counts=counts,
        checked=len(scanned),
        model_version=version,
    )


def _labelled_row(session: Session, feedback_id: int) -> DispatchFeedback:
    row = session.get(DispatchFeedback, feedback_id)
    if row is None:
        raise NotFound("纠错反馈不存在", english=f"feedback {feedback_id} not found")
    if not (row.category and row.text):
        raise Invalid("这条反馈没有类别，本就不用于训练", english="feedback without a category is not learnt")
    return row


def exclude(*, session: Session, actor: Actor, feedback_id: int, reason: str) -> FeedbackRead:
    """Keep a correction out of training from the next retraining on; audited. Twice changes nothing."""
    authorize(actor, PERMISSION)
    row = _labelled_row(session, feedback_id)
    reason = reason.strip()
    if len(reason) < 2:
        raise Invalid("请写明排除的理由（至少两个字）", english="a reason is required")
    if row.excluded_at is None:
        row.excluded_at = clock.now()
        row.excluded_by = actor.label[:64]
        row.excluded_reason = reason[:200]
        session.flush()
        record(
            session=session,
            actor=actor,
            action="dispatch.feedback.exclude",
            entity=ENTITY,
            entity_id=row.id,
            reason=reason[:200],
            detail={"appeal_id": row.appeal_id, "category": row.category, "kind": row.kind},
        )
    used, latest = _context(session, [row])
    return _read(row, used, latest)


def restore(*, session: Session, actor: Actor, feedback_id: int) -> FeedbackRead:
    """Let an excluded correction be learnt again; audited. Restoring a kept one changes nothing."""
    authorize(actor, PERMISSION)
    row = _labelled_row(session, feedback_id)
    if row.excluded_at is not None:
        before = row.excluded_reason
        row.excluded_at, row.excluded_by, row.excluded_reason = None, None, None
        session.flush()
        record(
            session=session,
            actor=actor,
            action="dispatch.feedback.restore",
            entity=ENTITY,
            entity_id=row.id,
            detail={"appeal_id": row.appeal_id, "category": row.category, "excluded_reason": before},
        )
    used, latest = _context(session, [row])
    return _read(row, used, latest)
