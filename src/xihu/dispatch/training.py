"""Training of dispatch models: the rows and corrections a version learns, fitting, saving the version.

A version keeps its own training rows next to its model file, so it can be retrained on them plus the
corrections staff made since (`retrain`). Fitting takes seconds to minutes: `train_in_steps` holds no
transaction open while it runs, and `fit_apart` runs it in a process of its own.
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
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from xihu.core import clock
from xihu.core.audit import record
from xihu.core.db import unit_of_work
from xihu.core.errors import Conflict, Invalid
from xihu.core.security import Actor, authorize
from xihu.dispatch import registry
from xihu.dispatch.classifier import CategoryModel, dedupe_rows, labelled_rows, row_text
from xihu.dispatch.demo_examples import DEMO_EXAMPLES
from xihu.dispatch.models import DispatchFeedback, ModelVersion
from xihu.dispatch.schemas import ModelVersionRead

__all__ = [
    "LABELLED",
    "UNSAVED_AFTER_SECONDS",
    "TrainingSet",
    "demo_rows",
    "ensure_demo_model",
    "feedback_not_in_active",
    "feedback_rows",
    "fit",
    "fit_apart",
    "prune_unsaved_versions",
    "retrain",
    "retrain_base",
    "retrain_in_steps",
    "retraining_set",
    "rows_from_csv",
    "save_version",
    "train_in_steps",
    "train_version",
    "training_set",
    "usable_feedback",
]

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def rows_from_csv(path: str | Path) -> list[tuple[str, str]]:
    """(text, label) rows of a CSV with columns title,text,label, or the shared file's columns.

    The shared file's segmented `text` is replaced by `text_raw` when present, duplicates of a `dup_group`
    are dropped, and rows without a label are skipped.
    """
    rows = dedupe_rows(labelled_rows(path))
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
    authorize(actor, registry.PERMISSION)
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
    authorize(actor, registry.PERMISSION)
    current, rows_path = retrain_base(session, data_dir)
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


def _new_version() -> str:
    """A version string such as m20261121-2130-ab12 (local time of training + random)."""
    local = clock.local(clock.now())
    assert local is not None
    return f"m{local:%Y%m%d-%H%M}-{secrets.token_hex(2)}"


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
    authorize(actor, registry.PERMISSION)
    say = progress or (lambda _msg: None)
    rows, note = training.rows, training.note
    feedback = training.feedback
    version = _new_version()
    while session.scalar(select(ModelVersion.id).where(ModelVersion.version == version)) is not None:
        version = _new_version()
    data_dir = Path(data_dir)
    target = data_dir / registry.MODELS_DIR / version / registry.MODEL_FILE
    say("saving")
    model.save(target)
    _save_rows(target.parent / registry.ROWS_FILE, rows)
    row = ModelVersion(
        version=version,
        path=f"{registry.MODELS_DIR}/{version}/{registry.MODEL_FILE}",
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
        action=registry.ACTION_TRAIN,
        entity=registry.ENTITY,
        entity_id=row.id,
        reason=note or None,
        detail={
            "version": version,
            "n_train": model.metrics.get("n_train"),
            "n_feedback": len(feedback),
            "macro_f1": model.metrics.get("macro_f1"),
        },
    )
    current = registry.active_version(session)
    # a version worse than the one dispatching now stays inactive: activating it needs a confirmation
    if activate and not registry.worse_than_active(row, current):
        registry.make_active(
            session=session, actor=actor, row=row, data_dir=data_dir, action=registry.ACTION_ACTIVATE
        )
    session.flush()
    return registry.version_read(row, data_dir, current)


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
    root = Path(data_dir) / registry.MODELS_DIR
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
    authorize(actor, registry.PERMISSION)
    current = registry.active_version(session)
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


def retrain_base(session: Session, data_dir: Path) -> tuple[ModelVersion, Path]:
    """The active version and its saved rows, or a clear refusal."""
    current = registry.active_version(session)
    if current is None:
        raise Conflict(
            "当前没有启用的模型，请先用 xihu dispatch train 训练", english="no active model to retrain from"
        )
    rows_path = registry.model_path(current.path, data_dir).parent / registry.ROWS_FILE
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
