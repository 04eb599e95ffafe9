"""What a view of 纠错反馈核对 (the review of corrections before retraining) costs with many corrections.

Creates a fresh SQLite database in a temporary directory, trains and activates the demo model, stores N
appeals with one manual-dispatch correction each (texts from the project's own demo examples, one in ten
labelled with the wrong category), then reads the review's views as the page does: the first view after the
model went live, then repeated views of "all" and "conflicts". Prints one JSON line: milliseconds per view.
Usage: python bench/feedback_review.py [--n 3000] [--views 10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    """Build the corrections, time the views and print one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--views", type=int, default=10)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="xihu-bench-review-"))
    os.environ["XIHU_DATA_DIR"] = str(tmp)
    os.environ.setdefault("XIHU_DEMO", "1")
    sys.path.insert(0, str(ROOT / "src"))
    from xihu.appeals.models import Appeal
    from xihu.core.db import make_engine, make_session_factory
    from xihu.core.migrate import upgrade
    from xihu.core.security import Actor
    from xihu.dispatch import feedback_review, model_cache, training
    from xihu.dispatch.models import DispatchFeedback

    url = f"sqlite:///{tmp / 'bench.db'}"
    upgrade(url)
    factory = make_session_factory(make_engine(url))
    admin = Actor.system("基准测试")
    examples = training.demo_rows()
    labels = sorted({label for _, label in examples})
    rng = random.Random(7)
    with factory() as session:
        training.train_version(session=session, actor=admin, rows=examples, data_dir=tmp, activate=True)
        appeals = [
            Appeal(
                tracking_code=f"XHBENCH{i:07d}",
                channel="web",
                title="",
                description=examples[i % len(examples)][0],
            )
            for i in range(args.n)
        ]
        session.add_all(appeals)
        session.flush()
        for i, appeal in enumerate(appeals):
            text, label = examples[i % len(examples)]
            wrong = rng.random() < 0.1
            session.add(
                DispatchFeedback(
                    appeal_id=appeal.id,
                    kind="manual",
                    text=f"{text}（{i}）",
                    category=rng.choice([c for c in labels if c != label]) if wrong else label,
                )
            )
        session.commit()
    model_cache.reset_cache()

    def view(name: str) -> tuple[float, int]:
        with factory() as session:
            started = time.perf_counter()
            page = feedback_review.review(session=session, actor=admin, view=name, data_dir=tmp)
            return (time.perf_counter() - started) * 1000, page.counts["conflicts"]

    first_ms, conflicts = view("all")
    out: dict[str, object] = {
        "n_corrections": args.n,
        "conflicts_found": conflicts,
        "first_view_ms": round(first_ms, 1),
    }
    for name in ("all", "conflicts"):
        times = sorted(view(name)[0] for _ in range(args.views))
        out[f"{name}_ms_median"] = round(times[len(times) // 2], 1)
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
