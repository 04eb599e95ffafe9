"""The catalog of indicators, each with the sentence it comes from.

Seed 004 (西湖区共同富裕示范区建设行动) gives the quantitative goals for 2025; seed 003
(2023年西湖区政府工作报告) the targets for 2023. Real figures come from the shared facts table
(../shared/data/facts/xihu_stats.csv) when it is present."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from xihu.indicators.models import Indicator, Observation

SEED_003 = "003_5b0b366752f93b30.txt"
SEED_004 = "004_f839e5d669d2ab7d.txt"
FACTS_FILE = "xihu_stats.csv"


@dataclass(frozen=True)
class Spec:
    """One catalog entry."""

    code: str
    name: str
    unit: str
    target_value: float
    target_year: int
    owner: str
    source_seed: str
    source_sentence: str
    direction: str = "higher"
    baseline_value: float | None = None
    baseline_year: int | None = None
    levels: str = "district"


# Sentences of seed 004 (main goals, section 一).
_S_GDP = (
    "综合实力实现争先进位,力争地区生产总值年均增长7%左右,全区生产总值突破2000亿元、人均生产总值达到20万元。"
)
_S_DIGITAL = (
    "产业转型升级步伐加快,以数字经济为引领的现代化产业体系基本形成,数字经济核心产业增加值突破1000亿元。"
)
_S_RD = (
    "创新策源能力全面增强,R&D经费投入强度达到4.3%,规上高新技术产业增加值比重达到80%以上,"
    "形成更富活力创新力竞争力的高质量发展模式。"
)
_S_ECO = (
    "生态环境全域宜居美丽,地表水达到或优于III类水体比例达到100%,城市公园绿地服务半径覆盖率达到90%,"
    "碳达峰碳中和取得明显成效。"
)
_S_CHILDCARE = "婴幼儿照护服务体系更加完善,每千人拥有婴幼儿照护设施托位数达到4.5个。"
_S_EDU = "全民受教育程度不断提高,儿童平均预期受教育年限达到15年、高等教育毛入学率达到73%。"
_S_LIFE = "健康西湖建设不断深化,紧密型医联体体制更加成熟,人均预期寿命84.7岁。"
_S_PENSION = "医养康养深度融合的养老服务体系加快形成,“大社区养老”新格局基本成形,基本养老保险覆盖率达到100%。"
_S_INCOME = (
    "城镇和农村居民人均可支配收入分别力争突破10万元、7万元,中等收入群体规模力争实现倍增,"
    "以中等收入群体为主体的橄榄型社会加快形成。"
)
_S_RATIO = (
    "实现更加充分更高质量就业,城乡居民收入倍差保持在1.7以内,城镇居民、农村居民高低收入人群收入差距持续缩小。"
)
_S_CIVILITY = (
    "社会主义核心价值观深入人心,新时代文明生活行动扎实推进,每万人拥有公共文化设施面积达到4350平方米,"
    "文明好习惯养成实现率达到90%以上,社会诚信度达到96%以上。"
)
_S_LAW = (
    "平安西湖、法治西湖一体推进,公民法治素养大幅提高,万人成讼率低于62.5件/万人,"
    "共建共治共享的社会治理格局加快形成。"
)
_S_AID = (
    "东西部协作、对口支援、对口合作深入推进,实现智力、产业、消费、劳务等宽领域、深层次协作,"
    "产业帮扶覆盖面进一步扩大,援助资金用于保障和改善民生的比例达到90%以上,帮助对口地区巩固拓展协作成果。"
)
# Sentences of seed 004 (sections 二 to 五).
_S_CITY_BRAIN = (
    "到2025年,杭州城市大脑产业协同创新基地集聚200家以上城市大脑产业生态企业,培育不少于10家上市企业;"
    "数字经济核心产业增加值突破1000亿元,新增数字化小微园区5个。"
)
_S_LIFE_HEALTH = "到2025年,集聚金融大数据服务相关企业35家以上,生命健康产业实现增加值120亿元。"
_S_CULTURE = "力争“十四五”期间,全区文化产业年均增速8%以上,到2025年,全区文化产业增加值总量达到450亿。"
_S_JOBS = "到2025年,力争累计实现城镇新增就业人数15万人。"
_S_SKILLS = (
    "到2025年,力争累计新增高技能人才1万人、西湖工匠大师工作室30家,高技能人才占技能劳动者的比例达到35%以上。"
)
_S_INSURANCE = (
    "推动社保扩面提质,深化社保经办智能服务平台应用,推行社银合作、医银合作模式,加强企业退休人员社会化管理服务,"
    "到2025年,实现全区基本养老保险全民参保率、户籍居民基本医疗保险参保率稳定在99%以上。"
)
_S_RESETTLEMENT = "持续加快城中村改造安置房建设,2024年底前完成555万平方米安置房建设,实现回迁清零。"
# Sentences of seed 003 (targets for 2023); a page break of the source inside a word is joined.
_T_GDP = (
    "2023年西湖区“两会”政府工作报告提出，要扛起新征程使命担当、争做现代化实践范例，奋力谱写共富新篇章，"
    "力争地区生产总值增长5%以上。"
)
_T_DIGITAL = (
    "推动数字经济提质增效，加快云计算、大数据、人工智能等优势产业集聚发展，加速布局元宇宙等新兴赛道，"
    "推动平台经济规范健康创新发展，继续探索“产业大脑+未来工厂”融合新模式，实现数字经济核心产业增加值增长10%以上。"
)
_T_HIGHTECH = (
    "西湖区将充分发挥链主企业引领示范带动作用，加快培育空天地海特色产业，做大做强生命健康产业，"
    "重点扶持智能制造新兴领域，规上高新技术产业增加值占比保持在85%以上。"
)
_T_SCIENCE = (
    "今年，西湖区要深度融合入杭州争创综合性国家科学中心，打造科技成果转化首选示范区；创建省级新型研发机构5家，"
    "新增省市双创平台10个以上；巩固高校经济首创优势，放大环浙江大学、环西湖大学、环浙江工业大学创新创业圈辐射效应，"
    "实现技术交易额200亿元以上；实施“凤凰”“鲲鹏”等系列行动，构建西湖特色创新主体金字塔矩阵；"
    "新增上市及挂牌企业10家以上，新增“国高企”250家以上、新设市场主体2万家以上。"
)
_T_TALENT = (
    "2023年，西湖区将深入实施“西湖英才计划”，引进海内外高层次人才3000人，创新创业团队60个，同时，"
    "实施“栖西聚才行动”，继续助推高精尖人才加速集聚、产学研用深度融合。"
)
_T_INSURANCE = (
    "西湖区将拓展城乡居民创业就业渠道，深化无欠薪行动，全民参保率和户籍居民基本医疗保险参保率稳定在99%以上，"
    "筑强“幸福荟”金字招牌，持续完善医养服务体系等。"
)

_ALL = "district,street,community"

CATALOG: tuple[Spec, ...] = (
    Spec(
        "gdp",
        "地区生产总值",
        "亿元",
        2000,
        2025,
        "区发改局",
        SEED_004,
        _S_GDP,
        baseline_value=1587.6,
        baseline_year=2020,
    ),
    Spec("gdp_growth", "地区生产总值年均增长", "%", 7, 2025, "区发改局", SEED_004, _S_GDP),
    Spec("gdp_per_capita", "人均生产总值", "万元", 20, 2025, "区发改局", SEED_004, _S_GDP),
    Spec("digital_core_va", "数字经济核心产业增加值", "亿元", 1000, 2025, "区发改局", SEED_004, _S_DIGITAL),
    Spec("rd_intensity", "R&D经费投入强度", "%", 4.3, 2025, "区发改局", SEED_004, _S_RD),
    Spec("hightech_share", "规上高新技术产业增加值比重", "%", 80, 2025, "区发改局", SEED_004, _S_RD),
    Spec(
        "surface_water_iii",
        "地表水达到或优于III类水体比例",
        "%",
        100,
        2025,
        "区生态环境分局",
        SEED_004,
        _S_ECO,
    ),
    Spec("park_coverage", "城市公园绿地服务半径覆盖率", "%", 90, 2025, "区住建局", SEED_004, _S_ECO),
    Spec(
        "childcare_places",
        "每千人拥有婴幼儿照护设施托位数",
        "个",
        4.5,
        2025,
        "区卫健局",
        SEED_004,
        _S_CHILDCARE,
        levels=_ALL,
    ),
    Spec("schooling_years", "儿童平均预期受教育年限", "年", 15, 2025, "区教育局", SEED_004, _S_EDU),
    Spec("higher_edu_enrolment", "高等教育毛入学率", "%", 73, 2025, "区教育局", SEED_004, _S_EDU),
    Spec("life_expectancy", "人均预期寿命", "岁", 84.7, 2025, "区卫健局", SEED_004, _S_LIFE),
    Spec("pension_coverage", "基本养老保险覆盖率", "%", 100, 2025, "区人力社保局", SEED_004, _S_PENSION),
    Spec("urban_income", "城镇居民人均可支配收入", "万元", 10, 2025, "区发改局", SEED_004, _S_INCOME),
    Spec("rural_income", "农村居民人均可支配收入", "万元", 7, 2025, "区农业农村局", SEED_004, _S_INCOME),
    Spec(
        "urban_rural_ratio",
        "城乡居民收入倍差",
        "倍",
        1.7,
        2025,
        "区农业农村局",
        SEED_004,
        _S_RATIO,
        direction="lower",
    ),
    Spec(
        "culture_facility_area",
        "每万人拥有公共文化设施面积",
        "平方米",
        4350,
        2025,
        "区文广旅体局",
        SEED_004,
        _S_CIVILITY,
        levels=_ALL,
    ),
    Spec(
        "good_habits", "文明好习惯养成实现率", "%", 90, 2025, "区委宣传部", SEED_004, _S_CIVILITY, levels=_ALL
    ),
    Spec("social_credit", "社会诚信度", "%", 96, 2025, "区发改局", SEED_004, _S_CIVILITY),
    Spec(
        "litigation_rate",
        "万人成讼率",
        "件/万人",
        62.5,
        2025,
        "区司法局",
        SEED_004,
        _S_LAW,
        direction="lower",
        levels="district,street",
    ),
    Spec(
        "aid_livelihood_share",
        "援助资金用于保障和改善民生的比例",
        "%",
        90,
        2025,
        "区发改局",
        SEED_004,
        _S_AID,
    ),
    Spec("city_brain_firms", "城市大脑产业生态企业", "家", 200, 2025, "区发改局", SEED_004, _S_CITY_BRAIN),
    Spec("digital_micro_parks", "新增数字化小微园区", "个", 5, 2025, "区发改局", SEED_004, _S_CITY_BRAIN),
    Spec("life_health_va", "生命健康产业增加值", "亿元", 120, 2025, "区发改局", SEED_004, _S_LIFE_HEALTH),
    Spec("culture_va", "文化产业增加值", "亿元", 450, 2025, "区文广旅体局", SEED_004, _S_CULTURE),
    Spec("culture_growth", "文化产业年均增速", "%", 8, 2025, "区文广旅体局", SEED_004, _S_CULTURE),
    Spec(
        "new_urban_jobs",
        "累计城镇新增就业人数",
        "万人",
        15,
        2025,
        "区人力社保局",
        SEED_004,
        _S_JOBS,
        levels="district,street",
    ),
    Spec("new_high_skill", "累计新增高技能人才", "万人", 1, 2025, "区人力社保局", SEED_004, _S_SKILLS),
    Spec(
        "high_skill_share", "高技能人才占技能劳动者的比例", "%", 35, 2025, "区人力社保局", SEED_004, _S_SKILLS
    ),
    Spec(
        "insurance_participation",
        "基本养老保险全民参保率",
        "%",
        99,
        2025,
        "区人力社保局",
        SEED_004,
        _S_INSURANCE,
    ),
    Spec(
        "medical_insurance", "户籍居民基本医疗保险参保率", "%", 99, 2025, "区医保分局", SEED_004, _S_INSURANCE
    ),
    Spec("resettlement_housing", "安置房建设", "万平方米", 555, 2024, "区住建局", SEED_004, _S_RESETTLEMENT),
    Spec("gdp_growth_2023", "地区生产总值增长（2023年）", "%", 5, 2023, "区发改局", SEED_003, _T_GDP),
    Spec(
        "digital_core_growth_2023",
        "数字经济核心产业增加值增长（2023年）",
        "%",
        10,
        2023,
        "区发改局",
        SEED_003,
        _T_DIGITAL,
    ),
    Spec(
        "hightech_share_2023",
        "规上高新技术产业增加值占比（2023年）",
        "%",
        85,
        2023,
        "区发改局",
        SEED_003,
        _T_HIGHTECH,
    ),
    Spec(
        "new_rd_institutes_2023",
        "创建省级新型研发机构（2023年）",
        "家",
        5,
        2023,
        "区发改局",
        SEED_003,
        _T_SCIENCE,
    ),
    Spec(
        "new_incubators_2023", "新增省市双创平台（2023年）", "个", 10, 2023, "区发改局", SEED_003, _T_SCIENCE
    ),
    Spec("tech_trade_2023", "技术交易额（2023年）", "亿元", 200, 2023, "区发改局", SEED_003, _T_SCIENCE),
    Spec("new_listed_2023", "新增上市及挂牌企业（2023年）", "家", 10, 2023, "区发改局", SEED_003, _T_SCIENCE),
    Spec(
        "new_hightech_firms_2023",
        "新增国家高新技术企业（2023年）",
        "家",
        250,
        2023,
        "区发改局",
        SEED_003,
        _T_SCIENCE,
    ),
    Spec(
        "new_market_entities_2023",
        "新设市场主体（2023年）",
        "万家",
        2,
        2023,
        "区市场监管局",
        SEED_003,
        _T_SCIENCE,
    ),
    Spec(
        "talents_2023",
        "引进海内外高层次人才（2023年）",
        "人",
        3000,
        2023,
        "区人力社保局",
        SEED_003,
        _T_TALENT,
    ),
    Spec(
        "talent_teams_2023", "引进创新创业团队（2023年）", "个", 60, 2023, "区人力社保局", SEED_003, _T_TALENT
    ),
    Spec(
        "insurance_participation_2023",
        "全民参保率（2023年）",
        "%",
        99,
        2023,
        "区人力社保局",
        SEED_003,
        _T_INSURANCE,
    ),
)

# facts indicator -> (catalog code, factor to the catalog unit, status)
FACTS_MAP: dict[str, tuple[str, float, str]] = {
    "gdp": ("gdp", 1.0, "approved"),
    "gdp_growth_real": ("gdp_growth", 1.0, "approved"),
    "urban_disposable_income_per_capita": ("urban_income", 1e-4, "approved"),
    "rural_income_per_capita": ("rural_income", 1e-4, "approved"),
    # derived by the facts table from two published figures; its source note says so
    "urban_rural_income_ratio": ("urban_rural_ratio", 1.0, "approved"),
}


def facts_path() -> Path | None:
    """The shared facts table, if present (XIHU_FACTS_CSV, or ../shared/data/facts/xihu_stats.csv)."""
    configured = os.environ.get("XIHU_FACTS_CSV")
    candidates = [Path(configured)] if configured else []
    candidates.append(Path(__file__).resolve().parents[4] / "shared" / "data" / "facts" / FACTS_FILE)
    return next((p for p in candidates if p.is_file()), None)


def load_catalog(*, session: Session) -> int:
    """Create the catalog's indicators that are missing (idempotent); returns how many were added."""
    existing = set(session.scalars(select(Indicator.code)))
    added = 0
    for spec in CATALOG:
        if spec.code in existing:
            continue
        session.add(
            Indicator(
                code=spec.code,
                name=spec.name,
                unit=spec.unit,
                direction=spec.direction,
                baseline_value=spec.baseline_value,
                baseline_year=spec.baseline_year,
                target_value=spec.target_value,
                target_year=spec.target_year,
                owner=spec.owner,
                levels=spec.levels,
                source_seed=spec.source_seed,
                source_sentence=spec.source_sentence,
            )
        )
        existing.add(spec.code)
        added += 1
    session.flush()
    return added


def _facts_rows(path: Path | None) -> list[tuple[str, str, float, str, str]]:
    """(code, period, value, source, status) of the facts table's rows that belong to catalog indicators."""
    if path is None:
        return []
    rows = []
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            mapped = FACTS_MAP.get(row.get("indicator", ""))
            year = (row.get("year") or "").strip()
            if mapped is None or not (year.isascii() and year.isdigit()):
                continue
            code, factor, status = mapped
            try:
                value = round(float(row["value"]) * factor, 6)
            except (TypeError, ValueError):
                continue
            note = (row.get("note") or "").strip()
            source = row.get("source", "").strip() + (f" ({note})" if note else "")
            rows.append((code, year, value, source, status))
    return rows


def load_observations(*, session: Session, path: Path | None = None) -> int:
    """Load the known real figures as district-level observations (idempotent); returns how many were added.

    The seeds 003 and 004 state targets, not achieved figures, so the figures come from the facts table
    when it is present (`path`, else `facts_path()`)."""
    ids = dict(session.execute(select(Indicator.code, Indicator.id)).all())
    existing: set[tuple[int, str]] = {
        (indicator_id, period)
        for indicator_id, period in session.execute(
            select(Observation.indicator_id, Observation.period).where(Observation.unit_id.is_(None))
        )
    }
    added = 0
    for code, period, value, source, status in _facts_rows(path or facts_path()):
        indicator_id = ids.get(code)
        if indicator_id is None or (indicator_id, period) in existing:
            continue
        session.add(
            Observation(
                indicator_id=indicator_id,
                period=period,
                unit_id=None,
                value=value,
                source=source,
                status=status,
            )
        )
        existing.add((indicator_id, period))
        added += 1
    session.flush()
    return added
