"""Warning kinds, severities and states of the analysis domain, with Chinese labels and colours."""

from __future__ import annotations

import enum


class WarningKind(enum.StrEnum):
    """What a detector found."""

    spike = "spike"
    hotspot = "hotspot"
    topic = "topic"
    repeat_caller = "repeat_caller"
    sla_risk = "sla_risk"
    dissatisfaction = "dissatisfaction"

    @property
    def label(self) -> str:
        """Chinese name."""
        return KIND_LABELS[self]


KIND_LABELS = {
    WarningKind.spike: "诉求量突增",
    WarningKind.hotspot: "诉求热点",
    WarningKind.topic: "新兴话题",
    WarningKind.repeat_caller: "重复来电",
    WarningKind.sla_risk: "超时风险",
    WarningKind.dissatisfaction: "不满意聚集",
}


class Severity(enum.StrEnum):
    """How serious a warning is."""

    info = "info"
    warning = "warning"
    critical = "critical"

    @property
    def label(self) -> str:
        """Chinese name."""
        return SEVERITY_LABELS[self][0]

    @property
    def colour(self) -> str:
        """Colour used for badges."""
        return SEVERITY_LABELS[self][1]

    @property
    def rank(self) -> int:
        """Order for sorting (higher is more serious)."""
        return {"info": 0, "warning": 1, "critical": 2}[self.value]


SEVERITY_LABELS = {
    Severity.info: ("关注", "#1677ff"),
    Severity.warning: ("预警", "#fa8c16"),
    Severity.critical: ("严重", "#f5222d"),
}


class WarningState(enum.StrEnum):
    """Where a warning is in its life: raised, acknowledged by a supervisor, closed."""

    open = "open"
    acknowledged = "acknowledged"
    closed = "closed"

    @property
    def label(self) -> str:
        """Chinese name."""
        return {"open": "待确认", "acknowledged": "已确认处理中", "closed": "已关闭"}[self.value]

    @property
    def colour(self) -> str:
        """Colour used for badges."""
        return {"open": "#f5222d", "acknowledged": "#fa8c16", "closed": "#8c8c8c"}[self.value]


ACTIVE_STATES = frozenset({WarningState.open, WarningState.acknowledged})
