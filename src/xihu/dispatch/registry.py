"""Model versions of intelligent dispatch (智能派单): list them, activate one, roll back.

Model files live under the data directory (`XIHU_DATA_DIR`, default var/; never in git) as
`models/<version>/model.joblib` with the metrics next to them (`model.json`); the table
`dispatch_model_versions` lists them and marks the active one. Every activation and rollback is audited,
and rollback follows the activation history kept in the append-only audit log (activate pushes, rollback
pops), so rolling back twice goes back two versions rather than toggling between the last two.
Versions are trained in `dispatch.training`; the running process loads the active one through
`dispatch.model_cache`.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from xihu.core import clock
from xihu.core.audit import AuditEntry, record
from xihu.core.config import get_settings
from xihu.core.errors import Conflict, Invalid, NotFound
from xihu.core.security import Actor, authorize
from xihu.dispatch.models import ModelVersion
from xihu.dispatch.schemas import ModelVersionRead
from xihu.dispatch.version_guard import concerns

__all__ = [
    "MODEL_FILE",
    "MODELS_DIR",
    "ROWS_FILE",
    "activate",
    "active_version",
    "data_dir_or_default",
    "get_version",
    "list_versions",
    "make_active",
    "model_path",
    "rollback",
    "rollback_target",
    "version_read",
    "worse_than_active",
]

MODEL_FILE = "model.joblib"
# the version's own training rows (not the feedback, read afresh at each training), so it can be retrained
ROWS_FILE = "rows.csv.gz"
MODELS_DIR = "models"
PERMISSION = "dispatch.manage"
ENTITY = "dispatch_model"
ACTION_TRAIN = "dispatch.model.train"
ACTION_ACTIVATE = "dispatch.model.activate"
ACTION_ROLLBACK = "dispatch.model.rollback"


def data_dir_or_default(data_dir: Path | None) -> Path:
    """`data_dir`, or the configured data directory when None."""
    return Path(data_dir) if data_dir is not None else get_settings().data_dir


def model_path(path: str, data_dir: Path | None) -> Path:
    """The model file of a version: stored paths are relative to the data directory when inside it."""
    p = Path(path)
    return p if p.is_absolute() else data_dir_or_default(data_dir) / p


def _metric(metrics: dict[str, object], key: str) -> float | None:
    value = metrics.get(key)
    return float(value) if isinstance(value, int | float) else None


def version_read(
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
        file_present=model_path(row.path, data_dir).is_file(),
        n_train=n_train if isinstance(n_train, int) else 0,
        n_feedback=n_feedback if isinstance(n_feedback, int) else 0,
        accuracy=_metric(metrics, "accuracy"),
        macro_f1=_metric(metrics, "macro_f1"),
        auto_rate=_metric(metrics, "auto_rate"),
        auto_precision=_metric(metrics, "auto_precision"),
        metrics=metrics,
        concerns=[] if row.active else worse_than_active(row, current),
    )


def worse_than_active(row: ModelVersion, current: ModelVersion | None) -> list[str]:
    """What `row` does worse than the active version `current` (nothing when it is the active one)."""
    if current is not None and current.id == row.id:
        return []
    return concerns(row.metrics or {}, current.metrics if current is not None else None)


def list_versions(*, session: Session, actor: Actor, data_dir: Path | None = None) -> list[ModelVersionRead]:
    """Every model version, newest first."""
    authorize(actor, PERMISSION)
    rows = session.scalars(
        select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
    )
    current = active_version(session)
    return [version_read(row, data_dir, current) for row in rows]


def get_version(
    *, session: Session, actor: Actor, version_id: int, data_dir: Path | None = None
) -> ModelVersionRead:
    """One model version."""
    authorize(actor, PERMISSION)
    return version_read(_row(session, version_id), data_dir, active_version(session))


def _row(session: Session, version_id: int) -> ModelVersion:
    row = session.get(ModelVersion, version_id)
    if row is None:
        raise NotFound("模型版本不存在", english=f"model version {version_id} not found")
    return row


def active_version(session: Session, *, lock: bool = False) -> ModelVersion | None:
    """The active version's row, or None; `lock` locks every version row first, as an activation must."""
    stmt = select(ModelVersion).order_by(ModelVersion.id)
    if lock:  # serialize activations on PostgreSQL (SQLite's BEGIN IMMEDIATE already does)
        session.execute(stmt.with_for_update()).all()
    return session.scalar(
        select(ModelVersion)
        .where(ModelVersion.active.is_(True))
        .order_by(ModelVersion.activated_at.desc(), ModelVersion.id.desc())
        .limit(1)
    )


def make_active(
    *,
    session: Session,
    actor: Actor,
    row: ModelVersion,
    data_dir: Path | None,
    action: str,
    overridden: list[str] | None = None,
) -> None:
    """Make `row` the only active version and audit the change (and the concerns the admin overrode)."""
    if not model_path(row.path, data_dir).is_file():
        raise Invalid(
            f"模型文件缺失，无法启用版本 {row.version}", english=f"model file of {row.version} is missing"
        )
    current = active_version(session, lock=True)
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
    found = worse_than_active(row, active_version(session, lock=True)) if not row.active else []
    if found and not confirm:
        raise Conflict(
            f"版本 {row.version} 的指标不如当前版本：{'；'.join(found)}。核对后如仍要启用，请确认后再启用",
            english=f"version {row.version} is worse than the active one: confirm to activate it anyway",
        )
    make_active(
        session=session, actor=actor, row=row, data_dir=data_dir, action=ACTION_ACTIVATE, overridden=found
    )
    return version_read(row, data_dir)


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
    current = active_version(session, lock=True)
    if current is None:
        raise Conflict("当前没有启用的模型，无法回滚", english="no active model to roll back from")
    target_id = _rollback_target(session, current.id)
    if target_id is None:
        raise Conflict("没有可回滚的上一个模型版本", english="no earlier active version to roll back to")
    target = _row(session, target_id)
    make_active(session=session, actor=actor, row=target, data_dir=data_dir, action=ACTION_ROLLBACK)
    return version_read(target, data_dir)


def rollback_target(*, session: Session, actor: Actor) -> str | None:
    """The version a rollback would re-activate now, or None when there is none to go back to."""
    authorize(actor, PERMISSION)
    current = active_version(session)
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
