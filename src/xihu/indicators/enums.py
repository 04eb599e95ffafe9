"""Directions and progress statuses of indicators, with their Chinese labels and colours."""

from __future__ import annotations

import enum


class Direction(enum.StrEnum):
    """Whether a higher or a lower value is better."""

    HIGHER = "higher"
    LOWER = "lower"

    @property
    def label(self) -> str:
        """Chinese name."""
        return {"higher": "越高越好", "lower": "越低越好"}[self.value]


class Level(enum.StrEnum):
    """The administrative levels an indicator is measured at."""

    district = "district"
    street = "street"
    community = "community"


class ObservationStatus(enum.StrEnum):
    """Whether a figure was approved (published) or only reported."""

    approved = "approved"
    reported = "reported"

    @property
    def label(self) -> str:
        """Chinese name."""
        return {"approved": "已审核", "reported": "已报送"}[self.value]


class ProgressStatus(enum.StrEnum):
    """Progress towards a target (OpenSDG / Statistics Canada CAGR method)."""

    achieved = "achieved"
    substantial = "substantial"
    moderate = "moderate"
    limited = "limited"
    deterioration = "deterioration"
    no_data = "no_data"

    @property
    def label(self) -> str:
        """Chinese name."""
        return {
            "achieved": "已达成",
            "substantial": "进展良好",
            "moderate": "进展一般",
            "limited": "进展有限",
            "deterioration": "倒退",
            "no_data": "暂无数据",
        }[self.value]

    @property
    def colour(self) -> str:
        """Colour on the cockpit."""
        return {
            "achieved": "#1a7f37",
            "substantial": "#2da44e",
            "moderate": "#d4a72c",
            "limited": "#e16f24",
            "deterioration": "#cf222e",
            "no_data": "#8c959f",
        }[self.value]


AT_RISK = (ProgressStatus.limited, ProgressStatus.deterioration)


class ReportStatus(enum.StrEnum):
    """Where a submitted value (填报) stands in the approval (审核)."""

    pending = "pending"
    approved = "approved"
    rejected = "rejected"

    @property
    def label(self) -> str:
        """Chinese name."""
        return {"pending": "待审核", "approved": "已通过", "rejected": "已退回"}[self.value]

    @property
    def colour(self) -> str:
        """Colour of the badge."""
        return {"pending": "#d4a72c", "approved": "#1a7f37", "rejected": "#cf222e"}[self.value]


class AssessedKind(enum.StrEnum):
    """The kinds of units that are assessed (考核), each with its own weights."""

    street = "street"
    department = "department"

    @property
    def label(self) -> str:
        """Chinese name."""
        return {"street": "镇街", "department": "区级部门"}[self.value]


# Points an indicator earns in the 考核 for its progress status (no_data is left out of the average).
STATUS_POINTS = {
    ProgressStatus.achieved: 100.0,
    ProgressStatus.substantial: 90.0,
    ProgressStatus.moderate: 70.0,
    ProgressStatus.limited: 40.0,
    ProgressStatus.deterioration: 0.0,
}
