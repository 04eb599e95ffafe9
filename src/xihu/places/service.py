"""Use cases of the places domain: reference units, places with QR codes, gazetteer."""

from __future__ import annotations

import io
import secrets
import threading

import segno
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from xihu.core import audit
from xihu.core.db import memo
from xihu.core.errors import Invalid, NotFound
from xihu.core.security import Actor, authorize
from xihu.places import reference
from xihu.places.enums import PlaceType, UnitKind
from xihu.places.models import Place, Unit
from xihu.places.schemas import PlaceCreate, PlaceDetail, PlaceRead, UnitRead

_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
_gazetteer_lock = threading.Lock()
_gazetteer: list[tuple[str, int, int | None]] | None = None  # (name, street_id, community_id)
_names: dict[int, str] = {}
# (kind, parent_id) by unit id: units are never deleted, re-parented or re-kinded, so what one process has
# seen stays true whatever other processes do; only units that exist are kept (a miss asks the database).
_areas: dict[int, tuple[str, int | None]] = {}


def load_reference(*, session: Session) -> dict[str, int]:
    """Create the district, streets, communities, grids and departments that are missing (idempotent)."""
    existing = {code for (code,) in session.execute(select(Unit.code))}
    added = {"district": 0, "street": 0, "community": 0, "grid": 0, "department": 0}

    def add(code: str, **kw: object) -> None:
        if code not in existing:
            session.add(Unit(code=code, **kw))
            existing.add(code)
            added[str(kw["kind"]) if kw["kind"] in added else "community"] += 1

    add(
        reference.DISTRICT_CODE,
        name=reference.DISTRICT_NAME,
        short_name="西湖",
        kind=UnitKind.district.value,
        aliases="西湖区",
    )
    session.flush()
    district_id = _id_of(session, reference.DISTRICT_CODE)
    for row in reference.streets():
        short = row["name"].removesuffix("街道").removesuffix("镇")
        add(
            row["code"],
            name=row["name"],
            short_name=short,
            kind=UnitKind.street.value,
            parent_id=district_id,
            aliases=short,
        )
    session.flush()
    street_ids = {code: _id_of(session, code) for code in (r["code"] for r in reference.streets())}
    for row in reference.communities():
        kind = UnitKind.village if row["urban_rural_type"] == "village" else UnitKind.community
        short = row["short_name"]
        alias = short.removesuffix("社区").removesuffix("村") if len(short) > 3 else ""
        add(
            row["code"],
            name=row["name"],
            short_name=short,
            kind=kind.value,
            parent_id=street_ids[row["street_code"]],
            aliases=alias,
        )
    session.flush()
    community_ids = dict(
        session.execute(
            select(Unit.code, Unit.id).where(
                Unit.kind.in_([UnitKind.community.value, UnitKind.village.value])
            )
        ).all()
    )
    for row in reference.communities():
        add(
            f"G{row['code']}01",
            name=f"{row['short_name']}第一网格",
            short_name=f"{row['short_name']}一网格",
            kind=UnitKind.grid.value,
            parent_id=community_ids[row["code"]],
        )
    for code, name, aliases in reference.DEPARTMENTS:
        add(
            code,
            name=name,
            short_name=name.removeprefix("区"),
            kind=UnitKind.department.value,
            parent_id=district_id,
            aliases=aliases,
        )
    session.flush()
    reset_caches()
    return added


def _id_of(session: Session, code: str) -> int:
    unit_id = session.scalar(select(Unit.id).where(Unit.code == code))
    if unit_id is None:
        raise NotFound(f"单位 {code} 不存在", english=f"unit {code} not found")
    return unit_id


def get_unit(*, session: Session, unit_id: int) -> UnitRead:
    """One unit by id."""
    return memo(session, ("unit", unit_id), lambda: _unit_read(session, unit_id))


def _unit_read(session: Session, unit_id: int) -> UnitRead:
    unit = session.get(Unit, unit_id)
    if unit is None:
        raise NotFound("单位不存在", english="unit not found")
    return UnitRead.model_validate(unit)


def get_unit_by_code(*, session: Session, code: str) -> UnitRead:
    """One unit by its code."""
    unit = session.scalar(select(Unit).where(Unit.code == code))
    if unit is None:
        raise NotFound(f"单位 {code} 不存在", english=f"unit {code} not found")
    return UnitRead.model_validate(unit)


def get_unit_by_name(*, session: Session, name: str) -> UnitRead | None:
    """A unit by its full or short name, or None."""
    unit = session.scalar(
        select(Unit).where((Unit.name == name) | (Unit.short_name == name)).order_by(Unit.id).limit(1)
    )
    return UnitRead.model_validate(unit) if unit else None


def list_units(
    *, session: Session, kinds: list[UnitKind] | None = None, parent_id: int | None = None
) -> list[UnitRead]:
    """Units, optionally of some kinds or under one parent."""
    stmt = select(Unit).where(Unit.active.is_(True))
    if kinds:
        stmt = stmt.where(Unit.kind.in_([k.value for k in kinds]))
    if parent_id is not None:
        stmt = stmt.where(Unit.parent_id == parent_id)
    return [UnitRead.model_validate(u) for u in session.scalars(stmt.order_by(Unit.kind, Unit.code))]


def unit_names(*, session: Session, unit_ids: set[int]) -> dict[int, str]:
    """Names of several units at once (names change only with the reference data, so they are cached)."""
    missing = {u for u in unit_ids if u not in _names}
    if missing:
        found = dict(session.execute(select(Unit.id, Unit.name).where(Unit.id.in_(missing))).all())
        with _gazetteer_lock:
            _names.update(found)
    return {u: _names[u] for u in unit_ids if u in _names}


def unit_kind_and_parent(*, session: Session, unit_id: int) -> tuple[str, int | None] | None:
    """A unit's kind and parent id, or None when there is none (cached: every intake checks its area)."""
    found = _areas.get(unit_id)
    if found is None:
        row = session.execute(select(Unit.kind, Unit.parent_id).where(Unit.id == unit_id)).first()
        if row is None:
            return None
        found = _areas[unit_id] = (row.kind, row.parent_id)
    return found


def reset_caches() -> None:
    """Forget cached names and the gazetteer (after reference data changes, and between tests)."""
    _reset_gazetteer()
    with _gazetteer_lock:
        _names.clear()
        _areas.clear()


def descendants(*, session: Session, unit_id: int) -> set[int]:
    """A unit and every unit below it (street → communities → grids)."""
    found = {unit_id}
    frontier = {unit_id}
    while frontier:
        children = set(session.scalars(select(Unit.id).where(Unit.parent_id.in_(frontier))))
        frontier = children - found
        found |= children
    return found


def set_auto_sign(*, session: Session, actor: Actor, unit_id: int, enabled: bool) -> UnitRead:
    """Turn on or off automatic signing of what is dispatched to a unit (24-hour mode)."""
    authorize(actor, "places.manage")
    unit = session.get(Unit, unit_id)
    if unit is None:
        raise NotFound("单位不存在", english="unit not found")
    before = unit.auto_sign
    unit.auto_sign = enabled
    audit.record(
        session=session,
        actor=actor,
        action="unit.auto_sign",
        entity="unit",
        entity_id=unit.id,
        detail={"before": before, "after": enabled},
    )
    session.flush()
    return UnitRead.model_validate(unit)


def _new_place_code(session: Session) -> str:
    while True:
        code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
        if session.scalar(select(func.count()).select_from(Place).where(Place.code == code)) == 0:
            return code


def create_place(*, session: Session, actor: Actor, place_in: PlaceCreate) -> PlaceRead:
    """Register a place and give it a 西湖码."""
    authorize(actor, "places.manage")
    street = session.get(Unit, place_in.street_id)
    if street is None or street.kind != UnitKind.street.value:
        raise Invalid("所属街道/镇不存在", english="street not found")
    if place_in.community_id is not None:
        community = session.get(Unit, place_in.community_id)
        if community is None or community.parent_id != street.id:
            raise Invalid("所属社区/村不在该街道/镇内", english="community is not in that street")
    place = Place(code=_new_place_code(session), **place_in.model_dump(mode="json"))
    session.add(place)
    session.flush()
    _reset_gazetteer()  # the new place's name is part of the gazetteer
    audit.record(
        session=session,
        actor=actor,
        action="place.create",
        entity="place",
        entity_id=place.id,
        detail={"code": place.code, "name": place.name},
    )
    return PlaceRead.model_validate(place)


def ensure_place(*, session: Session, place_in: PlaceCreate, code: str | None = None) -> PlaceRead:
    """Create a place if no place of that name exists in the street (used by demo data)."""
    found = session.scalar(
        select(Place).where(Place.name == place_in.name, Place.street_id == place_in.street_id)
    )
    if found is not None:
        return PlaceRead.model_validate(found)
    place = Place(code=code or _new_place_code(session), **place_in.model_dump(mode="json"))
    session.add(place)
    session.flush()
    _reset_gazetteer()
    return PlaceRead.model_validate(place)


def get_place_by_code(*, session: Session, code: str) -> PlaceDetail:
    """The place a QR code stands for, with its street and community names."""
    place = session.scalar(select(Place).where(Place.code == code.strip().upper()))
    if place is None:
        raise NotFound("二维码无效或地点已停用", english="unknown place code")
    return _detail(session, place)


def get_place(*, session: Session, place_id: int) -> PlaceDetail:
    """A place by id."""
    place = session.get(Place, place_id)
    if place is None:
        raise NotFound("地点不存在", english="place not found")
    return _detail(session, place)


def _detail(session: Session, place: Place) -> PlaceDetail:
    names = unit_names(
        session=session, unit_ids={place.street_id, *([place.community_id] if place.community_id else [])}
    )
    return PlaceDetail(
        **PlaceRead.model_validate(place).model_dump(),
        street_name=names.get(place.street_id, ""),
        community_name=names.get(place.community_id) if place.community_id else None,
        place_type_label=PlaceType(place.place_type).label,
    )


def list_places(*, session: Session, street_id: int | None = None, limit: int = 200) -> list[PlaceDetail]:
    """Places, optionally in one street."""
    stmt = select(Place).order_by(Place.id).limit(limit)
    if street_id is not None:
        stmt = stmt.where(Place.street_id == street_id)
    return [_detail(session, p) for p in session.scalars(stmt)]


def report_url(base_url: str, code: str) -> str:
    """The address a place's QR code points to."""
    return f"{base_url.rstrip('/')}/r/{code}"


def qr_png(*, url: str, scale: int = 8) -> bytes:
    """The QR code of an address as PNG bytes."""
    buf = io.BytesIO()
    segno.make(url, error="m").save(buf, kind="png", scale=scale, border=2)
    return buf.getvalue()


def qr_svg(*, url: str, scale: int = 8) -> str:
    """The QR code of an address as an SVG document."""
    buf = io.BytesIO()
    segno.make(url, error="m").save(buf, kind="svg", scale=scale, border=2, xmldecl=False, svgns=True)
    return buf.getvalue().decode()


def _reset_gazetteer() -> None:
    global _gazetteer
    with _gazetteer_lock:
        _gazetteer = None


def _load_gazetteer(session: Session) -> list[tuple[str, int, int | None]]:
    global _gazetteer
    with _gazetteer_lock:
        if _gazetteer is not None:
            return _gazetteer
        units = {
            u.id: u
            for u in session.scalars(
                select(Unit).where(
                    Unit.kind.in_([UnitKind.street.value, UnitKind.community.value, UnitKind.village.value])
                )
            )
        }
        entries: list[tuple[str, int, int | None]] = []
        for u in units.values():
            names = {u.name, u.short_name, *[a for a in u.aliases.split(",") if len(a) >= 2]}
            if u.kind == UnitKind.street.value:
                entries += [(n, u.id, None) for n in names]
            elif u.parent_id is not None:
                entries += [(n, u.parent_id, u.id) for n in names]
        for p in session.scalars(select(Place)):
            if len(p.name) >= 3:
                entries.append((p.name, p.street_id, p.community_id))
        entries.sort(key=lambda e: -len(e[0]))  # the longest name wins: 文新街道 before 文新
        _gazetteer = entries
        return entries


def locate_text(*, session: Session, text: str) -> tuple[int, int | None, str] | None:
    """Find a street (and community) named in free text: (street_id, community_id, matched name)."""
    for name, street_id, community_id in _load_gazetteer(session):
        if name in text:
            return street_id, community_id, name
    return None
