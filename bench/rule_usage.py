"""What the 权责清单 page's 30-day record of each rule costs with a busy district's routing decisions.

Creates a fresh SQLite database (or uses --url, e.g. PostgreSQL) with N appeals spread over 90 days, each with
a routing decision naming one of 8 rules (three candidates with their reasons, as routing records them) and
one in ten with a correction; then times `rule_usage.usage` as the page calls it. Prints one JSON line.
Usage: python bench/rule_usage.py [--n 90000] [--views 5] [--url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REASONS = [
    "类别「城乡建设」概率 97%",
    "文本特征：路灯、小区、物业、晚上",
    "权责清单第 1 条：城乡建设 → 区住建局",
    "地址/描述中提到「翠苑一区北门」",
]


def main() -> None:
    """Store the decisions, time the usage counts and print one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=90_000)
    parser.add_argument("--views", type=int, default=5)
    parser.add_argument("--url", default="")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="xihu-bench-rules-"))
    os.environ["XIHU_DATA_DIR"] = str(tmp)
    os.environ.setdefault("XIHU_DEMO", "1")
    sys.path.insert(0, str(ROOT / "src"))
    from sqlalchemy import insert

    from xihu.appeals.models import Appeal
    from xihu.core import clock
    from xihu.core.db import make_engine, make_session_factory
    from xihu.core.migrate import upgrade
    from xihu.core.security import Actor
    from xihu.dispatch import rule_usage
    from xihu.dispatch.models import DispatchDecision, DispatchFeedback

    url = args.url or f"sqlite:///{tmp / 'bench.db'}"
    upgrade(url)
    factory = make_session_factory(make_engine(url))
    rng = random.Random(7)
    now = clock.now()
    with factory() as session:
        session.execute(
            insert(Appeal),
            [
                {"tracking_code": f"XHRULES{i:08d}", "channel": "web", "title": "", "description": "路灯坏了"}
                for i in range(args.n)
            ],
        )
        first_id = session.query(Appeal.id).order_by(Appeal.id).limit(1).scalar() or 1
        decisions, feedback = [], []
        for i in range(args.n):
            at = now - timedelta(days=90 * (args.n - i) / args.n)
            rule = rng.randint(1, 8)
            candidates = [
                {
                    "category": "城乡建设",
                    "unit_id": 1,
                    "unit_name": "区住建局",
                    "confidence": 0.9,
                    "reasons": REASONS,
                    "rule_id": rule + k,
                }
                for k in range(3)
            ]
            appeal_id = first_id + i
            decisions.append(
                {
                    "appeal_id": appeal_id,
                    "model_version": "bench",
                    "category": "城乡建设",
                    "unit_id": None,
                    "rule_id": rule,
                    "confidence": 0.9,
                    "auto": rng.random() < 0.7,
                    "candidates": candidates,
                    "created_at": at,
                }
            )
            if rng.random() < 0.1:
                feedback.append(
                    {
                        "appeal_id": appeal_id,
                        "kind": "manual",
                        "text": "路灯坏了",
                        "category": "城乡建设",
                        "unit_id": None,
                        "created_at": at,
                    }
                )
        session.execute(insert(DispatchDecision), decisions)
        session.execute(insert(DispatchFeedback), feedback)
        session.commit()
    admin = Actor.system("基准测试")
    times, found = [], {}
    for _ in range(args.views):
        with factory() as session:
            started = time.perf_counter()
            found = rule_usage.usage(session=session, actor=admin)
            times.append((time.perf_counter() - started) * 1000)
    print(
        json.dumps(
            {
                "backend": url.split(":", 1)[0],
                "n_decisions": args.n,
                "in_period": sum(u.decided for u in found.values()),
                "usage_ms_median": round(statistics.median(times), 1),
                "usage_ms_max": round(max(times), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
