"""Tests of queued retraining runs: one at a time, run once by a worker, resumed after a crash then given
up, started from the models page and the API, and clearing the files an interrupted run left."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from conftest import login
from model_versions import SYSTEM, active_versions, add_feedback, train_demo
from xihu.core import clock, longjobs
from xihu.core.errors import Conflict
from xihu.core.outbox import OutboxMessage
from xihu.core.security import Role, User
from xihu.dispatch import registry, retraining_runs, training
from xihu.dispatch.jobs import TRAINING

# every test sees the database as it is: no cached model, no check interval
pytestmark = pytest.mark.usefixtures("fresh_model_cache")


def test_a_retraining_job_runs_once_and_says_how_it_ended(
    session: Session,
    session_factory,
    data_dir: Path,  # type: ignore[no-untyped-def]
) -> None:
    base = train_demo(session, data_dir)
    add_feedback(session, ("return", "公交站台遮雨棚坏了", "交通运输"))
    job = retraining_runs.start_retrain(session=session, actor=SYSTEM, data_dir=data_dir)
    assert (job.status, job.status_label) == ("queued", "排队中")
    with pytest.raises(Conflict) as busy:  # one run at a time
        retraining_runs.start_retrain(session=session, actor=SYSTEM, data_dir=data_dir)
    assert "已有训练任务" in busy.value.message
    session.commit()

    retraining_runs.run_training_job(session_factory, job.id, data_dir)  # not claimed by a worker: not run
    session.expire_all()
    assert retraining_runs.training_job(session=session, actor=SYSTEM, job_id=job.id).status == "queued"
    _claim(session_factory, job.id)
    retraining_runs.run_training_job(session_factory, job.id, data_dir)
    session.expire_all()
    done = retraining_runs.training_job(session=session, actor=SYSTEM, job_id=job.id)
    assert done.status == "finished" and done.version is not None and done.finished_at is not None
    trained = next(
        v for v in registry.list_versions(session=session, actor=SYSTEM) if v.version == done.version
    )
    assert not trained.active and trained.n_feedback == 1 and active_versions(session) == [base.version]
    retraining_runs.run_training_job(
        session_factory, job.id, data_dir
    )  # a second run of the task does nothing
    assert len(registry.list_versions(session=session, actor=SYSTEM)) == 2

    # a run that fails says why
    failing = retraining_runs.start_retrain(session=session, actor=SYSTEM, data_dir=data_dir)
    session.commit()
    (data_dir / base.path).parent.joinpath(registry.ROWS_FILE).unlink()
    _claim(session_factory, failing.id)
    retraining_runs.run_training_job(session_factory, failing.id, data_dir)
    session.expire_all()
    failed = retraining_runs.latest_training_job(session=session, actor=SYSTEM)
    assert failed is not None and failed.id == failing.id
    assert failed.status == "failed" and "没有保存训练样本" in failed.error


def _claim(factory, job_id: int, worker: str = "test-worker") -> None:  # type: ignore[no-untyped-def]
    with factory() as s:
        assert TRAINING.claim(s, worker) == job_id
        s.commit()


def test_a_retraining_job_whose_process_died_is_run_again_then_given_up(
    session: Session,
    session_factory,
    data_dir: Path,  # type: ignore[no-untyped-def]
) -> None:
    train_demo(session, data_dir)
    job = retraining_runs.start_retrain(session=session, actor=SYSTEM, data_dir=data_dir)
    session.commit()
    # nobody has claimed it for a while: the admin is told to look at the worker
    assert retraining_runs.training_job(session=session, actor=SYSTEM, job_id=job.id).error == ""
    clock.freeze(clock.now() + longjobs.UNCLAIMED_AFTER + timedelta(seconds=1))
    assert "xihu worker" in retraining_runs.training_job(session=session, actor=SYSTEM, job_id=job.id).error

    _claim(session_factory, job.id, "worker-that-dies")
    session.expire_all()
    running = retraining_runs.training_job(session=session, actor=SYSTEM, job_id=job.id)
    assert (running.status, running.error) == ("running", "")
    with session_factory() as s:  # another worker leaves it alone while its heartbeat is fresh
        assert TRAINING.claim(s, "test-worker") is None
    clock.freeze(clock.now() + longjobs.STALE_AFTER + timedelta(seconds=1))
    session.expire_all()
    lost = retraining_runs.training_job(session=session, actor=SYSTEM, job_id=job.id)
    assert lost.status == "running" and "重新开始训练" in lost.error
    with pytest.raises(Conflict):  # still under way: it will be resumed
        retraining_runs.start_retrain(session=session, actor=SYSTEM, data_dir=data_dir)

    _claim(session_factory, job.id, "second-worker-that-dies")
    clock.freeze(clock.now() + longjobs.STALE_AFTER + timedelta(seconds=1))
    with session_factory() as s:  # two runs each took their process with them: no third
        assert TRAINING.claim(s, "test-worker") is None
        s.commit()
    session.expire_all()
    given_up = retraining_runs.training_job(session=session, actor=SYSTEM, job_id=job.id)
    assert given_up.status == "failed" and "2 次中断" in given_up.error and given_up.finished_at is not None
    assert retraining_runs.start_retrain(session=session, actor=SYSTEM, data_dir=data_dir).status == "queued"


def test_admin_retrains_from_the_page_and_the_api(
    client: TestClient,
    session: Session,
    settings,  # type: ignore[no-untyped-def]
    make_user: Callable[..., User],
) -> None:
    base = train_demo(session, settings.data_dir)
    add_feedback(
        session, ("return", "公交站台遮雨棚坏了", "交通运输"), ("manual", "站台没有遮雨棚", "交通运输")
    )
    session.commit()
    login(client, make_user(Role.dispatcher).username)
    assert client.post("/api/dispatch/models/retrain").status_code == 403
    login(client, make_user(Role.admin, None).username)
    page = client.get("/staff/dispatch/models").text
    assert 'data-testid="retrain"' in page and "尚未学到的纠错反馈 2 条" in page
    assert "纠错反馈满 50 条、且距上次训练已满 7 天，后台会自动训练新版本" in page  # the default settings

    csrf = client.cookies.get("xihu_csrf")
    sent = client.post("/staff/dispatch/models/retrain", data={"csrf_token": csrf}, follow_redirects=False)
    assert sent.status_code == 303 and sent.headers["location"] == "/staff/dispatch/models"
    assert "排队中" in client.get("/staff/dispatch/models").text  # the request only queued it
    assert TRAINING.tick(client.app.state.session_factory, "test-worker") == 1  # a worker round runs it
    page = client.get("/staff/dispatch/models").text
    listed = {v["version"]: v for v in client.get("/api/dispatch/models").json()}
    [trained] = [v for v in listed if v != base.version]
    assert 'data-testid="trained"' in page and trained in page
    assert listed[trained]["active"] is False and listed[base.version]["active"] is True
    assert listed[trained]["n_feedback"] == 2

    by_api = client.post("/api/dispatch/models/retrain")
    assert by_api.status_code == 202 and by_api.json()["status"] == "queued"
    assert TRAINING.tick(client.app.state.session_factory, "test-worker") == 1
    followed = client.get(f"/api/dispatch/training-jobs/{by_api.json()['id']}").json()
    assert followed["status"] == "finished" and followed["version"] not in (None, trained, base.version)
    assert client.get("/api/dispatch/training-jobs/999999").status_code == 404
    (settings.data_dir / base.path).parent.joinpath(registry.ROWS_FILE).unlink()
    refused = client.post("/staff/dispatch/models/retrain", data={"csrf_token": csrf})
    assert refused.status_code == 409 and "重新训练未成功" in refused.text
    assert "没有保存训练样本" in refused.text


def test_a_retraining_run_deletes_the_files_of_versions_that_were_never_saved(
    session: Session,
    session_factory,
    data_dir: Path,  # type: ignore[no-untyped-def]
) -> None:
    import os

    base = train_demo(session, data_dir)
    models = data_dir / registry.MODELS_DIR
    old = time.time() - training.UNSAVED_AFTER_SECONDS - 60
    killed = models / "m20261101-0930-ab12"  # a run killed after writing its files, before its commit
    saving = models / "m20261207-1015-cd34"  # another worker's run, between its files and its commit
    other = models / "notes"  # not a folder a training run makes
    for folder in (killed, saving, other):
        folder.mkdir(parents=True)
        (folder / registry.MODEL_FILE).write_bytes(b"x")
    for path in (killed, other, models / base.version):
        os.utime(path, (old, old))
    job = retraining_runs.start_retrain(session=session, actor=SYSTEM, data_dir=data_dir)
    session.commit()
    _claim(session_factory, job.id)
    retraining_runs.run_training_job(session_factory, job.id, data_dir)
    left = {p.name for p in models.iterdir()}
    assert killed.name not in left
    assert {saving.name, other.name, base.version} <= left
    session.expire_all()
    trained = retraining_runs.training_job(session=session, actor=SYSTEM, job_id=job.id).version
    assert trained in left and training.prune_unsaved_versions(session=session, data_dir=data_dir) == []


def _told(session: Session, user: User) -> list[str]:
    rows = session.scalars(
        select(OutboxMessage).where(OutboxMessage.user_id == user.id).order_by(OutboxMessage.id)
    )
    return [m.subject for m in rows]


def test_a_retraining_run_starts_on_its_own_when_due_and_admins_are_told_how_it_ended(
    session: Session,
    session_factory,  # type: ignore[no-untyped-def]
    data_dir: Path,
    make_user: Callable[..., User],
) -> None:
    admin, dispatcher = make_user(Role.admin, None), make_user(Role.dispatcher)
    base = train_demo(session, data_dir)
    add_feedback(
        session, ("return", "公交站台遮雨棚坏了", "交通运输"), ("manual", "站台没有遮雨棚", "交通运输")
    )
    due = {"session": session, "data_dir": data_dir, "min_feedback": 2, "interval": timedelta(hours=24)}
    assert retraining_runs.start_due_retrain(**due) is None  # the active version is minutes old
    clock.advance(timedelta(hours=25))
    assert retraining_runs.start_due_retrain(**{**due, "min_feedback": 3}) is None  # two corrections only
    assert retraining_runs.start_due_retrain(**{**due, "min_feedback": 0}) is None  # turned off
    job = retraining_runs.start_due_retrain(**due)
    assert job is not None and job.status == "queued"
    assert job.created_by == retraining_runs.AUTO_RETRAIN_BY and job.note == "自动：2 条新纠错"
    assert retraining_runs.start_due_retrain(**due) is None  # one run at a time, and not again so soon
    session.commit()
    _claim(session_factory, job.id)
    retraining_runs.run_training_job(session_factory, job.id, data_dir)
    session.expire_all()
    done = retraining_runs.training_job(session=session, actor=SYSTEM, job_id=job.id)
    assert done.status == "finished" and done.version is not None
    assert active_versions(session) == [base.version]  # reviewed by people before it is used
    assert _told(session, admin) == [f"派单模型已自动重新训练：版本 {done.version}"]
    assert _told(session, dispatcher) == []

    clock.advance(timedelta(hours=23))
    assert retraining_runs.start_due_retrain(**due) is None  # the last run is younger than the interval
    clock.advance(timedelta(hours=2))
    (data_dir / base.path).parent.joinpath(registry.ROWS_FILE).unlink()
    assert retraining_runs.start_due_retrain(**due) is None  # it could not start: not due, nothing queued
    again = retraining_runs.latest_training_job(session=session, actor=SYSTEM)
    assert again is not None and again.id == job.id


def test_a_failed_automatic_run_is_reported_to_admins(
    session: Session,
    session_factory,  # type: ignore[no-untyped-def]
    data_dir: Path,
    make_user: Callable[..., User],
) -> None:
    admin = make_user(Role.admin, None)
    base = train_demo(session, data_dir)
    add_feedback(session, ("return", "公交站台遮雨棚坏了", "交通运输"))
    clock.advance(timedelta(days=8))
    job = retraining_runs.start_due_retrain(
        session=session, data_dir=data_dir, min_feedback=1, interval=timedelta(days=7)
    )
    assert job is not None
    session.commit()
    (data_dir / base.path).parent.joinpath(registry.ROWS_FILE).unlink()  # lost after it was queued
    _claim(session_factory, job.id)
    retraining_runs.run_training_job(session_factory, job.id, data_dir)
    session.expire_all()
    assert _told(session, admin) == ["派单模型自动重新训练未成功"]
    body = session.scalar(select(OutboxMessage.body).where(OutboxMessage.user_id == admin.id))
    assert body is not None and "没有保存训练样本" in body
