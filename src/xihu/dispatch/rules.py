"""Plain keyword rules: text -> category (first-level, as the labelled appeals use them)."""

from __future__ import annotations

# Category -> keywords. Categories follow the 7 first-level classes of the 12345 taxonomy.
KEYWORDS: dict[str, tuple[str, ...]] = {
    "城乡建设": (
        "物业",
        "小区",
        "路灯",
        "电梯",
        "违建",
        "违章搭建",
        "施工",
        "井盖",
        "道路破损",
        "漏水",
        "停车",
        "拆迁",
        "安置",
        "房屋",
        "围墙",
        "下水道",
        "管道",
        "垃圾",
        "占道",
        "绿化",
    ),
    "环境保护": (
        "噪音",
        "噪声",
        "油烟",
        "污水",
        "排污",
        "臭味",
        "异味",
        "扬尘",
        "废气",
        "污染",
        "河道",
        "黑臭",
    ),
    "交通运输": ("公交", "地铁", "出租车", "网约车", "红绿灯", "信号灯", "拥堵", "共享单车", "站台", "班次"),
    "教育文体": ("学校", "幼儿园", "学生", "老师", "教师", "入学", "招生", "培训", "体育", "图书馆", "课外"),
    "劳动和社会保障": (
        "工资",
        "欠薪",
        "社保",
        "养老金",
        "医保",
        "劳动合同",
        "辞退",
        "失业",
        "退休",
        "公积金",
    ),
    "卫生计生": ("医院", "医生", "诊所", "疫苗", "药店", "卫生院", "生育", "计生", "急诊", "看病"),
    "商贸旅游": (
        "商家",
        "超市",
        "餐馆",
        "饭店",
        "消费",
        "退款",
        "价格",
        "景区",
        "门票",
        "导游",
        "预付卡",
        "食品",
    ),
}

# Category -> responsible department code; "street" means the street/town of the place (属地).
RESPONSIBLE: dict[str, str] = {
    "城乡建设": "D-ZJ",
    "环境保护": "D-STHJ",
    "交通运输": "D-JT",
    "教育文体": "D-JY",
    "劳动和社会保障": "D-RS",
    "卫生计生": "D-WJ",
    "商贸旅游": "D-SCJG",
}

# Keywords of grid matters that belong to the street/community rather than a department.
GRID_KEYWORDS: tuple[str, ...] = ("垃圾", "占道", "绿化", "乱堆", "楼道", "邻里", "宠物", "噪音扰民")

CATEGORIES: tuple[str, ...] = tuple(KEYWORDS)


def score(text: str) -> list[tuple[str, int, list[str]]]:
    """Categories with the number of keywords found, best first."""
    found = []
    for category, words in KEYWORDS.items():
        hits = [w for w in words if w in text]
        if hits:
            found.append((category, len(hits), hits))
    found.sort(key=lambda f: -f[1])
    return found


def is_grid_matter(text: str) -> list[str]:
    """The grid-matter keywords in a text."""
    return [w for w in GRID_KEYWORDS if w in text]
