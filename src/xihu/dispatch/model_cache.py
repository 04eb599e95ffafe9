"""The active dispatch model, loaded once per process and swapped when another version is activated.

`active_model` keeps the loaded model in a process-wide cache and asks the database which version is active at
most once every `CHECK_INTERVAL_SECONDS`, so a running server picks up an activation made elsewhere (another
process, the CLI) without a restart while scoring stays fast.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from xihu.dispatch.classifier import CategoryModel
from xihu.dispatch.models import ModelVersion
from xihu.dispatch.registry import data_dir_or_default, model_path

__all__ = ["CHECK_INTERVAL_SECONDS", "SWAP_IN_BACKGROUND", "active_model", "reset_cache", "warm"]

log = logging.getLogger(__name__)

# How often (seconds) `active_model` re-reads which version is active; tests set it to 0.
CHECK_INTERVAL_SECONDS: float = 5.0


@dataclass
class _Cached:
    checked_at: float
    version_id: int | None
    version: str | None
    model: CategoryModel | None


_cache: dict[tuple[str, str], _Cached] = {}
_lock = threading.Lock()
_loading: set[tuple[tuple[str, str], int]] = set()  # (cache key, version id) being loaded in the background
# Loading a model trained on 8,000 appeals takes about 1.4 s. A newly activated version is therefore loaded in
# a thread while the one loaded before keeps routing, so no citizen's submission waits for the file; tests
# turn this off to see an activation take effect at the next call.
SWAP_IN_BACKGROUND = True


def reset_cache() -> None:
    """Forget the loaded models (tests; after files changed on disk)."""
    with _lock:
        _cache.clear()


def _cache_key(session: Session, data_dir: Path | None) -> tuple[str, str]:
    bind = session.get_bind()
    url = bind.engine.url.render_as_string(hide_password=True)
    return url, str(data_dir_or_default(data_dir).resolve())


def _load(version: str, path: Path) -> CategoryModel | None:
    try:
        return CategoryModel.load(path).prepare()
    except (OSError, ValueError, EOFError) as exc:
        log.warning("cannot load dispatch model %s from %s: %s", version, path, exc)
        return None


def _load_in_background(key: tuple[str, str], version_id: int, version: str, path: Path) -> None:
    """Load a version in a thread and cache it when done (once per version at a time)."""
    with _lock:
        loaded = _cache.get(key)
        # loading, or loaded by a thread that finished after this call's caller last looked at the cache
        if (key, version_id) in _loading or (
            loaded is not None and loaded.version_id == version_id and loaded.model is not None
        ):
            return
        _loading.add((key, version_id))

    def run() -> None:
        model = _load(version, path)
        with _lock:
            _loading.discard((key, version_id))
            _cache[key] = _Cached(time.monotonic(), version_id, version, model)

    threading.Thread(target=run, name=f"xihu-model-{version}", daemon=True).start()


def active_model(*, session: Session, data_dir: Path | None = None) -> tuple[CategoryModel, str] | None:
    """The active model and its version string, or None when no usable version is active.

    Which version is active is re-read at most once every CHECK_INTERVAL_SECONDS; the file is loaded only when
    the active version changed, in the background while an earlier version is loaded (see SWAP_IN_BACKGROUND).
    """
    key = _cache_key(session, data_dir)
    now = time.monotonic()
    with _lock:
        cached = _cache.get(key)
        if cached is not None and now - cached.checked_at < CHECK_INTERVAL_SECONDS:
            return (cached.model, cached.version) if cached.model is not None and cached.version else None
    found = session.execute(
        select(ModelVersion.id, ModelVersion.version, ModelVersion.path)
        .where(ModelVersion.active.is_(True))
        .order_by(ModelVersion.activated_at.desc(), ModelVersion.id.desc())
        .limit(1)
    ).first()
    if found is None:
        entry = _Cached(now, None, None, None)
    elif cached is not None and cached.version_id == found.id and cached.model is not None:
        entry = _Cached(now, cached.version_id, cached.version, cached.model)
    elif cached is not None and cached.model is not None and SWAP_IN_BACKGROUND:
        _load_in_background(key, found.id, found.version, model_path(found.path, data_dir))
        entry = _Cached(now, cached.version_id, cached.version, cached.model)  # until the new one is loaded
    else:
        entry = _Cached(now, found.id, found.version, _load(found.version, model_path(found.path, data_dir)))
    with _lock:
        latest = _cache.get(key)
        # a background load that finished while this call looked is newer than the entry this call kept
        if (
            found is not None
            and latest is not None
            and latest.model is not None
            and latest.version_id == found.id
            and entry.version_id != found.id
        ):
            entry = latest
        _cache[key] = entry
    return (entry.model, entry.version) if entry.model is not None and entry.version else None


def warm(factory: sessionmaker[Session], data_dir: Path | None = None) -> None:
    """Load the active model now (at server start), so that the first appeal routed does not wait for it."""
    try:
        with factory() as session:
            active_model(session=session, data_dir=data_dir)
    except Exception:  # noqa: BLE001 - a server must start even when the model cannot be read yet
        log.exception("could not load the active dispatch model at start")
