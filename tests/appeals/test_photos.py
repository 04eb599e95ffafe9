"""Photo uploads with an appeal: type sniffed from the bytes, limits enforced, nothing written on refusal."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image
from sqlalchemy import func, select

import factories
from xihu.appeals import service as appeal_service
from xihu.appeals.enums import Channel
from xihu.appeals.models import Appeal, Photo
from xihu.appeals.photos import Upload
from xihu.appeals.schemas import AppealCreate
from xihu.core.config import get_settings
from xihu.core.errors import DomainError, Invalid, TooLarge
from xihu.core.security import Actor


def _image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, format=fmt)
    return buf.getvalue()


JPEG, PNG, WEBP = _image("JPEG"), _image("PNG"), _image("WEBP")


def _submit(session, uploads: list[Upload]):
    return appeal_service.submit(
        session=session,
        actor=Actor.citizen(),
        appeal_in=AppealCreate(
            description="人行道上的井盖松动，踩上去会晃，附照片",
            citizen_phone="13812345678",
            street_id=factories.unit(session, "330106004"),
        ),
        channel=Channel.web,
        uploads=uploads,
        auto_route=False,
    )


def _files() -> set[str]:
    folder = get_settings().uploads_dir
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def _snapshot(session) -> tuple[int, int, set[str]]:
    return (
        session.scalar(select(func.count()).select_from(Appeal)),
        session.scalar(select(func.count()).select_from(Photo)),
        _files(),
    )


def test_jpeg_png_webp_are_accepted_by_their_bytes(session) -> None:
    assert WEBP[:4] == b"RIFF" and WEBP[8:12] == b"WEBP"
    before = _files()
    # client file names lie: the stored type comes from the magic bytes
    uploads = [Upload("photo.png", JPEG), Upload("photo.jpg", PNG), Upload("photo", WEBP)]
    result = _submit(session, uploads)
    assert result.created
    rows = list(session.scalars(select(Photo).where(Photo.appeal_id == result.id).order_by(Photo.id)))
    assert [r.content_type for r in rows] == ["image/jpeg", "image/png", "image/webp"]
    assert [r.stored_name.rsplit(".", 1)[1] for r in rows] == ["jpg", "png", "webp"]
    folder = get_settings().uploads_dir
    for row, data in zip(rows, (JPEG, PNG, WEBP), strict=True):
        assert row.size == len(data)
        assert row.sha256 == hashlib.sha256(data).hexdigest()
        assert (folder / row.stored_name).read_bytes() == data
        assert "photo" not in row.stored_name  # never the client's name
    assert _files() - before == {r.stored_name for r in rows}


def test_empty_file_fields_are_ignored(session) -> None:
    result = _submit(session, [Upload("", b""), Upload("a.jpg", JPEG)])
    assert session.scalar(select(func.count()).select_from(Photo).where(Photo.appeal_id == result.id)) == 1


@pytest.mark.parametrize(
    "data",
    [
        "这是一个文本文件，不是图片".encode(),
        b"GIF89a" + b"\x00" * 20,
        b"RIFF\x00\x00\x00\x00WAVEfmt ",
    ],
    ids=["text", "gif", "wav"],
)
def test_a_non_image_named_jpg_is_refused_and_nothing_is_written(session, data: bytes) -> None:
    before = _snapshot(session)
    with pytest.raises(Invalid) as err:
        _submit(session, [Upload("a.jpg", JPEG), Upload("fake.jpg", data)])
    assert err.value.status_code == 422
    assert "JPG" in err.value.message
    assert _snapshot(session) == before


def test_a_photo_over_the_size_limit_is_refused_with_413(session) -> None:
    limit = get_settings().max_upload_bytes
    big = b"\xff\xd8\xff\xe0" + b"\x00" * (limit - 3)
    assert len(big) == limit + 1
    before = _snapshot(session)
    with pytest.raises(TooLarge) as err:
        _submit(session, [Upload("a.jpg", JPEG), Upload("big.jpg", big)])
    assert err.value.status_code == 413
    assert _snapshot(session) == before
    # exactly at the limit is fine
    result = _submit(session, [Upload("edge.jpg", big[:limit])])
    assert session.scalar(select(Photo.size).where(Photo.appeal_id == result.id)) == limit


def test_more_than_max_photos_is_refused(session) -> None:
    n = get_settings().max_photos
    before = _snapshot(session)
    with pytest.raises(DomainError) as err:
        _submit(session, [Upload(f"{i}.jpg", JPEG) for i in range(n + 1)])
    assert err.value.status_code == 422
    assert str(n) in err.value.message
    assert _snapshot(session) == before
    result = _submit(session, [Upload(f"{i}.jpg", JPEG) for i in range(n)])
    assert session.scalar(select(func.count()).select_from(Photo).where(Photo.appeal_id == result.id)) == n


def test_photo_files_are_removed_when_the_transaction_rolls_back(session_factory, settings) -> None:
    from xihu.appeals import photos, service
    from xihu.appeals.enums import Channel
    from xihu.appeals.schemas import AppealCreate
    from xihu.core.security import Actor

    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    before = set(settings.uploads_dir.glob("*")) if settings.uploads_dir.exists() else set()
    s = session_factory()
    service.submit(
        session=s,
        actor=Actor.citizen(),
        appeal_in=AppealCreate(description="路灯不亮好几天了"),
        channel=Channel.web,
        uploads=[photos.Upload("a.png", png)],
        auto_route=False,
    )
    written = set(settings.uploads_dir.glob("*")) - before
    assert len(written) == 1
    s.rollback()
    s.close()
    assert set(settings.uploads_dir.glob("*")) - before == set()
