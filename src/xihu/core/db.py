"""Database engine, declarative base and the unit-of-work scope."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import DateTime, MetaData, Table, create_engine, event, insert, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from xihu.core import clock

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Store aware UTC (naive values are taken as UTC)."""
        return clock.as_utc(value) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Return aware UTC whatever the backend gave back."""
        return clock.as_utc(value) if value is not None else None


class Base(DeclarativeBase):
    """Declarative base with a stable constraint naming scheme for Alembic."""

    metadata = MetaData(naming_convention=NAMING)


def make_engine(
    url: str, *, pool_size: int = 20, pool_timeout: float = 30.0, ping_idle_after: float = 2.0
) -> Engine:
    """Create an engine tuned for the backend (WAL and busy timeout on SQLite; a fixed pool elsewhere)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, issue BEGIN: pysqlite's own handling breaks SAVEPOINTs.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        # SQLite has one writer at a time. Threads of this process queue on a lock in turn instead of
        # polling SQLite's busy handler, whose growing sleeps gave a tail of seconds under concurrent intake.
        writer = threading.Lock()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            if not writer.acquire(timeout=30):
                raise OperationalError("BEGIN IMMEDIATE", {}, TimeoutError("database is busy"))
            conn.info["xihu_writer"] = True
            try:
                # IMMEDIATE takes SQLite's write lock up front, so a read transaction never has to upgrade
                # (which fails at once when another process wrote in between).
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                conn.info.pop("xihu_writer", None)
                writer.release()
                raise

        @event.listens_for(engine, "commit")
        @event.listens_for(engine, "rollback")
        def _sqlite_end(conn: Any) -> None:
            if conn.info.pop("xihu_writer", False):
                writer.release()

        return engine
    # hide_parameters: a logged database error must not carry citizens' names and phone numbers
    # No overflow: under load, overflow connections were closed on return and opened again at once (about
    # one new PostgreSQL backend per seven intakes in bench/load.py), each costing a fork and cold caches.
    engine = create_engine(
        url, pool_size=pool_size, max_overflow=0, pool_timeout=pool_timeout, hide_parameters=True
    )
    _ping_when_idle(engine, ping_idle_after)
    return engine


def _ping_when_idle(engine: Engine, after_seconds: float) -> None:
    """Test a pooled connection before use only if it has been idle for a while.

    SQLAlchemy's pool_pre_ping tests every checkout, one more round trip per request: at a few hundred
    intakes a second that was about a tenth of the web process's and PostgreSQL's CPU per intake. A connection
    returned moments ago was working then; one idle for longer may have been cut by a database restart or a
    firewall, and is replaced here before a request gets it. A connection that breaks while in use fails
    that request (503) and makes the pool replace all connections older than the failure.
    """

    @event.listens_for(engine, "checkin")
    def _note_return(dbapi_conn: Any, record: Any) -> None:
        record.info["xihu_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("xihu_idle_since")
        if since is None or time.monotonic() - since < after_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # noqa: BLE001 - any failure: the pool discards it and connects anew
            raise DisconnectionError("idle connection failed its ping") from exc


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory that never expires objects on commit (pages read after commit)."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Open a session, commit once at the end, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def is_postgres(session: Session) -> bool:
    """True when the session talks to PostgreSQL."""
    return session.get_bind().dialect.name == "postgresql"


T = TypeVar("T")
_MEMO = "xihu.memo"


@contextmanager
def batch_memo(session: Session) -> Iterator[None]:
    """Within the block, reference lookups made through `memo` hit the database once (a worker's batch).

    Only for work that does not change the reference data it reads (units, accounts, SLA policies), such as
    routing a batch of appeals: a request keeps asking each time, as an edit may come in between.
    """
    session.info[_MEMO] = {}
    try:
        yield
    finally:
        session.info.pop(_MEMO, None)


def memo(session: Session, key: Hashable, compute: Callable[[], T]) -> T:
    """compute(), remembered for the session while a `batch_memo` block is open; else computed each time."""
    cache = session.info.get(_MEMO)
    if cache is None:
        return compute()
    if key not in cache:
        # Without autoflush: the block's own pending rows cannot change the reference data it may memoize,
        # and flushing them here, mid-batch, would write them through the ORM row by row instead of with
        # the batch's plain INSERTs at the end.
        with session.no_autoflush:
            cache[key] = compute()
    return cache[key]  # type: ignore[no-any-return]


def remember(session: Session, key: Hashable, value: object) -> None:
    """Store a value that `memo` will return for `key`, while a `batch_memo` block is open (else nothing)."""
    cache = session.info.get(_MEMO)
    if cache is not None:
        cache[key] = value


def insert_new_plainly(session: Session, *classes: type[Base]) -> int:
    """INSERT the session's new objects of these classes as plain many-row statements, and let go of them.

    For batch jobs that create many rows nobody reads back in the same transaction (events, audit rows,
    clocks, notices): the ORM's flush writes them with RETURNING, one long statement per table that the driver
    parses anew each time, where a plain executemany is parsed once and pipelined (and on PostgreSQL, a COPY
    of many rows is cheaper still, see `_copy_rows`). The objects are expunged, so they get no ids: use it
    only where nothing looks at them afterwards. Returns how many rows it wrote.
    """
    picked = [obj for obj in session.new if isinstance(obj, classes)]
    groups: dict[tuple[Table, tuple[str, ...]], list[dict[str, Any]]] = {}
    for obj in picked:
        mapper = inspect(obj).mapper
        # only what was set: the table's own defaults fill in the rest, as they would at flush
        state = obj.__dict__
        row = {a.columns[0].key: state[a.key] for a in mapper.column_attrs if a.key in state}
        table: Table = mapper.local_table  # type: ignore[assignment]
        groups.setdefault((table, tuple(sorted(row))), []).append(row)
    for obj in picked:
        session.expunge(obj)
    copy = is_postgres(session)
    for (table, keys), rows in groups.items():
        if copy and len(rows) >= _COPY_FROM_ROWS and _copyable(table, keys):
            _copy_rows(session, table, keys, rows)
        else:
            session.execute(insert(table), rows)
    return len(picked)


# From this many rows of one table a COPY is cheaper than an executemany; a handful go either way.
_COPY_FROM_ROWS = 8


def _copyable(table: Table, keys: tuple[str, ...]) -> bool:
    """Whether every column left out of `keys` is filled by a value or function in Python, or by the table."""
    return all(
        c.key in keys or c.default is None or c.default.is_scalar or c.default.is_callable for c in table.c
    )


def _copy_rows(session: Session, table: Table, keys: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """Write rows of one table with COPY (PostgreSQL), as `insert(table)` with these rows would.

    An executemany sends and the server parses a Bind and an Execute per row, and the driver reads a result
    per row: for a batch of routed appeals (a few hundred rows) that was most of what writing them cost.
    Python-side column defaults are applied here, as SQLAlchemy would for an INSERT; columns with no value
    and no Python default get the table's own default (an id from its sequence), as with an INSERT.
    """
    connection = session.connection()
    dialect = connection.dialect
    filled = [c for c in table.c if c.key not in keys and c.default is not None]
    defaults: list[Any] = [c.default for c in filled]
    columns = [table.c[k] for k in keys] + filled
    processors = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(c.name) for c in columns)
    driver = connection.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(f"COPY {quote(table.name)} ({names}) FROM STDIN") as out:
        for row in rows:
            values = [row[k] for k in keys]
            values += [d.arg if d.is_scalar else d.arg(None) for d in defaults]
            out.write_row(
                [v if p is None or v is None else p(v) for v, p in zip(values, processors, strict=True)]
            )
