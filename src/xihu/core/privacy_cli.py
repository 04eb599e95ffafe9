"""`xihu privacy`: make a key for personal data, and re-encrypt stored data after a key rotation."""

from __future__ import annotations

import typer

from xihu.core import crypto
from xihu.core.config import get_settings

app = typer.Typer(help="个人信息加密 (encryption of personal data at rest)")


@app.command("new-key")
def new_key() -> None:
    """Print a fresh random key for XIHU_PII_KEY (keep it safe: without it the data cannot be read)."""
    typer.echo(crypto.new_key())


@app.command("rotate-key")
def rotate_key(batch: int = typer.Option(500, help="每批行数 (rows per batch)")) -> None:
    """Re-encrypt every stored value with XIHU_PII_KEY; old keys must be listed in XIHU_PII_OLD_KEYS."""
    from xihu import registry
    from xihu.core.db import make_engine

    settings = get_settings()
    try:
        ring = crypto.keyring_for(settings)
    except crypto.PiiKeyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    engine = make_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            done = crypto.rotate(conn, registry.metadata, ring, batch)
    except crypto.PiiKeyError as exc:
        typer.echo(f"{exc}；未做任何改动 (nothing was changed)", err=True)
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()
    total = sum(done.values())
    typer.echo(
        f"已用密钥 {ring.current_id} 重新加密 (re-encrypted with key {ring.current_id}): "
        f"{total} 行 (rows) {done}"
    )
