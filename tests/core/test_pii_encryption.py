"""Citizens' names and phone numbers are encrypted at rest (AES-GCM, core.crypto): the table holds no
plain text, the ORM reads plain text, views mask as before, keys rotate, and a wrong key is a clear error.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import (
    Boolean,
    DateTime,
    Integer,
    String,
    column,
    create_engine,
    inspect,
    make_url,
    select,
    table,
    text,
)
from sqlalchemy.orm import Session

import factories
from conftest import DATABASE_URL
from xihu import registry
from xihu.analysis import rollup
from xihu.analysis.models import AppealFact
from xihu.appeals import service as appeal_service
from xihu.appeals.models import Appeal
from xihu.core import crypto
from xihu.core.config import Settings
from xihu.core.db import make_engine, make_session_factory
from xihu.core.migrate import alembic_config
from xihu.core.security import Role

PHONE = "13812345678"
NAME = "张三丰"


@pytest.fixture
def keyring() -> Iterator[crypto.Keyring]:
    """The process's keyring, put back after the test whatever the test swapped in."""
    previous = crypto.active()
    yield previous
    crypto.use(previous)


def _raw(session: Session, appeal_id: int) -> tuple[str, str]:
    row = session.execute(
        text("SELECT citizen_name, citizen_phone FROM appeals WHERE id = :id"), {"id": appeal_id}
    ).one()
    return row[0], row[1]


def _reload(session: Session, appeal_id: int) -> Appeal:
    session.expire_all()
    appeal = session.get(Appeal, appeal_id)
    assert appeal is not None
    return appeal


def test_table_holds_ciphertext_and_the_orm_reads_plain_text(session: Session) -> None:
    """A raw SQL read shows neither the phone nor the name (nor their digits); the ORM gives both back."""
    r = factories.submitted(session, citizen_name=NAME, citizen_phone=PHONE)
    session.flush()
    name, phone = _raw(session, r.id)
    for stored in (name, phone):
        assert stored.startswith(crypto.PREFIX)
        assert PHONE not in stored and "5678" not in stored and NAME not in stored and "张" not in stored
    assert name != phone
    appeal = _reload(session, r.id)
    assert (appeal.citizen_name, appeal.citizen_phone) == (NAME, PHONE)
    # the same phone twice is two different ciphertexts (random nonce): nothing to correlate in the table
    other = factories.submitted(session, citizen_phone=PHONE)
    session.flush()
    assert _raw(session, other.id)[1] != phone


def test_phone_is_no_longer_indexed(engine) -> None:
    """No index on the phone: nothing looks it up by value, and an index of ciphertexts would be useless."""
    indexed = {c for ix in inspect(engine).get_indexes("appeals") for c in ix["column_names"]}
    assert "citizen_phone" not in indexed and "citizen_name" not in indexed


def test_views_mask_as_before(client, session: Session, login_as) -> None:
    """The public tracking view and the cockpit's supervisor are masked; a dispatcher sees the plain text."""
    r = factories.submitted(session, citizen_name=NAME, citizen_phone=PHONE)
    session.commit()
    public = client.get(f"/api/appeals/track/{r.tracking_code}").json()
    assert (public["citizen_name"], public["citizen_phone"]) == ("张**", "138****5678")
    login_as(Role.supervisor)
    masked = client.get(f"/api/appeals/{r.id}").json()
    assert (masked["citizen_name"], masked["citizen_phone"]) == ("张**", "138****5678")
    login_as(Role.dispatcher)
    shown = client.get(f"/api/appeals/{r.id}").json()
    assert (shown["citizen_name"], shown["citizen_phone"], shown["personal_unmasked"]) == (NAME, PHONE, True)


def test_repeat_callers_are_still_grouped_by_phone_hash(session: Session) -> None:
    """The analysis hashes the decrypted phone: two appeals of one caller share a hash, another caller not."""
    a = factories.submitted(session, citizen_phone=PHONE)
    b = factories.submitted(session, citizen_phone=PHONE)
    c = factories.submitted(session, citizen_phone="13900001111")
    session.flush()
    facts = appeal_service.rollup_facts(session=session, appeal_ids=[a.id, b.id, c.id])
    rollup.refresh(session, facts)
    hashes = dict(
        session.execute(
            select(AppealFact.appeal_id, AppealFact.phone_hash).where(
                AppealFact.appeal_id.in_([a.id, b.id, c.id])
            )
        ).all()
    )
    assert hashes[a.id] == hashes[b.id] == rollup.phone_hash(PHONE)
    assert hashes[c.id] != hashes[a.id] and hashes[c.id] is not None


def test_rotation_re_encrypts_with_the_new_key(session: Session, keyring: crypto.Keyring) -> None:
    """After a rotation every value is under the new key and reads back with the new key alone."""
    r = factories.submitted(session, citizen_name=NAME, citizen_phone=PHONE)
    session.flush()
    old_id = _raw(session, r.id)[1].split(":")[1]
    new = crypto.parse_key(crypto.new_key())
    ring = crypto.Keyring.of(new, old=keyring.keys.values())
    crypto.use(ring)
    done = crypto.rotate(session.connection(), registry.metadata, ring)
    assert done["appeals"] >= 1
    name, phone = _raw(session, r.id)
    assert name.split(":")[1] == phone.split(":")[1] == crypto.key_id(new) != old_id
    crypto.use(crypto.Keyring.of(new))  # the old key is gone
    appeal = _reload(session, r.id)
    assert (appeal.citizen_name, appeal.citizen_phone) == (NAME, PHONE)
    # a second run finds nothing left to do
    assert crypto.rotate(session.connection(), registry.metadata, ring)["appeals"] == 0


def test_wrong_key_is_a_clear_error_not_garbage(session: Session, keyring: crypto.Keyring) -> None:
    """Reading with a key that did not encrypt the data raises PiiKeyError naming the missing key."""
    r = factories.submitted(session, citizen_name=NAME, citizen_phone=PHONE)
    session.flush()
    kid = _raw(session, r.id)[1].split(":")[1]
    crypto.use(crypto.Keyring.of(crypto.parse_key(crypto.new_key())))
    session.expire_all()
    with pytest.raises(crypto.PiiKeyError, match=f"{kid}.*XIHU_PII_OLD_KEYS"):
        session.get(Appeal, r.id)


def test_tampered_or_moved_ciphertext_is_refused(keyring: crypto.Keyring) -> None:
    """A flipped character, or a phone's ciphertext put in the name column, does not decrypt."""
    token = keyring.encrypt(PHONE, "appeals.citizen_phone")
    assert keyring.decrypt(token, "appeals.citizen_phone") == PHONE
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    with pytest.raises(crypto.PiiKeyError, match="篡改"):
        keyring.decrypt(flipped, "appeals.citizen_phone")
    with pytest.raises(crypto.PiiKeyError, match="篡改"):
        keyring.decrypt(token, "appeals.citizen_name")


def test_production_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    """Outside demo mode there is no generated key: the app does not start without XIHU_PII_KEY."""
    from xihu.web.app import create_app

    settings = Settings(
        data_dir=tmp_path, database_url=DATABASE_URL, demo=False, secret_key="a-real-secret-" * 3, pii_key=""
    )
    with pytest.raises(crypto.PiiKeyError, match="XIHU_PII_KEY"):
        create_app(settings)
    assert not (tmp_path / crypto.KEY_FILE).exists()
    with pytest.raises(crypto.PiiKeyError, match="32"):
        crypto.keyring_for(Settings(data_dir=tmp_path, demo=False, pii_key="c2hvcnQ="))
    key = crypto.new_key()
    old = crypto.new_key()
    ring = crypto.keyring_for(Settings(data_dir=tmp_path, demo=False, pii_key=key, pii_old_keys=old))
    assert ring.current == crypto.parse_key(key) and len(ring.keys) == 2


def test_demo_key_is_generated_once_and_private(tmp_path: Path) -> None:
    """Demo mode keeps one key in the data directory, readable by its owner only, and reuses it."""
    first = crypto.keyring_for(Settings(data_dir=tmp_path, demo=True, pii_key=""))
    mode = stat.S_IMODE(os.stat(tmp_path / crypto.KEY_FILE).st_mode)
    assert mode == 0o600
    assert crypto.keyring_for(Settings(data_dir=tmp_path, demo=True, pii_key="")).current == first.current
    # an explicit key wins over the file
    explicit = crypto.new_key()
    assert crypto.keyring_for(Settings(data_dir=tmp_path, demo=True, pii_key=explicit)).current == (
        crypto.parse_key(explicit)
    )


APPEALS = table(
    "appeals",
    *[column(c, String) for c in ("tracking_code", "channel", "title", "description", "priority", "state")],
    *[column(c, String) for c in ("address", "citizen_name", "citizen_phone")],
    *[column(c, DateTime(timezone=True)) for c in ("created_at", "updated_at")],
    *[column(c, Integer) for c in ("id", "reopen_count", "return_count")],
    column("flagged", Boolean),
)
CREATED = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def scratch_url(tmp_path: Path) -> Iterator[str]:
    """An empty database of this test's own (SQLite file, or a database on the test PostgreSQL server)."""
    if os.environ.get("XIHU_TEST_BACKEND") != "postgresql":
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    name = f"xihu_pii_{os.getpid()}"
    admin = create_engine(make_url(DATABASE_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_migration_encrypts_existing_rows_in_batches_and_downgrade_decrypts(scratch_url: str) -> None:
    """Rows stored in plain text before revision b2c3c0de0011 are encrypted by it (more rows than a batch),
    read back through the ORM, and the downgrade gives the plain text back."""
    from alembic import command

    cfg = alembic_config(scratch_url)
    command.upgrade(cfg, "a1b2c0de0010")
    engine = make_engine(scratch_url)
    n = 1203  # more than two batches of 500
    with engine.begin() as conn:
        conn.execute(
            APPEALS.insert(),
            [
                {
                    "id": i,
                    "tracking_code": f"T{i:08d}",
                    "channel": "web",
                    "title": "迁移测试",
                    "description": "迁移测试：路灯坏了",
                    "priority": "normal",
                    "state": "submitted",
                    "address": "",
                    "citizen_name": f"王{i}" if i % 7 else None,
                    "citizen_phone": f"139{i:08d}",
                    "created_at": CREATED,
                    "updated_at": CREATED,
                    "reopen_count": 0,
                    "return_count": 0,
                    "flagged": False,
                }
                for i in range(1, n + 1)
            ],
        )
    command.upgrade(cfg, "b2c3c0de0011")
    with engine.connect() as conn:
        raw = conn.execute(text("SELECT id, citizen_name, citizen_phone FROM appeals ORDER BY id")).all()
    assert len(raw) == n
    assert all(phone.startswith(crypto.PREFIX) for _, _, phone in raw)
    assert all((name is None) == (i % 7 == 0) for i, name, _ in raw)
    assert not any(name and not name.startswith(crypto.PREFIX) for _, name, _ in raw)
    with make_session_factory(engine)() as session:
        got = {a.id: (a.citizen_name, a.citizen_phone) for a in session.scalars(select(Appeal))}
    assert got[8] == ("王8", "13900000008") and got[7] == (None, "13900000007")
    assert got[n] == (f"王{n}", f"139{n:08d}")
    command.downgrade(cfg, "a1b2c0de0010")
    with engine.connect() as conn:
        back = dict(conn.execute(text("SELECT id, citizen_phone FROM appeals")).all())
    assert back[n] == f"139{n:08d}" and len(back) == n
    engine.dispose()


def test_rotate_key_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keyring: crypto.Keyring) -> None:
    """`xihu privacy rotate-key` re-encrypts under XIHU_PII_KEY; without the old key it changes nothing."""
    from typer.testing import CliRunner

    from xihu.cli import app
    from xihu.core.config import get_settings

    url = f"sqlite:///{tmp_path / 'rotate.db'}"
    old, new = crypto.new_key(), crypto.new_key()
    _one_appeal_under(url, old)
    monkeypatch.setenv("XIHU_DATABASE_URL", url)
    monkeypatch.setenv("XIHU_PII_KEY", new)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        refused = runner.invoke(app, ["privacy", "rotate-key"])
        assert refused.exit_code == 1 and "未做任何改动" in refused.output
        assert _stored_key_ids(url) == {crypto.key_id(crypto.parse_key(old))}
        monkeypatch.setenv("XIHU_PII_OLD_KEYS", old)
        get_settings.cache_clear()
        done = runner.invoke(app, ["privacy", "rotate-key"])
        assert done.exit_code == 0, done.output
        assert _stored_key_ids(url) == {crypto.key_id(crypto.parse_key(new))}
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def _one_appeal_under(url: str, key: str) -> None:
    """Migrate a scratch database and store one appeal with its personal data under the given key."""
    from xihu.core.migrate import upgrade
    from xihu.places import service as places_service

    upgrade(url)
    engine = make_engine(url)
    crypto.use(crypto.Keyring.of(crypto.parse_key(key)))
    with make_session_factory(engine)() as session:
        places_service.load_reference(session=session)
        factories.submitted(session, citizen_name=NAME, citizen_phone=PHONE)
        session.commit()
    engine.dispose()


def _stored_key_ids(url: str) -> set[str]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT citizen_name, citizen_phone FROM appeals")).all()
    engine.dispose()
    return {value.split(":")[1] for row in rows for value in row}
