"""Pydantic schemas of the appeals domain."""

from __future__ import annotations

import re
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from xihu.appeals.enums import Priority, Rating

DB_INT_MAX = 2_147_483_647  # ids are 32-bit integers in the database
PHONE_RE = re.compile(r"^(?:\+?86)?(?:1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$")


def _no_nul(value: object) -> object:
    """PostgreSQL cannot store NUL characters in text: refuse them as bad input, not a server error."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("不能包含空字符 (NUL)")
    return value


def _blank_to_none(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        return None
    return value.strip() if isinstance(value, str) else value


class AppealCreate(BaseModel):
    """A new appeal as a citizen, operator or client application submits it."""

    model_config = ConfigDict(
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "description": "文三路与学院路口的路灯连续三晚不亮，晚上行人很多，存在安全隐患。",
                    "place_code": "XHDEMO01",
                    "citizen_name": "王女士",
                    "citizen_phone": "13800000000",
                },
                {
                    "description": "小区门口垃圾桶两天没人清运，气味很大。",
                    "street_id": 3,
                    "lat": 30.28,
                    "lon": 120.13,
                },
            ]
        },
    )

    description: str = Field(min_length=5, max_length=2000, description="诉求内容（至少 5 个字）")
    title: str | None = Field(default=None, max_length=120)
    category_hint: str | None = Field(default=None, max_length=32)
    place_code: str | None = Field(default=None, max_length=16, description="西湖码地点编号")
    street_id: int | None = Field(default=None, ge=1, le=DB_INT_MAX)
    community_id: int | None = Field(default=None, ge=1, le=DB_INT_MAX)
    address: str = Field(default="", max_length=200)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    citizen_name: str | None = Field(default=None, max_length=32)
    citizen_phone: str | None = Field(default=None, max_length=20)
    priority: Priority = Priority.normal
    external_id: str | None = Field(default=None, max_length=64)

    _blank = field_validator(
        "title", "category_hint", "place_code", "citizen_name", "citizen_phone", "external_id", mode="before"
    )(_blank_to_none)
    _nul = field_validator("*", mode="before")(_no_nul)

    @field_validator("citizen_phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        compact = value.replace(" ", "")
        if not PHONE_RE.match(compact):
            raise ValueError("电话号码格式不正确（手机号 11 位，或带区号的座机）")
        return compact


class SubmitResult(BaseModel):
    """What the submitter gets back."""

    id: int
    tracking_code: str
    state: str
    state_label: str
    created: bool
    tracking_url: str


class _Action(BaseModel):
    """Action payloads: surrounding whitespace never counts as content; NUL characters are refused."""

    model_config = ConfigDict(str_strip_whitespace=True)

    _nul = field_validator("*", mode="before")(_no_nul)


class DispatchIn(_Action):
    """派单: the lead unit, optional co-handling units, the category."""

    unit_id: int
    co_unit_ids: list[int] = Field(default_factory=list, max_length=5)
    category: str | None = Field(default=None, max_length=32)
    message: str = Field(default="", max_length=500)


class ReasonIn(_Action):
    """An action that needs a reason (退回, 督办, 重办)."""

    reason: str = Field(min_length=2, max_length=500)


class MessageIn(_Action):
    """An action with an optional message (签收, 开始处置, 协办意见)."""

    message: str = Field(default="", max_length=500)


class TransferIn(_Action):
    """转办 to another unit."""

    unit_id: int
    reason: str = Field(min_length=2, max_length=500)


class CompleteIn(_Action):
    """办结 with the reply to the citizen."""

    reply: str = Field(min_length=5, max_length=2000)


class RateIn(_Action):
    """The citizen's rating."""

    rating: Rating
    comment: str = Field(default="", max_length=500)


class ExtensionIn(_Action):
    """申请延期 by some hours."""

    hours: int = Field(ge=1, le=24 * 30)
    reason: str = Field(min_length=2, max_length=500)


class DecideExtensionIn(_Action):
    """延期审批."""

    approve: bool
    note: str = Field(default="", max_length=500)


class MergeIn(_Action):
    """合并 into another appeal (by tracking code)."""

    into_tracking_code: str = Field(min_length=4, max_length=20)


class BatchIn(BaseModel):
    """A batch action over several appeals (sign or start)."""

    ids: list[int] = Field(min_length=1, max_length=100)
    action: str = Field(pattern="^(sign|start)$")


class TimelineStep(BaseModel):
    """One step as the tracking page shows it."""

    at: datetime
    action: str
    action_label: str
    state_label: str
    unit_name: str | None
    actor: str
    message: str


class DeadlineRead(BaseModel):
    """An SLA clock."""

    kind: str
    kind_label: str
    due_at: datetime
    open: bool
    met_at: datetime | None
    breached_at: datetime | None


class AppealRead(BaseModel):
    """An appeal as staff see it (personal data masked unless the viewer may see it)."""

    id: int
    tracking_code: str
    channel: str
    channel_label: str
    title: str
    description: str
    category: str | None
    category_hint: str | None
    priority: str
    priority_label: str
    state: str
    state_label: str
    state_colour: str
    street_id: int | None
    street_name: str | None
    community_id: int | None
    community_name: str | None
    place_name: str | None
    address: str
    lat: float | None
    lon: float | None
    citizen_name: str | None
    citizen_phone: str | None
    personal_unmasked: bool
    lead_unit_id: int | None
    lead_unit_name: str | None
    co_units: list[str]
    reply: str | None
    rating: str | None
    rating_comment: str | None
    flagged: bool
    reopen_count: int
    return_count: int
    duplicate_of: str | None
    created_at: datetime
    dispatched_at: datetime | None
    completed_at: datetime | None
    next_due_at: datetime | None
    next_due_kind: str | None
    deadlines: list[DeadlineRead] = Field(default_factory=list)
    timeline: list[TimelineStep] = Field(default_factory=list)
    allowed_actions: list[str] = Field(default_factory=list)
    photos: list[int] = Field(default_factory=list)
    pending_extension_hours: int | None = None


class AppealPage(BaseModel):
    """A page of appeals."""

    items: list[AppealRead]
    total: int
    more: bool = False  # total was counted only this far; there are more
    page: int
    size: int


class PublicAppeal(BaseModel):
    """What anyone with the tracking code sees; personal data masked."""

    tracking_code: str
    title: str
    description: str
    state: str
    state_label: str
    state_colour: str
    channel_label: str
    street_name: str | None
    community_name: str | None
    place_name: str | None
    citizen_name: str | None
    citizen_phone: str | None
    created_at: datetime
    reply: str | None
    rating: str | None
    rating_label: str | None
    rating_comment: str | None
    can_rate: bool
    can_reopen: bool
    timeline: list[TimelineStep]
    photos: list[int]


class ImportResult(BaseModel):
    """Progress and outcome of a bulk import."""

    id: int
    filename: str
    status: str
    total: int
    processed: int
    created_count: int
    skipped_count: int
    errors: list[dict[str, object]]  # the first ERRORS_SHOWN failed rows: row, ref (工单编号), error
    error_count: int = 0  # all failed rows
    errors_csv: str = ""  # where to download all of them, when there are any
    hint: str = ""  # why an unfinished import is not moving (no worker running; its process died)


class SimilarAppeal(BaseModel):
    """A recent appeal that may be a duplicate (staff view, for merging); the title is masked."""

    id: int
    tracking_code: str
    title: str
    state_label: str
    created_at: datetime
    score: float
    reason: str


class PublicSimilarAppeal(BaseModel):
    """What the citizen's hint shows of a similar recent appeal: never its id or tracking code."""

    title: str
    state_label: str
    created_on: date
    score: float


class DispatchQualityRow(BaseModel):
    """首派准确率 and 回退率 of one unit in one week."""

    unit_id: int
    unit_name: str
    week: str  # ISO week in Asia/Shanghai, e.g. 2026-W47
    dispatched: int
    first_dispatched: int
    first_correct: int
    first_auto: int
    returned: int
    first_accuracy: float | None
    return_rate: float | None


class SlaPolicyIn(BaseModel):
    """SLA minutes for a category, priority and/or unit (all empty = the district default)."""

    category: str | None = Field(default=None, max_length=32)
    priority: Priority | None = None
    unit_id: int | None = None
    sign_minutes: int = Field(default=1, ge=1, le=7 * 24 * 60)
    handle_minutes: int = Field(default=30, ge=1, le=30 * 24 * 60)
    complete_minutes: int = Field(default=24 * 60, ge=1, le=90 * 24 * 60)
    calendar: str = Field(default="always", pattern="^(always|workhours)$")


class SlaPolicyRead(SlaPolicyIn):
    """A stored SLA policy."""

    model_config = ConfigDict(from_attributes=True)

    id: int


class RollupFacts(BaseModel):
    """What the analysis rollups need to know of one appeal (read through `rollup_facts`)."""

    appeal_id: int
    created_at: datetime
    title: str
    channel: str
    category: str | None
    state: str
    street_id: int | None
    community_id: int | None
    lead_unit_id: int | None
    place_id: int | None
    lat: float | None
    lon: float | None
    citizen_phone: str | None
    rating: str | None
    completed: bool
    sign_due: bool
    signed_on_time: bool
    complete_due: bool
    completed_on_time: bool
