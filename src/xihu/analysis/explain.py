"""Chinese sentences that explain a warning's evidence: what was observed, what was expected, how unlikely."""

from __future__ import annotations

from typing import Any

from xihu.analysis.enums import WarningKind


def likelihood(p: float | None) -> str:
    """How unlikely an observation is, in words a supervisor can act on."""
    if p is None:
        return ""
    if p <= 0:
        return "按历史规律几乎不可能偶然出现"
    if p < 1e-6:
        return f"按历史规律偶然出现的概率低于百万分之一（p≈{p:.1e}）"
    if p < 1e-3:
        return f"按历史规律偶然出现的概率约为 {p:.1e}（不到千分之一）"
    return f"按历史规律偶然出现的概率约为 {p:.3f}"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.1f}%"


def explain(kind: WarningKind, ev: dict[str, Any]) -> list[str]:
    """Sentences for the warning detail page."""
    p = ev.get("p_value")
    if kind == WarningKind.spike:
        return [
            f"观察：{ev.get('street_name', '')}「{ev.get('category', '')}」类诉求在 {ev.get('start')} 至 "
            f"{ev.get('end')} 的 {ev.get('window_days')} 天内共 {ev.get('observed')} 件。",
            f"预期：前 {len(ev.get('baseline', []))} 周同期（同星期几）平均 {ev.get('expected')} 件"
            f"（各周分别为 {'、'.join(str(x) for x in ev.get('baseline', []))} 件）。",
            f"偏离：高出 {ev.get('z')} 个标准差，{likelihood(p)}。",
        ]
    if kind == WarningKind.hotspot:
        return [
            f"观察：以 {ev.get('center_label', '该点')} 为中心约 {ev.get('radius_m')} 米范围内，近 "
            f"{ev.get('window_days')} 天收到 {ev.get('observed')} 件诉求"
            + (f"，主要类别为「{ev['top_category']}」" if ev.get("top_category") else "")
            + "。",
            f"预期：此前 8 周该范围平均每周 {ev.get('expected')} 件。",
            f"判断：{likelihood(p)}。涉及诉求编号见下表。",
        ]
    if kind == WarningKind.topic:
        weekly = ev.get("weekly", [])
        return [
            f"观察：「{ev.get('term')}」一词在近 7 天（{ev.get('start')} 至 {ev.get('end')}）"
            "的诉求标题中出现 "
            f"{ev.get('observed')} 次。",
            f"预期：此前 8 周平均每周 {ev.get('expected')} 次"
            f"（由远到近：{'、'.join(str(x) for x in weekly)}）。",
            f"判断：约为平常的 {ev.get('ratio')} 倍，{likelihood(p)}。"
            + (f"同期一起上升的词：{'、'.join(ev['related'])}。" if ev.get("related") else ""),
        ]
    if kind == WarningKind.repeat_caller:
        return [
            f"观察：来电号码 {ev.get('phone_masked')} 在近 {ev.get('window_days')} 天内提交了 "
            f"{ev.get('observed')} 件诉求（{ev.get('first_day')} 至 {ev.get('last_day')}），"
            f"涉及类别：{'、'.join(ev.get('categories', [])) or '未分类'}。",
            f"预期：全区来电人平均每人 {ev.get('expected')} 件。",
            f"判断：{likelihood(p)}。建议核实是否为同一问题反复未解决，并安排专人回访。号码已脱敏显示。",
        ]
    if kind == WarningKind.sla_risk:
        return [
            f"观察：{ev.get('unit_name')} 今天到期未办结的诉求 {ev.get('queue_due_today')} 件，"
            f"距今日结束还有 {ev.get('hours_left')} 小时。",
            f"预期：该单位近 {ev.get('pace_days')} 天平均每天办结 {ev.get('pace_per_day')} 件，"
            f"今天剩余时间约能办结 {ev.get('capacity')} 件。",
            f"判断：按当前节奏预计今天将有约 {ev.get('predicted_breaches')} 件超时，建议督办或调配力量。",
        ]
    if kind == WarningKind.dissatisfaction:
        scope = ev.get("scope_label", "")
        return [
            f"观察：{scope}近 {ev.get('window_days')} 天已评价 {ev.get('rated')} 件，其中不满意 "
            f"{ev.get('unsatisfied')} 件（{_pct(ev.get('observed_rate'))}）。",
            f"预期：全区此前 8 周不满意率为 {_pct(ev.get('expected_rate'))}，"
            f"按此应约 {ev.get('expected')} 件。",
            f"判断：{likelihood(p)}。建议复核答复质量并回访群众。",
        ]
    return []
