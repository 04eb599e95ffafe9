"""Test fixtures: a real database (SQLite, or PostgreSQL with XIHU_TEST_BACKEND=postgresql), each test in a
transaction that is rolled back, and a TestClient of the real app bound to that transaction."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

_TMP = Path(tempfile.mkdtemp(prefix="xihu-test-"))
os.environ["XIHU_DATA_DIR"] = str(_TMP)
os.environ["XIHU_DEMO"] = "1"
os.environ["XIHU_IN_PROCESS_WORKER"] = "0"
os.environ["XIHU_COCKPIT_CACHE_SECONDS"] = (
    "0"  # each test sees its own figures (test_cockpit tests the cache)
)
# One fixed key for personal data in this process and every `xihu` process a test starts, as in production
# (a generated demo key would differ between the data directories of tests and their subprocesses).
# It is base64 of b"xihu-test-pii-key-not-a-secret!!".
os.environ["XIHU_PII_KEY"] = "eGlodS10ZXN0LXBpaS1rZXktbm90LWEtc2VjcmV0ISE="

from xihu.core import clock  # noqa: E402
from xihu.core.config import Settings, get_settings, normalize_url  # noqa: E402
from xihu.core.db import make_engine  # noqa: E402
from xihu.core.security import Actor, Role, User, create_user  # noqa: E402

PASSWORD = "test-password-1"


_PG_ADMIN_URL: str | None = None


def _database_url() -> str:
    """SQLite in a temporary folder, or a fresh PostgreSQL database of this run's own on the given server."""
    global _PG_ADMIN_URL
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    if os.environ.get("XIHU_TEST_BACKEND") == "postgresql":
        url = os.environ.get("XIHU_TEST_DATABASE_URL")
        if not url:
            pytest.exit("XIHU_TEST_BACKEND=postgresql needs XIHU_TEST_DATABASE_URL", returncode=2)
        _PG_ADMIN_URL = normalize_url(url)
        name = f"xihu_test_{worker}_{os.getpid()}"
        admin = create_engine(_PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return make_url(_PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    return f"sqlite:///{_TMP / f'test-{worker}.db'}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop this run's PostgreSQL database."""
    if _PG_ADMIN_URL is None:
        return
    admin = create_engine(_PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(DATABASE_URL).database}" WITH (FORCE)'))
    admin.dispose()


DATABASE_URL = _database_url()
os.environ["XIHU_DATABASE_URL"] = DATABASE_URL
get_settings.cache_clear()


def reset_database(url: str) -> None:
    """Drop everything and migrate from scratch (used once per run, and by tests of migrations)."""
    from xihu.core.migrate import upgrade

    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    else:
        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    engine.dispose()
    upgrade(url)


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """The test database, migrated and loaded with the reference units."""
    from xihu.core.db import make_session_factory, unit_of_work
    from xihu.places import service as places_service

    reset_database(DATABASE_URL)
    eng = make_engine(DATABASE_URL)
    from xihu.dispatch import responsibility

    with unit_of_work(make_session_factory(eng)) as session:
        places_service.load_reference(session=session)
        responsibility.seed_defaults(session=session)
    yield eng
    eng.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """A connection whose outer transaction is rolled back after the test."""
    conn = engine.connect()
    trans = conn.begin()
    yield conn
    trans.rollback()
    conn.close()


@pytest.fixture
def session_factory(connection: Connection) -> sessionmaker[Session]:
    """Sessions bound to the test's transaction; their commits become savepoints."""
    return sessionmaker(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session inside the test's transaction."""
    s = session_factory()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _real_time() -> Iterator[None]:
    clock.reset()
    yield
    clock.reset()


@pytest.fixture(autouse=True)
def _fresh_process_caches() -> Iterator[None]:
    """Process caches may hold rows of a rolled-back test transaction: every test starts without them."""
    from xihu.dispatch import model_cache, responsibility
    from xihu.places import service as places_service

    def reset() -> None:
        places_service.reset_caches()
        responsibility.reset_cache()
        model_cache.reset_cache()

    reset()
    yield
    reset()


@pytest.fixture
def deferred(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings with routing, rollups and audit sealing left to the workers (XIHU_DEFER_TO_WORKERS)."""
    monkeypatch.setenv("XIHU_DEFER_TO_WORKERS", "1")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("XIHU_DEFER_TO_WORKERS")
    get_settings.cache_clear()


@pytest.fixture
def settings() -> Settings:
    """Settings of the app under test."""
    return Settings(
        data_dir=_TMP, database_url=DATABASE_URL, demo=True, in_process_worker=False, rate_limit_per_minute=0
    )


@pytest.fixture
def app(settings: Settings, session_factory: sessionmaker[Session]):  # type: ignore[no-untyped-def]
    """The real application, its requests running inside the test's transaction."""
    from xihu.places import service as places_service
    from xihu.web.app import create_app

    application = create_app(settings)
    application.state.session_factory = session_factory
    places_service._reset_gazetteer()
    return application


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """An HTTP client for the app."""
    with TestClient(app) as c:
        yield c


@pytest.fixture
def unit_id(session: Session) -> Callable[[str], int]:
    """The id of a unit by its code (e.g. "D-ZJ", "330106004")."""
    from xihu.places import service as places_service

    return lambda code: places_service.get_unit_by_code(session=session, code=code).id


@pytest.fixture
def make_user(session: Session, unit_id: Callable[[str], int]) -> Callable[..., User]:
    """Create a staff account with a role in a unit."""
    counter = iter(range(1, 10_000))

    def make(role: Role | str, unit_code: str | None = "330106", username: str | None = None) -> User:
        role = Role(role)
        user = create_user(
            session=session,
            username=username or f"{role.value}{next(counter)}",
            password=PASSWORD,
            display_name=f"测试{role.label}",
            role=role,
            unit_id=unit_id(unit_code) if unit_code else None,
        )
        session.commit()
        return user

    return make


@pytest.fixture
def actor_of(make_user: Callable[..., User]) -> Callable[..., Actor]:
    """An Actor with a role in a unit."""
    return lambda role, unit_code="330106": make_user(role, unit_code).to_actor()


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log a client in; later JSON writes carry the CSRF header."""
    resp = client.post("/api/auth/login", json={"username": username, "password": password})
    assert resp.status_code == 200, resp.text
    token = resp.json()["csrf_token"]
    client.headers["X-CSRF-Token"] = client.cookies.get("xihu_csrf") or token
    return token


@pytest.fixture
def login_as(client: TestClient, make_user: Callable[..., User]) -> Callable[..., User]:
    """Create a user and log the shared client in as them."""

    def do(role: Role | str, unit_code: str | None = "330106") -> User:
        user = make_user(role, unit_code)
        login(client, user.username)
        return user

    return do


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashing() -> Iterator[None]:
    """Argon2 with production cost makes hundreds of logins slow; the tests check behaviour, not cost."""
    from argon2 import PasswordHasher

    from xihu.core import security

    original = security._hasher
    security._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    security._hasher = original


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory of the test's own, for model files."""
    return tmp_path / "data"


@pytest.fixture
def fresh_model_cache() -> Iterator[None]:
    """The dispatch model cache sees the database as it is: no cached model, no check interval."""
    from xihu.dispatch import model_cache

    interval = model_cache.CHECK_INTERVAL_SECONDS
    model_cache.CHECK_INTERVAL_SECONDS = 0
    model_cache.reset_cache()
    yield
    model_cache.CHECK_INTERVAL_SECONDS = interval
    model_cache.reset_cache()


@pytest.fixture
def demo_model(session: Session, settings: Settings, fresh_model_cache: None) -> Any:
    """The demo category model, trained and active (its `ModelVersionRead`)."""
    from xihu.dispatch import training

    version = training.train_version(
        session=session,
        actor=Actor.system("测试管理员"),
        rows=training.demo_rows(),
        data_dir=settings.data_dir,
        activate=True,
    )
    session.flush()
    return version


@pytest.fixture(autouse=True, scope="session")
def _long_jobs_run_inline() -> Iterator[None]:
    """A worker round runs the import or retraining it claims to the end (tests of the thread turn it on)."""
    from xihu.core import longjobs

    longjobs.RUN_IN_THREAD = False
    yield
    longjobs.RUN_IN_THREAD = True


@pytest.fixture(autouse=True, scope="session")
def _retraining_fits_in_the_test_process() -> Iterator[None]:
    """A fresh interpreter per retraining run costs seconds (one test fits apart)."""
    from xihu.dispatch import retraining_runs

    retraining_runs.FIT_IN_SUBPROCESS = False
    yield
    retraining_runs.FIT_IN_SUBPROCESS = True


@pytest.fixture(autouse=True, scope="session")
def _model_swaps_at_once() -> Iterator[None]:
    """An activation takes effect at the model cache's next call (tests of the background swap turn it on)."""
    from xihu.dispatch import model_cache

    model_cache.SWAP_IN_BACKGROUND = False
    yield
    model_cache.SWAP_IN_BACKGROUND = True
