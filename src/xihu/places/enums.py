"""Kinds of units and places, with their Chinese labels."""

from __future__ import annotations

import enum


class UnitKind(enum.StrEnum):
    """What an organisational unit is."""

    district = "district"
    street = "street"
    community = "community"
    village = "village"
    department = "department"
    grid = "grid"

    @property
    def label(self) -> str:
        """Chinese name."""
        return {
            "district": "区",
            "street": "街道/镇",
            "community": "社区",
            "village": "村",
            "department": "区级部门",
            "grid": "网格",
        }[self.value]


class PlaceType(enum.StrEnum):
    """Types of places that carry a 西湖码."""

    residential = "residential"
    street_segment = "street_segment"
    park = "park"
    market = "market"
    school = "school"
    hospital = "hospital"
    transit = "transit"
    scenic = "scenic"
    office = "office"
    other = "other"

    @property
    def label(self) -> str:
        """Chinese name."""
        return PLACE_TYPE_LABELS[self]


PLACE_TYPE_LABELS = {
    PlaceType.residential: "住宅小区",
    PlaceType.street_segment: "道路街巷",
    PlaceType.park: "公园绿地",
    PlaceType.market: "农贸市场/商圈",
    PlaceType.school: "学校",
    PlaceType.hospital: "医疗机构",
    PlaceType.transit: "交通站点",
    PlaceType.scenic: "景区",
    PlaceType.office: "办事场所",
    PlaceType.other: "其他",
}
