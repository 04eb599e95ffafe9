"""Illustrative demo data written by the project (not real appeals): places, accounts, appeals in every state.

Running it again reuses what is there: accounts and places are looked up by name, appeals by their
DEMO- external ids, so nothing is duplicated.
"""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from xihu.appeals import jobs as appeal_jobs
from xihu.appeals import service as appeal_service
from xihu.appeals.enums import Channel, Priority, Rating
from xihu.appeals.models import SlaPolicy
from xihu.appeals.schemas import (
    AppealCreate,
    CompleteIn,
    DispatchIn,
    ExtensionIn,
    MergeIn,
    RateIn,
    TransferIn,
)
from xihu.core import clock
from xihu.core.config import get_settings
from xihu.core.db import unit_of_work
from xihu.core.security import Actor, Role, User, create_user
from xihu.dispatch import responsibility, training
from xihu.places import service as places_service
from xihu.places.enums import PlaceType, UnitKind
from xihu.places.schemas import PlaceCreate

DEMO_PASSWORD = "demo12345"

# (username, display name, role, unit code or None)
ACCOUNTS: list[tuple[str, str, Role, str | None]] = [
    ("admin", "系统管理员", Role.admin, "330106"),
    ("intake", "热线受理员 王敏", Role.intake, "330106"),
    ("dispatcher", "派单员 陈立", Role.dispatcher, "330106"),
    ("supervisor", "督办员 周航", Role.supervisor, "330106"),
    ("zj_handler", "区住建局 李工", Role.handler, "D-ZJ"),
    ("cg_handler", "区城管局 赵队", Role.handler, "D-CG"),
    ("sthj_handler", "区生态环境分局 孙科", Role.handler, "D-STHJ"),
    ("jt_handler", "区交通运输局 钱科", Role.handler, "D-JT"),
    ("jy_handler", "区教育局 吴老师", Role.handler, "D-JY"),
    ("rs_handler", "区人力社保局 郑科", Role.handler, "D-RS"),
    ("wj_handler", "区卫健局 冯医生", Role.handler, "D-WJ"),
    ("scjg_handler", "区市场监管局 蒋科", Role.handler, "D-SCJG"),
]

# Illustrative places (approximate WGS84 coordinates); the first has a fixed code for the docs and tests.
PLACES: list[tuple[str, PlaceType, str, str | None, str, float, float]] = [
    (
        "翠苑一区北门",
        PlaceType.residential,
        "翠苑街道",
        "翠苑一区社区",
        "文二西路翠苑一区北门",
        30.2865,
        120.1291,
    ),
    ("文三数字生活街区", PlaceType.market, "西溪街道", None, "文三路学院路口", 30.2778, 120.1372),
    (
        "黄龙体育中心西侧人行道",
        PlaceType.street_segment,
        "西溪街道",
        "黄龙社区",
        "曙光路黄龙体育中心西侧",
        30.2689,
        120.1402,
    ),
    ("古荡新村公园", PlaceType.park, "古荡街道", None, "古墩路古荡新村", 30.2843, 120.1142),
    ("蒋村商务中心", PlaceType.office, "蒋村街道", None, "文二西路蒋村商务中心", 30.2812, 120.0713),
    ("三墩农贸市场", PlaceType.market, "三墩镇", None, "三墩镇振华路", 30.3213, 120.0952),
    ("转塘美院象山校区东门", PlaceType.school, "转塘街道", None, "转塘象山路", 30.1563, 120.0904),
    ("留下老街", PlaceType.street_segment, "留下街道", None, "留下街道屏基山路", 30.2453, 120.0541),
    ("灵隐路公交站", PlaceType.transit, "灵隐街道", None, "灵隐路灵隐公交站", 30.2417, 120.1073),
    ("北山街断桥段", PlaceType.scenic, "北山街道", None, "北山街断桥", 30.2587, 120.1512),
    ("文新社区服务中心", PlaceType.office, "文新街道", None, "文一西路文新社区", 30.2905, 120.1033),
    ("双浦铜鉴湖停车场", PlaceType.scenic, "双浦镇", None, "双浦镇铜鉴湖", 30.1432, 120.1201),
]

# (category hint, title, text) templates; {street} and {place} are filled in.
TEMPLATES: list[tuple[str, str, str]] = [
    ("城乡建设", "小区路灯不亮", "{place}附近小区路灯连续几晚不亮，老人晚上出门很不方便，希望尽快维修。"),
    (
        "城乡建设",
        "电梯经常故障",
        "{street}{place}旁的小区电梯这个月坏了三次，物业一直拖着不修，住高层的老人下不了楼。",
    ),
    ("城乡建设", "道路井盖破损", "{place}门口人行道上井盖破损翘起，已经有人绊倒，请尽快处理。"),
    ("城乡建设", "违章搭建", "{street}{place}附近一楼住户在公共绿地上违章搭建阳光房，影响通行。"),
    ("城乡建设", "物业乱收停车费", "{place}小区物业未经业主同意上调停车费，也不公示收支，业主意见很大。"),
    ("环境保护", "夜间施工噪音", "{place}附近工地每天晚上十一点后还在施工，噪音很大，影响休息。"),
    ("环境保护", "餐饮油烟扰民", "{street}{place}楼下新开的餐馆油烟直排，异味很重，窗户都不敢开。"),
    ("环境保护", "河道有异味", "{place}旁边的河道最近水发黑有臭味，还有死鱼，希望检查是否有排污。"),
    ("交通运输", "公交班次太少", "{place}公交站早高峰班次太少，等车要二十多分钟，建议增加班次。"),
    ("交通运输", "信号灯时间过短", "{street}{place}路口人行道信号灯绿灯时间太短，老人过马路来不及。"),
    ("交通运输", "共享单车乱停", "{place}地铁口共享单车乱停乱放，堵住盲道和出口。"),
    ("教育文体", "幼儿园入园难", "{street}今年幼儿园招生名额不够，{place}附近的孩子被分到很远的学校。"),
    ("教育文体", "校外培训退费", "{place}附近一家校外培训机构关门，预交的学费一直不退。"),
    ("教育文体", "体育场地开放", "希望{place}附近学校的体育场地在周末向居民开放。"),
    ("劳动和社会保障", "拖欠工资", "我在{street}{place}附近的工地干活，老板已经拖欠三个月工资，请帮忙讨薪。"),
    ("劳动和社会保障", "社保转移", "从外地来{street}工作，社保转移手续办了两个月还没有办好。"),
    ("劳动和社会保障", "养老金咨询", "退休后养老金领取时间和标准不清楚，{place}社区也说不清，想咨询。"),
    ("卫生计生", "社区医院排队久", "{place}附近社区卫生服务中心看病排队太久，医生太少。"),
    ("卫生计生", "疫苗预约难", "{street}的社区医院疫苗预约一直约不上，希望增加名额。"),
    ("商贸旅游", "预付卡商家跑路", "{place}附近的健身房突然关门，办的预付卡里还有几千元，老板联系不上。"),
    ("商贸旅游", "景区门口强买强卖", "{place}附近有人拉客强卖茶叶，价格虚高，影响游客体验。"),
    ("商贸旅游", "超市食品过期", "在{place}附近超市买到过期食品，商家拒绝退款。"),
    ("城乡建设", "楼道堆放杂物", "{place}小区楼道里堆满杂物和电瓶车，存在消防隐患。"),
    ("城乡建设", "垃圾清运不及时", "{street}{place}旁垃圾桶满了两天没人清运，天气热味道很大。"),
    # appeals that touch several departments: the router is rightly unsure, so they wait for the dispatcher
    ("城乡建设", "门口占道摆摊", "{place}小区门口傍晚有人占道摆摊卖菜，垃圾扔一地，车子也开不进来。"),
    ("环境保护", "渣土车带泥上路", "{street}{place}附近工地渣土车不冲洗就上路，路面全是泥，晚上来回开很吵。"),
    ("教育文体", "放学接送拥堵", "{place}附近学校放学时接送的车把路口堵死，孩子过马路很危险，想想办法。"),
    ("卫生计生", "遛狗不牵绳", "{place}小区有人遛狗不牵绳，狗粪到处都是，孩子被狗追着吓哭了。"),
    ("劳动和社会保障", "老年食堂涨价", "{place}社区老年食堂饭菜涨价了，独居老人吃饭成了问题，希望给点补贴。"),
    ("商贸旅游", "民宿装修扰民", "{street}{place}旁边的房子改成民宿在装修，天天电钻响，垃圾堆在楼道里。"),
]

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗"
HANDLER_REPLIES = [
    "已安排人员现场核实并处理完毕，感谢您的反映。",
    "经现场查看，问题已整改到位，后续将加强巡查。",
    "已约谈相关责任单位，限期整改，现已处理完成。",
    "已协调物业及社区共同处理，问题已解决。",
]


def _ensure_accounts(session: Session) -> None:
    existing = set(session.scalars(select(User.username)))
    for username, name, role, unit_code in ACCOUNTS:
        if username in existing:
            continue
        unit_id = places_service.get_unit_by_code(session=session, code=unit_code).id if unit_code else None
        create_user(
            session=session,
            username=username,
            password=DEMO_PASSWORD,
            display_name=name,
            role=role,
            unit_id=unit_id,
        )
    for street in places_service.list_units(session=session, kinds=[UnitKind.street]):
        username = f"grid_{street.code[-3:]}"
        if username not in existing:
            create_user(
                session=session,
                username=username,
                password=DEMO_PASSWORD,
                display_name=f"{street.name} 网格员",
                role=Role.grid,
                unit_id=street.id,
            )


def _ensure_places(session: Session) -> list[int]:
    ids = []
    for i, (name, ptype, street_name, community, address, lat, lon) in enumerate(PLACES):
        street = places_service.get_unit_by_name(session=session, name=street_name)
        assert street is not None, street_name
        community_id = None
        if community:
            found = places_service.get_unit_by_name(session=session, name=community)
            community_id = found.id if found and found.parent_id == street.id else None
        place = places_service.ensure_place(
            session=session,
            code="XHDEMO01" if i == 0 else None,
            place_in=PlaceCreate(
                name=name,
                place_type=ptype,
                street_id=street.id,
                community_id=community_id,
                address=address,
                lat=lat,
                lon=lon,
            ),
        )
        ids.append(place.id)
    return ids


def _ensure_policies(session: Session) -> None:
    if session.scalar(select(SlaPolicy.id).limit(1)) is None:
        session.add_all(
            [
                SlaPolicy(
                    priority=Priority.urgent.value, sign_minutes=1, handle_minutes=15, complete_minutes=4 * 60
                ),
                SlaPolicy(
                    priority=Priority.complex.value,
                    sign_minutes=1,
                    handle_minutes=30,
                    complete_minutes=5 * 24 * 60,
                ),
            ]
        )
    cg = places_service.get_unit_by_code(session=session, code="D-CG")
    if not cg.auto_sign:
        places_service.set_auto_sign(session=session, actor=Actor.system(), unit_id=cg.id, enabled=True)


def _actor(session: Session, username: str) -> Actor:
    user = session.scalar(select(User).where(User.username == username))
    assert user is not None
    return user.to_actor()


def _handler_for(session: Session, unit_id: int) -> Actor:
    for role in (Role.handler, Role.grid):
        user = session.scalar(select(User).where(User.unit_id == unit_id, User.role == role.value))
        if user is not None:
            return user.to_actor()
    return Actor.system("承办单位")


GOLDEN = (5**0.5 - 1) / 2
# The first appeals play what every demo must show, however small (the browser tests load 20): one left in
# the dispatch queue, one returned and hastily re-dispatched under the wrong category (for 纠错反馈核对 to
# catch), one transferred. The rest follow the sequence.
HASTY_RETURN = 0.18
SHOWCASE = (0.04, HASTY_RETURN, 0.285)


def _stays_open(target: float) -> bool:
    """Whether `_one_appeal` leaves an appeal with this target open: in the queue or with a unit."""
    return target < 0.08 or 0.1 <= target < 0.42


def _one_appeal(
    factory: sessionmaker[Session], rng: random.Random, i: int, places: list[int], target: float
) -> None:
    category, title, text = rng.choice(TEMPLATES)
    with unit_of_work(factory) as session:
        place = places_service.get_place(session=session, place_id=rng.choice(places))
        street = place.street_name
        if rng.random() < 0.5:
            streets = places_service.list_units(session=session, kinds=[UnitKind.street])
            street = rng.choice(streets).name
        code = place.code if rng.random() < 0.3 else None
        phone = f"1{rng.choice('3578')}{rng.randrange(10**8, 10**9)}"
        appeal_in = AppealCreate(
            title=title,
            description=text.format(street=street, place=place.name),
            category_hint=None,
            place_code=code,
            address="" if code else f"{street}{place.address}",
            citizen_name=rng.choice(SURNAMES) + rng.choice(["先生", "女士", "阿姨", "师傅"]),
            citizen_phone=phone,
            priority=rng.choice([Priority.normal] * 8 + [Priority.urgent, Priority.complex]),
            external_id=f"DEMO-{i:05d}",
        )
        channel = Channel.qr if code else rng.choice([Channel.web, Channel.hotline, Channel.hotline])
        result = appeal_service.submit(
            session=session,
            actor=Actor.system("示范数据"),
            appeal_in=appeal_in,
            channel=channel,
        )
        if not result.created:
            return
        appeal_id = result.id
    with unit_of_work(factory) as s:
        dispatcher = _actor(s, "dispatcher")

    def step(fn, minutes: float, **kw):  # type: ignore[no-untyped-def]
        clock.advance(timedelta(minutes=minutes))
        with unit_of_work(factory) as s:
            return fn(session=s, appeal_id=appeal_id, **kw)

    with unit_of_work(factory) as s:
        appeal = appeal_service.read(session=s, actor=Actor.system(), appeal_id=appeal_id)
        suggestions = appeal_service.suggestions_for(session=s, actor=Actor.system(), appeal_id=appeal_id)
    if target < 0.08:
        return  # stays in the dispatch queue
    if target < 0.1:
        with unit_of_work(factory) as s:
            earlier = appeal_service.search(session=s, actor=Actor.system(), page=1, size=2).items
        others = [a for a in earlier if a.id != appeal_id and a.state != "merged"]
        if others:
            step(
                appeal_service.merge,
                rng.uniform(2, 30),
                actor=dispatcher,
                data=MergeIn(into_tracking_code=others[0].tracking_code),
            )
            return
    held_back = appeal.state == "submitted"
    if held_back:
        # the dispatcher knows what the appeal is about (the template's category) and sends it to that
        # category's unit by the 权责清单, taking the router's suggestion when it agrees: manual dispatches
        # become training feedback, so they carry the right category, not the router's guess
        pick = next((c for c in suggestions if c["category"] == category), None)
        with unit_of_work(factory) as s:
            unit_id = (
                pick["unit_id"]
                if pick
                else responsibility.resolve(
                    session=s, category=category, text=appeal.description, street_id=appeal.street_id
                )[0]
            )
        step(
            appeal_service.dispatch,
            rng.uniform(1, 20),
            actor=dispatcher,
            data=DispatchIn(unit_id=unit_id or places_service_unit(factory, "D-CG"), category=category),
        )
    with unit_of_work(factory) as s:
        appeal = appeal_service.read(session=s, actor=Actor.system(), appeal_id=appeal_id)
        handler = _handler_for(s, appeal.lead_unit_id or 0)
    if target < 0.16:
        return  # dispatched, waiting to be signed
    if target < 0.2:
        step(
            appeal_service.return_to_dispatcher,
            rng.uniform(0.5, 10),
            actor=handler,
            reason="经核实不属于本单位职责，请重新派单",
        )
        # Now and then a hasty dispatcher takes the router's second guess for a returned appeal. That is a
        # wrong label on a text the model reads confidently: what 纠错反馈核对 is there to catch before a
        # retrain learns it.
        second = next((c for c in suggestions[1:] if c["category"] != category), None)
        hasty = target == HASTY_RETURN or rng.random() < 0.4
        if second is not None and not held_back and hasty:
            step(
                appeal_service.dispatch,
                rng.uniform(1, 10),
                actor=dispatcher,
                data=DispatchIn(unit_id=second["unit_id"], category=second["category"]),
            )
        return
    late = rng.random() < 0.12
    if appeal.state == "dispatched":
        step(appeal_service.sign, rng.uniform(2, 20) if late else rng.uniform(0.1, 0.9), actor=handler)
    if target < 0.27:
        return
    if target < 0.3:
        # a unit hands on what is another's: to a unit the router also named (a mixed appeal). Transfers carry
        # no category, so they teach the model nothing wrong; they show in the timeline and the 回退率 report
        alternatives = [c for c in suggestions if c["unit_id"] != appeal.lead_unit_id]
        if alternatives:
            to = alternatives[0]
            step(
                appeal_service.transfer,
                rng.uniform(3, 25),
                actor=handler,
                data=TransferIn(unit_id=to["unit_id"], reason=f"主要属于{to['unit_name']}职责，转其办理"),
            )
            return
    step(appeal_service.start, rng.uniform(40, 90) if late else rng.uniform(2, 28), actor=handler)
    if target < 0.36:
        return
    if target < 0.39:
        step(
            appeal_service.request_extension,
            rng.uniform(60, 300),
            actor=handler,
            data=ExtensionIn(hours=48, reason="需协调产权单位及施工队，申请延期两天"),
        )
        return
    if target < 0.42:
        step(
            appeal_service.supervise,
            rng.uniform(60, 600),
            actor=Actor.system("督办员 周航"),
            reason="群众多次来电反映，请加快处置并及时反馈",
        )
        return
    step(
        appeal_service.complete,
        rng.uniform(26 * 60, 40 * 60) if late else rng.uniform(60, 20 * 60),
        actor=handler,
        data=CompleteIn(reply=rng.choice(HANDLER_REPLIES)),
    )
    if target < 0.5:
        return
    clock.advance(timedelta(hours=rng.uniform(1, 30)))
    verdict = rng.choices([Rating.satisfied, Rating.basic, Rating.unsatisfied], weights=[78, 14, 8])[0]
    with unit_of_work(factory) as s:
        appeal_service.rate(
            session=s,
            tracking_code=appeal.tracking_code,
            data=RateIn(rating=verdict, comment="处理及时，谢谢" if verdict == Rating.satisfied else ""),
        )
    if verdict == Rating.unsatisfied and rng.random() < 0.5:
        clock.advance(timedelta(hours=2))
        with unit_of_work(factory) as s:
            appeal_service.reopen(
                session=s, tracking_code=appeal.tracking_code, reason="问题没有根本解决，希望再次处理"
            )


def places_service_unit(factory: sessionmaker[Session], code: str) -> int:
    """The id of a unit by code (demo helper)."""
    with unit_of_work(factory) as s:
        return places_service.get_unit_by_code(session=s, code=code).id


def load_demo(factory: sessionmaker[Session], n_appeals: int = 400, seed: int = 2026) -> list[str]:
    """Load the illustrative demo data; safe to run again."""
    with unit_of_work(factory) as session:
        places_service.load_reference(session=session)
        responsibility.seed_defaults(session=session)
        _ensure_accounts(session)
        places = _ensure_places(session)
        _ensure_policies(session)
    with unit_of_work(factory) as session:
        model = training.ensure_demo_model(session=session, data_dir=get_settings().data_dir)
    rng = random.Random(seed)
    real_now = clock.now()
    plan = []
    for i in range(n_appeals):
        created_at = real_now - timedelta(
            days=28 * (1 - i / max(n_appeals, 1)) ** 1.3, minutes=rng.uniform(0, 600)
        )
        # a low-discrepancy sequence rather than random draws: every scenario band of `_one_appeal` gets its
        # share even in a small demo (tests load 80 appeals and expect returns, transfers and merges)
        target = SHOWCASE[i] if i < len(SHOWCASE) else (0.5 + i * GOLDEN) % 1.0
        # a district finishes most appeals within days: those still open are mostly from the last day, only a
        # few old ones are really late (else nearly every open appeal is overdue and auto-supervised)
        if _stays_open(target) and rng.random() < 0.85:
            created_at = real_now - timedelta(hours=rng.uniform(0.5, 20))
        plan.append((created_at, i, target))
    try:
        for created_at, i, target in sorted(plan):
            clock.freeze(created_at)
            _one_appeal(factory, rng, i, places, target)
    finally:
        clock.reset()
    appeal_jobs.sweep_deadlines(factory, "demo-loader")
    lines = [
        f"派单模型 (dispatch model): {model.version} 由示范样例训练" if model else "派单模型：沿用已激活版本"
    ]
    lines += [f"{u:<14} {r.label:<10} 密码 {DEMO_PASSWORD}  {n}" for u, n, r, _ in ACCOUNTS]
    lines.append(
        f"grid_XXX      镇街网格员  密码 {DEMO_PASSWORD}  (XXX = 街道编码后三位，如 grid_004 西溪街道)"
    )
    from xihu.indicators.demo import load_demo_figures

    with unit_of_work(factory) as session:
        lines += load_demo_figures(session=session, password=DEMO_PASSWORD)
    from xihu.analysis.demo import load_demo_warnings

    lines += load_demo_warnings(factory)
    with unit_of_work(factory) as session:
        counts = appeal_service.counts_by_state(session=session)
    lines.append("诉求 (appeals) by state: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    lines.append("示范地点二维码 (demo place code): XHDEMO01 → /r/XHDEMO01, A4: /places/XHDEMO01/sheet")
    return lines
