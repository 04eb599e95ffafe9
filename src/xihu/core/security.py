"""Staff accounts, server-side sessions, password hashing, roles and permission checks."""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Boolean, ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from xihu.core import clock
from xihu.core.db import Base, UTCDateTime, memo
from xihu.core.errors import Forbidden, Invalid, Unauthenticated


class Role(enum.StrEnum):
    """Staff roles, each scoped to its unit."""

    intake = "intake"
    dispatcher = "dispatcher"
    handler = "handler"
    grid = "grid"
    supervisor = "supervisor"
    admin = "admin"
    leader = "leader"

    @property
    def label(self) -> str:
        """Chinese name of the role."""
        return ROLE_LABELS[self]


ROLE_LABELS = {
    Role.intake: "受理员",
    Role.dispatcher: "派单员",
    Role.handler: "承办单位处置人员",
    Role.grid: "镇街/村社网格员",
    Role.supervisor: "督办员",
    Role.admin: "系统管理员",
    Role.leader: "区/街道领导",
}

# What a unit's own staff do with the appeals of their unit, whether a department or a street/community grid.
UNIT_WORK = frozenset(
    {
        "appeal.read",
        "appeal.read_personal",
        "appeal.sign",
        "appeal.start",
        "appeal.return",
        "appeal.transfer",
        "appeal.complete",
        "appeal.assist",
        "appeal.request_extension",
    }
)

# Which actions each role may attempt; scoping to a unit is checked by the owning domain.
PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.intake: frozenset({"appeal.create", "appeal.read", "appeal.read_personal", "appeal.import"}),
    Role.dispatcher: frozenset(
        {
            "appeal.read",
            "appeal.read_personal",
            "appeal.dispatch",
            "appeal.merge",
            "appeal.transfer",
            "appeal.close",
            "appeal.create",
            "appeal.import",
            "dispatch.report",
        }
    ),
    Role.handler: UNIT_WORK,
    Role.grid: UNIT_WORK,
    Role.supervisor: frozenset(
        {
            "appeal.read",
            "appeal.supervise",
            "appeal.decide_extension",
            "appeal.close",
            "audit.read",
            "dispatch.report",
        }
    ),
    Role.admin: frozenset(
        {
            "appeal.read",
            "appeal.read_personal",
            "appeal.dispatch",
            "appeal.merge",
            "appeal.close",
            "appeal.create",
            "appeal.import",
            "appeal.supervise",
            "appeal.decide_extension",
            "appeal.transfer",
            "audit.read",
            "places.manage",
            "users.manage",
            "sla.manage",
            "dispatch.manage",
            "dispatch.report",
        }
    ),
}

# 共富指标 and the 驾驶舱 (indicators domain): a unit's staff report its own figures (填报), supervisors and
# admins approve them (审核), admins set the 考核 weights; the cockpit is scoped to the viewer's unit.
# Leaders also read appeals (masked: no personal data) to follow up what the cockpit shows.
PERMISSIONS[Role.leader] = frozenset(
    {"cockpit.view", "assessment.view", "indicator.view", "analysis.view", "appeal.read"}
)
_INDICATOR_GRANTS: dict[Role, frozenset[str]] = {
    Role.handler: frozenset({"indicator.view", "indicator.report", "cockpit.view"}),
    Role.grid: frozenset({"indicator.view", "indicator.report", "cockpit.view"}),
    Role.dispatcher: frozenset({"indicator.view", "cockpit.view"}),
    Role.supervisor: frozenset({"indicator.view", "indicator.approve", "assessment.view", "cockpit.view"}),
    Role.admin: frozenset(
        {"indicator.view", "indicator.report", "indicator.report_any", "indicator.approve", "cockpit.view"}
        | {"assessment.view", "assessment.manage"}
    ),
}
for _role, _granted in _INDICATOR_GRANTS.items():
    PERMISSIONS[_role] = PERMISSIONS[_role] | _granted

# 预警和研判 (analysis domain): supervisors and leaders read the analysis; supervisors and admins acknowledge
# and close warnings; admins rebuild the rollups and run the detectors by hand.
_ANALYSIS_GRANTS: dict[Role, frozenset[str]] = {
    Role.supervisor: frozenset({"analysis.view", "warning.handle"}),
    Role.admin: frozenset({"analysis.view", "warning.handle", "analysis.manage"}),
    Role.leader: frozenset({"analysis.view"}),
}
for _role, _granted in _ANALYSIS_GRANTS.items():
    PERMISSIONS[_role] = PERMISSIONS[_role] | _granted

# Roles whose visibility is limited to appeals of their own unit.
UNIT_SCOPED = frozenset({Role.handler, Role.grid})


@dataclass(frozen=True)
class Actor:
    """Who is acting: a staff member, a citizen (anonymous) or the system itself."""

    kind: str  # "staff" | "citizen" | "system"
    user_id: int | None = None
    username: str = ""
    display_name: str = ""
    role: Role | None = None
    unit_id: int | None = None
    permissions: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def citizen(cls) -> Actor:
        """An anonymous member of the public."""
        return cls(kind="citizen", display_name="群众")

    @classmethod
    def system(cls, name: str = "系统") -> Actor:
        """The platform itself (sweeper, auto-sign, importer)."""
        return cls(kind="system", display_name=name)

    @property
    def is_staff(self) -> bool:
        """True for a logged-in staff member."""
        return self.kind == "staff"

    @property
    def unit_scoped(self) -> bool:
        """True when this actor sees only its unit's appeals."""
        return self.role in UNIT_SCOPED

    @property
    def label(self) -> str:
        """Name shown in timelines and audit rows."""
        return self.display_name or self.username or self.kind


def authorize(actor: Actor, permission: str) -> None:
    """Raise unless the actor holds the permission (system always may)."""
    if actor.kind == "system":
        return
    if not actor.is_staff:
        raise Unauthenticated("请先登录", english="login required")
    if permission not in actor.permissions:
        raise Forbidden("您的角色无权执行此操作", english=f"role may not {permission}")


def can(actor: Actor, permission: str) -> bool:
    """True when authorize() would pass."""
    return actor.kind == "system" or (actor.is_staff and permission in actor.permissions)


class User(Base):
    """A staff account."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True, index=True)
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    def to_actor(self) -> Actor:
        """The Actor this account acts as."""
        role = Role(self.role)
        return Actor(
            kind="staff",
            user_id=self.id,
            username=self.username,
            display_name=self.display_name,
            role=role,
            unit_id=self.unit_id,
            permissions=PERMISSIONS[role],
        )


class UserSession(Base):
    """A server-side login session; the cookie holds only a random token."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


_hasher = PasswordHasher()
LOCK_AFTER_FAILURES = 5
LOCK_MINUTES = 15


def hash_password(password: str) -> str:
    """Argon2id hash of a password."""
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    """Check a password against its argon2 hash."""
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(
    *, session: Session, username: str, password: str, display_name: str, role: Role, unit_id: int | None
) -> User:
    """Create a staff account (the caller authorizes)."""
    if len(password) < 8:
        raise Invalid("密码至少 8 位", english="password must have at least 8 characters")
    user = User(
        username=username,
        display_name=display_name,
        password_hash=hash_password(password),
        role=role.value,
        unit_id=unit_id,
    )
    session.add(user)
    session.flush()
    return user


def login(*, session: Session, username: str, password: str, hours: int) -> tuple[str, User]:
    """Check credentials and open a session; returns the cookie token and the user."""
    user = session.scalar(select(User).where(User.username == username))
    now = clock.now()
    if user is None or not user.active:
        verify_password(_DUMMY_HASH, password)  # same cost whether or not the user exists
        raise Unauthenticated("用户名或密码错误", english="wrong username or password")
    if user.locked_until is not None and user.locked_until > now:
        raise Forbidden("登录失败次数过多，请 15 分钟后再试", english="too many failed logins; try later")
    if not verify_password(user.password_hash, password):
        user.failed_logins += 1
        if user.failed_logins >= LOCK_AFTER_FAILURES:
            user.locked_until = now + timedelta(minutes=LOCK_MINUTES)
            user.failed_logins = 0
        session.flush()  # the caller commits this failure although login raises (web.api.start_session)
        raise Unauthenticated("用户名或密码错误", english="wrong username or password")
    user.failed_logins = 0
    user.locked_until = None
    token = secrets.token_urlsafe(32)
    session.add(
        UserSession(token_hash=_token_hash(token), user_id=user.id, expires_at=now + timedelta(hours=hours))
    )
    session.flush()
    return token, user


_DUMMY_HASH = _hasher.hash("not-a-real-password")


def actor_for_token(*, session: Session, token: str | None) -> Actor:
    """The actor a session cookie stands for, or an anonymous citizen."""
    if not token:
        return Actor.citizen()
    row = session.scalar(select(UserSession).where(UserSession.token_hash == _token_hash(token)))
    if row is None or row.expires_at <= clock.now():
        return Actor.citizen()
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        return Actor.citizen()
    return user.to_actor()


def logout(*, session: Session, token: str | None) -> None:
    """End a server-side session."""
    if not token:
        return
    row = session.scalar(select(UserSession).where(UserSession.token_hash == _token_hash(token)))
    if row is not None:
        session.delete(row)
        session.flush()


def list_users_with_role(
    *, session: Session, role: Role | tuple[Role, ...], unit_id: int | None = None
) -> tuple[User, ...]:
    """Active accounts of a role (or of any of several), optionally in one unit (for notifications)."""
    roles = tuple(r.value for r in (role if isinstance(role, tuple) else (role,)))

    # a tuple: within a `batch_memo` every caller gets the same answer, which must not be added to in place
    def ask() -> tuple[User, ...]:
        stmt = select(User).where(User.role.in_(roles), User.active.is_(True))
        if unit_id is not None:
            stmt = stmt.where(User.unit_id == unit_id)
        return tuple(session.scalars(stmt.order_by(User.id)))

    return memo(session, ("users_with_role", roles, unit_id), ask)
