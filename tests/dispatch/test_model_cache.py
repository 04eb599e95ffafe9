"""Tests of the process-wide cache of the active dispatch model: a new activation is picked up without a
restart, loaded in the background while the loaded model routes, and the database is asked at most once per
interval."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from model_versions import SYSTEM, train_demo
from xihu.dispatch import model_cache, registry
from xihu.dispatch.classifier import CategoryModel

# every test sees the database as it is: no cached model, no check interval
pytestmark = pytest.mark.usefixtures("fresh_model_cache")


def test_active_model_picks_up_a_new_activation_without_restart(session: Session, data_dir: Path) -> None:
    assert model_cache.active_model(session=session, data_dir=data_dir) is None
    a = train_demo(session, data_dir)
    loaded = model_cache.active_model(session=session, data_dir=data_dir)
    assert loaded is not None
    model_a, version = loaded
    assert version == a.version
    assert model_a.predict(["小区门口路灯坏了好几天，晚上很黑"])[0][0] == "城乡建设"
    again = model_cache.active_model(session=session, data_dir=data_dir)
    assert again is not None and again[0] is model_a  # same version: the file is not read again

    b = train_demo(session, data_dir, activate=False)
    registry.activate(session=session, actor=SYSTEM, version_id=b.id, data_dir=data_dir)
    swapped = model_cache.active_model(session=session, data_dir=data_dir)
    assert swapped is not None and swapped[1] == b.version and swapped[0] is not model_a


def test_a_new_activation_loads_in_the_background_while_the_loaded_model_routes(
    session: Session, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_cache, "SWAP_IN_BACKGROUND", True)
    a = train_demo(session, data_dir)
    first = model_cache.active_model(session=session, data_dir=data_dir)  # nothing loaded before: at once
    assert first is not None and first[1] == a.version
    b = train_demo(session, data_dir, activate=False)
    registry.activate(session=session, actor=SYSTEM, version_id=b.id, data_dir=data_dir)

    release, loads = threading.Event(), []
    real_load = model_cache._load

    def held_load(version: str, path: Path) -> CategoryModel | None:
        loads.append(version)
        release.wait(30)  # the file takes as long as the test says
        return real_load(version, path)

    monkeypatch.setattr(model_cache, "_load", held_load)
    during = model_cache.active_model(session=session, data_dir=data_dir)
    again = model_cache.active_model(session=session, data_dir=data_dir)
    assert during is not None and during[1] == a.version and during[0] is first[0]
    assert again is not None and again[1] == a.version
    release.set()
    deadline = time.monotonic() + 30
    swapped = model_cache.active_model(session=session, data_dir=data_dir)
    while (swapped is None or swapped[1] != b.version) and time.monotonic() < deadline:
        time.sleep(0.01)
        swapped = model_cache.active_model(session=session, data_dir=data_dir)
    assert swapped is not None and swapped[1] == b.version
    assert loads == [b.version]  # asked twice while loading, read once


def test_active_model_checks_the_database_at_most_once_per_interval(session: Session, data_dir: Path) -> None:
    a = train_demo(session, data_dir)
    assert model_cache.active_model(session=session, data_dir=data_dir) is not None
    model_cache.CHECK_INTERVAL_SECONDS = 3600
    b = train_demo(session, data_dir)
    cached = model_cache.active_model(session=session, data_dir=data_dir)
    assert cached is not None and cached[1] == a.version  # within the interval: no database read
    model_cache.CHECK_INTERVAL_SECONDS = 0
    fresh = model_cache.active_model(session=session, data_dir=data_dir)
    assert fresh is not None and fresh[1] == b.version
