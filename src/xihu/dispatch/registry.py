"""Model registry of intelligent dispatch (智能派单): train, version, activate, roll back, load the model.

Model files live under the data directory (`XIHU_DATA_DIR`, default var/; never in git) as
`models/<version>/model.joblib` with the metrics next to them (`model.json`); the table
`dispatch_model_versions` lists them and marks the active one. Every activation and rollback is audited,
and rollback follows the activation history kept in the append-only audit log (activate pushes, rollback
pops), so rolling back twice goes back two versions rather than toggling between the last two.

`active_model` keeps the loaded model in a process-wide cache and asks the database which version is active at
most once every `CHECK_INTERVAL_SECONDS`, so a running server picks up an activation made elsewhere (another
process, the CLI) without a restart while scoring stays fast.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import gzip
import hashlib
import logging
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from xihu.core import clock
from xihu.core.audit import AuditEntry, record
from xihu.core.config import get_settings
from xihu.core.db import unit_of_work
from xihu.core.errors import Conflict, DomainError, Invalid, NotFound
from xihu.core.jobs import notify_workers
from xihu.core.longjobs import waiting_hint
from xihu.core.security import Actor, User, authorize
from xihu.dispatch.classifier import CategoryModel, dedupe_rows, read_rows, row_text
from xihu.dispatch.demo_examples import DEMO_EXAMPLES
from xihu.dispatch.models import DispatchFeedback, ModelVersion, TrainingJob
from xihu.dispatch.schemas import ModelVersionRead, TrainingJobRead
from xihu.dispatch.version_guard import concerns

__all__ = [
    "CHECK_INTERVAL_SECONDS",
    "LABELLED",
    "MODEL_FILE",
    "activate",
    "active_model",
    "demo_rows",
    "ensure_demo_model",
    "feedback_rows",
    "feedback_not_in_active",
    "get_version",
    "list_versions",
    "reset_cache",
    "rollback",
    "rows_from_csv",
    "TrainingSet",
    "fit",
    "retrain_in_steps",
    "retraining_set",
    "save_version",
    "train_in_steps",
    "train_version",
    "training_set",
    "usable_feedback",
    "warm",
]

log = logging.getLogger(__name__)

# How often (seconds) `active_model` re-reads which version is active; tests set it to 0.
CHECK_INTERVAL_SECONDS: float = 5.0
MODEL_FILE = "model.joblib"
# the version's own training rows (not the feedback, read afresh at each training), so it can be retrained
ROWS_FILE = "rows.csv.gz"
MODELS_DIR = "models"
PERMISSION = "dispatch.manage"
ENTITY = "dispatch_model"
ACTION_TRAIN = "dispatch.model.train"
ACTION_ACTIVATE = "dispatch.model.activate"
ACTION_ROLLBACK = "dispatch.model.rollback"

Progress = Callable[[str], None]


# ---------------------------------------------------------------- training data


def rows_from_csv(path: str | Path) -> list[tuple[str, str]]:
    """(text, label) rows of a CSV with columns title,text,label, or the shared file's columns.

    The shared file's segmented `text` is replaced by `text_raw` when present, duplicates of a `dup_group`
    are dropped, and rows without a label are skipped.
    """
    rows = dedupe_rows(read_rows(path))
    out: list[tuple[str, str]] = []
    for row in rows:
        label = (row.get("label") or "").strip()
        text = row_text(row)
        if label and text:
            out.append((text, label))
    return out


def demo_rows() -> list[tuple[str, str]]:
    """(text, label) rows of the project's own illustrative examples."""
    return [(f"{title} {text}", label) for title, text, label in DEMO_EXAMPLES]


# feedback that can teach the model: it names a category and has text
LABELLED = (
    DispatchFeedback.category.is_not(None),
    DispatchFeedback.category != "",
    DispatchFeedback.text != "",
)


def usable_feedback() -> ColumnElement[bool]:
    """Condition on DispatchFeedback: the corrections training uses.

    Labelled, not excluded by an admin, and the latest such correction of its appeal: an appeal dispatched
    by hand to one category, returned and dispatched again to another was corrected twice, and the same
    text under both labels only confuses the model.
    """
    latest = (
        select(func.max(DispatchFeedback.id))
        .where(*LABELLED, DispatchFeedback.excluded_at.is_(None))
        .group_by(DispatchFeedback.appeal_id)
    )
    return DispatchFeedback.id.in_(latest)


def _feedback(session: Session) -> list[tuple[int, str, str]]:
    stmt = (
        select(DispatchFeedback.id, DispatchFeedback.text, DispatchFeedback.category)
        .where(usable_feedback())
        .order_by(DispatchFeedback.id)
    )
    return [(i, text, category) for i, text, category in session.execute(stmt) if text and category]


def feedback_rows(*, session: Session) -> list[tuple[str, str]]:
    """Labelled feedback (manual dispatches and the like, see `usable_feedback`) as (text, category) rows."""
    return [(text, category) for _, text, category in _feedback(session)]


# ---------------------------------------------------------------- versions


def _data_dir(data_dir: Path | None) -> Path:
    return Path(data_dir) if data_dir is not None else get_settings().data_dir


def _resolve(path: str, data_dir: Path | None) -> Path:
    """The model file of a version: stored paths are relative to the data directory when inside it."""
    p = Path(path)
    return p if p.is_absolute() else _data_dir(data_dir) / p


def _new_version() -> str:
    """A version string such as m20261121-2130-ab12 (local time of training + random)."""
    local = clock.local(clock.now())
    assert local is not None
    return f"m{local:%Y%m%d-%H%M}-{secrets.token_hex(2)}"


def _metric(metrics: dict[str, object], key: str) -> float | None:
    value = metrics.get(key)
    return float(value) if isinstance(value, int | float) else None


def _read(
    row: ModelVersion, data_dir: Path | None = None, current: ModelVersion | None = None
) -> ModelVersionRead:
    """A version as shown to admins; `current` (the active version) to say what this one does worse."""
    metrics = dict(row.metrics or {})
    n_train = metrics.get("n_train")
    n_feedback = metrics.get("n_feedback")
    return ModelVersionRead(
        id=row.id,
        version=row.version,
        path=row.path,
        threshold=row.threshold,
        note=row.note,
        active=row.active,
        created_by=row.created_by,
        created_at=row.created_at,
        activated_at=row.activated_at,
        file_present=_resolve(row.path, data_dir).is_file(),
        n_train=n_train if isinstance(n_train, int) else 0,
        n_feedback=n_feedback if isinstance(n_feedback, int) else 0,
        accuracy=_metric(metrics, "accuracy"),
        macro_f1=_metric(metrics, "macro_f1"),
        auto_rate=_metric(metrics, "auto_rate"),
        auto_precision=_metric(metrics, "auto_precision"),
        metrics=metrics,
        concerns=[] if row.active else _concerns(row, current),
    )


def _concerns(row: ModelVersion, current: ModelVersion | None) -> list[str]:
    """What `row` does worse than the active version `current` (nothing when it is the active one)."""
    if current is not None and current.id == row.id:
        return []
    return concerns(row.metrics or {}, current.metrics if current is not None else None)


@dataclass(frozen=True)
class TrainingSet:
    """What a new version learns: its own rows plus the usable feedback, read in one short transaction."""

    rows: list[tuple[str, str]]
    feedback: list[tuple[int, str, str]]  # (feedback id, text, category)
    note: str = ""
    # labelled corrections older than the newest learnt one that were left out (excluded, or superseded by a
    # later label of their appeal): restored or made current again later, they are still to be learnt
    passed_over: list[int] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        """The rows' texts, then the feedback's."""
        return [text for text, _ in self.rows] + [text for _, text, _ in self.feedback]

    @property
    def labels(self) -> list[str]:
        """The rows' categories, then the feedback's."""
        return [label for _, label in self.rows] + [category for _, _, category in self.feedback]


def training_set(
    *, session: Session, actor: Actor, rows: list[tuple[str, str]], note: str = ""
) -> TrainingSet:
    """`rows` plus the usable feedback (see `usable_feedback`), ready to `fit`."""
    authorize(actor, PERMISSION)
    feedback = _feedback(session)
    last = max((i for i, _, _ in feedback), default=0)
    learnt = {i for i, _, _ in feedback}
    labelled = session.scalars(select(DispatchFeedback.id).where(*LABELLED, DispatchFeedback.id <= last))
    passed_over = sorted(i for i in labelled if i not in learnt)
    training = TrainingSet(rows=list(rows), feedback=feedback, note=note, passed_over=passed_over)
    if not training.texts:
        raise Invalid("没有可用于训练的样本", english="no training rows")
    return training


def retraining_set(*, session: Session, actor: Actor, data_dir: Path, note: str = "") -> TrainingSet:
    """The active version's own rows plus the usable feedback, ready to `fit` (refused without them)."""
    authorize(actor, PERMISSION)
    current, rows_path = _retrain_base(session, data_dir)
    return training_set(
        session=session,
        actor=actor,
        rows=_load_rows(rows_path),
        note=note or f"在 {current.version} 的样本上加入纠错反馈重新训练",
    )


def fit(training: TrainingSet, progress: Progress | None = None) -> CategoryModel:
    """Train a model on a training set: CPU only, no database (about 25 s on 8,000 appeals)."""
    try:
        # figures on the version's own rows too: what a retrain must not do worse (see version_guard)
        model = CategoryModel().fit(
            training.texts, training.labels, progress=progress, report_first=len(training.rows)
        )
    except ValueError as exc:
        raise Invalid("训练数据不足：至少需要两个类别，且每个类别至少两条样本", english=str(exc)) from exc
    model.metrics["n_feedback"] = len(training.feedback)
    # corrections are only ever added: those after this id, and the usable ones among those passed over,
    # are what the version has not learnt
    model.metrics["feedback_last_id"] = max((i for i, _, _ in training.feedback), default=0)
    model.metrics["feedback_passed_over"] = training.passed_over
    model.metrics["n_rows"] = len(training.rows)
    model.metrics["rows_sha"] = _rows_digest(training.rows)
    return model


def save_version(
    *,
    session: Session,
    actor: Actor,
    training: TrainingSet,
    model: CategoryModel,
    data_dir: Path,
    activate: bool = True,
    progress: Progress | None = None,
) -> ModelVersionRead:
    """Save a fitted model as a new version (files and row), optionally activating it; audited."""
    authorize(actor, PERMISSION)
    say = progress or (lambda _msg: None)
    rows, note = training.rows, training.note
    feedback = training.feedback
    version = _new_version()
    while session.scalar(select(ModelVersion.id).where(ModelVersion.version == version)) is not None:
        version = _new_version()
    data_dir = Path(data_dir)
    target = data_dir / MODELS_DIR / version / MODEL_FILE
    say("saving")
    model.save(target)
    _save_rows(target.parent / ROWS_FILE, rows)
    row = ModelVersion(
        version=version,
        path=f"{MODELS_DIR}/{version}/{MODEL_FILE}",
        threshold=float(model.threshold),
        metrics=model.metrics,
        note=note[:200],
        active=False,
        created_by=actor.label[:64],
        created_at=clock.now(),
    )
    session.add(row)
    session.flush()
    record(
        session=session,
        actor=actor,
        action=ACTION_TRAIN,
        entity=ENTITY,
        entity_id=row.id,
        reason=note or None,
        detail={
            "version": version,
            "n_train": model.metrics.get("n_train"),
            "n_feedback": len(feedback),
            "macro_f1": model.metrics.get("macro_f1"),
        },
    )
    current = _current(session)
    # a version worse than the one dispatching now stays inactive: activating it needs a confirmation
    if activate and not _concerns(row, current):
        _activate(session=session, actor=actor, row=row, data_dir=data_dir, action=ACTION_ACTIVATE)
    session.flush()
    return _read(row, data_dir, current)


def train_version(
    *,
    session: Session,
    actor: Actor,
    rows: list[tuple[str, str]],
    data_dir: Path,
    note: str = "",
    activate: bool = True,
    progress: Progress | None = None,
) -> ModelVersionRead:
    """Train on `rows` plus the feedback and save a version, all in the caller's transaction.

    The transaction stays open while the model fits: on SQLite that holds the write lock, so a running
    server's intake would wait. The demo loader and tests use this; the CLI and background jobs use
    `train_in_steps`.
    """
    training = training_set(session=session, actor=actor, rows=rows, note=note)
    return _fit_and_save(session, actor, training, data_dir, activate, progress)


def _fit_and_save(
    session: Session,
    actor: Actor,
    training: TrainingSet,
    data_dir: Path,
    activate: bool,
    progress: Progress | None,
) -> ModelVersionRead:
    model = fit(training, progress)
    return save_version(
        session=session,
        actor=actor,
        training=training,
        model=model,
        data_dir=data_dir,
        activate=activate,
        progress=progress,
    )


def train_in_steps(
    factory: sessionmaker[Session],
    read: Callable[[Session], TrainingSet],
    save: Callable[[Session, TrainingSet, CategoryModel], ModelVersionRead],
    progress: Progress | None = None,
    isolated: bool = False,
) -> ModelVersionRead:
    """Read the training set, fit with no transaction open, then save: each database step commits alone.
    `isolated` fits in a process of its own (see `fit_apart`; progress is then not reported).

    On SQLite every transaction takes the one write lock; held through a fit on 8,000 appeals, it kept a
    citizen's submission to the running server waiting 44 s.
    """
    with unit_of_work(factory) as session:
        training = read(session)
    model = fit_apart(training) if isolated else fit(training, progress)
    with unit_of_work(factory) as session:
        return save(session, training, model)


def _end_with_parent() -> None:
    """In the fit process (Linux): be killed when the process that started it dies, so a worker killed
    mid-fit does not leave its fit running beside the attempt that resumes the run."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died while this process was starting
        os._exit(1)


# Retraining runs in a worker (or, on SQLite, in the web process) fit in a process of their own; tests turn
# this off to fit in the test process (one test fits apart)
FIT_IN_SUBPROCESS = True


def fit_apart(training: TrainingSet) -> CategoryModel:
    """`fit` in a fresh process: the process that asked goes on serving (in one process, routing stalled for
    up to 0.45 s while a fit on 8,000 appeals held the interpreter lock), and a fit that runs out of memory
    ends its own process, not a web server or a worker with other work in hand."""
    context = multiprocessing.get_context("spawn")  # a fork would copy this process's threads and locks
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_end_with_parent) as pool:
            return pool.submit(fit, training).result()
    except BrokenProcessPool as exc:
        raise Invalid(
            "训练进程意外终止（可能内存不足），请检查服务器内存后重新发起", english="the fit process died"
        ) from exc


_VERSION_FOLDER = re.compile(r"m\d{8}-\d{4}-[0-9a-f]{4}")  # see `_new_version`
UNSAVED_AFTER_SECONDS = 3600.0  # a run saving now (on another worker) writes its files seconds before its row


def prune_unsaved_versions(*, session: Session, data_dir: Path) -> list[str]:
    """Delete model folders that no version names: left by a run whose process died, or whose transaction
    failed, between writing its files and committing its row (about 22 MB each on real data). Only folders
    untouched for an hour, and only names a training run gives; returns the names deleted."""
    root = Path(data_dir) / MODELS_DIR
    if not root.is_dir():
        return []
    known: set[str] = set()
    for version, path in session.execute(select(ModelVersion.version, ModelVersion.path)):
        known.update((version, Path(path).parent.name))
    cutoff = time.time() - UNSAVED_AFTER_SECONDS
    removed = []
    for folder in sorted(root.iterdir()):
        if (
            folder.is_dir()
            and _VERSION_FOLDER.fullmatch(folder.name)
            and folder.name not in known
            and folder.stat().st_mtime < cutoff
        ):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    if removed:
        log.warning("deleted model folders no version names (an interrupted run's): %s", ", ".join(removed))
    return removed


def _rows_digest(rows: list[tuple[str, str]]) -> str:
    """A fingerprint of a version's own rows: versions with the same one can be compared on those rows."""
    digest = hashlib.sha256()
    for text, label in rows:
        digest.update(f"{text}\x1f{label}\x1e".encode())
    return digest.hexdigest()[:16]


def _save_rows(path: Path, rows: list[tuple[str, str]]) -> None:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def _load_rows(path: Path) -> list[tuple[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        return [(r["text"], r["label"]) for r in csv.DictReader(f)]


def feedback_not_in_active(*, session: Session, actor: Actor) -> int:
    """Usable corrections the active version was not trained on (all of them when none is active)."""
    authorize(actor, PERMISSION)
    current = _current(session)
    metrics = (current.metrics or {}) if current is not None else {}
    count = select(func.count()).select_from(DispatchFeedback).where(usable_feedback())
    last = metrics.get("feedback_last_id")
    if isinstance(last, int):
        passed_over = [i for i in metrics.get("feedback_passed_over") or [] if isinstance(i, int)]
        newer = DispatchFeedback.id > last
        unlearnt = or_(newer, DispatchFeedback.id.in_(passed_over)) if passed_over else newer
        return session.scalar(count.where(unlearnt)) or 0
    # versions trained before the id was kept: the newest corrections are the ones not yet seen
    used = metrics.get("n_feedback", 0)
    return max((session.scalar(count) or 0) - (used if isinstance(used, int) else 0), 0)


def _retrain_base(session: Session, data_dir: Path) -> tuple[ModelVersion, Path]:
    """The active version and its saved rows, or a clear refusal."""
    current = _current(session)
    if current is None:
        raise Conflict(
            "当前没有启用的模型，请先用 xihu dispatch train 训练", english="no active model to retrain from"
        )
    rows_path = _resolve(current.path, data_dir).parent / ROWS_FILE
    if not rows_path.is_file():
        raise Conflict(
            f"版本 {current.version} 没有保存训练样本，无法在其上重新训练；"
            "请用 xihu dispatch train --input 训练",
            english=f"version {current.version} has no saved training rows",
        )
    return current, rows_path


def retrain(
    *, session: Session, actor: Actor, data_dir: Path, note: str = "", progress: Progress | None = None
) -> ModelVersionRead:
    """A new, inactive version on the active version's rows plus all usable feedback, in one transaction."""
    training = retraining_set(session=session, actor=actor, data_dir=data_dir, note=note)
    return _fit_and_save(session, actor, training, data_dir, False, progress)


def retrain_in_steps(
    factory: sessionmaker[Session],
    *,
    actor: Actor,
    data_dir: Path,
    note: str = "",
    progress: Progress | None = None,
    isolated: bool = False,
) -> ModelVersionRead:
    """`retrain` with the fit outside any transaction (see `train_in_steps`)."""
    return train_in_steps(
        factory,
        lambda session: retraining_set(session=session, actor=actor, data_dir=data_dir, note=note),
        lambda session, training, model: save_version(
            session=session,
            actor=actor,
            training=training,
            model=model,
            data_dir=data_dir,
            activate=False,
            progress=progress,
        ),
        progress,
        isolated,
    )


# ---------------------------------------------------------------- retraining in the background

JOB_STATUS_LABELS = {"queued": "排队中", "running": "训练中", "finished": "已完成", "failed": "未成功"}
JOB_MAX_ATTEMPTS = 2  # a run that kills its process twice (out of memory, say) would do so again


def _job_read(job: TrainingJob) -> TrainingJobRead:
    hint = {
        "lost": "训练进程中断（服务重启或进程退出），后台进程将重新开始训练",
        "unclaimed": "仍在排队：请确认后台进程（xihu worker）在运行",
    }.get(waiting_hint(job.status, job.created_at, job.heartbeat_at) or "", "")
    return TrainingJobRead(
        id=job.id,
        status=job.status,
        status_label=JOB_STATUS_LABELS[job.status],
        note=job.note,
        created_by=job.created_by,
        created_at=job.created_at,
        finished_at=job.finished_at,
        version=job.version,
        error=job.error or hint,
    )


def start_retrain(*, session: Session, actor: Actor, data_dir: Path, note: str = "") -> TrainingJobRead:
    """Queue a retraining run (see `retrain`); refused at once if it cannot succeed or one is under way."""
    authorize(actor, PERMISSION)
    # the versions' rows are locked as for an activation, so two admins clicking at once start one run
    _current(session, lock=True)
    _retrain_base(session, data_dir)
    # a job whose process died is still under way: a worker resumes it (see core.longjobs)
    if session.scalar(select(TrainingJob.id).where(TrainingJob.status.in_(("queued", "running"))).limit(1)):
        raise Conflict("已有训练任务在进行，请等它完成", english="a training run is already under way")
    job = TrainingJob(
        status="queued",
        note=note[:200],
        created_by_id=actor.user_id,
        created_by=actor.label[:64],
        created_at=clock.now(),
        error="",
    )
    session.add(job)
    session.flush()
    notify_workers(session)
    return _job_read(job)


def run_training_job(factory: sessionmaker[Session], job_id: int, data_dir: Path) -> None:
    """Run a retraining job a worker has claimed (see `dispatch.jobs`) to its end, recording the version it
    trained or why it failed. A job another attempt has already ended is left alone."""
    with factory() as session:
        job = session.get(TrainingJob, job_id)
        if job is None or job.status != "running":
            return
        user = session.get(User, job.created_by_id) if job.created_by_id is not None else None
        actor = user.to_actor() if user is not None else Actor.system(job.created_by or "系统")
        note = job.note
        prune_unsaved_versions(session=session, data_dir=data_dir)  # what an earlier, killed run left
    try:
        version = retrain_in_steps(
            factory, actor=actor, data_dir=data_dir, note=note, isolated=FIT_IN_SUBPROCESS
        )
        outcome: dict[str, object] = {"status": "finished", "version": version.version}
    except DomainError as exc:
        outcome = {"status": "failed", "error": exc.message[:300]}
    except Exception as exc:  # noqa: BLE001 - the admin must learn that it failed, not see it run forever
        log.exception("training job %s failed", job_id)
        outcome = {"status": "failed", "error": f"训练出错：{str(exc)[:200]}"}
    with factory() as session:
        session.execute(
            update(TrainingJob).where(TrainingJob.id == job_id).values(finished_at=clock.now(), **outcome)
        )
        session.commit()


def give_up_training_job(session: Session, job: TrainingJob) -> None:
    """Mark a job failed whose runs ended with their process every time (see `JOB_MAX_ATTEMPTS`)."""
    job.status = "failed"
    job.finished_at = clock.now()
    job.error = f"训练进程 {job.attempts} 次中断（服务重启或内存不足），已停止重试；请检查后重新发起"


def training_job(*, session: Session, actor: Actor, job_id: int) -> TrainingJobRead:
    """One retraining job's state."""
    authorize(actor, PERMISSION)
    job = session.get(TrainingJob, job_id)
    if job is None:
        raise NotFound("训练任务不存在", english=f"training job {job_id} not found")
    return _job_read(job)


def latest_training_job(*, session: Session, actor: Actor) -> TrainingJobRead | None:
    """The newest retraining job, for the models page."""
    authorize(actor, PERMISSION)
    job = session.scalar(select(TrainingJob).order_by(TrainingJob.id.desc()).limit(1))
    return _job_read(job) if job is not None else None


def ensure_demo_model(*, session: Session, data_dir: Path) -> ModelVersionRead | None:
    """Train and activate a model from the illustrative examples when no version exists yet."""
    if session.scalar(select(func.count(ModelVersion.id))):
        return None
    return train_version(
        session=session,
        actor=Actor.system(),
        rows=demo_rows(),
        data_dir=data_dir,
        note="演示模型：项目自编示例诉求 (illustrative examples)",
        activate=True,
    )


def list_versions(*, session: Session, actor: Actor, data_dir: Path | None = None) -> list[ModelVersionRead]:
    """Every model version, newest first."""
    authorize(actor, PERMISSION)
    rows = session.scalars(
        select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
    )
    current = _current(session)
    return [_read(row, data_dir, current) for row in rows]


def get_version(
    *, session: Session, actor: Actor, version_id: int, data_dir: Path | None = None
) -> ModelVersionRead:
    """One model version."""
    authorize(actor, PERMISSION)
    return _read(_row(session, version_id), data_dir, _current(session))


def _row(session: Session, version_id: int) -> ModelVersion:
    row = session.get(ModelVersion, version_id)
    if row is None:
        raise NotFound("模型版本不存在", english=f"model version {version_id} not found")
    return row


def _current(session: Session, *, lock: bool = False) -> ModelVersion | None:
    stmt = select(ModelVersion).order_by(ModelVersion.id)
    if lock:  # serialize activations on PostgreSQL (SQLite's BEGIN IMMEDIATE already does)
        session.execute(stmt.with_for_update()).all()
    return session.scalar(
        select(ModelVersion)
        .where(ModelVersion.active.is_(True))
        .order_by(ModelVersion.activated_at.desc(), ModelVersion.id.desc())
        .limit(1)
    )


def _activate(
    *,
    session: Session,
    actor: Actor,
    row: ModelVersion,
    data_dir: Path | None,
    action: str,
    overridden: list[str] | None = None,
) -> None:
    """Make `row` the only active version and audit the change (and the concerns the admin overrode)."""
    if not _resolve(row.path, data_dir).is_file():
        raise Invalid(
            f"模型文件缺失，无法启用版本 {row.version}", english=f"model file of {row.version} is missing"
        )
    current = _current(session, lock=True)
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.active.is_(True), ModelVersion.id != row.id)
        .values(active=False)
        .execution_options(synchronize_session="fetch")
    )
    row.active = True
    row.activated_at = clock.now()
    session.flush()
    record(
        session=session,
        actor=actor,
        action=action,
        entity=ENTITY,
        entity_id=row.id,
        from_state=current.version[:24] if current is not None else None,
        to_state=row.version[:24],
        detail={
            "version": row.version,
            "previous": current.version if current is not None else None,
            **({"overridden_concerns": overridden} if overridden else {}),
        },
    )
    session.flush()


def activate(
    *,
    session: Session,
    actor: Actor,
    version_id: int,
    data_dir: Path | None = None,
    confirm: bool = False,
) -> ModelVersionRead:
    """Make a version the active model (its file must exist).

    A version whose figures are worse than the active one's (see `version_guard`) is refused unless `confirm`
    is given; the overridden concerns are then audited with the activation.
    """
    authorize(actor, PERMISSION)
    row = _row(session, version_id)
    found = _concerns(row, _current(session, lock=True)) if not row.active else []
    if found and not confirm:
        raise Conflict(
            f"版本 {row.version} 的指标不如当前版本：{'；'.join(found)}。核对后如仍要启用，请确认后再启用",
            english=f"version {row.version} is worse than the active one: confirm to activate it anyway",
        )
    _activate(
        session=session, actor=actor, row=row, data_dir=data_dir, action=ACTION_ACTIVATE, overridden=found
    )
    return _read(row, data_dir)


def _history(session: Session) -> list[int]:
    """The activation stack replayed from the audit log: activate pushes, rollback pops back to its target."""
    stmt = (
        select(AuditEntry.action, AuditEntry.entity_id)
        .where(AuditEntry.entity == ENTITY, AuditEntry.action.in_((ACTION_ACTIVATE, ACTION_ROLLBACK)))
        .order_by(AuditEntry.id)
    )
    stack: list[int] = []
    for action, entity_id in session.execute(stmt):
        version_id = int(entity_id)
        if action == ACTION_ACTIVATE:
            if not stack or stack[-1] != version_id:
                stack.append(version_id)
        else:
            while stack and stack[-1] != version_id:
                stack.pop()
            if not stack:
                stack.append(version_id)
    return stack


def rollback(*, session: Session, actor: Actor, data_dir: Path | None = None) -> ModelVersionRead:
    """Re-activate the version that was active before the current one."""
    authorize(actor, PERMISSION)
    current = _current(session, lock=True)
    if current is None:
        raise Conflict("当前没有启用的模型，无法回滚", english="no active model to roll back from")
    target_id = _rollback_target(session, current.id)
    if target_id is None:
        raise Conflict("没有可回滚的上一个模型版本", english="no earlier active version to roll back to")
    target = _row(session, target_id)
    _activate(session=session, actor=actor, row=target, data_dir=data_dir, action=ACTION_ROLLBACK)
    return _read(target, data_dir)


def rollback_target(*, session: Session, actor: Actor) -> str | None:
    """The version a rollback would re-activate now, or None when there is none to go back to."""
    authorize(actor, PERMISSION)
    current = _current(session)
    target_id = _rollback_target(session, current.id) if current is not None else None
    return _row(session, target_id).version if target_id is not None else None


def _rollback_target(session: Session, current_id: int) -> int | None:
    stack = _history(session)
    while stack and stack[-1] != current_id:
        stack.pop()
    if stack:
        stack.pop()
    while stack and stack[-1] == current_id:
        stack.pop()
    return stack[-1] if stack else None


# ---------------------------------------------------------------- the active model, cached per process


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
    return url, str(_data_dir(data_dir).resolve())


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
        _load_in_background(key, found.id, found.version, _resolve(found.path, data_dir))
        entry = _Cached(now, cached.version_id, cached.version, cached.model)  # until the new one is loaded
    else:
        entry = _Cached(now, found.id, found.version, _load(found.version, _resolve(found.path, data_dir)))
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
