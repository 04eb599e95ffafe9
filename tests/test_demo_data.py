"""The demo data: what `make demo` shows staff must look like the real system at work."""

from __future__ import annotations

from sqlalchemy import select

from xihu.appeals.models import Appeal
from xihu.core.config import get_settings
from xihu.core.db import make_engine, make_session_factory
from xihu.core.migrate import upgrade
from xihu.core.security import Actor
from xihu.demo import load_demo
from xihu.dispatch import feedback_review
from xihu.dispatch.models import DispatchDecision, DispatchFeedback


def test_demo_queue_has_suggestions_and_its_feedback_labels_agree(tmp_path, monkeypatch) -> None:
    # a database of its own: the loader commits, and the shared test database must stay clean
    monkeypatch.setenv("XIHU_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        load_demo(make_session_factory(engine), n_appeals=80)
        with engine.connect() as conn:
            queued = set(conn.scalars(select(Appeal.id).where(Appeal.state == "submitted")))
            # held back by the router, or returned by a unit after it dispatched them
            routed = set(conn.scalars(select(DispatchDecision.appeal_id)))
            # the demo dispatcher's choices become training feedback: one category per kind of appeal,
            # except the hasty re-dispatches after a return, planted for 纠错反馈核对 to find
            returned = select(DispatchFeedback.appeal_id).where(DispatchFeedback.kind == "return")
            labels = conn.execute(
                select(Appeal.title, DispatchFeedback.category)
                .join(Appeal, Appeal.id == DispatchFeedback.appeal_id)
                .where(DispatchFeedback.kind == "manual", DispatchFeedback.appeal_id.not_in(returned))
            ).all()
        with make_session_factory(engine)() as session:
            doubtful = feedback_review.review(
                session=session, actor=Actor.system("测试"), view="conflicts", data_dir=tmp_path
            )
        assert queued, "the demo leaves some appeals for the dispatcher"
        assert queued <= routed
        by_title: dict[str, set[str]] = {}
        for title, category in labels:
            by_title.setdefault(title, set()).add(category)
        assert len(by_title) >= 5 and all(len(c) == 1 for c in by_title.values()), by_title
        # ... and the review shows them: labels the demo model confidently reads as another category
        assert doubtful.items and all(i.model_category != i.category for i in doubtful.items)
    finally:
        engine.dispose()
        get_settings.cache_clear()
