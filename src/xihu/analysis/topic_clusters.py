"""Emerging topics as clusters: rising words that name the same appeals are one topic, not one warning each.

A week of "停水" appeals also raises "自来水" and "水压"; reported word by word they would be three warnings
about one event. Words are grouped when most of the appeals of the rarer word also carry the other word
(overlap coefficient), which joins a topic's wording without joining two events that merely share a word.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta

from sqlalchemy.orm import Session

from xihu.analysis.rollup import terms_of
from xihu.appeals import service as appeal_service
from xihu.core.clock import LOCAL_TZ

MIN_OVERLAP = 0.5


def appeals_by_term(session: Session, terms: Iterable[str], start: date, end: date) -> dict[str, set[int]]:
    """Ids of the appeals received on local days `start`..`end` whose title counts each term."""
    wanted = set(terms)
    found: dict[str, set[int]] = {term: set() for term in wanted}
    since = datetime.combine(start, time(), LOCAL_TZ)
    until = datetime.combine(end + timedelta(days=1), time(), LOCAL_TZ)
    rows = appeal_service.titles_received(
        session=session, since=since, until=until, containing=sorted(wanted)
    )
    for appeal_id, title in rows:
        for term in terms_of(title):
            if term in wanted:
                found[term].add(appeal_id)
    return found


def overlap(a: set[int], b: set[int]) -> float:
    """Share of the smaller set that is also in the larger one (0.0 when either is empty)."""
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


def cluster_terms(
    ranked: list[str], appeals: dict[str, set[int]], min_overlap: float = MIN_OVERLAP
) -> list[list[str]]:
    """Group terms (most significant first) whose appeals overlap; each group keeps the input order."""
    parent = {term: term for term in ranked}

    def root(term: str) -> str:
        while parent[term] != term:
            parent[term] = parent[parent[term]]
            term = parent[term]
        return term

    for i, a in enumerate(ranked):
        for b in ranked[i + 1 :]:
            if overlap(appeals.get(a, set()), appeals.get(b, set())) >= min_overlap:
                ra, rb = root(a), root(b)
                if ra != rb:  # the earlier (more significant) term stays the root
                    keep, drop = (ra, rb) if ranked.index(ra) < ranked.index(rb) else (rb, ra)
                    parent[drop] = keep
    groups: dict[str, list[str]] = {}
    for term in ranked:
        groups.setdefault(root(term), []).append(term)
    return list(groups.values())
