"""ASGI entry point for uvicorn workers: the app built from the environment's settings."""

from __future__ import annotations

from xihu.web.app import create_app

app = create_app()
