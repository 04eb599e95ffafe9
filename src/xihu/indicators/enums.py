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
