"""Bulk import of a 12345 export (CSV or Excel): validated row by row, with progress and an error report."""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path

from openpyxl import load_workbook
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from xihu.appeals import service as appeal_service
from xihu.appeals.enums import Channel, Priority
from xihu.appeals.models import ImportJob, ImportRowError
from xihu.appeals.schemas import AppealCreate, ImportResult
from xihu.core import clock
from xihu.core.csv_text import decode_csv
from xihu.core.errors import DomainError, Invalid, NotFound
from xihu.core.jobs import notify_workers
from xihu.core.longjobs import waiting_hint
from xihu.core.security import Actor, authorize
from xihu.places import service as places_service

log = logging.getLogger("xihu.import")
MAX_ROWS = 50_000
ERRORS_SHOWN = 100  # failed rows listed with the progress (polled every second); all are in errors.csv
CHUNK = 50  # rows per transaction at most
CHUNK_SECONDS = 0.05  # and no longer than this: a citizen's submission waits for the import's transaction
CHUNK_PAUSE_SECONDS = 0.002

# Column names as 12345 exports write them (Chinese) and their English equivalents.
COLUMNS = {
    "external_id": ("工单编号", "工单号", "external_id", "id"),
    "title": ("标题", "诉求标题", "title"),
    "description": ("诉求内容", "内容", "来电内容", "description", "text"),
    "citizen_name": ("联系人", "姓名", "来电人", "citizen_name", "name"),
    "citizen_phone": ("联系电话", "电话", "来电号码", "citizen_phone", "phone"),
    "address": ("地址", "事发地址", "address"),
    "street": ("街道", "镇街", "所属街道", "street"),
    "category_hint": ("类别", "诉求类别", "category"),
    "priority": ("紧急程度", "priority"),
}
PRIORITY_WORDS = {"紧急": Priority.urgent, "一般": Priority.normal, "疑难": Priority.complex}


LINE = "__line__"  # the row's line number in the file (the header is line 1), for the error report


def _read_rows(filename: str, data: bytes) -> list[dict[str, str]]:
    """Rows as dicts keyed by header, each with its real line number under LINE (blank lines skipped)."""
    if filename.lower().endswith((".xlsx", ".xlsm")) or data[:2] == b"PK":
        try:
            wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
            raise Invalid(
                "无法读取 Excel 文件，请确认是 .xlsx 格式", english="cannot read the Excel file"
            ) from exc
        sheet = wb.worksheets[0]
        values = list(sheet.iter_rows(values_only=True))
        if not values:
            return []
        header = [str(h or "").strip() for h in values[0]]
        rows = []
        for number, row in enumerate(values[1:], start=2):
            if any(v not in (None, "") for v in row):
                item = {
                    header[i]: "" if v is None else str(v).strip()
                    for i, v in enumerate(row)
                    if i < len(header)
                }
                item[LINE] = str(number)
                rows.append(item)
        return rows
    reader = csv.reader(io.StringIO(decode_csv(data)))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return []
    rows = []
    start = reader.line_num + 1
    for record in reader:
        if any(v.strip() for v in record):
            item = {header[i]: v.strip() for i, v in enumerate(record) if i < len(header)}
            item[LINE] = str(start)
            rows.append(item)
        start = reader.line_num + 1  # a quoted field may span several lines
    return rows


def _map_header(row: dict[str, str]) -> dict[str, str | None]:
    return {field: next((name for name in names if name in row), None) for field, names in COLUMNS.items()}


def create_job(*, session: Session, actor: Actor, filename: str, data: bytes, data_dir: Path) -> ImportResult:
    """Check the file and its header, store it, and open an import job."""
    authorize(actor, "appeal.import")
    if not data:
        raise Invalid("文件为空", english="empty file")
    rows = _read_rows(filename, data)
    if not rows:
        raise Invalid("文件中没有数据行", english="no data rows")
    if len(rows) > MAX_ROWS:
        raise Invalid(f"单次最多导入 {MAX_ROWS} 行", english=f"at most {MAX_ROWS} rows per import")
    mapping = _map_header(rows[0])
    if mapping["description"] is None:
        raise Invalid(
            "缺少「诉求内容」列", english="missing description column", detail={"columns": list(rows[0])}
        )
    job = ImportJob(filename=filename[:200], status="queued", total=len(rows), created_by_id=actor.user_id)
    session.add(job)
    session.flush()
    folder = data_dir / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{job.id}.bin").write_bytes(data)
    (folder / f"{job.id}.name").write_text(filename, encoding="utf-8")
    notify_workers(session)
    return _read(session, job)


# how exports name a street's office rather than the street: 西溪街道办事处, 西溪街道办, 三墩镇人民政府
OFFICE_SUFFIXES = ("街道办事处", "街道办", "办事处", "人民政府")


def _street_id(session: Session, name: str) -> int | None:
    """The street (街道/镇) an export names, also by its office's name or without 街道/镇; None if unknown."""
    tries = [name]
    for suffix in OFFICE_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            tries.append(name.removesuffix(suffix))
    tries += [f"{base}{kind}" for base in list(tries) for kind in ("街道", "镇")]
    for candidate in tries:
        unit = places_service.get_unit_by_name(session=session, name=candidate)
        if unit is not None and unit.kind == "street":
            return unit.id
    return None


def _row_to_appeal(
    session: Session, row: dict[str, str], mapping: dict[str, str | None], streets: dict[str, int | None]
) -> AppealCreate:
    def get(field: str) -> str:
        col = mapping.get(field)
        return row.get(col, "") if col else ""

    street_id = None
    if get("street"):
        name = get("street")
        if name not in streets:  # an export names the same few streets over and over
            streets[name] = _street_id(session, name)
        street_id = streets[name]
        if street_id is None:
            raise Invalid(f"街道「{get('street')}」不存在", english="unknown street")
    priority = PRIORITY_WORDS.get(get("priority"), Priority.normal)
    return AppealCreate(
        description=get("description"),
        title=get("title") or None,
        citizen_name=get("citizen_name") or None,
        citizen_phone=get("citizen_phone") or None,
        address=get("address"),
        street_id=street_id,
        category_hint=get("category_hint") or None,
        priority=priority,
        external_id=get("external_id") or None,
    )


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors():
            field = str(err["loc"][-1]) if err["loc"] else ""
            label = COLUMNS[field][0] if field in COLUMNS else field  # the column's Chinese name
            ctx = err.get("ctx") or {}
            if err["type"] == "string_too_short":
                msg = f"至少 {ctx.get('min_length')} 个字"
            elif err["type"] == "string_too_long":
                msg = f"最多 {ctx.get('max_length')} 个字"
            else:
                msg = str(err["msg"]).removeprefix("Value error, ")
            parts.append(f"{label}：{msg}")
        return "；".join(parts)
    if isinstance(exc, DomainError):
        return exc.message
    return str(exc)[:200]


def process(factory: sessionmaker[Session], job_id: int, data_dir: Path) -> None:
    """Run an import job a worker has claimed (see `appeals.jobs`) from where an earlier attempt stopped; an
    unexpected failure marks the job failed instead of leaving it running."""
    try:
        _process(factory, job_id, data_dir)
    except Exception as exc:
        log.exception("import job %s failed", job_id)
        with factory() as session:
            job = session.get(ImportJob, job_id)
            if job is not None:
                job.status = "failed"
                session.add(ImportRowError(job_id=job_id, row=None, error=f"导入中断：{str(exc)[:200]}"))
                job.finished_at = clock.now()
                session.commit()


def _process(factory: sessionmaker[Session], job_id: int, data_dir: Path) -> None:
    """Create the appeals of an import job in chunks, recording progress and every row's error."""
    folder = data_dir / "imports"
    data = (folder / f"{job_id}.bin").read_bytes()
    filename = (folder / f"{job_id}.name").read_text(encoding="utf-8")
    rows = _read_rows(filename, data)
    mapping = _map_header(rows[0])
    importer = Actor.system("12345 导入")
    with factory() as session:
        job = session.get(ImportJob, job_id)
        if job is None or job.status != "running":
            return
        start_at = job.processed
        session.commit()
    streets: dict[str, int | None] = {}
    begin = start_at
    while begin < len(rows):
        with factory() as session:
            created = skipped = 0
            started = time.monotonic()
            end = begin
            # a chunk is one transaction, and on SQLite a transaction holds the one write lock every request
            # waits for: chunks end after CHUNK rows or CHUNK_SECONDS, whichever comes first
            while end < len(rows) and (
                end == begin or (end - begin < CHUNK and time.monotonic() - started < CHUNK_SECONDS)
            ):  # at least one row, however slow
                row = rows[end]
                line = int(row.get(LINE, end + 2))
                end += 1
                try:
                    with session.begin_nested():
                        appeal_in = _row_to_appeal(session, row, mapping, streets)
                        result = appeal_service.submit(
                            session=session, actor=importer, appeal_in=appeal_in, channel=Channel.import_12345
                        )
                    created += result.created
                    skipped += not result.created
                except (ValidationError, DomainError) as exc:
                    # stored with the chunk's progress: a resumed run neither loses nor repeats it
                    ref = row.get(mapping["external_id"] or "", "")[:64]
                    session.add(ImportRowError(job_id=job_id, row=line, ref=ref, error=_describe(exc)[:500]))
            job = session.get(ImportJob, job_id)
            assert job is not None
            job.processed = end
            job.created_count += created
            job.skipped_count += skipped
            session.commit()
        begin = end
        time.sleep(
            CHUNK_PAUSE_SECONDS
        )  # the lock just released goes to a waiting request, not the next chunk
    with factory() as session:
        job = session.get(ImportJob, job_id)
        assert job is not None
        job.status = "finished"
        job.finished_at = clock.now()
        session.commit()


def give_up(session: Session, job: ImportJob) -> None:
    """Mark a job failed whose runs ended with their process every time; the rows imported so far stay."""
    job.status = "failed"
    job.finished_at = clock.now()
    stopped = f"导入进程 {job.attempts} 次中断，已停止重试；已导入的 {job.processed} 行保留"
    session.add(ImportRowError(job_id=job.id, row=None, error=stopped))


def _read(session: Session, job: ImportJob) -> ImportResult:
    session.flush()  # errors added in this transaction are counted
    first = session.execute(
        select(ImportRowError.row, ImportRowError.ref, ImportRowError.error)
        .where(ImportRowError.job_id == job.id)
        .order_by(ImportRowError.id)
        .limit(ERRORS_SHOWN)
    ).all()
    count = len(first)
    if count == ERRORS_SHOWN:
        count = session.scalar(select(func.count()).where(ImportRowError.job_id == job.id)) or 0
    return ImportResult(
        id=job.id,
        filename=job.filename,
        status=job.status,
        total=job.total,
        processed=job.processed,
        created_count=job.created_count,
        skipped_count=job.skipped_count,
        errors=[{"row": row, "ref": ref, "error": error} for row, ref, error in first],
        error_count=count,
        errors_csv=f"/api/imports/{job.id}/errors.csv" if count else "",
        hint={
            "lost": f"导入进程中断（服务重启或进程退出），后台进程将从第 {job.processed + 1} 条继续",
            "unclaimed": "仍在排队：请确认后台进程（xihu worker）在运行",
        }.get(waiting_hint(job.status, job.created_at, job.heartbeat_at) or "", ""),
    )


def status(*, session: Session, actor: Actor, job_id: int) -> ImportResult:
    """An import job's progress and errors."""
    authorize(actor, "appeal.import")
    job = session.get(ImportJob, job_id)
    if job is None:
        raise NotFound("导入任务不存在", english="import job not found")
    return _read(session, job)


def errors_csv(*, session: Session, actor: Actor, job_id: int) -> bytes:
    """Every failed row of an import as CSV (with a BOM, so Excel reads the Chinese), in file order."""
    authorize(actor, "appeal.import")
    if session.get(ImportJob, job_id) is None:
        raise NotFound("导入任务不存在", english="import job not found")
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(["行号", "工单编号", "错误"])
    rows = session.execute(
        select(ImportRowError.row, ImportRowError.ref, ImportRowError.error)
        .where(ImportRowError.job_id == job_id)
        .order_by(ImportRowError.id)
        .execution_options(yield_per=1000)
    )
    out.writerows(["" if row is None else row, ref, error] for row, ref, error in rows)
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def template_csv() -> bytes:
    """A CSV template with the accepted columns."""
    header = ["工单编号", "标题", "诉求内容", "联系人", "联系电话", "地址", "街道", "类别", "紧急程度"]
    example = [
        "12345-0001",
        "路灯不亮",
        "文三路学院路口路灯连续三晚不亮，夜间行走不安全",
        "王先生",
        "13800000000",
        "文三路学院路口",
        "西溪街道",
        "城乡建设",
        "一般",
    ]
    buf = io.StringIO()
    csv.writer(buf).writerows([header, example])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")
