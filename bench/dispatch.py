"""Benchmark of the dispatch category classifier on the TipDM 2020 C appeals (read from the shared data dir).

De-duplicates on dup_group, holds back a stratified 20% test split, trains on the rest (hyper-parameters are
the model defaults, chosen by cross-validation on training data only) and prints one JSON line. Test text is
made raw-like: raw title + detail where known, else the segmented tokens joined without spaces.

Usage: .venv/bin/python bench/dispatch.py [--members svm,nbsvm] [--seed 42]
(env XIHU_SHARED_DIR overrides /work/shared or ../shared; --members picks ensemble members for ablations;
--seed picks another split to see how much the figures move with the sample)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # measure on one core

ROOT = Path(__file__).resolve().parents[1]
CSV_NAME = "data/appeals/tipdm2020c_train8289.csv"


def shared_dir() -> Path:
    """Shared data directory: $XIHU_SHARED_DIR, else /work/shared, else ../shared next to the project."""
    env = os.environ.get("XIHU_SHARED_DIR")
    if env:
        return Path(env)
    for candidate in (Path("/work/shared"), ROOT.parent / "shared"):
        if (candidate / CSV_NAME).exists():
            return candidate
    return ROOT.parent / "shared"


def raw_like(row: dict[str, str]) -> str:
    """Raw title + detail when known, else the segmented tokens joined without spaces."""
    if (row.get("text_raw") or "").strip():
        return f"{row.get('title') or ''}{row['text_raw']}"
    return "".join((row.get("text") or "").split())


def main() -> None:
    """Run the benchmark and print one JSON line."""
    sys.path.insert(0, str(ROOT / "src"))
    from sklearn.model_selection import train_test_split

    from xihu.dispatch.classifier import (
        DEFAULT_MEMBERS,
        CategoryModel,
        dedupe_rows,
        evaluate,
        read_rows,
        row_text,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", default=",".join(DEFAULT_MEMBERS), help="comma-separated: svm,nbsvm,cnb")
    parser.add_argument("--seed", type=int, default=42, help="random state of the train/test split")
    args = parser.parse_args()
    members = tuple(m.strip() for m in args.members.split(",") if m.strip())

    rows = dedupe_rows(read_rows(shared_dir() / CSV_NAME))
    labels = [r["label"] for r in rows]
    train, test = train_test_split(rows, test_size=0.2, stratify=labels, random_state=args.seed)
    started = time.perf_counter()
    model = CategoryModel(members=members).fit(
        [row_text(r) for r in train],
        [r["label"] for r in train],
        progress=lambda msg: print(f"[train] {msg}", file=sys.stderr, flush=True),
    )
    train_seconds = time.perf_counter() - started
    print(f"[train] cv metrics: {json.dumps(model.metrics, ensure_ascii=False)}", file=sys.stderr)
    result = evaluate(model, [(raw_like(r), r["label"]) for r in test])
    route_ms, route_cpu_ms = route_ms_per_appeal(model, [raw_like(r) for r in test[:500]])
    load_seconds = load_and_prepare_seconds(model)
    out = {
        "members": list(model.members),
        "seed": args.seed,
        "n_train": len(train),
        "n_test": result["n"],
        "macro_f1": result["macro_f1"],
        "accuracy": result["accuracy"],
        "threshold": round(model.threshold, 4),
        "auto_rate": result["auto_rate"],
        "auto_precision": result["auto_precision"],
        "ms_per_appeal": result["ms_per_appeal"],
        "route_ms_per_appeal": route_ms,
        "route_cpu_ms_per_appeal": route_cpu_ms,
        "train_seconds": round(train_seconds, 1),
        "load_seconds": load_seconds,
        "cv_macro_f1": model.metrics["macro_f1"],
        "cv_auto_rate": model.metrics["auto_rate"],
    }
    print(json.dumps(out, ensure_ascii=False))


def load_and_prepare_seconds(model) -> float:  # type: ignore[no-untyped-def]
    """Seconds to load the saved model and prepare its explanations: what a server does off the request path
    when a version is activated (and once at start)."""
    import tempfile

    from xihu.dispatch.classifier import CategoryModel

    path = model.save(Path(tempfile.mkdtemp(prefix="xihu-bench-load-")) / "model.joblib")
    started = time.perf_counter()
    CategoryModel.load(path).prepare()
    return round(time.perf_counter() - started, 2)


def route_ms_per_appeal(model, texts: list[str]) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Wall and CPU milliseconds per appeal of the whole routing step (model, 权责清单, location) on SQLite.

    CPU time is this process's own: on a machine shared with other work it is the one-core cost, while wall
    time also counts the waits for a core.
    """
    import base64
    import tempfile

    from xihu.core.config import get_settings
    from xihu.core.db import make_engine, make_session_factory, unit_of_work
    from xihu.core.migrate import upgrade
    from xihu.dispatch import model_cache, responsibility
    from xihu.dispatch import service as dispatch_service
    from xihu.dispatch.schemas import RoutingInput
    from xihu.places import service as places_service

    # a throwaway database: its migrations encrypt personal data, so they need a key (none is stored)
    os.environ.setdefault("XIHU_PII_KEY", base64.b64encode(os.urandom(32)).decode())
    get_settings.cache_clear()
    url = f"sqlite:///{tempfile.mkdtemp(prefix='xihu-bench-route-')}/route.db"
    upgrade(url)
    factory = make_session_factory(make_engine(url))
    with unit_of_work(factory) as session:
        places_service.load_reference(session=session)
        responsibility.seed_defaults(session=session)
    # The model cache keeps the active model in memory between its periodic checks; hand it this one directly.
    model_cache.active_model = lambda **_: (model, "bench")  # type: ignore[assignment]
    with factory() as session:
        dispatch_service.route(session=session, appeal=RoutingInput(description=texts[0]))  # warm caches
        started, cpu_started = time.perf_counter(), time.process_time()
        for text in texts:
            dispatch_service.route(session=session, appeal=RoutingInput(description=text))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        return round(wall * 1000 / len(texts), 3), round(cpu * 1000 / len(texts), 3)


if __name__ == "__main__":
    main()
