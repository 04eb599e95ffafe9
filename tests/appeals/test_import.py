"""Bulk import of a 12345 export through HTTP: row-by-row validation, progress, errors, re-import."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select

from xihu.appeals.jobs import IMPORTS
from xihu.appeals.models import Appeal, ImportJob

HEADER = ["工单编号", "标题", "诉求内容", "联系人", "联系电话", "地址", "街道"]


def _rows(prefix: str) -> list[list[str]]:
    return [
        [
            f"{prefix}-001",
            "路灯不亮",
            "文三路学院路口路灯连续三晚不亮，夜间行走不安全",
            "王先生",
            "13800000001",
            "文三路学院路口",
            "西溪街道",
        ],
        [f"{prefix}-002", "太短", "太短", "李女士", "12", "", "西溪街道"],
        [
            f"{prefix}-003",
            "垃圾清运",
            "小区门口垃圾桶已经两天没有清运，气味很大",
            "赵先生",
            "13800000003",
            "古墩路",
            "蒋村街道",
        ],
        [
            f"{prefix}-004",
            "噪音",
            "夜间施工噪音扰民，已经持续一周了，影响休息",
            "钱女士",
            "13800000004",
            "天目山路",
            "火星街道",
        ],
        [
            f"{prefix}-005",
            "井盖",
            "人行道井盖松动，行人踩上去会晃动，存在安全隐患",
            "孙先生",
            "0571-88888888",
            "",
            "翠苑街道",
        ],
    ]


def _csv(prefix: str, header: list[str] = HEADER, encoding: str = "utf-8-sig") -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(_rows(prefix))
    return buf.getvalue().encode(encoding)


def _xlsx(prefix: str) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.append(HEADER)
    for row in _rows(prefix):
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _upload(client, name: str, data: bytes, ctype: str = "text/csv"):
    """Post a file, then run a worker round, which runs the queued import (inline in tests)."""
    resp = client.post("/api/imports", files={"file": (name, data, ctype)})
    if resp.status_code == 202:
        assert resp.json()["status"] == "queued"  # the request only queues it
        assert IMPORTS.tick(client.app.state.session_factory, "test-worker") == 1
    return resp


def _count(session, model, *where) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def _imported(session, prefix: str) -> list[str]:
    session.expire_all()
    return sorted(session.scalars(select(Appeal.external_id).where(Appeal.external_id.like(f"{prefix}-%"))))


def _assert_finished(client, resp, *, created: int, skipped: int) -> dict:
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    status = client.get(f"/api/imports/{job_id}")
    assert status.status_code == 200, status.text
    body = status.json()
    assert body["status"] == "finished"
    assert body["total"] == 5
    assert body["processed"] == 5
    assert body["created_count"] == created
    assert body["skipped_count"] == skipped
    return body


def _assert_bad_rows(errors: list[dict]) -> None:
    # header is line 1: the 2nd data row is line 3, the 4th is line 5
    assert [e["row"] for e in errors] == [3, 5]
    short, street = errors[0]["error"], errors[1]["error"]
    assert "诉求内容" in short and "至少 5 个字" in short  # description too short, in Chinese
    assert "电话号码格式不正确" in short  # and the phone "12" is refused in the same row
    assert street == "街道「火星街道」不存在"
    assert [e["ref"].split("-")[-1] for e in errors] == ["002", "004"]  # and each row's 工单编号


def test_csv_import_creates_good_rows_and_reports_bad_ones(client, login_as, session) -> None:
    login_as("intake")
    body = _assert_finished(client, _upload(client, "12345.csv", _csv("CSV")), created=3, skipped=0)
    _assert_bad_rows(body["errors"])
    assert _imported(session, "CSV") == ["CSV-001", "CSV-003", "CSV-005"]
    appeal = session.scalar(select(Appeal).where(Appeal.external_id == "CSV-005"))
    assert appeal.channel == "import_12345"
    assert appeal.citizen_phone == "0571-88888888"
    assert appeal.title == "井盖"

    # the same file again creates nothing new
    again = _assert_finished(client, _upload(client, "12345.csv", _csv("CSV")), created=0, skipped=3)
    assert [e["row"] for e in again["errors"]] == [3, 5]
    assert _imported(session, "CSV") == ["CSV-001", "CSV-003", "CSV-005"]


def test_xlsx_import_works_the_same(client, login_as, session) -> None:
    login_as("intake")
    xlsx_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    body = _assert_finished(
        client, _upload(client, "12345.xlsx", _xlsx("XLS"), xlsx_type), created=3, skipped=0
    )
    _assert_bad_rows(body["errors"])
    assert _imported(session, "XLS") == ["XLS-001", "XLS-003", "XLS-005"]
    again = _assert_finished(
        client, _upload(client, "12345.xlsx", _xlsx("XLS"), xlsx_type), created=0, skipped=3
    )
    assert [e["row"] for e in again["errors"]] == [3, 5]


def test_gbk_csv_is_read(client, login_as, session) -> None:
    login_as("intake")
    data = _csv("GBK", encoding="gbk")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    body = _assert_finished(client, _upload(client, "gbk.csv", data), created=3, skipped=0)
    _assert_bad_rows(body["errors"])
    appeal = session.scalar(select(Appeal).where(Appeal.external_id == "GBK-003"))
    assert appeal.description == "小区门口垃圾桶已经两天没有清运，气味很大"


def test_file_without_description_column_is_refused_and_opens_no_job(client, login_as, session) -> None:
    login_as("intake")
    jobs = _count(session, ImportJob)
    header = ["工单编号", "标题", "备注", "联系人", "联系电话", "地址", "街道"]
    resp = _upload(client, "bad.csv", _csv("NOD", header=header))
    assert resp.status_code == 422, resp.text
    assert "诉求内容" in resp.text
    assert _count(session, ImportJob) == jobs
    assert _imported(session, "NOD") == []


def test_empty_file_is_refused(client, login_as, session) -> None:
    login_as("intake")
    jobs = _count(session, ImportJob)
    assert _upload(client, "empty.csv", b"").status_code == 422
    # a header without any data row is empty too
    assert _upload(client, "header.csv", (",".join(HEADER) + "\n").encode()).status_code == 422
    assert _count(session, ImportJob) == jobs


def test_handler_may_not_import(client, login_as, session) -> None:
    login_as("handler", "D-ZJ")
    jobs = _count(session, ImportJob)
    resp = _upload(client, "12345.csv", _csv("HDL"))
    assert resp.status_code == 403, resp.text
    assert _count(session, ImportJob) == jobs
    assert _imported(session, "HDL") == []


def test_anonymous_may_not_import(client, session) -> None:
    assert _upload(client, "12345.csv", _csv("ANO")).status_code == 401
    assert _imported(session, "ANO") == []


def test_row_numbers_are_file_lines_even_after_blank_lines(client, login_as, session) -> None:
    login_as("intake")
    text = "诉求内容,联系电话\n文三路路灯不亮好几天了请维修,13800000001\n\n\n太短,13800000002\n"
    resp = _upload(client, "gaps.csv", text.encode("utf-8"))
    assert resp.status_code == 202, resp.text
    job = client.get(f"/api/imports/{resp.json()['id']}").json()
    assert job["created_count"] == 1
    assert [e["row"] for e in job["errors"]] == [5]


def test_unexpected_failure_marks_the_job_failed(client, login_as, session, monkeypatch) -> None:
    from xihu.appeals import importer

    login_as("intake")

    def boom(*args, **kwargs):
        raise RuntimeError("磁盘错误")

    monkeypatch.setattr(importer, "_process", boom)
    text = "诉求内容\n文三路路灯不亮好几天了请维修\n"
    resp = _upload(client, "x.csv", text.encode("utf-8"))
    job = client.get(f"/api/imports/{resp.json()['id']}").json()
    assert job["status"] == "failed"
    assert "磁盘错误" in job["errors"][-1]["error"]


def test_an_import_whose_process_died_is_resumed_where_it_stopped(
    client, login_as, session, monkeypatch
) -> None:
    from xihu.appeals import importer
    from xihu.appeals import service as appeal_service
    from xihu.core import clock, longjobs

    login_as("intake")
    factory = client.app.state.session_factory
    resp = client.post("/api/imports", files={"file": ("12345.csv", _csv("RES"), "text/csv")})
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    # the first worker commits the first chunk (rows 1-2) and its process dies inside the second
    monkeypatch.setattr(importer, "CHUNK", 2)
    monkeypatch.setattr(importer, "CHUNK_SECONDS", 60.0)  # chunks of two rows however slow the machine is
    real_submit = appeal_service.submit
    submitted: list[str] = []

    def submit_then_die(**kwargs):
        if len(submitted) == 1:  # row 2 fails validation before it is submitted; row 3 opens chunk two
            raise SystemExit("worker killed")
        submitted.append(kwargs["appeal_in"].external_id)
        return real_submit(**kwargs)

    monkeypatch.setattr(appeal_service, "submit", submit_then_die)
    with pytest.raises(SystemExit):
        IMPORTS.tick(factory, "worker-that-dies")
    monkeypatch.setattr(appeal_service, "submit", real_submit)
    assert _imported(session, "RES") == ["RES-001"]
    died = client.get(f"/api/imports/{job_id}").json()
    assert (died["status"], died["processed"], died["hint"]) == ("running", 2, "")

    assert IMPORTS.tick(factory, "test-worker") == 0  # its heartbeat is still fresh: nobody takes it yet
    clock.freeze(clock.now() + longjobs.STALE_AFTER + timedelta(seconds=1))
    assert "将从第 3 条继续" in client.get(f"/api/imports/{job_id}").json()["hint"]
    assert IMPORTS.tick(factory, "test-worker") == 1
    job = client.get(f"/api/imports/{job_id}").json()
    assert job["status"] == "finished" and job["processed"] == 5 and job["hint"] == ""
    assert _imported(session, "RES") == ["RES-001", "RES-003", "RES-005"]  # none twice, none lost
    assert [e["row"] for e in job["errors"]] == [3, 5]  # the first attempt's error is kept, none repeated
    session.expire_all()
    assert session.get(ImportJob, job_id).attempts == 2


def test_an_import_that_keeps_killing_its_worker_is_given_up(client, login_as, session) -> None:
    from xihu.core import clock, longjobs

    login_as("intake")
    factory = client.app.state.session_factory
    resp = client.post("/api/imports", files={"file": ("12345.csv", _csv("GVU"), "text/csv")})
    job_id = resp.json()["id"]
    assert resp.json()["hint"] == ""
    clock.freeze(clock.now() + longjobs.UNCLAIMED_AFTER + timedelta(seconds=1))  # no worker came for it
    assert "xihu worker" in client.get(f"/api/imports/{job_id}").json()["hint"]
    for attempt in range(IMPORTS.max_attempts):  # every claim's process dies at once
        with factory() as s:
            assert IMPORTS.claim(s, f"worker-{attempt}") == job_id
            s.commit()
        clock.freeze(clock.now() + longjobs.STALE_AFTER + timedelta(seconds=1))
    assert IMPORTS.tick(factory, "test-worker") == 0
    job = client.get(f"/api/imports/{job_id}").json()
    assert job["status"] == "failed"
    assert f"{IMPORTS.max_attempts} 次中断" in job["errors"][-1]["error"]


def test_an_upload_wakes_the_web_processs_background_loop(client, login_as, monkeypatch) -> None:
    class Loop:
        woken = 0

        def wake(self) -> None:
            self.woken += 1

    loop = Loop()
    monkeypatch.setattr(client.app.state, "background_loop", loop, raising=False)
    login_as("intake")
    resp = client.post("/api/imports", files={"file": ("12345.csv", _csv("WAK"), "text/csv")})
    assert resp.status_code == 202 and loop.woken == 1  # the round starts now, not up to 10 s later
    refused = client.post("/api/imports", files={"file": ("empty.csv", b"", "text/csv")})
    assert refused.status_code == 422 and loop.woken == 1


def test_a_street_named_by_its_office_or_by_its_short_name_is_found(
    client, login_as, session, unit_id
) -> None:
    login_as("intake")
    text = "小区门口垃圾桶已经两天没有清运，气味很大"
    names = {"OFF-1": "西溪街道办事处", "OFF-2": "西溪街道办", "OFF-3": "三墩镇人民政府", "OFF-4": "蒋村"}
    data = "\n".join(["工单编号,诉求内容,街道", *(f"{ref},{text},{name}" for ref, name in names.items())])
    resp = _upload(client, "offices.csv", data.encode())
    body = client.get(f"/api/imports/{resp.json()['id']}").json()
    assert (body["created_count"], body["error_count"], body["errors"]) == (4, 0, [])
    session.expire_all()
    streets = dict(
        session.execute(
            select(Appeal.external_id, Appeal.street_id).where(Appeal.external_id.like("OFF-%"))
        ).all()
    )
    xixi, sandun, jiangcun = unit_id("330106004"), unit_id("330106109"), unit_id("330106011")
    assert streets == {"OFF-1": xixi, "OFF-2": xixi, "OFF-3": sandun, "OFF-4": jiangcun}


def test_many_failed_rows_list_the_first_hundred_and_every_one_downloads(client, login_as, session) -> None:
    login_as("intake")
    text = "小区门口垃圾桶已经两天没有清运，气味很大"
    lines = ["工单编号,诉求内容,街道"] + [
        f"MANY-{i:03d},{text},{'火星街道' if i % 13 else '西溪街道'}" for i in range(260)
    ]
    resp = _upload(client, "many.csv", "\n".join(lines).encode())
    job_id = resp.json()["id"]
    body = client.get(f"/api/imports/{job_id}").json()
    assert (body["status"], body["created_count"], body["error_count"]) == ("finished", 20, 240)
    assert len(body["errors"]) == 100 and body["errors"][0] == {
        "row": 3,
        "ref": "MANY-001",
        "error": "街道「火星街道」不存在",
    }
    assert body["errors_csv"] == f"/api/imports/{job_id}/errors.csv"
    download = client.get(body["errors_csv"])
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    assert download.content.startswith("\ufeff".encode())  # Excel reads the Chinese
    table = list(csv.reader(io.StringIO(download.content.decode("utf-8-sig"))))
    assert table[0] == ["行号", "工单编号", "错误"] and len(table) == 241
    assert [r[1] for r in table[1:]] == [f"MANY-{i:03d}" for i in range(260) if i % 13]
    assert table[-1][0] == "261"  # MANY-259 is the file's line 261
    login_as("handler")
    assert client.get(body["errors_csv"]).status_code == 403


def test_each_transaction_ends_after_its_time_yet_takes_at_least_one_row(
    client, login_as, session, monkeypatch
) -> None:
    from sqlalchemy import event

    from xihu.appeals import importer

    # however slow the machine, a chunk takes one row: no transaction of nothing, no endless loop
    monkeypatch.setattr(importer, "CHUNK_SECONDS", 0.0)
    login_as("intake")
    progress: list[int] = []

    def seen(_job, value, _old, _initiator) -> None:  # type: ignore[no-untyped-def]
        progress.append(value)

    event.listen(ImportJob.processed, "set", seen)
    try:
        body = _assert_finished(client, _upload(client, "slow.csv", _csv("SLOW")), created=3, skipped=0)
    finally:
        event.remove(ImportJob.processed, "set", seen)
    _assert_bad_rows(body["errors"])
    assert _imported(session, "SLOW") == ["SLOW-001", "SLOW-003", "SLOW-005"]
    assert progress == [1, 2, 3, 4, 5]  # one transaction per row, each recording its progress
