"""Schemas of the dispatch domain."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from xihu.places.enums import PlaceType


class RoutingInput(BaseModel):
    """What dispatch needs to know about an appeal."""

    appeal_id: int | None = None
    title: str = ""
    description: str
    category_hint: str | None = None
    street_id: int | None = None
    community_id: int | None = None
    address: str = ""
    lat: float | None = None
    lon: float | None = None
    place_type: str | None = None


class Candidate(BaseModel):
    """One suggested category and responsible unit, with reasons."""

    category: str
    unit_id: int
    unit_name: str
    confidence: float = Field(ge=0, le=1)
    reasons: list[str]
    rule_id: int | None = None  # the 权责清单 rule that named the unit (not kept before 2026-12)


class Suggestion(BaseModel):
    """The router's answer: the best candidates, and whether it is sure enough to dispatch alone."""

    candidates: list[Candidate]
    auto: bool
    model_version: str
    street_id: int | None = None
    community_id: int | None = None
    location_reason: str = ""

    @property
    def best(self) -> Candidate | None:
        """The top candidate, if any."""
        return self.candidates[0] if self.candidates else None


class PreviewRow(BaseModel):
    """试派单: one scored category and the unit the responsibility table gives it (None: no rule applies)."""

    category: str
    probability: float
    features: list[str]
    unit_id: int | None
    unit_name: str
    rule: str
    rule_id: int | None


class RoutePreview(BaseModel):
    """试派单: what routing would do with an appeal; nothing is recorded."""

    rows: list[PreviewRow]
    auto: bool
    threshold: float
    model_version: str
    local_hour: int | None
    street_name: str
    community_name: str
    location_reason: str


class PreviewIn(RoutingInput):
    """试派单 request: an appeal as routing sees it, optionally as if it arrived at another hour."""

    description: str = Field(min_length=1, max_length=5000)
    place_type: PlaceType | None = None
    local_hour: int | None = Field(default=None, ge=0, le=23)


class ModelVersionRead(BaseModel):
    """A trained category model version with its training metrics (cross-validated on the training data)."""

    id: int
    version: str
    path: str
    threshold: float
    note: str = ""
    active: bool = False
    created_by: str = ""
    created_at: datetime
    activated_at: datetime | None = None
    file_present: bool = True
    n_train: int = 0
    n_feedback: int = 0
    accuracy: float | None = None
    macro_f1: float | None = None
    auto_rate: float | None = None
    auto_precision: float | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    # what is worse than the active version (or short of the precision target); activation must be confirmed
    concerns: list[str] = Field(default_factory=list)


class TrainingJobRead(BaseModel):
    """A background retraining run: its state, and the version it trained or why it failed."""

    id: int
    status: str
    status_label: str
    note: str = ""
    created_by: str = ""
    created_at: datetime
    finished_at: datetime | None = None
    version: str | None = None
    error: str = ""


# ---------------------------------------------------------------- correction review

FEEDBACK_VIEWS = ("all", "conflicts", "excluded")


class FeedbackRead(BaseModel):
    """A staff correction (manual dispatch, return, transfer) as an admin reviews it before retraining."""

    id: int
    appeal_id: int
    kind: str
    kind_label: str
    text: str
    category: str | None = None
    predicted_category: str | None = None  # what the router said when the appeal arrived
    model_version: str | None = None
    reason: str = ""
    created_at: datetime
    excluded: bool = False
    excluded_at: datetime | None = None
    excluded_by: str = ""
    excluded_reason: str = ""
    superseded: bool = False  # a later correction of the same appeal is used instead
    used: bool = False  # the next retraining learns it
    # the active model's reading of the text now, and whether it confidently disagrees with the label
    model_category: str | None = None
    model_probability: float | None = None
    conflicts: bool = False


class FeedbackPage(BaseModel):
    """One page of corrections with the counts of each view."""

    view: str
    items: list[FeedbackRead]
    page: int
    pages: int
    total: int
    counts: dict[str, int]
    checked: int  # corrections the conflicts view looked at (the newest ones, see feedback_review)
    model_version: str | None = None


class FeedbackExclude(BaseModel):
    """Why a correction should not be learnt."""

    model_config = ConfigDict(str_strip_whitespace=True)

    reason: str = Field(min_length=2, max_length=200)


# ---------------------------------------------------------------- responsibility table (权责清单)

RULE_TARGETS = ("unit", "street", "community")
_KEYWORD_SPLIT = re.compile(r"[,，、;；\s]+")


def _split_keywords(value: object) -> object:
    if value is None:
        return []
    if isinstance(value, str):
        value = _KEYWORD_SPLIT.split(value)
    if isinstance(value, list | tuple):
        seen: dict[str, None] = {}
        for word in value:
            word = str(word).strip()
            if word:
                seen[word] = None
        return list(seen)
    return value


class RuleCreate(BaseModel):
    """A row of the responsibility table: conditions -> the responsible unit, or the area itself (属地).

    `keywords`: any one of them in the text matches (a comma-separated string is accepted).
    `hour_from`/`hour_to`: local hours, from inclusive, to exclusive; 22 -> 6 spans midnight.
    `street_id`: the area (a street/town, or a community/village) the rule is limited to.
    `target`: "unit" (then `unit_id` is required), "street" or "community" (the appeal's own street or
    community; community falls back to the street when the community is unknown).
    """

    model_config = ConfigDict(str_strip_whitespace=True)

    category: str = Field(min_length=1, max_length=32)
    keywords: list[str] = Field(default_factory=list, max_length=40)
    place_type: PlaceType | None = None
    hour_from: int | None = Field(default=None, ge=0, le=23)
    hour_to: int | None = Field(default=None, ge=0, le=24)
    street_id: int | None = None
    target: Literal["unit", "street", "community"] = "unit"
    unit_id: int | None = None

    _kw = field_validator("keywords", mode="before")(_split_keywords)

    @field_validator("place_type", mode="before")
    @classmethod
    def _blank_place_type(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _consistent(self) -> RuleCreate:
        if len(",".join(self.keywords)) > 255:
            raise ValueError("关键词合计不能超过 255 个字符")
        if any(len(k) > 32 for k in self.keywords):
            raise ValueError("单个关键词不能超过 32 个字")
        if (self.hour_from is None) != (self.hour_to is None):
            raise ValueError("时段需要同时填写开始和结束时刻")
        if self.hour_from is not None and self.hour_from % 24 == (self.hour_to or 0) % 24:
            raise ValueError("时段的开始和结束不能相同")
        if self.target == "unit" and self.unit_id is None:
            raise ValueError("责任主体为「指定单位」时必须选择单位")
        if self.target != "unit":
            self.unit_id = None
        return self


class RuleUpdate(BaseModel):
    """A change to a rule: only the fields sent are changed (send null to clear an optional condition)."""

    model_config = ConfigDict(str_strip_whitespace=True)

    category: str | None = Field(default=None, min_length=1, max_length=32)
    keywords: list[str] | None = Field(default=None, max_length=40)
    place_type: PlaceType | None = None
    hour_from: int | None = Field(default=None, ge=0, le=23)
    hour_to: int | None = Field(default=None, ge=0, le=24)
    street_id: int | None = None
    target: Literal["unit", "street", "community"] | None = None
    unit_id: int | None = None
    active: bool | None = None

    _kw = field_validator("keywords", mode="before")(_split_keywords)

    @field_validator("place_type", mode="before")
    @classmethod
    def _blank_place_type(cls, value: object) -> object:
        return None if value == "" else value


class RuleRead(BaseModel):
    """A rule as the admin page and the API show it."""

    id: int
    category: str
    keywords: list[str]
    place_type: str | None
    place_type_label: str | None
    hour_from: int | None
    hour_to: int | None
    street_id: int | None
    street_name: str | None
    target: str
    target_label: str
    unit_id: int | None
    unit_name: str | None
    active: bool
    updated_by: str
    updated_at: datetime


class RuleHistoryRead(BaseModel):
    """One change of the responsibility table."""

    id: int
    rule_id: int
    action: str
    action_label: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    actor_label: str
    at: datetime


class BoundaryImportResult(BaseModel):
    """What an import of street/community boundaries did."""

    crs: str
    imported: int
    replaced: int
    matched: list[str]
    unmatched: list[str]
    invalid: list[str]
