"""Approximate street centres for the district map.

The reference data has no street boundary polygons, so the map marks each street by a circle at an
approximate centre (GCJ-02, read off the district outline and the streets' main built-up areas). Pages
label these as 示意 (indicative): they show relative volume, not boundaries.
"""

from __future__ import annotations

STREET_CENTRES_GCJ02: dict[str, tuple[float, float]] = {
    # code: (lon, lat)
    "330106002": (120.148, 30.262),  # 北山街道
    "330106004": (120.140, 30.278),  # 西溪街道
    "330106005": (120.123, 30.290),  # 翠苑街道
    "330106007": (120.118, 30.279),  # 古荡街道
    "330106008": (120.135, 30.228),  # 西湖街道
    "330106009": (120.060, 30.258),  # 留下街道
    "330106010": (120.085, 30.170),  # 转塘街道
    "330106011": (120.075, 30.285),  # 蒋村街道
    "330106012": (120.115, 30.252),  # 灵隐街道
    "330106013": (120.100, 30.295),  # 文新街道
    "330106109": (120.085, 30.330),  # 三墩镇
    "330106110": (120.160, 30.130),  # 双浦镇
}
