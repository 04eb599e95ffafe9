"""ASGI entry point for uvicorn workers: the app built from the environment's settings."""

from __future__ import annotations

import gc

from xihu.web.app import create_app

app = create_app()
# What exists now (modules, routes, templates, settings) lives as long as the process. Frozen, it is left out
# of the collector's full passes, which otherwise rescan ~300k objects every few requests (a p99 of ~200 ms
# on the analysis pages against a p50 of ~30 ms, measured by bench/analysis.py).
gc.freeze()
