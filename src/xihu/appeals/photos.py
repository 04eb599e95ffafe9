"""Photo uploads: size caps, type sniffed from the bytes (never trusted from the client), safe names."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session

from xihu.core.errors import Invalid, TooLarge

SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
)


@dataclass(frozen=True)
class Upload:
    """An uploaded file as received."""

    filename: str
    data: bytes


def sniff(data: bytes) -> tuple[str, str]:
    """(content type, extension) from the file's magic bytes; only JPEG, PNG and WebP are accepted."""
    for magic, ctype, ext in SIGNATURES:
        if data.startswith(magic):
            return ctype, ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    raise Invalid("只接受 JPG、PNG 或 WebP 图片", english="only JPEG, PNG or WebP images are accepted")


def check(uploads: list[Upload], *, max_bytes: int, max_count: int) -> list[tuple[Upload, str, str, str]]:
    """Validate uploads before anything is written: count, size and sniffed type."""
    real = [u for u in uploads if u.data]
    if len(real) > max_count:
        raise Invalid(f"最多上传 {max_count} 张图片", english=f"at most {max_count} photos")
    checked = []
    for up in real:
        if len(up.data) > max_bytes:
            raise TooLarge(
                f"图片「{up.filename[:40]}」超过 {max_bytes // (1024 * 1024)} MB", english="photo too large"
            )
        ctype, ext = sniff(up.data)
        checked.append((up, ctype, ext, hashlib.sha256(up.data).hexdigest()))
    return checked


_PENDING = "xihu_new_files"


def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)


def _remove(session: Session) -> None:
    for path in session.info.pop(_PENDING, []):
        path.unlink(missing_ok=True)


def store(session: Session, directory: Path, data: bytes, ext: str) -> str:
    """Write a photo under a random name; the file is removed again if the transaction rolls back."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{secrets.token_hex(16)}.{ext}"
    path = directory / name
    path.write_bytes(data)
    if _PENDING not in session.info:
        session.info[_PENDING] = []
        if not event.contains(session, "after_commit", _forget):
            event.listen(session, "after_commit", _forget)
            event.listen(session, "after_rollback", _remove)
    session.info[_PENDING].append(path)
    return name
