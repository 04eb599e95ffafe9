"""Photo uploads over HTTP: type sniffed from the bytes, sizes capped (also without Content-Length), nothing
half-stored on refusal, and photos served as images only, to those who may see them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conftest import login
from xihu.appeals.models import Appeal, Photo
from xihu.core.config import Settings

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
# Valid PNG magic followed by markup: accepted as an image, it must never be rendered as a page.
POLYGLOT = b"\x89PNG\r\n\x1a\n<html><body><script>alert(document.cookie)</script></body></html>"


def _form(client: TestClient) -> dict[str, str]:
    page = client.get("/report")
    assert page.status_code == 200
    fields = {}
    for name in ("csrf_token", "idempotency_key"):
        match = re.search(rf'name="{name}" value="([^"]+)"', page.text)
        assert match, name
        fields[name] = match.group(1)
    return fields


def _report(client: TestClient, description: str, files: list[tuple[str, tuple[str, bytes, str]]]) -> Any:
    return client.post(
        "/report", data={**_form(client), "description": description}, files=files, follow_redirects=False
    )


def _photo_url(client: TestClient, tracking_url: str) -> str:
    page = client.get(tracking_url)
    match = re.search(r'<img src="(/api/appeals/track/[^"]+/photos/\d+)"', page.text)
    assert match, page.text
    return match.group(1)


def _stored_files(settings: Settings) -> set[str]:
    folder = settings.uploads_dir
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def _appeals_with(session: Session, description: str) -> int:
    session.expire_all()
    return int(
        session.scalar(select(func.count()).select_from(Appeal).where(Appeal.description == description))
    )


@pytest.fixture
def small_client(
    settings: Settings, session_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, Settings]]:
    """The real app with small upload caps: 2 KB a photo, 2 photos (so 6 KB a request body)."""
    from xihu.appeals.service import intake as appeal_intake
    from xihu.web.app import create_app

    small = settings.model_copy(update={"max_upload_bytes": 2048, "max_photos": 2})
    # the intake service reads the process-wide settings; this app's caps must apply there too
    monkeypatch.setattr(appeal_intake, "get_settings", lambda: small)
    application = create_app(small)
    application.state.session_factory = session_factory
    with TestClient(application) as c:
        yield c, small


def test_markup_behind_image_magic_is_served_as_an_image_that_browsers_will_not_sniff(
    client: TestClient,
) -> None:
    resp = _report(client, "照片安全：人行道井盖缺失", [("photos", ("page.html", POLYGLOT, "text/html"))])
    assert resp.status_code == 303, resp.text
    photo = client.get(_photo_url(client, resp.headers["location"]))
    assert photo.status_code == 200
    assert photo.content == POLYGLOT
    assert photo.headers["content-type"] == "image/png"  # the sniffed type, not the client's claim
    assert photo.headers["x-content-type-options"] == "nosniff"
    assert photo.headers["content-disposition"] == "inline"
    assert "default-src" in photo.headers["content-security-policy"]


@pytest.mark.parametrize(
    "data",
    [
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        b"<!DOCTYPE html><html><script>alert(1)</script></html>",
        b"GIF89a\x01\x00\x01\x00",
        b"%PDF-1.7\n",
        b"MZ\x90\x00",
    ],
    ids=["svg", "html", "gif", "pdf", "exe"],
)
def test_files_that_are_not_jpeg_png_or_webp_are_refused_whatever_their_name(
    client: TestClient, session: Session, settings: Settings, data: bytes
) -> None:
    before = _stored_files(settings)
    description = "照片类型：路灯不亮已一周"
    resp = _report(client, description, [("photos", ("photo.png", data, "image/png"))])
    assert resp.status_code == 422
    assert "只接受 JPG、PNG 或 WebP 图片" in resp.text
    assert _appeals_with(session, description) == 0
    assert _stored_files(settings) == before


def test_a_photo_over_the_cap_is_413_in_chinese_and_nothing_is_stored(
    small_client: tuple[TestClient, Settings], session: Session
) -> None:
    client, small = small_client
    before = _stored_files(small)
    description = "照片过大：绿化带垃圾堆积"
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * 3000
    photos = [("photos", ("ok.png", PNG, "image/png")), ("photos", ("big.png", big, "image/png"))]
    resp = _report(client, description, photos)
    assert resp.status_code == 413
    assert "超过" in resp.text
    assert _appeals_with(session, description) == 0
    assert _stored_files(small) == before


def test_a_body_over_the_cap_is_refused_even_without_content_length(
    small_client: tuple[TestClient, Settings], session: Session
) -> None:
    client, small = small_client
    fields = _form(client)
    boundary = "xihuboundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    head = (
        b"".join(parts)
        + (
            f'--{boundary}\r\nContent-Disposition: form-data; name="description"\r\n\r\n无长度上传测试\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="photos"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
    )

    def chunks() -> Iterator[bytes]:  # a generator body is sent chunked, with no Content-Length
        yield head + b"\x89PNG\r\n\x1a\n"
        for _ in range(64):
            yield b"\x00" * 1024
        yield f"\r\n--{boundary}--\r\n".encode()

    before = _stored_files(small)
    resp = client.post(
        "/report",
        content=chunks(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        follow_redirects=False,
    )
    assert resp.status_code == 413
    assert "提交内容过大" in resp.text
    assert _appeals_with(session, "无长度上传测试") == 0
    assert _stored_files(small) == before


def test_a_photo_is_served_only_under_its_own_appeal(
    client: TestClient, session: Session, make_user: Callable[..., Any]
) -> None:
    first = _report(client, "照片归属：楼道堆放杂物", [("photos", ("a.png", PNG, "image/png"))])
    second = _report(client, "照片归属：小区路面破损", [])
    assert first.status_code == second.status_code == 303
    url = _photo_url(client, first.headers["location"])
    photo_id = int(url.rsplit("/", 1)[1])
    other_code = second.headers["location"].rsplit("/", 1)[1]
    assert client.get(f"/api/appeals/track/{other_code}/photos/{photo_id}").status_code == 404

    session.expire_all()
    photo = session.get(Photo, photo_id)
    assert photo is not None
    other = session.scalar(select(Appeal).where(Appeal.tracking_code == other_code))
    assert other is not None
    login(client, make_user("admin", "330106").username)
    assert client.get(f"/api/appeals/{photo.appeal_id}/photos/{photo_id}").content == PNG
    # the right photo under the wrong appeal is not served either
    assert client.get(f"/api/appeals/{other.id}/photos/{photo_id}").status_code == 404


def test_staff_of_another_unit_cannot_fetch_a_photo(
    client: TestClient, session: Session, make_user: Callable[..., Any]
) -> None:
    resp = _report(client, "照片权限：公园座椅损坏", [("photos", ("a.png", PNG, "image/png"))])
    photo_id = int(_photo_url(client, resp.headers["location"]).rsplit("/", 1)[1])
    session.expire_all()
    photo = session.get(Photo, photo_id)
    assert photo is not None
    login(client, make_user("handler", "D-ZJ").username)  # the appeal is not assigned to this unit
    got = client.get(f"/api/appeals/{photo.appeal_id}/photos/{photo_id}")
    assert got.status_code in (403, 404)
    assert got.content != PNG


def test_stored_names_are_random_and_keep_no_part_of_the_client_filename(
    client: TestClient, session: Session, settings: Settings
) -> None:
    resp = _report(client, "照片命名：消防通道被占", [("photos", ("../../etc/passwd.png", PNG, "image/png"))])
    assert resp.status_code == 303
    url = _photo_url(client, resp.headers["location"])
    session.expire_all()
    photo = session.get(Photo, int(url.rsplit("/", 1)[1]))
    assert photo is not None
    assert re.fullmatch(r"[0-9a-f]{32}\.png", photo.stored_name)
    assert (Path(settings.uploads_dir) / photo.stored_name).read_bytes() == PNG
