"""Imports every domain's models so that the metadata knows all tables (migrations, tests)."""

from __future__ import annotations

import importlib

from xihu.core.db import Base

MODEL_MODULES = (
    "xihu.core.security",
    "xihu.core.audit",
    "xihu.core.outbox",
    "xihu.places.models",
    "xihu.appeals.models",
    "xihu.dispatch.models",
    "xihu.open311.models",
    "xihu.indicators.models",
    "xihu.analysis.models",
)

for _name in MODEL_MODULES:
    importlib.import_module(_name)

metadata = Base.metadata
