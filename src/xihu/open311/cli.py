"""`xihu open311 …`: client applications of the Open311 interface."""

from __future__ import annotations

import typer

from xihu.core.security import Actor

app = typer.Typer(help="Open311 GeoReport v2 接口 (client applications)", no_args_is_help=True)
OPERATOR = Actor.system("命令行管理员")


@app.command("create-key")
def create_key(name: str = typer.Argument(..., help="应用名称 (client application name)")) -> None:
    """Create a client application's api_key; the key is printed once, on the last line."""
    from xihu.core.config import get_settings
    from xihu.core.db import make_engine, make_session_factory, unit_of_work
    from xihu.open311 import service as open311_service

    engine = make_engine(get_settings().database_url)
    with unit_of_work(make_session_factory(engine)) as session:
        client, key = open311_service.create_client(session=session, actor=OPERATOR, name=name)
    engine.dispose()
    typer.echo(f"已为应用「{client.name}」(id {client.id}) 创建 api_key；请妥善保存，仅显示这一次：")
    typer.echo(key)


@app.command("list-keys")
def list_keys() -> None:
    """List client applications (keys themselves are never stored)."""
    from xihu.core.config import get_settings
    from xihu.core.db import make_engine, make_session_factory, unit_of_work
    from xihu.open311 import service as open311_service

    engine = make_engine(get_settings().database_url)
    with unit_of_work(make_session_factory(engine)) as session:
        clients = open311_service.list_clients(session=session, actor=OPERATOR)
    engine.dispose()
    for c in clients:
        typer.echo(f"{c.id}\t{'启用' if c.active else '已停用'}\t{c.name}")


@app.command("revoke-key")
def revoke_key(client_id: int = typer.Argument(..., help="应用 id (see list-keys)")) -> None:
    """Revoke a client application's api_key."""
    from xihu.core.config import get_settings
    from xihu.core.db import make_engine, make_session_factory, unit_of_work
    from xihu.open311 import service as open311_service

    engine = make_engine(get_settings().database_url)
    with unit_of_work(make_session_factory(engine)) as session:
        client = open311_service.revoke_client(session=session, actor=OPERATOR, client_id=client_id)
    engine.dispose()
    typer.echo(f"已停用应用「{client.name}」(id {client.id}) 的 api_key")
