"""Tests of the dispatch model registry: versions on disk, activation and rollback, the hot-swapped active
model, the admin page and API, and `xihu dispatch train|evaluate` (demo examples only, no shared data)."""

from __future__ import annotations

import csv
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from conftest import login
from xihu.core import clock, longjobs
from xihu.core.audit import AuditEntry
from xihu.core.config import get_settings
from xihu.core.errors import Conflict, Forbidden, Invalid
from xihu.core.security import Actor, Role, User
from xihu.dispatch import registry
from xihu.dispatch.classifier import CategoryModel
from xihu.dispatch.demo_examples import DEMO_EXAMPLES
from xihu.dispatch.jobs import TRAINING
from xihu.dispatch.models import DispatchFeedback, ModelVersion
from xihu.dispatch.schemas import ModelVersionRead

SYSTEM = Actor.system("测试")
EVALUATION_KEYS = {"n", "accuracy", "macro_f1", "auto_rate", "auto_precision", "ms_per_appeal"}


# every test sees the database as it is: no cached model, no check interval
pytestmark = pytest.mark.usefixtures("fresh_model_cache")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def _train(session: Session, data_dir: Path, *, activate: bool = True, note: str = "") -> ModelVersionRead:
    return registry.train_version(
        session=session,
        actor=SYSTEM,
        rows=registry.demo_rows(),
        data_dir=data_dir,
        note=note,
        activate=activate,
    )


def _audit(session: Session, action: str) -> list[AuditEntry]:
    return list(
        session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))
    )


def _active(session: Session) -> list[str]:
    return list(session.scalars(select(ModelVersion.version).where(ModelVersion.active.is_(True))))


# ---------------------------------------------------------------- service


def test_train_saves_a_version_with_metrics(session: Session, data_dir: Path) -> None:
    steps: list[str] = []
    v = registry.train_version(
        session=session,
        actor=SYSTEM,
        rows=registry.demo_rows(),
        data_dir=data_dir,
        note="第一版",
        progress=steps.append,
    )
    assert v.version.startswith("m") and len(v.version) == len("m20261121-2130-ab12")
    assert v.active and v.activated_at is not None
    model_file = data_dir / "models" / v.version / "model.joblib"
    assert model_file.is_file() and model_file.with_suffix(".json").is_file()
    assert v.path == f"models/{v.version}/model.joblib" and v.file_present
    assert v.n_train == len(DEMO_EXAMPLES) and v.n_feedback == 0
    for figure in (v.accuracy, v.macro_f1, v.auto_rate, v.auto_precision):
        assert figure is not None and 0.0 <= figure <= 1.0
    assert v.macro_f1 is not None and v.macro_f1 > 0.6
    assert 0.0 < v.threshold <= 1.0 and v.metrics["threshold"] == pytest.approx(v.threshold, abs=1e-6)
    assert v.note == "第一版" and v.created_by == "测试"
    assert "done" in steps and "saving" in steps

    listed = registry.list_versions(session=session, actor=SYSTEM, data_dir=data_dir)
    assert [x.version for x in listed] == [v.version]
    assert listed[0].macro_f1 == v.macro_f1 and listed[0].n_train == v.n_train
    assert [a.entity_id for a in _audit(session, "dispatch.model.train")] == [str(v.id)]
    assert _audit(session, "dispatch.model.activate")[-1].to_state == v.version


def test_activate_and_rollback_follow_the_history_and_are_audited(session: Session, data_dir: Path) -> None:
    a = _train(session, data_dir)
    b = _train(session, data_dir, activate=False)
    c = _train(session, data_dir, activate=False)
    assert _active(session) == [a.version]

    registry.activate(session=session, actor=SYSTEM, version_id=b.id, data_dir=data_dir)
    assert _active(session) == [b.version]
    registry.activate(session=session, actor=SYSTEM, version_id=c.id, data_dir=data_dir)
    assert _active(session) == [c.version]
    activations = _audit(session, "dispatch.model.activate")
    assert [(e.from_state, e.to_state) for e in activations[-2:]] == [
        (a.version, b.version),
        (b.version, c.version),
    ]
    assert activations[-1].actor_label == "测试"

    assert registry.rollback_target(session=session, actor=SYSTEM) == b.version
    back = registry.rollback(session=session, actor=SYSTEM, data_dir=data_dir)
    assert back.version == b.version and _active(session) == [b.version]
    assert registry.rollback_target(session=session, actor=SYSTEM) == a.version
    back = registry.rollback(session=session, actor=SYSTEM, data_dir=data_dir)
    assert back.version == a.version and _active(session) == [a.version]
    assert registry.rollback_target(session=session, actor=SYSTEM) is None
    rollbacks = _audit(session, "dispatch.model.rollback")
    assert [(e.from_state, e.to_state) for e in rollbacks] == [(c.version, b.version), (b.version, a.version)]
    with pytest.raises(Conflict) as err:
        registry.rollback(session=session, actor=SYSTEM, data_dir=data_dir)
    assert "回滚" in err.value.message
    assert _active(session) == [a.version]

    versions = registry.list_versions(session=session, actor=SYSTEM, data_dir=data_dir)
    assert [v.active for v in versions] == [False, False, True]  # newest first


def test_rollback_without_history_and_missing_file_are_refused(session: Session, data_dir: Path) -> None:
    with pytest.raises(Conflict):
        registry.rollback(session=session, actor=SYSTEM, data_dir=data_dir)
    _train(session, data_dir)
    b = _train(session, data_dir, activate=False)
    (data_dir / b.path).unlink()
    with pytest.raises(Invalid) as err:
        registry.activate(session=session, actor=SYSTEM, version_id=b.id, data_dir=data_dir)
    assert "模型文件缺失" in err.value.message and err.value.status_code == 422
    listed = {v.id: v for v in registry.list_versions(session=session, actor=SYSTEM, data_dir=data_dir)}
    assert not listed[b.id].file_present and not listed[b.id].active


def test_only_admins_manage_models(session: Session, data_dir: Path, make_user: Callable[..., User]) -> None:
    dispatcher = make_user(Role.dispatcher).to_actor()
    admin = make_user(Role.admin, None).to_actor()
    with pytest.raises(Forbidden):
        registry.train_version(
            session=session, actor=dispatcher, rows=registry.demo_rows(), data_dir=data_dir
        )
    with pytest.raises(Forbidden):
        registry.list_versions(session=session, actor=dispatcher)
    v = registry.train_version(session=session, actor=admin, rows=registry.demo_rows(), data_dir=data_dir)
    with pytest.raises(Forbidden):
        registry.activate(session=session, actor=dispatcher, version_id=v.id, data_dir=data_dir)
    with pytest.raises(Forbidden):
        registry.rollback(session=session, actor=dispatcher, data_dir=data_dir)
    assert v.created_by == admin.label


def test_active_model_picks_up_a_new_activation_without_restart(session: Session, data_dir: Path) -> None:
    assert registry.active_model(session=session, data_dir=data_dir) is None
    a = _train(session, data_dir)
    loaded = registry.active_model(session=session, data_dir=data_dir)
    assert loaded is not None
    model_a, version = loaded
    assert version == a.version
    assert model_a.predict(["小区门口路灯坏了好几天，晚上很黑"])[0][0] == "城乡建设"
    again = registry.active_model(session=session, data_dir=data_dir)
    assert again is not None and again[0] is model_a  # same version: the file is not read again

    b = _train(session, data_dir, activate=False)
    registry.activate(session=session, actor=SYSTEM, version_id=b.id, data_dir=data_dir)
    swapped = registry.active_model(session=session, data_dir=data_dir)
    assert swapped is not None and swapped[1] == b.version and swapped[0] is not model_a


def test_a_new_activation_loads_in_the_background_while_the_loaded_model_routes(
    session: Session, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "SWAP_IN_BACKGROUND", True)
    a = _train(session, data_dir)
    first = registry.active_model(session=session, data_dir=data_dir)  # nothing loaded before: at once
    assert first is not None and first[1] == a.version
    b = _train(session, data_dir, activate=False)
    registry.activate(session=session, actor=SYSTEM, version_id=b.id, data_dir=data_dir)

    release, loads = threading.Event(), []
    real_load = registry._load

    def held_load(version: str, path: Path) -> CategoryModel | None:
        loads.append(version)
        release.wait(30)  # the file takes as long as the test says
        return real_load(version, path)

    monkeypatch.setattr(registry, "_load", held_load)
    during = registry.active_model(session=session, data_dir=data_dir)
    again = registry.active_model(session=session, data_dir=data_dir)
    assert during is not None and during[1] == a.version and during[0] is first[0]
    assert again is not None and again[1] == a.version
    release.set()
    deadline = time.monotonic() + 30
    swapped = registry.active_model(session=session, data_dir=data_dir)
    while (swapped is None or swapped[1] != b.version) and time.monotonic() < deadline:
        time.sleep(0.01)
        swapped = registry.active_model(session=session, data_dir=data_dir)
    assert swapped is not None and swapped[1] == b.version
    assert loads == [b.version]  # asked twice while loading, read once


def test_active_model_checks_the_database_at_most_once_per_interval(session: Session, data_dir: Path) -> None:
    a = _train(session, data_dir)
    assert registry.active_model(session=session, data_dir=data_dir) is not None
    registry.CHECK_INTERVAL_SECONDS = 3600
    b = _train(session, data_dir)
    cached = registry.active_model(session=session, data_dir=data_dir)
    assert cached is not None and cached[1] == a.version  # within the interval: no database read
    registry.CHECK_INTERVAL_SECONDS = 0
    fresh = registry.active_model(session=session, data_dir=data_dir)
    assert fresh is not None and fresh[1] == b.version


def _feedback(session: Session, *rows: tuple[str, str, str | None]) -> None:
    """(kind, text, category) corrections, each of its own citizen appeal."""
    from xihu.appeals import service as appeal_service
    from xihu.appeals.enums import Channel
    from xihu.appeals.schemas import AppealCreate

    for kind, text, category in rows:
        appeal = appeal_service.submit(
            session=session,
            actor=Actor.citizen(),
            appeal_in=AppealCreate(description=f"西溪路公交站台：{text}，下雨天等车全身淋湿。"),
            channel=Channel.web,
            auto_route=False,
        )
        session.add(DispatchFeedback(appeal_id=appeal.id, kind=kind, text=text, category=category))
    session.flush()


def test_feedback_with_a_category_is_used_in_retraining(session: Session, data_dir: Path) -> None:
    _feedback(
        session,
        ("return", "公交站台遮雨棚坏了", "交通运输"),
        ("manual", "站台没有遮雨棚", "交通运输"),
        ("transfer", "不知道归谁管", None),
    )
    assert registry.feedback_rows(session=session) == [
        ("公交站台遮雨棚坏了", "交通运输"),
        ("站台没有遮雨棚", "交通运输"),
    ]
    v = _train(session, data_dir)
    assert v.n_train == len(DEMO_EXAMPLES) + 2 and v.n_feedback == 2


def test_retraining_uses_the_active_versions_rows_plus_the_feedback(
    session: Session, data_dir: Path, make_user: Callable[..., User]
) -> None:
    with pytest.raises(Conflict) as none:
        registry.retrain(session=session, actor=SYSTEM, data_dir=data_dir)
    assert "没有启用的模型" in none.value.message
    base = _train(session, data_dir)
    assert registry.feedback_not_in_active(session=session, actor=SYSTEM) == 0
    _feedback(
        session,
        ("return", "公交站台遮雨棚坏了", "交通运输"),
        ("manual", "站台没有遮雨棚", "交通运输"),
        ("transfer", "归谁管", None),
    )
    assert registry.feedback_not_in_active(session=session, actor=SYSTEM) == 2

    again = registry.retrain(session=session, actor=SYSTEM, data_dir=data_dir)
    assert not again.active and _active(session) == [base.version]  # the admin decides after the metrics
    assert (again.n_train, again.n_feedback) == (len(DEMO_EXAMPLES) + 2, 2)
    assert base.version in (again.note or "")
    registry.activate(session=session, actor=SYSTEM, version_id=again.id, data_dir=data_dir)
    assert registry.feedback_not_in_active(session=session, actor=SYSTEM) == 0
    with pytest.raises(Forbidden):
        registry.retrain(session=session, actor=make_user(Role.dispatcher).to_actor(), data_dir=data_dir)

    # a version trained before its rows were kept cannot be the base: a clear refusal, nothing trained
    (data_dir / again.path).parent.joinpath(registry.ROWS_FILE).unlink()
    versions = len(registry.list_versions(session=session, actor=SYSTEM))
    with pytest.raises(Conflict) as old:
        registry.retrain(session=session, actor=SYSTEM, data_dir=data_dir)
    assert "没有保存训练样本" in old.value.message
    assert len(registry.list_versions(session=session, actor=SYSTEM)) == versions


def test_a_retraining_job_runs_once_and_says_how_it_ended(
    session: Session,
    session_factory,
    data_dir: Path,  # type: ignore[no-untyped-def]
) -> None:
    base = _train(session, data_dir)
    _feedback(session, ("return", "公交站台遮雨棚坏了", "交通运输"))
    job = registry.start_retrain(session=session, actor=SYSTEM, data_dir=data_dir)
    assert (job.status, job.status_label) == ("queued", "排队中")
    with pytest.raises(Conflict) as busy:  # one run at a time
        registry.start_retrain(session=session, actor=SYSTEM, data_dir=data_dir)
    assert "已有训练任务" in busy.value.message
    session.commit()

    registry.run_training_job(session_factory, job.id, data_dir)  # not claimed by a worker: not run
    session.expire_all()
    assert registry.training_job(session=session, actor=SYSTEM, job_id=job.id).status == "queued"
    _claim(session_factory, job.id)
    registry.run_training_job(session_factory, job.id, data_dir)
    session.expire_all()
    done = registry.training_job(session=session, actor=SYSTEM, job_id=job.id)
    assert done.status == "finished" and done.version is not None and done.finished_at is not None
    trained = next(
        v for v in registry.list_versions(session=session, actor=SYSTEM) if v.version == done.version
    )
    assert not trained.active and trained.n_feedback == 1 and _active(session) == [base.version]
    registry.run_training_job(session_factory, job.id, data_dir)  # a second run of the task does nothing
    assert len(registry.list_versions(session=session, actor=SYSTEM)) == 2

    # a run that fails says why
    failing = registry.start_retrain(session=session, actor=SYSTEM, data_dir=data_dir)
    session.commit()
    (data_dir / base.path).parent.joinpath(registry.ROWS_FILE).unlink()
    _claim(session_factory, failing.id)
    registry.run_training_job(session_factory, failing.id, data_dir)
    session.expire_all()
    failed = registry.latest_training_job(session=session, actor=SYSTEM)
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
    _train(session, data_dir)
    job = registry.start_retrain(session=session, actor=SYSTEM, data_dir=data_dir)
    session.commit()
    # nobody has claimed it for a while: the admin is told to look at the worker
    assert registry.training_job(session=session, actor=SYSTEM, job_id=job.id).error == ""
    clock.freeze(clock.now() + longjobs.UNCLAIMED_AFTER + timedelta(seconds=1))
    assert "xihu worker" in registry.training_job(session=session, actor=SYSTEM, job_id=job.id).error

    _claim(session_factory, job.id, "worker-that-dies")
    session.expire_all()
    running = registry.training_job(session=session, actor=SYSTEM, job_id=job.id)
    assert (running.status, running.error) == ("running", "")
    with session_factory() as s:  # another worker leaves it alone while its heartbeat is fresh
        assert TRAINING.claim(s, "test-worker") is None
    clock.freeze(clock.now() + longjobs.STALE_AFTER + timedelta(seconds=1))
    session.expire_all()
    lost = registry.training_job(session=session, actor=SYSTEM, job_id=job.id)
    assert lost.status == "running" and "重新开始训练" in lost.error
    with pytest.raises(Conflict):  # still under way: it will be resumed
        registry.start_retrain(session=session, actor=SYSTEM, data_dir=data_dir)

    _claim(session_factory, job.id, "second-worker-that-dies")
    clock.freeze(clock.now() + longjobs.STALE_AFTER + timedelta(seconds=1))
    with session_factory() as s:  # two runs each took their process with them: no third
        assert TRAINING.claim(s, "test-worker") is None
        s.commit()
    session.expire_all()
    given_up = registry.training_job(session=session, actor=SYSTEM, job_id=job.id)
    assert given_up.status == "failed" and "2 次中断" in given_up.error and given_up.finished_at is not None
    assert registry.start_retrain(session=session, actor=SYSTEM, data_dir=data_dir).status == "queued"


def test_admin_retrains_from_the_page_and_the_api(
    client: TestClient,
    session: Session,
    settings,  # type: ignore[no-untyped-def]
    make_user: Callable[..., User],
) -> None:
    base = _train(session, settings.data_dir)
    _feedback(session, ("return", "公交站台遮雨棚坏了", "交通运输"), ("manual", "站台没有遮雨棚", "交通运输"))
    session.commit()
    login(client, make_user(Role.dispatcher).username)
    assert client.post("/api/dispatch/models/retrain").status_code == 403
    login(client, make_user(Role.admin, None).username)
    page = client.get("/staff/dispatch/models").text
    assert 'data-testid="retrain"' in page and "尚未学到的纠错反馈 2 条" in page

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


def test_ensure_demo_model_trains_once(session: Session, data_dir: Path) -> None:
    first = registry.ensure_demo_model(session=session, data_dir=data_dir)
    assert first is not None and first.active and first.created_by == "系统"
    assert registry.ensure_demo_model(session=session, data_dir=data_dir) is None
    assert len(registry.list_versions(session=session, actor=SYSTEM, data_dir=data_dir)) == 1


def test_rows_from_csv_reads_both_layouts(tmp_path: Path) -> None:
    plain = tmp_path / "plain.csv"
    with plain.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["title", "text", "label"])
        w.writerow(["路灯坏了", "小区门口路灯不亮", "城乡建设"])
        w.writerow(["没有标签", "这一行没有类别", ""])
    assert registry.rows_from_csv(plain) == [("路灯坏了 小区门口路灯不亮", "城乡建设")]

    shared = tmp_path / "shared.csv"
    with shared.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "title", "text", "label", "text_raw", "dup_group"])
        w.writerow(["0", "公交班次少", "公交 班次 少", "交通运输", "公交班次太少了，等车半小时。", "g1"])
        w.writerow(["1", "公交班次少", "公交 班次 少", "交通运输", "公交班次太少了，等车半小时。", "g1"])
        w.writerow(["2", "工资拖欠", "拖欠 工资", "劳动和社会保障", "", ""])
    assert registry.rows_from_csv(shared) == [
        ("公交班次少 公交班次太少了，等车半小时。", "交通运输"),
        ("工资拖欠 拖欠 工资", "劳动和社会保障"),
    ]


# ---------------------------------------------------------------- HTTP


def test_models_page_api_and_permissions(
    client: TestClient,
    session: Session,
    settings,  # type: ignore[no-untyped-def]
    make_user: Callable[..., User],
) -> None:
    a = _train(session, settings.data_dir, note="演示")
    b = _train(session, settings.data_dir, activate=False)
    session.commit()

    page = client.get("/staff/dispatch/models", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert client.get("/api/dispatch/models").status_code == 401

    dispatcher = make_user(Role.dispatcher)
    login(client, dispatcher.username)
    assert client.get("/staff/dispatch/models").status_code == 403
    assert client.get("/api/dispatch/models").status_code == 403
    denied = client.post(f"/api/dispatch/models/{b.id}/activate")
    assert denied.status_code == 403
    assert "无权" in denied.json()["error"]["message"]

    admin = make_user(Role.admin, None)
    login(client, admin.username)
    html = client.get("/staff/dispatch/models")
    assert html.status_code == 200
    assert a.version in html.text and b.version in html.text and "已启用" in html.text
    assert f"/staff/dispatch/models/{b.id}/activate" in html.text and "csrf_token" in html.text
    assert 'data-testid="rollback"' not in html.text  # nothing active before a: no rollback offered

    listed = client.get("/api/dispatch/models").json()
    assert [(v["version"], v["active"]) for v in listed] == [(b.version, False), (a.version, True)]
    assert {"n_train", "macro_f1", "accuracy", "auto_rate", "auto_precision", "threshold"} <= set(listed[0])

    without_csrf = client.post(f"/api/dispatch/models/{b.id}/activate", headers={"X-CSRF-Token": "wrong"})
    assert without_csrf.status_code == 403
    done = client.post(f"/api/dispatch/models/{b.id}/activate")
    assert done.status_code == 200 and done.json()["active"] and done.json()["version"] == b.version
    back = client.post("/api/dispatch/models/rollback")
    assert back.status_code == 200 and back.json()["version"] == a.version
    again = client.post("/api/dispatch/models/rollback")
    assert again.status_code == 409 and "回滚" in again.json()["error"]["message"]

    csrf = client.cookies.get("xihu_csrf")
    form = client.post(
        f"/staff/dispatch/models/{b.id}/activate", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert form.status_code == 303 and form.headers["location"].startswith("/staff/dispatch/models")
    assert client.get("/api/dispatch/models").json()[0]["active"] is True
    page = client.get("/staff/dispatch/models").text
    button = page[page.index('data-testid="rollback"') :]
    assert a.version in button[: button.index("</button>")]  # it names the version it goes back to
    rolled = client.post("/staff/dispatch/models/rollback", data={"csrf_token": csrf}, follow_redirects=False)
    assert rolled.status_code == 303
    refused = client.post("/staff/dispatch/models/rollback", data={"csrf_token": csrf})
    assert refused.status_code == 409 and "回滚未成功" in refused.text
    assert client.post("/staff/dispatch/models/rollback", data={"csrf_token": "x"}).status_code == 403

    (settings.data_dir / b.path).unlink()
    missing = client.post(f"/staff/dispatch/models/{b.id}/activate", data={"csrf_token": csrf})
    assert missing.status_code == 422 and "模型文件缺失" in missing.text


# ---------------------------------------------------------------- command line


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A fresh data directory and SQLite database, migrated with `xihu migrate`."""
    from xihu.cli import app

    data = tmp_path / "cli-data"
    env = {"XIHU_DATA_DIR": str(data), "XIHU_DATABASE_URL": f"sqlite:///{data / 'cli.db'}"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["migrate"], env=env)
    assert result.exit_code == 0, result.output
    yield env
    monkeypatch.undo()
    get_settings.cache_clear()


def _demo_csv(path: Path) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["title", "text", "label"])
        w.writerows(DEMO_EXAMPLES)
    return path


def test_cli_train_then_evaluate_prints_the_contract(cli_env: dict[str, str], tmp_path: Path) -> None:
    from xihu.cli import app

    runner = CliRunner()
    data = _demo_csv(tmp_path / "demo.csv")

    none = runner.invoke(app, ["dispatch", "evaluate", "--input", str(data), "--json"], env=cli_env)
    assert none.exit_code == 1 and "没有已启用的派单模型" in none.output

    trained = runner.invoke(app, ["dispatch", "train", "--input", str(data), "--note", "cli"], env=cli_env)
    assert trained.exit_code == 0, trained.output
    assert "macro_f1" in trained.output and "已启用" in trained.output
    versions = list((Path(cli_env["XIHU_DATA_DIR"]) / "models").glob("*/model.joblib"))
    assert len(versions) == 1

    listed = runner.invoke(app, ["dispatch", "versions"], env=cli_env)
    assert listed.exit_code == 0 and versions[0].parent.name in listed.output

    clear = tmp_path / "clear.csv"
    with clear.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["title", "text", "label"])
        w.writerow(["公交车班次太少", "早高峰公交车要等半小时，希望增加班次。", "交通运输"])
        w.writerow(["老板拖欠工资不发", "公司三个月没发工资，也没有缴纳社保。", "劳动和社会保障"])
        w.writerow(["小区门口路灯坏了", "晚上小区门口路灯一直不亮，请尽快维修。", "城乡建设"])
    result = runner.invoke(app, ["dispatch", "evaluate", "--input", str(clear), "--json"], env=cli_env)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert set(figures) == EVALUATION_KEYS
    assert figures["n"] == 3 and figures["accuracy"] == 1.0
    assert all(0.0 <= figures[k] <= 1.0 for k in ("accuracy", "macro_f1", "auto_rate", "auto_precision"))
    assert figures["ms_per_appeal"] > 0

    second = runner.invoke(app, ["dispatch", "train", "--input", str(data), "--no-activate"], env=cli_env)
    assert second.exit_code == 0, second.output
    new = next(
        p.parent.name
        for p in (Path(cli_env["XIHU_DATA_DIR"]) / "models").glob("*/model.joblib")
        if p.parent.name != versions[0].parent.name
    )
    assert runner.invoke(app, ["dispatch", "activate", new], env=cli_env).exit_code == 0
    assert runner.invoke(app, ["dispatch", "rollback"], env=cli_env).exit_code == 0
    refused = runner.invoke(app, ["dispatch", "rollback"], env=cli_env)
    assert refused.exit_code == 1 and "回滚失败" in refused.output
    retrained = runner.invoke(app, ["dispatch", "retrain"], env=cli_env)
    assert retrained.exit_code == 0, retrained.output
    assert "未启用" in retrained.output and "macro_f1" in retrained.output
    assert len(list((Path(cli_env["XIHU_DATA_DIR"]) / "models").glob("*/model.joblib"))) == 3


def test_a_retraining_run_deletes_the_files_of_versions_that_were_never_saved(
    session: Session,
    session_factory,
    data_dir: Path,  # type: ignore[no-untyped-def]
) -> None:
    import os

    base = _train(session, data_dir)
    models = data_dir / registry.MODELS_DIR
    old = time.time() - registry.UNSAVED_AFTER_SECONDS - 60
    killed = models / "m20261101-0930-ab12"  # a run killed after writing its files, before its commit
    saving = models / "m20261207-1015-cd34"  # another worker's run, between its files and its commit
    other = models / "notes"  # not a folder a training run makes
    for folder in (killed, saving, other):
        folder.mkdir(parents=True)
        (folder / registry.MODEL_FILE).write_bytes(b"x")
    for path in (killed, other, models / base.version):
        os.utime(path, (old, old))
    job = registry.start_retrain(session=session, actor=SYSTEM, data_dir=data_dir)
    session.commit()
    _claim(session_factory, job.id)
    registry.run_training_job(session_factory, job.id, data_dir)
    left = {p.name for p in models.iterdir()}
    assert killed.name not in left
    assert {saving.name, other.name, base.version} <= left
    session.expire_all()
    trained = registry.training_job(session=session, actor=SYSTEM, job_id=job.id).version
    assert trained in left and registry.prune_unsaved_versions(session=session, data_dir=data_dir) == []


def test_a_fit_apart_gives_the_same_model_and_a_dead_fit_process_fails_the_run_clearly(
    session: Session,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    training = registry.training_set(session=session, actor=SYSTEM, rows=registry.demo_rows()[:120])
    apart = registry.fit_apart(training)
    here = registry.fit(training)
    probe = [text for text, _ in registry.demo_rows()[120:140]]
    assert apart.predict_proba(probe) == here.predict_proba(probe)
    assert apart.metrics["n_train"] == here.metrics["n_train"] == 120

    # the fit process is killed (as the kernel does when memory runs out): the run fails with a reason
    monkeypatch.setattr(registry, "fit", _die)
    with pytest.raises(Invalid, match="训练进程意外终止"):
        registry.fit_apart(training)  # and not this process


def _die(training, progress=None):  # type: ignore[no-untyped-def]
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)
