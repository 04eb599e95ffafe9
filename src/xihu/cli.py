"""The one command line: serve, worker, demo, migrate, users, places."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

import typer

from xihu.analysis import cli as analysis_cli
from xihu.core import privacy_cli
from xihu.core.config import get_settings
from xihu.dispatch import cli as dispatch_cli
from xihu.indicators import cli as indicators_cli
from xihu.open311 import cli as open311_cli

app = typer.Typer(help="西湖区共同富裕示范区平台 · 民呼我为·西湖码", no_args_is_help=True)
users_app = typer.Typer(help="工作人员账号 (staff accounts)")
app.add_typer(users_app, name="users")
app.add_typer(dispatch_cli.app, name="dispatch")
app.add_typer(open311_cli.app, name="open311")
app.add_typer(indicators_cli.app, name="indicators")
app.add_typer(analysis_cli.app, name="analysis")
app.add_typer(privacy_cli.app, name="privacy")

# Commands that use the database. Before them a new SQLite database (the embedded default) is set up, as
# `make demo` would; a PostgreSQL database `xihu migrate` has not updated is refused with that advice.
# Not migrate and demo (they migrate), backup and restore (they copy the database as it is), openapi.
NEEDS_DATABASE = frozenset(
    {"serve", "worker", "users", "dispatch", "open311", "indicators", "analysis", "audit"}
)


@app.callback()
def _database_ready(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand in NEEDS_DATABASE and not ctx.resilient_parsing and "--help" not in sys.argv:
        from xihu.bootstrap import ready_or_exit

        ready_or_exit()


def _factory():  # type: ignore[no-untyped-def]
    from xihu import registry as _models  # noqa: F401 - every table, so foreign keys resolve in any command
    from xihu.core.db import make_engine, make_session_factory

    settings = get_settings()
    engine = make_engine(
        settings.database_url, pool_size=settings.db_pool_size, pool_timeout=settings.db_pool_timeout_seconds
    )
    return make_session_factory(engine)


@app.command()
def migrate() -> None:
    """Bring the database to the current schema (SQLite by default, PostgreSQL by XIHU_DATABASE_URL)."""
    from xihu.bootstrap import migrate_and_seed

    typer.echo(migrate_and_seed())


@app.command()
def serve(
    host: str = typer.Option(None, help="默认 XIHU_HOST 或 127.0.0.1"),
    port: int = typer.Option(None, help="默认 XIHU_PORT 或 8000"),
    workers: int = typer.Option(None, help="web 进程数 (PostgreSQL only)"),
) -> None:
    """Start the web server."""
    import uvicorn

    settings = get_settings()
    settings.check_secrets()
    host = host or settings.host
    port = port or settings.port
    workers = workers or settings.workers
    if settings.is_sqlite and workers > 1:
        typer.echo("SQLite 只支持单个 web 进程 (SQLite runs one web process)", err=True)
        workers = 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    typer.echo(f"西湖码平台: http://{host}:{port}/  (healthz: /healthz, API: /docs)")
    uvicorn.run(
        "xihu.web.asgi:app", host=host, port=port, workers=workers, log_level="warning", proxy_headers=True
    )


@app.command()
def worker(
    interval: float = typer.Option(None, help="扫描间隔秒数"),
    once: bool = typer.Option(False, help="只运行一轮 (run one round and exit)"),
) -> None:
    """Run the SLA sweeper, outbox delivery, imports and retraining (any number of workers on PostgreSQL)."""
    from xihu import registry as _models  # noqa: F401 - every table, so foreign keys resolve
    from xihu.analysis import jobs as _analysis_jobs  # noqa: F401 - registers the detector run (and rollups)
    from xihu.appeals import jobs as _appeal_jobs  # noqa: F401 - registers the SLA sweeper
    from xihu.core import crypto, jobs
    from xihu.core import outbox as _outbox  # noqa: F401 - registers outbox delivery
    from xihu.dispatch import jobs as _dispatch_jobs  # noqa: F401 - registers retraining runs

    settings = get_settings()
    crypto.configure(settings)  # refuse to start without XIHU_PII_KEY outside demo mode, as `serve` does
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    factory = _factory()
    worker_id = f"{socket.gethostname()}-{os.getpid()}"
    from xihu.dispatch import model_cache

    model_cache.warm(factory)  # load the dispatch model before the first deferred routing waits for it
    listener = jobs.WakeListener(settings.database_url)  # a queued import or retraining ends the pause
    while True:
        # A round that found work may have left more (jobs do bounded batches): go again soon, so a backlog
        # drains at full speed; an idle round waits the interval.
        done, wait = jobs.run_round(factory, worker_id, interval or settings.sweep_interval_seconds)
        if once:
            typer.echo(done)
            return
        listener.wait(wait)


@app.command()
def demo(
    load_only: bool = typer.Option(False, "--load-only", help="只加载演示数据，不启动服务"),
    appeals: int = typer.Option(400, help="演示诉求数量"),
) -> None:
    """Migrate, load illustrative demo data (idempotent) and serve."""
    os.environ.setdefault("XIHU_DEMO", "1")
    get_settings.cache_clear()
    migrate()
    from xihu.demo import load_demo

    factory = _factory()
    summary = load_demo(factory, n_appeals=appeals)
    typer.echo("示范数据（仅供演示，系项目自编）/ illustrative demo data:")
    for line in summary:
        typer.echo("  " + line)
    if not load_only:
        serve(host=None, port=None, workers=None)  # type: ignore[arg-type]


@users_app.command("create")
def create_user(
    username: str,
    role: str,
    unit_code: str = typer.Option("", help="所属单位编码"),
    display_name: str = typer.Option(""),
    password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True),
) -> None:
    """Create a staff account."""
    from xihu.core.db import unit_of_work
    from xihu.core.security import Role
    from xihu.core.security import create_user as make
    from xihu.places import service as places_service

    with unit_of_work(_factory()) as session:
        unit_id = places_service.get_unit_by_code(session=session, code=unit_code).id if unit_code else None
        make(
            session=session,
            username=username,
            password=password,
            display_name=display_name or username,
            role=Role(role),
            unit_id=unit_id,
        )
    typer.echo(f"已创建账号 {username}")


@app.command("openapi")
def openapi(out: Path = typer.Option(Path("-"), help="输出文件")) -> None:
    """Print the OpenAPI schema of the JSON API."""
    import json

    os.environ.setdefault("XIHU_DEMO", "1")
    from xihu.web.app import create_app

    text = json.dumps(create_app().openapi(), ensure_ascii=False, indent=2)
    if str(out) == "-":
        typer.echo(text)
    else:
        out.write_text(text, encoding="utf-8")


audit_app = typer.Typer(help="审计日志 (audit log)")
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk the hash chain of the audit log; exit code 1 at the first broken link."""
    from xihu.core import audit

    session = _factory()()
    try:
        report = audit.verify(session=session)
    finally:
        session.close()
    if report.ok:
        typer.echo(
            f"审计日志完整 (audit chain intact): {report.checked} 条已校验 (rows verified), "
            f"{report.unchained} 条早于哈希链 (older than the chain); 链头 (head) {report.head}"
        )
        return
    typer.echo(
        f"审计日志被篡改 (audit chain broken) at seq={report.broken_seq} id={report.broken_id}: "
        f"{report.problem}; 此前 {report.checked} 条完好 (rows intact before it)",
        err=True,
    )
    raise typer.Exit(1)


@app.command("backup")
def backup_cmd(
    output: Path = typer.Option(None, "--output", "-o", help="备份文件 (.tar.gz)，默认 <data_dir>/backups/"),
) -> None:
    """Back up the database and the data files (photos, models) into one archive."""
    from xihu.core import backup

    try:
        info = backup.backup(settings=get_settings(), output=output)
    except backup.BackupError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"已备份 (backed up) {info.backend} + {info.files} 个文件 (files) -> {info.path}")


@app.command("restore")
def restore_cmd(
    archive: Path = typer.Argument(..., exists=True, dir_okay=False, help="xihu backup 生成的备份文件"),
    yes: bool = typer.Option(False, "--yes", help="不再确认，直接覆盖当前数据"),
) -> None:
    """Replace the database and data files with those of a backup archive (stop the service first)."""
    from xihu.core import backup
    from xihu.core.errors import DomainError

    try:
        manifest = backup.read_manifest(archive)
    except DomainError as exc:
        typer.echo(f"{exc.message} ({exc.english})", err=True)
        raise typer.Exit(1) from exc
    if not yes:
        question = f"将用 {manifest['created_at']} 的备份覆盖当前数据库和文件 (overwrite current data)？"
        typer.confirm(question, abort=True)
    try:
        info = backup.restore(settings=get_settings(), archive=archive)
    except (backup.BackupError, DomainError) as exc:
        typer.echo(getattr(exc, "message", str(exc)), err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"已恢复 (restored) {info.backend} + {info.files} 个文件 (files)，备份时间 {info.created_at}")


if __name__ == "__main__":
    app()
