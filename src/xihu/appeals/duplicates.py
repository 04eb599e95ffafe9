"""Possible duplicates at intake: recent appeals at the same place or nearby with similar text.

Scope: appeals of the last `days` (7) at the same 西湖码 place, in the same community/village, or within
300 m (haversine on the stored coordinates); merged appeals are left out. When only the street is known,
appeals of the same street are considered instead, but must be more alike (see below).

Similarity: cosine of the sets of character bigrams of title + description after dropping punctuation
and spaces (|A ∩ B| / sqrt(|A| · |B|)). Sets rather than counts, because an automatic title repeats the
start of the description. On short Chinese appeals, two reports of the same broken street lamp in other
words score about 0.35-0.55, while two different problems in the same community (street lamp vs rubbish)
score about 0.05-0.1. SIMILAR_THRESHOLD = 0.3 sits between; same-street matches, being farther apart,
need STREET_THRESHOLD = 0.5.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from xihu.appeals import service as appeal_service
from xihu.appeals.enums import State
from xihu.appeals.models import Appeal
from xihu.appeals.schemas import PublicSimilarAppeal, SimilarAppeal
from xihu.appeals.service import access as appeal_access
from xihu.core import clock, geo
from xihu.core.errors import NotFound
from xihu.core.privacy import mask_text
from xihu.core.security import Actor
from xihu.places import service as places_service

SIMILAR_THRESHOLD = 0.3
STREET_THRESHOLD = 0.5
NEARBY_METRES = 300.0
MAX_CANDIDATES = 500
MIN_CHARS = 4
_NOT_TEXT = re.compile(r"[\W_]+")


def bigrams(text: str) -> set[str]:
    """The set of character bigrams of a text, punctuation and spaces removed, Latin letters lowercased."""
    clean = _NOT_TEXT.sub("", text.lower())
    return {clean[i : i + 2] for i in range(len(clean) - 1)}


def text_similarity(a: str, b: str) -> float:
    """Cosine similarity of the bigram sets of two texts (0..1)."""
    sa, sb = bigrams(a), bigrams(b)
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / math.sqrt(len(sa) * len(sb))


@dataclass(frozen=True)
class _Match:
    appeal: Appeal
    score: float
    reason: str


def _matches(
    session: Session,
    *,
    text: str,
    place_id: int | None,
    street_id: int | None,
    community_id: int | None,
    lat: float | None,
    lon: float | None,
    exclude_id: int | None,
    since: datetime,
) -> list[_Match]:
    query = bigrams(text)
    if len(query) < MIN_CHARS - 1:
        return []
    scopes = []
    if place_id is not None:
        scopes.append(Appeal.place_id == place_id)
    if community_id is not None:
        scopes.append(Appeal.community_id == community_id)
    has_point = lat is not None and lon is not None
    if lat is not None and lon is not None:
        dlat = NEARBY_METRES / 111_320.0
        dlon = NEARBY_METRES / (111_320.0 * max(0.01, math.cos(math.radians(lat))))
        scopes.append(Appeal.lat.between(lat - dlat, lat + dlat) & Appeal.lon.between(lon - dlon, lon + dlon))
    by_street = not scopes and street_id is not None  # only when nothing finer is known
    if by_street:
        scopes.append(Appeal.street_id == street_id)
    if not scopes:
        return []  # no place at all: the whole district is not "nearby"
    stmt = select(Appeal).where(
        Appeal.created_at >= since,
        Appeal.state != State.merged.value,
        Appeal.duplicate_of_id.is_(None),
        or_(*scopes),
    )
    if exclude_id is not None:
        stmt = stmt.where(Appeal.id != exclude_id)
    rows = session.scalars(stmt.order_by(Appeal.created_at.desc(), Appeal.id.desc()).limit(MAX_CANDIDATES))
    found: list[_Match] = []
    for a in rows:
        reason, threshold = "", SIMILAR_THRESHOLD
        if place_id is not None and a.place_id == place_id:
            reason = "同一西湖码地点"
        elif community_id is not None and a.community_id == community_id:
            reason = "同一社区/村"
        elif has_point and a.lat is not None and a.lon is not None:
            assert lat is not None and lon is not None
            metres = geo.haversine_m(lon, lat, a.lon, a.lat)
            if metres <= NEARBY_METRES:
                reason = f"相距约 {max(10, round(metres / 10) * 10)} 米"
        if not reason and by_street and a.street_id == street_id:
            reason, threshold = "同一街道/镇", STREET_THRESHOLD
        if not reason:
            continue
        other = bigrams(f"{a.title} {a.description}")
        score = len(query & other) / math.sqrt(len(query) * len(other)) if other else 0.0
        if score >= threshold:
            found.append(_Match(a, round(score, 3), reason))
    found.sort(key=lambda m: (-m.score, -m.appeal.id))
    return found


def _staff_row(m: _Match) -> SimilarAppeal:
    return SimilarAppeal(
        id=m.appeal.id,
        tracking_code=m.appeal.tracking_code,
        title=mask_text(m.appeal.title),
        state_label=State(m.appeal.state).label,
        created_at=m.appeal.created_at,
        score=m.score,
        reason=m.reason,
    )


def similar(
    *,
    session: Session,
    text: str,
    place_id: int | None = None,
    street_id: int | None = None,
    community_id: int | None = None,
    lat: float | None = None,
    lon: float | None = None,
    exclude_id: int | None = None,
    days: int = 7,
    limit: int = 5,
    since: datetime | None = None,
) -> list[SimilarAppeal]:
    """Recent similar appeals near a place, most similar first (titles masked). `since` overrides `days`."""
    start = since if since is not None else clock.now() - timedelta(days=days)
    found = _matches(
        session,
        text=text,
        place_id=place_id,
        street_id=street_id,
        community_id=community_id,
        lat=lat,
        lon=lon,
        exclude_id=exclude_id,
        since=start,
    )
    return [_staff_row(m) for m in found[:limit]]


def similar_public(
    *,
    session: Session,
    text: str,
    place_code: str | None = None,
    street_id: int | None = None,
    community_id: int | None = None,
    lat: float | None = None,
    lon: float | None = None,
    days: int = 7,
    limit: int = 3,
) -> list[PublicSimilarAppeal]:
    """The hint for a citizen who is writing: masked title, state and date only (no id, no tracking code,
    since a tracking code lets its holder rate and reopen the appeal)."""
    place_id = None
    if place_code:
        try:
            place = places_service.get_place_by_code(session=session, code=place_code)
        except NotFound:
            place = None
        if place is not None:
            place_id, street_id, community_id = place.id, place.street_id, place.community_id
    found = _matches(
        session,
        text=text[:2000],
        place_id=place_id,
        street_id=street_id,
        community_id=community_id,
        lat=lat,
        lon=lon,
        exclude_id=None,
        since=clock.now() - timedelta(days=days),
    )
    out = []
    for m in found[:limit]:
        created = clock.local(m.appeal.created_at)
        assert created is not None
        out.append(
            PublicSimilarAppeal(
                title=mask_text(m.appeal.title),
                state_label=State(m.appeal.state).label,
                created_on=created.date(),
                score=m.score,
            )
        )
    return out


def similar_to_appeal(
    *, session: Session, actor: Actor, appeal_id: int, days: int = 7, limit: int = 5
) -> list[SimilarAppeal]:
    """Possible duplicates of an appeal for staff: from `days` before it on, at its place or nearby.

    A unit-scoped actor only sees appeals within its own scope.
    """
    appeal = appeal_access.load(session, actor, appeal_id, lock=False)
    found = _matches(
        session,
        text=f"{appeal.title} {appeal.description}",
        place_id=appeal.place_id,
        street_id=appeal.street_id,
        community_id=appeal.community_id,
        lat=appeal.lat,
        lon=appeal.lon,
        exclude_id=appeal.id,
        since=clock.as_utc(appeal.created_at) - timedelta(days=days),
    )
    if appeal_service.read_scope(session=session, actor=actor) is not None:
        found = [m for m in found if appeal_access.scope_ok(session, actor, m.appeal)]
    return [_staff_row(m) for m in found[:limit]]
