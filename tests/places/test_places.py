"""Places: the district's reference units, places with their 西湖码 QR codes, and the gazetteer."""

from __future__ import annotations

import io

import pytest
import segno
from PIL import Image
from sqlalchemy import func, select

from xihu.places import service as places_service
from xihu.places.enums import UnitKind
from xihu.places.models import Place, Unit
from xihu.places.schemas import PlaceCreate

ALPHABET = set("23456789ABCDEFGHJKMNPQRSTUVWXYZ")


def _kind_count(session, *kinds: UnitKind) -> int:
    return session.scalar(
        select(func.count()).select_from(Unit).where(Unit.kind.in_([k.value for k in kinds]))
    )


def test_reference_units_of_the_district(session) -> None:
    assert _kind_count(session, UnitKind.district) == 1
    district = places_service.get_unit_by_code(session=session, code="330106")
    assert district.name == "西湖区" and district.parent_id is None

    streets = places_service.list_units(session=session, kinds=[UnitKind.street])
    assert len(streets) == 12
    assert all(s.parent_id == district.id for s in streets)
    assert {"蒋村街道", "西溪街道", "三墩镇", "双浦镇", "转塘街道"} <= {s.name for s in streets}

    assert _kind_count(session, UnitKind.community) == 181
    assert _kind_count(session, UnitKind.village) == 41
    street_ids = {s.id for s in streets}
    communities = places_service.list_units(session=session, kinds=[UnitKind.community, UnitKind.village])
    assert len(communities) == 222
    assert all(c.parent_id in street_ids for c in communities)
    assert len({c.code for c in communities}) == 222

    departments = {d.name for d in places_service.list_units(session=session, kinds=[UnitKind.department])}
    assert len(departments) >= 22
    assert {
        "区住建局",
        "区城管局",
        "区生态环境分局",
        "区交通运输局",
        "区教育局",
        "区文广旅体局",
        "区人力社保局",
        "区卫健局",
        "区商务局",
        "区市场监管局",
        "区民政局",
        "公安西湖分局",
    } <= departments


def test_load_reference_twice_adds_nothing(session) -> None:
    before = session.scalar(select(func.count()).select_from(Unit))
    added = places_service.load_reference(session=session)
    assert set(added.values()) == {0}
    assert session.scalar(select(func.count()).select_from(Unit)) == before


def _place_body(unit_id, name: str = "文三路学院路口", community: str | None = "330106004053") -> dict:
    body = {
        "name": name,
        "place_type": "street_segment",
        "street_id": unit_id("330106004"),
        "address": "文三路",
    }
    if community:
        body["community_id"] = unit_id(community)
    return body


def _create(client, login_as, unit_id, **kw) -> dict:
    login_as("admin")
    resp = client.post("/api/places", json=_place_body(unit_id, **kw))
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_admin_creates_a_place_with_a_code(client, login_as, unit_id, session) -> None:
    a = _create(client, login_as, unit_id)
    b = _create(client, login_as, unit_id, name="西溪街道另一处")
    for place in (a, b):
        assert len(place["code"]) == 8
        assert set(place["code"]) <= ALPHABET
    assert a["code"] != b["code"]
    assert session.scalar(select(Place.name).where(Place.code == a["code"])) == "文三路学院路口"


def test_handler_may_not_create_a_place(client, login_as, unit_id, session) -> None:
    before = session.scalar(select(func.count()).select_from(Place))
    login_as("handler", "D-ZJ")
    resp = client.post("/api/places", json=_place_body(unit_id))
    assert resp.status_code == 403, resp.text
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Place)) == before


def test_a_community_outside_the_street_is_refused(client, login_as, unit_id, session) -> None:
    login_as("admin")
    before = session.scalar(select(func.count()).select_from(Place))
    body = _place_body(unit_id)
    body["community_id"] = unit_id("330106002051")  # 上保社区 is in 北山街道, not 西溪街道
    resp = client.post("/api/places", json=body)
    assert resp.status_code == 422, resp.text
    body["street_id"] = unit_id("D-ZJ")  # a department is not a street
    body.pop("community_id")
    assert client.post("/api/places", json=body).status_code == 422
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Place)) == before


def test_place_lookup_names_its_street_and_community(client, login_as, unit_id) -> None:
    code = _create(client, login_as, unit_id)["code"]
    for asked in (code, code.lower()):
        resp = client.get(f"/api/places/{asked}")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["code"] == code
        assert body["name"] == "文三路学院路口"
        assert body["street_name"] == "西溪街道"
        assert body["community_name"] == "石灰桥社区"
        assert body["place_type_label"] == "道路街巷"
    assert client.get("/api/places/ZZZZZZZZ").status_code == 404


def _matrix_from_png(png: bytes, size: int, border: int = 2) -> list[list[int]]:
    """Read the modules back from the rendered PNG (dark = 1)."""
    img = Image.open(io.BytesIO(png)).convert("L")
    assert img.width == img.height
    scale = img.width // (size + 2 * border)
    assert scale * (size + 2 * border) == img.width
    # the quiet zone is light
    assert all(img.getpixel((x, scale // 2)) > 128 for x in range(img.width))
    return [
        [
            int(
                img.getpixel(((col + border) * scale + scale // 2, (row + border) * scale + scale // 2)) < 128
            )
            for col in range(size)
        ]
        for row in range(size)
    ]


def _report_url(settings, code: str) -> str:
    return settings.public_base_url.rstrip("/") + f"/r/{code}"


def test_qr_png_encodes_the_report_url(client, login_as, unit_id, settings) -> None:
    code = _create(client, login_as, unit_id)["code"]
    resp = client.get(f"/places/{code}/qr.png")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "image/png"
    assert resp.content.startswith(b"\x89PNG\r\n\x1a\n")
    expected = segno.make(_report_url(settings, code), error="m")
    rendered = _matrix_from_png(resp.content, len(expected.matrix))
    assert rendered == [list(r) for r in expected.matrix]
    # and not just any QR code: another place's address gives another symbol
    other = segno.make(_report_url(settings, "ABCDEFGH"), error="m")
    assert rendered != [list(r) for r in other.matrix]


def test_qr_png_decodes_to_the_report_url(client, login_as, unit_id, settings) -> None:
    zxingcpp = pytest.importorskip("zxingcpp")  # optional decoder (pip install zxing-cpp)
    code = _create(client, login_as, unit_id)["code"]
    img = Image.open(io.BytesIO(client.get(f"/places/{code}/qr.png").content)).convert("L")
    found = zxingcpp.read_barcodes(img)
    assert [b.text for b in found] == [_report_url(settings, code)]


def test_qr_svg_is_svg(client, login_as, unit_id) -> None:
    code = _create(client, login_as, unit_id)["code"]
    resp = client.get(f"/places/{code}/qr.svg")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("image/svg+xml")
    assert resp.text.lstrip().startswith("<svg")
    assert 'xmlns="http://www.w3.org/2000/svg"' in resp.text
    assert resp.text.rstrip().endswith("</svg>")
    assert client.get("/places/ZZZZZZZZ/qr.svg").status_code == 404


def test_locate_text_finds_streets_and_communities(session) -> None:
    places_service._reset_gazetteer()
    jiangcun = places_service.get_unit_by_code(session=session, code="330106011").id
    garden = places_service.get_unit_by_code(session=session, code="330106011018").id  # 蒋村花园社区
    assert places_service.locate_text(session=session, text="蒋村街道某小区门口路灯坏了") == (
        jiangcun,
        None,
        "蒋村街道",
    )
    # the community is named: the longer match wins over the street
    assert places_service.locate_text(session=session, text="蒋村街道蒋村花园社区3幢楼下积水") == (
        jiangcun,
        garden,
        "蒋村花园社区",
    )
    # 西溪里社区 (in 蒋村街道) beats the shorter street alias 西溪 (of 西溪街道)
    xixili = places_service.get_unit_by_code(session=session, code="330106011021").id
    assert places_service.locate_text(session=session, text="西溪里社区门口的垃圾没人清运") == (
        jiangcun,
        xixili,
        "西溪里社区",
    )
    assert places_service.locate_text(session=session, text="火星上的路灯坏了") is None


def test_locate_text_finds_a_place_created_after_the_gazetteer_was_loaded(session, actor_of, unit_id) -> None:
    admin = actor_of("admin")
    places_service._reset_gazetteer()
    assert places_service.locate_text(session=session, text="体育馆北门停车场的护栏坏了") is None
    place = places_service.create_place(
        session=session,
        actor=admin,
        place_in=PlaceCreate(name="体育馆北门停车场", place_type="park", street_id=unit_id("330106011")),
    )
    assert places_service.locate_text(session=session, text="体育馆北门停车场的护栏坏了") == (
        place.street_id,
        None,
        "体育馆北门停车场",
    )
    places_service._reset_gazetteer()
