"""Tests of the dispatch model versions: activation and rollback along the audited history, who may manage
them, the admin page and API, and `xihu dispatch train|evaluate|activate|rollback` (demo examples only, no
shared data)."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from conftest import login
from model_versions import SYSTEM, active_versions, audit_entries, train_demo
from xihu.core.config import get_settings
from xihu.core.errors import Conflict, Forbidden, Invalid
from xihu.core.security import Role, User
from xihu.dispatch import registry, training
from xihu.dispatch.demo_examples import DEMO_EXAMPLES

EVALUATION_KEYS = {"n", "accuracy", "macro_f1", "auto_rate", "auto_precision", "ms_per_appeal"}


# every test sees the database as it is: no cached model, no check interval
pytestmark = pytest.mark.usefixtures("fresh_model_cache")


# ---------------------------------------------------------------- service


def test_activate_and_rollback_follow_the_history_and_are_audited(session: Session, data_dir: Path) -> None:
    a = train_demo(session, data_dir)
    b = train_demo(session, data_dir, activate=False)
    c = train_demo(session, data_dir, activate=False)
    assert active_versions(session) == [a.version]

    registry.activate(session=session, actor=SYSTEM, version_id=b.id, data_dir=data_dir)
    assert active_versions(session) == [b.version]
    registry.activate(session=session, actor=SYSTEM, version_id=c.id, data_dir=data_dir)
    assert active_versions(session) == [c.version]
    activations = audit_entries(session, "dispatch.model.activate")
    assert [(e.from_state, e.to_state) for e in activations[-2:]] == [
        (a.version, b.version),
        (b.version, c.version),
    ]
    assert activations[-1].actor_label == "测试"

    assert registry.rollback_target(session=session, actor=SYSTEM) == b.version
    back = registry.rollback(session=session, actor=SYSTEM, data_dir=data_dir)
    assert back.version == b.version and active_versions(session) == [b.version]
    assert registry.rollback_target(session=session, actor=SYSTEM) == a.version
    back = registry.rollback(session=session, actor=SYSTEM, data_dir=data_dir)
    assert back.version == a.version and active_versions(session) == [a.version]
    assert registry.rollback_target(session=session, actor=SYSTEM) is None
    rollbacks = audit_entries(session, "dispatch.model.rollback")
    assert [(e.from_state, e.to_state) for e in rollbacks] == [(c.version, b.version), (b.version, a.version)]
    with pytest.raises(Conflict) as err:
        registry.rollback(session=session, actor=SYSTEM, data_dir=data_dir)
    assert "回滚" in err.value.message
    assert active_versions(session) == [a.version]

    versions = registry.list_versions(session=session, actor=SYSTEM, data_dir=data_dir)
    assert [v.active for v in versions] == [False, False, True]  # newest first


def test_rollback_without_history_and_missing_file_are_refused(session: Session, data_dir: Path) -> None:
    with pytest.raises(Conflict):
        registry.rollback(session=session, actor=SYSTEM, data_dir=data_dir)
    train_demo(session, data_dir)
    b = train_demo(session, data_dir, activate=False)
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
        training.train_version(
            session=session, actor=dispatcher, rows=training.demo_rows(), data_dir=data_dir
        )
    with pytest.raises(Forbidden):
        registry.list_versions(session=session, actor=dispatcher)
    v = training.train_version(session=session, actor=admin, rows=training.demo_rows(), data_dir=data_dir)
    with pytest.raises(Forbidden):
        registry.activate(session=session, actor=dispatcher, version_id=v.id, data_dir=data_dir)
    with pytest.raises(Forbidden):
        registry.rollback(session=session, actor=dispatcher, data_dir=data_dir)
    assert v.created_by == admin.label


# ---------------------------------------------------------------- HTTP


def test_models_page_api_and_permissions(
    client: TestClient,
    session: Session,
    settings,  # type: ignore[no-untyped-def]
    make_user: Callable[..., User],
) -> None:
    a = train_demo(session, settings.data_dir, note="演示")
    b = train_demo(session, settings.data_dir, activate=False)
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
    # each category's figures, for the active version and the newer one beside it
    table = html.text[html.text.index('data-testid="by-label"') :]
    head = table[: table.index("</thead>")]
    assert head.index(a.version) < head.index(b.version) and "已启用" in head
    f1 = a.metrics["by_label"]["交通运输"]["f1"]
    assert "交通运输" in table and f"{f1 * 100:.1f}%" in table

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
    body = tmp_path / "body.csv"
    body.write_text("title,body,label\n路灯坏了,小区门口路灯不亮,城乡建设\n", encoding="utf-8")
    for command in ("evaluate", "train"):
        refused = runner.invoke(app, ["dispatch", command, "--input", str(body)], env=cli_env)
        assert refused.exit_code == 1 and "缺少列：text" in refused.output, refused.output
        assert refused.exception is None or isinstance(refused.exception, SystemExit)  # no traceback

    trained = runner.invoke(app, ["dispatch", "train", "--input", str(data), "--note", "cli"], env=cli_env)
    assert trained.exit_code == 0, trained.output
    assert "macro_f1" in trained.output and "已启用" in trained.output
    # a line per category, the weakest first
    per_label = [
        line.strip() for line in trained.output.splitlines() if "自动派单率 " in line and "F1 " in line
    ]
    f1 = [float(line.split("F1 ")[1].split("%")[0]) for line in per_label]
    assert len(per_label) == 7 and f1 == sorted(f1)
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
    # Excel's GBK, with a category this model does not have: scored as wrong, and said so
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("title,text,label\r\n公交车班次太少,早高峰公交车要等半小时。,公交\r\n".encode("gbk"))
    warned = runner.invoke(app, ["dispatch", "evaluate", "--input", str(gbk), "--json"], env=cli_env)
    assert warned.exit_code == 0, warned.output
    assert json.loads(warned.stdout)["n"] == 1 and json.loads(warned.stdout)["accuracy"] == 0.0
    assert "不在当前模型中" in warned.stderr and "公交（1 条）" in warned.stderr

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


def test_train_and_evaluate_work_on_a_machine_where_nothing_was_set_up(tmp_path: Path) -> None:
    """The contract's two commands on a new data directory, outside demo mode and without a PII key: SQLite
    is set up on first use (said on stderr, so that stdout stays one JSON object); a PostgreSQL database
    `xihu migrate` has not updated is refused with the command to run."""
    import os
    import subprocess

    from servers import XIHU, server_database

    data = _demo_csv(tmp_path / "demo.csv")
    url, drop = server_database(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("XIHU_")}
    env.update(XIHU_DATA_DIR=str(tmp_path / "var"), XIHU_DATABASE_URL=url)

    def xihu(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([XIHU, *args], env=env, capture_output=True, text=True, timeout=300)

    try:
        if not url.startswith("sqlite"):
            refused = xihu("dispatch", "train", "--input", str(data))
            assert refused.returncode == 1 and "请先运行 xihu migrate" in refused.stderr, refused.stderr
            assert "Traceback" not in refused.stderr
            done = xihu("migrate")  # an empty database needs no PII key to be set up
            assert done.returncode == 0, done.stderr
        trained = xihu("dispatch", "train", "--input", str(data))
        assert trained.returncode == 0, trained.stderr
        assert ("首次使用" in trained.stderr) == url.startswith("sqlite")
        evaluated = xihu("dispatch", "evaluate", "--input", str(data), "--json")
        assert evaluated.returncode == 0, evaluated.stderr
        figures = json.loads(evaluated.stdout)
        assert set(figures) == EVALUATION_KEYS and figures["n"] == len(DEMO_EXAMPLES)
        assert "首次使用" not in evaluated.stderr  # set up once
    finally:
        drop()
