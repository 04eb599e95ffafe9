"""日报 / 周报: the brief's figures, its charts as inline SVG, and its Excel and PDF renderings."""

from __future__ import annotations

import io
from datetime import date, datetime, time, timedelta
from html import escape
from typing import Any

from openpyxl import Workbook
from openpyxl.chart import BarChart, LineChart, Reference
from openpyxl.styles import Alignment, Font, PatternFill
from pydantic import BaseModel
from sqlalchemy.orm import Session

from xihu.analysis import service
from xihu.analysis.schemas import AppealFigures, WarningRead
from xihu.core import clock
from xihu.core.errors import Invalid
from xihu.core.security import Actor

KINDS = {"daily": "日报", "weekly": "周报"}
FONT_FAMILY = "'Noto Sans CJK SC', 'Noto Sans SC', 'Source Han Sans SC', 'Microsoft YaHei', sans-serif"


class Brief(BaseModel):
    """Everything a brief shows."""

    kind: str
    kind_label: str
    title: str
    start: date
    end: date
    figures: AppealFigures
    previous: AppealFigures
    warnings: list[WarningRead]
    active_warnings: int
    generated_at: datetime


def period(kind: str, day: date) -> tuple[date, date, date, date]:
    """The brief's period and the period before it: a day, or the Monday-to-Sunday week containing the day."""
    if kind == "daily":
        return day, day, day - timedelta(1), day - timedelta(1)
    if kind == "weekly":
        start = day - timedelta(day.weekday())
        return start, start + timedelta(6), start - timedelta(7), start - timedelta(1)
    raise Invalid("简报类型只能是日报或周报", english="kind must be daily or weekly")


def build(*, session: Session, actor: Actor, kind: str, day: date) -> Brief:
    """Assemble a brief for a day (日报) or the week containing the day (周报)."""
    start, end, prev_start, prev_end = period(kind, day)
    figures = service.appeal_figures(session=session, actor=actor, area_unit_id=None, start=start, end=end)
    previous = service.appeal_figures(
        session=session, actor=actor, area_unit_id=None, start=prev_start, end=prev_end
    )
    since = datetime.combine(start, time(0), tzinfo=clock.LOCAL_TZ)
    until = datetime.combine(end + timedelta(1), time(0), tzinfo=clock.LOCAL_TZ)
    raised = service.list_warnings(session=session, actor=actor, since=since, until=until, limit=50)
    active = service.list_open_warnings(session=session, actor=actor, limit=500)
    label = KINDS[kind]
    span = f"{start:%Y年%m月%d日}" if start == end else f"{start:%Y年%m月%d日}—{end:%m月%d日}"
    return Brief(
        kind=kind,
        kind_label=label,
        title=f"西湖区民呼我为诉求{label}（{span}）",
        start=start,
        end=end,
        figures=figures,
        previous=previous,
        warnings=raised,
        active_warnings=len(active),
        generated_at=clock.now(),
    )


def pct(x: float | None) -> str:
    """A rate as a percentage, or a dash."""
    return "—" if x is None else f"{x * 100:.1f}%"


def change(now: int, before: int) -> str:
    """The change against the previous period in words."""
    if before == 0:
        return "上期无数据" if now == 0 else "上期为 0"
    diff = (now - before) / before * 100
    return f"{'增长' if diff >= 0 else '下降'} {abs(diff):.1f}%"


def bar_svg(items: list[tuple[str, float]], *, width: int = 640, bar: int = 22, unit: str = "件") -> str:
    """A horizontal bar chart as inline SVG (works in the HTML page and in the PDF without scripts)."""
    if not items:
        return '<p class="muted">暂无数据</p>'
    top = max(v for _, v in items) or 1
    label_w, pad = 150, 6
    height = len(items) * (bar + pad) + pad
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" font-family="{escape(FONT_FAMILY)}" font-size="12">'
    ]
    for i, (name, value) in enumerate(items):
        y = pad + i * (bar + pad)
        w = max(1, int((width - label_w - 70) * value / top))
        parts.append(
            f'<text x="{label_w - 8}" y="{y + bar * 0.7:.0f}" text-anchor="end">{escape(name[:12])}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar}" fill="#1677ff" rx="2"/>'
            f'<text x="{label_w + w + 6}" y="{y + bar * 0.7:.0f}">{value:g} {unit}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def line_svg(points: list[tuple[str, int, int]], *, width: int = 640, height: int = 200) -> str:
    """Received and completed per day as an inline SVG line chart."""
    if not points:
        return '<p class="muted">暂无数据</p>'
    top = max(max(r, c) for _, r, c in points) or 1
    left, bottom, right, top_pad = 40, 30, 28, 20
    plot_w, plot_h = width - left - right, height - bottom - top_pad
    step = plot_w / max(1, len(points) - 1)

    def xy(i: int, v: int) -> str:
        return f"{left + i * step:.1f},{top_pad + plot_h - plot_h * v / top:.1f}"

    received = " ".join(xy(i, r) for i, (_, r, _) in enumerate(points))
    completed = " ".join(xy(i, c) for i, (_, _, c) in enumerate(points))
    labels = "".join(
        f'<text x="{left + i * step:.1f}" y="{height - 10}" text-anchor="middle">{escape(d)}</text>'
        for i, (d, _, _) in enumerate(points)
        if len(points) <= 10 or i % max(1, len(points) // 8) == 0
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" font-family="{escape(FONT_FAMILY)}" font-size="11">'
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{width - right}" '
        f'y2="{top_pad + plot_h}" stroke="#999"/>'
        f'<text x="4" y="{top_pad + 4}">{top}</text>'
        f'<polyline fill="none" stroke="#1677ff" stroke-width="2" points="{received}"/>'
        f'<polyline fill="none" stroke="#52c41a" stroke-width="2" points="{completed}"/>'
        f"{labels}"
        f'<text x="{width - 150}" y="14" fill="#1677ff">— 受理</text>'
        f'<text x="{width - 80}" y="14" fill="#52c41a">— 办结</text>'
        "</svg>"
    )


def charts(brief: Brief) -> dict[str, str]:
    """The brief's charts as SVG markup."""
    f = brief.figures
    return {
        "areas": bar_svg([(a.name, a.received) for a in sorted(f.by_area, key=lambda a: -a.received)]),
        "categories": bar_svg([(c.category, c.count) for c in f.top_categories[:8]]),
        "days": line_svg([(d.day.strftime("%m-%d"), d.received, d.completed) for d in f.by_day]),
    }


def kpis(brief: Brief) -> list[tuple[str, str, str]]:
    """The headline figures: name, value, and the comparison with the previous period."""
    f, p = brief.figures, brief.previous
    return [
        ("受理诉求", f"{f.received} 件", f"较上期{change(f.received, p.received)}"),
        ("已办结", f"{f.completed} 件", f"办结率 {pct(f.resolution_rate)}"),
        ("签收及时率", pct(f.response_rate), f"上期 {pct(p.response_rate)}"),
        ("按时办结率", pct(f.on_time_completion_rate), f"上期 {pct(p.on_time_completion_rate)}"),
        ("满意率", pct(f.satisfaction_rate), f"已评价 {f.rated} 件，上期 {pct(p.satisfaction_rate)}"),
        ("在办预警", f"{brief.active_warnings} 条", f"本期新增 {len(brief.warnings)} 条"),
    ]


def to_excel(brief: Brief) -> bytes:
    """The brief as an Excel workbook with a sheet per table and native charts."""
    wb = Workbook()
    head = Font(bold=True, color="FFFFFF")
    fill = PatternFill("solid", fgColor="1677FF")

    def header(ws: Any, names: list[str]) -> None:
        ws.append(names)
        for cell in ws[ws.max_row]:
            cell.font, cell.fill = head, fill
            cell.alignment = Alignment(horizontal="center")

    ws = wb.active
    assert ws is not None
    ws.title = "概览"
    ws.append([brief.title])
    ws["A1"].font = Font(bold=True, size=14)
    ws.append([f"统计区间：{brief.start} 至 {brief.end}；生成时间：{clock.fmt(brief.generated_at)}"])
    header(ws, ["指标", "本期", "对比"])
    for row in kpis(brief):
        ws.append(list(row))
    ws.column_dimensions["A"].width = 16
    ws.column_dimensions["B"].width = 14
    ws.column_dimensions["C"].width = 36

    areas = wb.create_sheet("街道")
    header(areas, ["街道/镇", "受理", "签收及时率", "办结率", "满意率"])
    for a in brief.figures.by_area:
        areas.append([a.name, a.received, a.response_rate, a.resolution_rate, a.satisfaction_rate])
    for col in "CDE":
        for cell in areas[col][1:]:
            cell.number_format = "0.0%"
    areas.column_dimensions["A"].width = 14
    if brief.figures.by_area:
        chart = BarChart()
        chart.title = "各街道受理量"
        chart.y_axis.title = "件"
        n = len(brief.figures.by_area) + 1
        chart.add_data(Reference(areas, min_col=2, min_row=1, max_row=n), titles_from_data=True)
        chart.set_categories(Reference(areas, min_col=1, min_row=2, max_row=n))
        chart.width, chart.height = 20, 9
        areas.add_chart(chart, "G2")

    cats = wb.create_sheet("类别")
    header(cats, ["类别", "受理"])
    for c in brief.figures.top_categories:
        cats.append([c.category, c.count])
    cats.column_dimensions["A"].width = 16
    if brief.figures.top_categories:
        chart = BarChart()
        chart.type = "bar"
        chart.title = "诉求类别"
        n = len(brief.figures.top_categories) + 1
        chart.add_data(Reference(cats, min_col=2, min_row=1, max_row=n), titles_from_data=True)
        chart.set_categories(Reference(cats, min_col=1, min_row=2, max_row=n))
        cats.add_chart(chart, "D2")

    days = wb.create_sheet("每日")
    header(days, ["日期", "受理", "办结"])
    for d in brief.figures.by_day:
        days.append([d.day.isoformat(), d.received, d.completed])
    days.column_dimensions["A"].width = 12
    if len(brief.figures.by_day) > 1:
        chart = LineChart()
        chart.title = "每日受理与办结"
        n = len(brief.figures.by_day) + 1
        chart.add_data(Reference(days, min_col=2, max_col=3, min_row=1, max_row=n), titles_from_data=True)
        chart.set_categories(Reference(days, min_col=1, min_row=2, max_row=n))
        days.add_chart(chart, "E2")

    warn = wb.create_sheet("预警")
    header(warn, ["编号", "类型", "等级", "标题", "区域", "状态", "时间"])
    for w in brief.warnings:
        warn.append(
            [
                w.id,
                w.kind_label,
                w.severity_label,
                w.title,
                w.area_name,
                w.state_label,
                clock.fmt(w.created_at),
            ]
        )
    warn.column_dimensions["D"].width = 60
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def to_pdf(html: str) -> bytes:
    """Render the brief's print page to PDF (WeasyPrint, with the system's Noto CJK fonts for Chinese)."""
    from weasyprint import HTML  # imported here: it is slow to load and only briefs need it

    pdf = HTML(string=html, base_url=None).write_pdf()
    assert pdf is not None
    return bytes(pdf)


def print_html(brief: Brief) -> str:
    """The print page of a brief (the PDF's source), rendered without a request."""
    from xihu.web.templating import templates

    template = templates.env.get_template("analysis/brief_print.html")
    return template.render(b=brief, kpis=kpis(brief), charts=charts(brief), pct=pct, font_family=FONT_FAMILY)
