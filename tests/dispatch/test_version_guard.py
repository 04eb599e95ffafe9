"""Tests of the activation guard: a model version worse than the active one goes live only when confirmed,
through the service, the admin page, the API and the CLI (demo examples only, no shared data)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from conftest import login
from xihu.core.audit import AuditEntry
from xihu.core.config import get_settings
from xihu.core.errors import Conflict
from xihu.core.security import Actor, Role, User
from xihu.dispatch import registry, training
from xihu.dispatch.classifier import LABELS
from xihu.dispatch.models import ModelVersion
from xihu.dispatch.schemas import ModelVersionRead
from xihu.dispatch.version_guard import auto_rate_allowance, concerns

SYSTEM = Actor.system("测试")
GOOD = {"macro_f1": 0.93, "auto_rate": 0.72, "auto_precision": 0.991, "target_precision": 0.99}


# every test sees the database as it is: no cached model, no check interval
pytestmark = pytest.mark.usefixtures("fresh_model_cache")


def contradictory_rows() -> list[tuple[str, str]]:
    """The demo examples, each given a second, different category too: what confused corrections look like."""
    rows = training.demo_rows()
    other = {label: LABELS[(LABELS.index(label) + 1) % len(LABELS)] for label in LABELS}
    return rows + [(text, other[label]) for text, label in rows]


def _train(
    session: Session, data_dir: Path, rows: list[tuple[str, str]], *, activate: bool
) -> ModelVersionRead:
    return training.train_version(
        session=session, actor=SYSTEM, rows=rows, data_dir=data_dir, activate=activate
    )


def _last_activation(session: Session) -> AuditEntry | None:
    return session.scalars(
        select(AuditEntry)
        .where(AuditEntry.action == "dispatch.model.activate")
        .order_by(AuditEntry.id.desc())
    ).first()


def _active(session: Session) -> list[str]:
    return list(session.scalars(select(ModelVersion.version).where(ModelVersion.active.is_(True))))


# ---------------------------------------------------------------- the rules


def test_concerns_name_each_figure_that_fell_beyond_its_allowance() -> None:
    assert concerns(GOOD, GOOD) == []
    assert concerns({**GOOD, "auto_rate": 0.63, "macro_f1": 0.885}, GOOD) == []  # within 0.10 and 0.05
    fell = concerns({**GOOD, "auto_rate": 0.04, "macro_f1": 0.87}, GOOD)
    assert fell == ["自动派单率从 72.0% 降到 4.0%", "宏平均F1从 93.0% 降到 87.0%"]
    short = concerns({**GOOD, "auto_precision": 0.98}, GOOD)
    assert short == ["自动派单准确率 98.0%，低于目标 99.0%"]
    assert concerns({**GOOD, "auto_precision": 0.986}, GOOD) == []  # half a point of noise allowed
    # with nothing dispatched automatically its precision means nothing: the rate says what is wrong
    none_auto = concerns({**GOOD, "auto_rate": 0.0, "auto_precision": 0.0}, GOOD)
    assert none_auto == ["自动派单率从 72.0% 降到 0.0%"]
    # on a small training set the auto rate is noisy, and more may fall before it is a concern
    assert auto_rate_allowance(253) == pytest.approx(3 / 253**0.5) and auto_rate_allowance(253) > 0.18
    assert auto_rate_allowance(8000) == 0.10 and auto_rate_allowance(None) == 0.10
    assert concerns({**GOOD, "auto_rate": 0.58, "n_train": 253}, GOOD) == []
    assert concerns({**GOOD, "auto_rate": 0.58, "n_train": 8000}, GOOD) == ["自动派单率从 72.0% 降到 58.0%"]
    # versions trained on the same rows are compared on those rows, not on their added feedback
    base = {**GOOD, "rows_sha": "abc", "n_feedback": 0, "n_rows": 253}
    harder = {
        **GOOD,
        "macro_f1": 0.80,
        "auto_rate": 0.50,
        "rows_sha": "abc",
        "n_feedback": 70,
        "n_rows": 253,
        "first_rows": {"n": 253, "macro_f1": 0.92, "auto_rate": 0.70},
    }
    assert concerns(harder, base) == []
    assert concerns({**harder, "rows_sha": "other"}, base) == [
        "两版训练样本不同（各在自己的样本上交叉验证），自动派单率从 72.0% 降到 50.0%",
        "两版训练样本不同（各在自己的样本上交叉验证），宏平均F1从 93.0% 降到 80.0%",
    ]
    assert concerns({**harder, "rows_sha": None}, base) == [  # a version from before rows were fingerprinted
        "自动派单率从 72.0% 降到 50.0%",
        "宏平均F1从 93.0% 降到 80.0%",
    ]
    confused = {**harder, "first_rows": {"n": 253, "macro_f1": 0.85, "auto_rate": 0.01}}
    assert concerns(confused, base) == [
        "在两版共同的 253 条训练样本上，自动派单率从 72.0% 降到 1.0%",
        "在两版共同的 253 条训练样本上，宏平均F1从 93.0% 降到 85.0%",
    ]
    assert concerns({"macro_f1": 0.5}, None) == []  # the first version has nothing to be compared with
    assert concerns({}, GOOD) == [] and concerns({"macro_f1": "?"}, GOOD) == []


# ---------------------------------------------------------------- service


def test_a_worse_version_needs_confirming_and_the_override_is_audited(
    session: Session, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    good = _train(session, data_dir, training.demo_rows(), activate=True)
    bad = _train(session, data_dir, contradictory_rows(), activate=True)
    # asked to activate it at once, training keeps it inactive and says why
    assert _active(session) == [good.version] and not bad.active
    assert any("自动派单率从" in c for c in bad.concerns), bad.concerns
    listed = {v.version: v for v in registry.list_versions(session=session, actor=SYSTEM, data_dir=data_dir)}
    assert listed[good.version].concerns == [] and listed[bad.version].concerns == bad.concerns

    with pytest.raises(Conflict) as refused:
        registry.activate(session=session, actor=SYSTEM, version_id=bad.id, data_dir=data_dir)
    assert bad.version in refused.value.message and bad.concerns[0] in refused.value.message
    assert _active(session) == [good.version]

    done = registry.activate(
        session=session, actor=SYSTEM, version_id=bad.id, data_dir=data_dir, confirm=True
    )
    assert done.active and _active(session) == [bad.version]
    entry = _last_activation(session)
    assert entry is not None and entry.to_state == bad.version
    assert entry.detail["overridden_concerns"] == bad.concerns
    # against the (worse) active version the good one is no concern: going back needs no confirmation
    back = registry.activate(session=session, actor=SYSTEM, version_id=good.id, data_dir=data_dir)
    assert back.active and back.concerns == []
    plain = _last_activation(session)
    assert plain is not None and "overridden_concerns" not in plain.detail


# ---------------------------------------------------------------- page and API


def test_page_and_api_ask_for_confirmation(
    client: TestClient,
    session: Session,
    settings,  # type: ignore[no-untyped-def]
    make_user: Callable[..., User],
) -> None:
    good = _train(session, settings.data_dir, training.demo_rows(), activate=True)
    bad = _train(session, settings.data_dir, contradictory_rows(), activate=False)
    session.commit()
    login(client, make_user(Role.admin, None).username)
    csrf = client.cookies.get("xihu_csrf")

    page = client.get("/staff/dispatch/models").text
    assert f'data-testid="concerns-{bad.id}"' in page and bad.concerns[0] in page
    assert f'data-testid="confirm-{bad.id}"' in page and "不如当前版本" in page
    assert f'data-testid="concerns-{good.id}"' not in page

    refused = client.post(f"/staff/dispatch/models/{bad.id}/activate", data={"csrf_token": csrf})
    assert refused.status_code == 409 and "启用未成功" in refused.text and bad.concerns[0] in refused.text
    api_refused = client.post(f"/api/dispatch/models/{bad.id}/activate")
    assert api_refused.status_code == 409 and "不如当前版本" in api_refused.json()["error"]["message"]
    assert client.get("/api/dispatch/models").json()[1]["active"] is True  # the good one, still

    listed = {v["version"]: v for v in client.get("/api/dispatch/models").json()}
    assert listed[bad.version]["concerns"] == bad.concerns
    confirmed = client.post(
        f"/staff/dispatch/models/{bad.id}/activate",
        data={"csrf_token": csrf, "confirm": "1"},
        follow_redirects=False,
    )
    assert confirmed.status_code == 303
    assert client.post(f"/api/dispatch/models/{good.id}/activate").status_code == 200
    assert client.post(f"/api/dispatch/models/{bad.id}/activate?confirm=true").json()["active"] is True


# ---------------------------------------------------------------- command line


def test_cli_keeps_a_worse_version_inactive_until_confirmed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xihu.cli import app

    data = tmp_path / "cli-data"
    env = {"XIHU_DATA_DIR": str(data), "XIHU_DATABASE_URL": f"sqlite:///{data / 'cli.db'}"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    runner = CliRunner()
    assert runner.invoke(app, ["migrate"], env=env).exit_code == 0
    good_csv, bad_csv = tmp_path / "good.csv", tmp_path / "bad.csv"
    for path, rows in ((good_csv, training.demo_rows()), (bad_csv, contradictory_rows())):
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["title", "text", "label"])
            writer.writerows(("", text, label) for text, label in rows)
    assert runner.invoke(app, ["dispatch", "train", "--input", str(good_csv)], env=env).exit_code == 0

    bad = runner.invoke(app, ["dispatch", "train", "--input", str(bad_csv)], env=env)
    assert bad.exit_code == 0, bad.output
    assert "不如当前版本" in bad.output and "自动派单率从" in bad.output and "--confirm" in bad.output
    new = bad.output.split("xihu dispatch activate ")[1].split()[0]
    refused = runner.invoke(app, ["dispatch", "activate", new], env=env)
    assert refused.exit_code == 1 and "启用失败" in refused.output and "不如当前版本" in refused.output
    done = runner.invoke(app, ["dispatch", "activate", new, "--confirm"], env=env)
    assert done.exit_code == 0 and new in done.output
    get_settings.cache_clear()
