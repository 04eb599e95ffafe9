"""Tests of dispatch model training: a version saved with its metrics, learning from the usable corrections,
retraining on the active version's own rows, the demo model, reading training CSVs, and fitting in a process
of its own."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from model_versions import SYSTEM, active_versions, add_feedback, audit_entries, train_demo
from xihu.core.errors import Conflict, Forbidden, Invalid
from xihu.core.security import Role, User
from xihu.dispatch import registry, training
from xihu.dispatch.demo_examples import DEMO_EXAMPLES

# every test sees the database as it is: no cached model, no check interval
pytestmark = pytest.mark.usefixtures("fresh_model_cache")


def test_train_saves_a_version_with_metrics(session: Session, data_dir: Path) -> None:
    steps: list[str] = []
    v = training.train_version(
        session=session,
        actor=SYSTEM,
        rows=training.demo_rows(),
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
    assert [a.entity_id for a in audit_entries(session, "dispatch.model.train")] == [str(v.id)]
    assert audit_entries(session, "dispatch.model.activate")[-1].to_state == v.version


def test_feedback_with_a_category_is_used_in_retraining(session: Session, data_dir: Path) -> None:
    add_feedback(
        session,
        ("return", "公交站台遮雨棚坏了", "交通运输"),
        ("manual", "站台没有遮雨棚", "交通运输"),
        ("transfer", "不知道归谁管", None),
    )
    assert training.feedback_rows(session=session) == [
        ("公交站台遮雨棚坏了", "交通运输"),
        ("站台没有遮雨棚", "交通运输"),
    ]
    v = train_demo(session, data_dir)
    assert v.n_train == len(DEMO_EXAMPLES) + 2 and v.n_feedback == 2


def test_retraining_uses_the_active_versions_rows_plus_the_feedback(
    session: Session, data_dir: Path, make_user: Callable[..., User]
) -> None:
    with pytest.raises(Conflict) as none:
        training.retrain(session=session, actor=SYSTEM, data_dir=data_dir)
    assert "没有启用的模型" in none.value.message
    base = train_demo(session, data_dir)
    assert training.feedback_not_in_active(session=session, actor=SYSTEM) == 0
    add_feedback(
        session,
        ("return", "公交站台遮雨棚坏了", "交通运输"),
        ("manual", "站台没有遮雨棚", "交通运输"),
        ("transfer", "归谁管", None),
    )
    assert training.feedback_not_in_active(session=session, actor=SYSTEM) == 2

    again = training.retrain(session=session, actor=SYSTEM, data_dir=data_dir)
    assert not again.active and active_versions(session) == [
        base.version
    ]  # the admin decides after the metrics
    assert (again.n_train, again.n_feedback) == (len(DEMO_EXAMPLES) + 2, 2)
    assert base.version in (again.note or "")
    registry.activate(session=session, actor=SYSTEM, version_id=again.id, data_dir=data_dir)
    assert training.feedback_not_in_active(session=session, actor=SYSTEM) == 0
    with pytest.raises(Forbidden):
        training.retrain(session=session, actor=make_user(Role.dispatcher).to_actor(), data_dir=data_dir)

    # a version trained before its rows were kept cannot be the base: a clear refusal, nothing trained
    (data_dir / again.path).parent.joinpath(registry.ROWS_FILE).unlink()
    versions = len(registry.list_versions(session=session, actor=SYSTEM))
    with pytest.raises(Conflict) as old:
        training.retrain(session=session, actor=SYSTEM, data_dir=data_dir)
    assert "没有保存训练样本" in old.value.message
    assert len(registry.list_versions(session=session, actor=SYSTEM)) == versions


def test_ensure_demo_model_trains_once(session: Session, data_dir: Path) -> None:
    first = training.ensure_demo_model(session=session, data_dir=data_dir)
    assert first is not None and first.active and first.created_by == "系统"
    assert training.ensure_demo_model(session=session, data_dir=data_dir) is None
    assert len(registry.list_versions(session=session, actor=SYSTEM, data_dir=data_dir)) == 1


def test_rows_from_csv_reads_both_layouts(tmp_path: Path) -> None:
    plain = tmp_path / "plain.csv"
    with plain.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["title", "text", "label"])
        w.writerow(["路灯坏了", "小区门口路灯不亮", "城乡建设"])
        w.writerow(["没有标签", "这一行没有类别", ""])
    assert training.rows_from_csv(plain) == [("路灯坏了 小区门口路灯不亮", "城乡建设")]

    shared = tmp_path / "shared.csv"
    with shared.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "title", "text", "label", "text_raw", "dup_group"])
        w.writerow(["0", "公交班次少", "公交 班次 少", "交通运输", "公交班次太少了，等车半小时。", "g1"])
        w.writerow(["1", "公交班次少", "公交 班次 少", "交通运输", "公交班次太少了，等车半小时。", "g1"])
        w.writerow(["2", "工资拖欠", "拖欠 工资", "劳动和社会保障", "", ""])
    assert training.rows_from_csv(shared) == [
        ("公交班次少 公交班次太少了，等车半小时。", "交通运输"),
        ("工资拖欠 拖欠 工资", "劳动和社会保障"),
    ]


def test_rows_from_csv_reads_excel_gbk_and_refuses_files_it_cannot_use(tmp_path: Path) -> None:
    excel = tmp_path / "excel.csv"  # what Excel on Chinese Windows saves: GBK, CRLF, spaces in the header
    excel.write_bytes("title, text ,label\r\n路灯坏了,小区门口路灯不亮,城乡建设\r\n".encode("gbk"))
    assert training.rows_from_csv(excel) == [("路灯坏了 小区门口路灯不亮", "城乡建设")]

    wrong_column = tmp_path / "body.csv"
    wrong_column.write_text("title,body,label\n路灯坏了,小区门口路灯不亮,城乡建设\n", encoding="utf-8")
    with pytest.raises(Invalid, match="缺少列：text.*title、body、label"):
        training.rows_from_csv(wrong_column)
    no_label = tmp_path / "no_label.csv"
    no_label.write_text("title,text\n路灯坏了,小区门口路灯不亮\n", encoding="utf-8")
    with pytest.raises(Invalid, match="缺少列：label"):
        training.rows_from_csv(no_label)
    header_only = tmp_path / "header_only.csv"
    header_only.write_text("title,text,label\n", encoding="utf-8")
    with pytest.raises(Invalid, match="没有带类别标签"):
        training.rows_from_csv(header_only)
    binary = tmp_path / "photo.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x81\x30")
    with pytest.raises(Invalid, match="无法识别文件编码"):
        training.rows_from_csv(binary)


def test_a_fit_apart_gives_the_same_model_and_a_dead_fit_process_fails_the_run_clearly(
    session: Session,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    to_learn = training.training_set(session=session, actor=SYSTEM, rows=training.demo_rows()[:120])
    apart = training.fit_apart(to_learn)
    here = training.fit(to_learn)
    probe = [text for text, _ in training.demo_rows()[120:140]]
    assert apart.predict_proba(probe) == here.predict_proba(probe)
    assert apart.metrics["n_train"] == here.metrics["n_train"] == 120

    # the fit process is killed (as the kernel does when memory runs out): the run fails with a reason
    monkeypatch.setattr(training, "fit", _die)
    with pytest.raises(Invalid, match="训练进程意外终止"):
        training.fit_apart(to_learn)  # and not this process


def _die(to_learn, progress=None):  # type: ignore[no-untyped-def]
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)
