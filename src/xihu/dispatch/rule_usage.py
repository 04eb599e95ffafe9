"""How each 权责清单 rule has fared lately: the appeals whose first suggestion it made, and how many of them
staff sent to another unit, so that an admin sees which mapping to change (no retraining needed).

An appeal counts once, under the rule of the first routing decision recorded for it in the period. It was
"sent elsewhere" when a correction followed (a return, a transfer, a manual dispatch to another unit). When
the correction kept the category (a transfer, or a manual dispatch under the same category) the category was
right and the unit wrong: that is the rule's own miss, counted apart as `same_category`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from xihu.core import clock
from xihu.core.security import Actor, authorize
from xihu.dispatch.models import DispatchDecision, DispatchFeedback

__all__ = ["DAYS", "REVIEW_MIN", "REVIEW_SHARE", "RuleUsage", "usage"]

DAYS = 30
# a rule is worth reviewing when staff kept the category but changed the unit this often: a few such cases
# in a month and a fifth of its appeals (fewer is the odd exception every mapping has)
REVIEW_MIN = 3
REVIEW_SHARE = 0.2


@dataclass
class RuleUsage:
    """One rule's appeals in the period."""

    decided: int = 0  # appeals whose first suggestion this rule named
    auto: int = 0  # of them dispatched automatically
    elsewhere: int = 0  # of them returned, transferred or dispatched by hand to another unit
    same_category: int = 0  # of those, corrected under the category the router had chosen

    @property
    def elsewhere_rate(self) -> float | None:
        """Share sent elsewhere, None when the rule decided nothing."""
        return self.elsewhere / self.decided if self.decided else None

    @property
    def needs_review(self) -> bool:
        """Staff often kept the category and changed the unit: the mapping itself may be wrong."""
        return self.same_category >= REVIEW_MIN and self.same_category >= REVIEW_SHARE * self.decided


Decided = tuple[int, int | None, str | None, bool]  # rule id, unit id, category, dispatched automatically


def _first_decisions(session: Session, since: datetime) -> dict[int, Decided]:
    """appeal id -> (rule id, unit id, category, auto) of its first decision in the period, when that names a
    rule (decisions recorded before rules were named do not)."""
    # No ORDER BY: on SQLite it would trade the time index for a scan of the whole table in id order; the
    # first decision of each appeal is picked here instead.
    rows = session.execute(
        select(
            DispatchDecision.id,
            DispatchDecision.appeal_id,
            DispatchDecision.rule_id,
            DispatchDecision.unit_id,
            DispatchDecision.category,
            DispatchDecision.auto,
        ).where(DispatchDecision.created_at >= since)
    )
    first: dict[int, tuple[int, int | None, int | None, str | None, bool]] = {}
    for decision_id, appeal_id, rule, unit_id, category, auto in rows:
        known = first.get(appeal_id)
        if known is None or decision_id < known[0]:
            first[appeal_id] = (decision_id, rule, unit_id, category, bool(auto))
    return {
        appeal_id: (rule, unit_id, category, auto)
        for appeal_id, (_, rule, unit_id, category, auto) in first.items()
        if rule is not None
    }


def usage(*, session: Session, actor: Actor, days: int = DAYS) -> dict[int, RuleUsage]:
    """Rule id -> how its appeals of the last `days` days fared (rules that decided nothing are absent)."""
    authorize(actor, "dispatch.report")
    since = clock.now() - timedelta(days=days)
    first = _first_decisions(session, since)
    corrected: dict[int, bool] = {}  # appeal id -> whether a correction kept the router's category
    feedback = session.execute(
        select(
            DispatchFeedback.appeal_id,
            DispatchFeedback.kind,
            DispatchFeedback.unit_id,
            DispatchFeedback.category,
        ).where(DispatchFeedback.created_at >= since)
    )
    for appeal_id, kind, unit_id, category in feedback:
        decided = first.get(appeal_id)
        if decided is None:
            continue
        _, decided_unit, decided_category, _ = decided
        if kind != "return" and unit_id == decided_unit:
            continue  # dispatched by hand to the unit the rule named: the suggestion was followed
        same = kind == "transfer" or (kind == "manual" and category == decided_category)
        corrected[appeal_id] = corrected.get(appeal_id, False) or same
    out: dict[int, RuleUsage] = {}
    for appeal_id, (rule_id, _, _, auto) in first.items():
        tally = out.setdefault(rule_id, RuleUsage())
        tally.decided += 1
        tally.auto += auto
        if appeal_id in corrected:
            tally.elsewhere += 1
            tally.same_category += corrected[appeal_id]
    return out
