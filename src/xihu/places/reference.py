"""Reference data: the district, streets and communities (NBS 2023) and the district's departments."""

from __future__ import annotations

import csv
from importlib import resources

DISTRICT_CODE = "330106"
DISTRICT_NAME = "西湖区"

# (code, name, aliases). Departments as a district government has them; names are the common short forms.
DEPARTMENTS: list[tuple[str, str, str]] = [
    ("D-ZJ", "区住建局", "住建局,住房和城乡建设局,物业,房管"),
    ("D-CG", "区城管局", "城管局,城市管理局,综合行政执法局"),
    ("D-STHJ", "区生态环境分局", "生态环境分局,环保局,环境保护"),
    ("D-JT", "区交通运输局", "交通运输局,交通局"),
    ("D-JY", "区教育局", "教育局"),
    ("D-WGLT", "区文广旅体局", "文广旅体局,文化和广电旅游体育局,文旅局"),
    ("D-RS", "区人力社保局", "人力社保局,人社局,人力资源和社会保障局"),
    ("D-WJ", "区卫健局", "卫健局,卫生健康局,卫生局"),
    ("D-SW", "区商务局", "商务局"),
    ("D-SCJG", "区市场监管局", "市场监管局,市场监督管理局,市场监管分局"),
    ("D-MZ", "区民政局", "民政局"),
    ("D-GA", "公安西湖分局", "公安分局,派出所,公安局"),
    ("D-NY", "区农业农村局", "农业农村局,农业局"),
    ("D-LS", "区林业水利局", "林水局,水利局,林业局"),
    ("D-YJ", "区应急管理局", "应急管理局,应急局"),
    ("D-SF", "区司法局", "司法局"),
    ("D-YB", "区医保分局", "医保分局,医疗保障局"),
    ("D-FG", "区发改局", "发改局,发展和改革局"),
    ("D-XF", "区信访局", "信访局"),
    ("D-TJ", "区退役军人事务局", "退役军人事务局"),
    ("D-XFJY", "区消防救援大队", "消防救援大队,消防"),
    ("D-GH", "规划资源西湖分局", "规划资源分局,规划局,自然资源"),
]


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("xihu.places").joinpath("data", name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def streets() -> list[dict[str, str]]:
    """The 12 streets/towns of the district (NBS 2023)."""
    return _rows("xihu_streets_nbs2023.csv")


def communities() -> list[dict[str, str]]:
    """The 222 communities and villages of the district (NBS 2023)."""
    return _rows("xihu_communities_nbs2023.csv")
