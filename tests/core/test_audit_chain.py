"""The audit log is hash-chained: a valid chain verifies; altering, deleting, reordering or slipping in a row
is found; concurrent writers on PostgreSQL keep one linear chain; viewing personal data is audited."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, select, text, update
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

import factories
from conftest import DATABASE_URL
from xihu.core import audit
from xihu.core.audit import AuditEntry
from xihu.core.security import Actor, Role, User

SYSTEM = Actor.system("链测试")


def _write(session: Session, n: int, tag: str = "chain") -> list[AuditEntry]:
    rows = [
        audit.record(
            session=session,
            actor=SYSTEM,
            action=f"test.{tag}",
            entity="chain_test",
            entity_id=i,
            reason=f"第 {i} 条",
            detail={"i": i, "名称": "西湖"},
        )
        for i in range(n)
    ]
    session.commit()
    return rows


def test_committed_rows_form_a_valid_chain(session: Session) -> None:
    """Each committed row follows the one before it; the whole log verifies."""
    rows = _write(session, 5)
    seqs = [r.seq for r in rows]
    assert all(s is not None for s in seqs)
    assert seqs == list(range(seqs[0] or 0, (seqs[0] or 0) + 5))
    for before, after in zip(rows, rows[1:], strict=False):
        assert after.prev_hash == before.hash
    assert rows[-1].hash == audit.compute_hash(rows[-1])
    report = audit.verify(session=session)
    assert report.ok, report
    assert report.checked >= 5
    assert report.head == rows[-1].hash


def test_rows_are_chained_in_commit_order_across_sessions(session_factory: sessionmaker[Session]) -> None:
    """A row flushed earlier but committed later goes after the rows committed in between."""
    first, second = session_factory(), session_factory()
    early = audit.record(session=first, actor=SYSTEM, action="test.early", entity="chain_test", entity_id=1)
    first.flush()
    late = _write(second, 2)
    first.commit()
    assert early.seq is not None and late[-1].seq is not None
    assert early.seq == late[-1].seq + 1
    assert early.prev_hash == late[-1].hash
    assert audit.verify(session=second).ok
    first.close()
    second.close()


def test_rolled_back_savepoint_rows_are_not_chained(session: Session) -> None:
    """An audit row of a rolled-back savepoint is not in the log and leaves no gap."""
    _write(session, 1)
    nested = session.begin_nested()
    audit.record(session=session, actor=SYSTEM, action="test.gone", entity="chain_test", entity_id="x")
    session.flush()
    nested.rollback()
    _write(session, 1, "after")
    assert audit.verify(session=session).ok
    assert session.scalar(select(AuditEntry).where(AuditEntry.action == "test.gone")) is None


def test_altered_field_is_detected(session: Session) -> None:
    """Changing what a row says breaks its hash."""
    rows = _write(session, 4)
    session.execute(update(AuditEntry).where(AuditEntry.id == rows[1].id).values(reason="改过的原因"))
    session.expire_all()
    report = audit.verify(session=session)
    assert not report.ok
    assert report.broken_id == rows[1].id
    assert report.problem and "hash mismatch" in report.problem


def test_altered_detail_is_detected(session: Session) -> None:
    """The JSON detail is covered too."""
    rows = _write(session, 3)
    session.execute(update(AuditEntry).where(AuditEntry.id == rows[2].id).values(detail={"i": 99}))
    session.expire_all()
    report = audit.verify(session=session)
    assert (report.ok, report.broken_id) == (False, rows[2].id)


def test_deleted_row_is_detected(session: Session) -> None:
    """Removing a row from the middle breaks the link of the row after it."""
    rows = _write(session, 4)
    session.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": rows[1].id})
    session.expire_all()
    report = audit.verify(session=session)
    assert not report.ok
    assert report.broken_id == rows[2].id


def test_reordered_rows_are_detected(session: Session) -> None:
    """Swapping the places of two rows in the chain is found."""
    rows = _write(session, 4)
    a, b = rows[1], rows[2]
    sa, sb = a.seq, b.seq
    session.execute(update(AuditEntry).where(AuditEntry.id == a.id).values(seq=-1))
    session.execute(update(AuditEntry).where(AuditEntry.id == b.id).values(seq=sa))
    session.execute(update(AuditEntry).where(AuditEntry.id == a.id).values(seq=sb))
    session.expire_all()
    report = audit.verify(session=session)
    assert not report.ok
    assert report.broken_id == b.id


def test_row_slipped_in_outside_the_chain_is_detected(session: Session) -> None:
    """A row inserted behind the chain's back (no seq, no hash) is reported."""
    _write(session, 2)
    session.execute(
        text(
            "INSERT INTO audit_log (at, actor_kind, actor_label, action, entity, entity_id) "
            "VALUES (CURRENT_TIMESTAMP, 'staff', '冒名', 'appeal.close', 'appeal', '1')"
        )
    )
    report = audit.verify(session=session)
    assert not report.ok
    assert report.problem and "outside the chain" in report.problem


def test_viewing_personal_data_is_audited_and_chained(
    client: TestClient, session: Session, login_as: Callable[..., User]
) -> None:
    """A dispatcher opening an appeal sees the phone, and that view is a chained audit row; a supervisor
    (no appeal.read_personal) sees it masked, in the detail text too, and no view is recorded."""
    appeal = factories.submitted(session, description="路灯坏了，请打 13812345678 联系我")
    session.commit()
    login_as(Role.dispatcher)
    for url in (f"/api/appeals/{appeal.id}", f"/staff/appeals/{appeal.id}"):
        resp = client.get(url)
        assert resp.status_code == 200
        assert "13812345678" in resp.text
    views = list(
        session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "appeal.view_personal", AuditEntry.entity_id == str(appeal.id)
            )
        )
    )
    assert len(views) == 2
    assert all(v.seq is not None and v.hash == audit.compute_hash(v) for v in views)
    login_as(Role.supervisor)
    resp = client.get(f"/api/appeals/{appeal.id}")
    assert resp.status_code == 200
    body = resp.json()
    assert "13812345678" not in resp.text
    assert body["citizen_phone"] == "138****5678"
    assert "138****5678" in body["description"]
    # Compared as sets of ids: sealing UPDATEs the rows, so PostgreSQL may return them in another order.
    after = set(
        session.scalars(
            select(AuditEntry.id).where(
                AuditEntry.action == "appeal.view_personal", AuditEntry.entity_id == str(appeal.id)
            )
        )
    )
    assert after == {v.id for v in views}
    assert audit.verify(session=session).ok


def test_cli_verify_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`xihu audit verify` passes on an intact log and exits 1 naming the altered row."""
    from xihu.cli import app
    from xihu.core.config import get_settings
    from xihu.core.db import make_engine, make_session_factory
    from xihu.core.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with factory() as s:
        rows = _write(s, 3)
        target = rows[1].id
    monkeypatch.setenv("XIHU_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        ok = runner.invoke(app, ["audit", "verify"])
        assert ok.exit_code == 0, ok.output
        assert "3 条已校验" in ok.output
        with engine.begin() as conn:
            conn.execute(text("UPDATE audit_log SET actor_label = '别人' WHERE id = :id"), {"id": target})
        bad = runner.invoke(app, ["audit", "verify"])
        assert bad.exit_code == 1
        assert f"id={target}" in bad.output
    finally:
        get_settings.cache_clear()
        engine.dispose()


@pytest.mark.skipif(os.environ.get("XIHU_TEST_BACKEND") != "postgresql", reason="needs PostgreSQL")
def test_concurrent_appends_keep_one_chain_on_postgresql() -> None:
    """Eight threads committing audit rows at once on PostgreSQL still make one gapless, valid chain."""
    admin_url = make_url(DATABASE_URL)
    name = f"xihu_chain_{os.getpid()}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(admin_url.set(database=name), pool_size=10)
    try:
        AuditEntry.metadata.create_all(engine, tables=[AuditEntry.__table__])
        factory = sessionmaker(bind=engine, expire_on_commit=False)
        errors: list[BaseException] = []
        start = threading.Barrier(8)

        def writer(k: int) -> None:
            try:
                start.wait()
                for j in range(20):
                    with factory() as s:
                        for m in range(2):
                            audit.record(
                                session=s,
                                actor=SYSTEM,
                                action="test.concurrent",
                                entity="t",
                                entity_id=f"{k}-{j}-{m}",
                            )
                        s.flush()  # rows get their ids before another thread's commit, as in real requests
                        s.commit()
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        with factory() as s:
            report = audit.verify(session=s)
            assert report.ok, report
            assert report.checked == 8 * 20 * 2
            seqs = list(s.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)))
            assert seqs == list(range(1, 8 * 20 * 2 + 1))
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
