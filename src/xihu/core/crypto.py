"""Encryption at rest of personal data: AES-256-GCM, every value tagged with the id of its key so keys rotate.

A stored value reads `pii1:<key id>:<base64url(nonce | ciphertext | tag)>`. The key id is a fingerprint of
the key, so old keys (XIHU_PII_OLD_KEYS) are found without numbering them, and a value under a key this
process does not have fails with a clear error instead of turning into garbage. The column's name is bound
in as associated data: a phone ciphertext copied into the name column (or another table) does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import String, and_, bindparam, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import TableClause
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    from xihu.core.config import Settings

log = logging.getLogger("xihu.crypto")

PREFIX = "pii1:"
KEY_FILE = "pii.key"
NONCE_BYTES = 12


class PiiKeyError(RuntimeError):
    """Personal data cannot be encrypted or decrypted with the keys this process has."""


def key_id(key: bytes) -> str:
    """A short public fingerprint of a key (it names the key inside every value it encrypted)."""
    return hashlib.sha256(b"xihu-pii-key-id:" + key).hexdigest()[:8]


def new_key() -> str:
    """A fresh random key, base64 encoded as XIHU_PII_KEY expects it."""
    return base64.b64encode(os.urandom(32)).decode()


def parse_key(text: str, name: str = "XIHU_PII_KEY") -> bytes:
    """Decode a base64 key of exactly 32 bytes, or say clearly what is wrong with it."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PiiKeyError(f"{name} 不是有效的 base64 ({name} is not valid base64)") from exc
    if len(raw) != 32:
        raise PiiKeyError(f"{name} 必须是 32 字节的密钥 ({name} must decode to 32 bytes, got {len(raw)})")
    return raw


def is_encrypted(value: str | None) -> bool:
    """Whether a stored value is a ciphertext of this module (rather than legacy plain text)."""
    return value is not None and value.startswith(PREFIX)


@dataclass(frozen=True)
class Keyring:
    """The key new values are written with, and every key values may be read with."""

    current: bytes
    keys: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def of(cls, current: bytes, old: Iterable[bytes] = ()) -> Keyring:
        """A keyring writing with `current` and reading with it and the old keys."""
        keys = {key_id(k): k for k in old}
        keys[key_id(current)] = current
        return cls(current=current, keys=keys)

    @property
    def current_id(self) -> str:
        """The id of the key new values are written with."""
        return key_id(self.current)

    def merged(self, newer: Keyring) -> Keyring:
        """Write with the newer ring's key; read with the keys of both."""
        return Keyring(current=newer.current, keys={**self.keys, **newer.keys})

    def encrypt(self, plaintext: str, context: str) -> str:
        """Encrypt a value of the given column (context) with the current key."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.current).encrypt(nonce, plaintext.encode(), context.encode())
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{PREFIX}{self.current_id}:{body}"

    def decrypt(self, token: str, context: str) -> str:
        """Decrypt a stored value of the given column; a missing or wrong key raises PiiKeyError."""
        kid, _, body = token[len(PREFIX) :].partition(":")
        key = self.keys.get(kid)
        if key is None:
            raise PiiKeyError(
                f"个人信息的加密密钥 {kid} 未配置，无法解密；"
                "请在 XIHU_PII_KEY 或 XIHU_PII_OLD_KEYS 中提供该密钥 "
                f"(personal data was encrypted with key {kid}, which is neither XIHU_PII_KEY nor in "
                "XIHU_PII_OLD_KEYS)"
            )
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except (InvalidTag, ValueError, binascii.Error) as exc:
            raise PiiKeyError(
                f"个人信息解密失败（{context}，密钥 {kid}）：数据已损坏或被篡改 "
                f"(decryption of {context} under key {kid} failed: the value is damaged or was tampered with)"
            ) from exc
        return plain.decode()


def _demo_key(data_dir: Path) -> bytes:
    """The key kept in the data directory for demo and test runs, created once (0600) by whoever is first."""
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # Several processes may start together (web workers, `xihu worker`): write aside, then link into
        # place, which fails if another process got there first, so all of them end up with one key.
        tmp = data_dir / f".{KEY_FILE}.{os.getpid()}.{threading.get_ident()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, (new_key() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
            log.warning("generated a demo key for personal data in %s (演示用个人信息密钥)", path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return parse_key(path.read_text(), str(path))


def keyring_for(settings: Settings) -> Keyring:
    """The keyring the settings describe; outside demo mode a missing XIHU_PII_KEY is refused."""
    if settings.pii_key:
        current = parse_key(settings.pii_key)
    elif settings.demo:
        current = _demo_key(settings.data_dir)
    else:
        raise PiiKeyError(
            "未设置 XIHU_PII_KEY：生产环境必须配置个人信息加密密钥"
            "（32 字节 base64，可用 `xihu privacy new-key` 生成并妥善保管）；演示环境请设置 XIHU_DEMO=1 "
            "(XIHU_PII_KEY is not set: outside demo mode the key that encrypts citizens' names and phone "
            "numbers must be configured; generate one with `xihu privacy new-key` and keep it safe)"
        )
    listed = settings.pii_old_keys.replace(";", ",").split(",")
    old = [parse_key(k, "XIHU_PII_OLD_KEYS") for k in listed if k.strip()]
    return Keyring.of(current, old)


_active: Keyring | None = None
_lock = threading.Lock()


def configure(settings: Settings) -> Keyring:
    """Write with the settings' key from now on; keys this process saw before stay readable."""
    global _active
    ring = keyring_for(settings)
    with _lock:
        _active = ring if _active is None else _active.merged(ring)
        return _active


def use(ring: Keyring | None) -> Keyring | None:
    """Replace the process's keyring exactly (rotation, tests); returns the one it replaced."""
    global _active
    with _lock:
        previous, _active = _active, ring
    return previous


def active() -> Keyring:
    """The process's keyring, configured from the environment's settings on first use."""
    ring = _active
    if ring is None:
        from xihu.core.config import get_settings

        ring = configure(get_settings())
    return ring


class EncryptedString(TypeDecorator[str]):
    """A string column stored encrypted (AES-GCM); equality queries on it cannot work, so none index it."""

    impl = String(255)
    cache_ok = True

    def __init__(self, context: str, length: int = 255) -> None:
        super().__init__(length)
        self.context = context

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        """Encrypt on the way in."""
        if value is None or is_encrypted(value):
            return value
        return active().encrypt(value, self.context)

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        """Decrypt on the way out; plain text left by a process older than the migration passes as it is."""
        if value is None or not is_encrypted(value):
            return value
        return active().decrypt(value, self.context)


def rewrite_columns(
    conn: Connection,
    table: TableClause,
    columns: list[str],
    transform: Callable[[str, str], str | None],
    batch: int = 500,
) -> int:
    """Rewrite the given text columns of every row in batches by primary key `id`: transform(value, context)
    returns the new stored value, or None to leave it. Returns how many rows changed."""
    ident = table.c.id
    cols = [table.c[name] for name in columns]
    update = (
        table.update()
        .where(ident == bindparam("b_id"))
        .values({name: bindparam(f"b_{name}") for name in columns})
    )
    changed = 0
    last = -1
    while True:
        rows = conn.execute(
            select(ident, *cols)
            .where(and_(ident > last, or_(*[c.is_not(None) for c in cols])))
            .order_by(ident)
            .limit(batch)
        ).all()
        if not rows:
            return changed
        params = []
        for row in rows:
            values = dict(zip(columns, row[1:], strict=True))
            new = {
                name: (transform(v, f"{table.name}.{name}") if v is not None else None)
                for name, v in values.items()
            }
            if any(n is not None for n in new.values()):
                kept = {f"b_{k}": (new[k] if new[k] is not None else values[k]) for k in columns}
                params.append({"b_id": row[0], **kept})
        if params:
            conn.execute(update, params)
            changed += len(params)
        last = rows[-1][0]


def encrypted_columns(metadata: Any) -> dict[str, list[str]]:
    """Table name -> names of its encrypted columns, as the models declare them."""
    found: dict[str, list[str]] = {}
    for table in metadata.tables.values():
        names = [c.name for c in table.columns if isinstance(c.type, EncryptedString)]
        if names:
            found[table.name] = names
    return found


def rotate(conn: Connection, metadata: Any, ring: Keyring, batch: int = 500) -> dict[str, int]:
    """Re-encrypt with the ring's current key every value under an older key (or still in plain text);
    returns the rows rewritten per table. Runs in the caller's transaction, so it is all or nothing."""
    from sqlalchemy import Integer, column, table

    def again(value: str, context: str) -> str | None:
        if not is_encrypted(value):
            return ring.encrypt(value, context)
        if value[len(PREFIX) :].partition(":")[0] == ring.current_id:
            return None
        return ring.encrypt(ring.decrypt(value, context), context)

    done: dict[str, int] = {}
    for name, columns in encrypted_columns(metadata).items():
        # the raw stored text, without the decrypting column type
        raw = table(name, column("id", Integer), *[column(c, String) for c in columns])
        done[name] = rewrite_columns(conn, raw, columns, again, batch)
    return done
