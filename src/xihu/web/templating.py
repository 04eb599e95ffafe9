"""Jinja2 environment shared by every domain's pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, FileSystemLoader

from xihu.core import clock
from xihu.web.deps import CSRF_FIELD, csrf_token

_ROOT = Path(__file__).resolve().parent.parent
_DIRS = [_ROOT / "web" / "templates"] + sorted(p for p in _ROOT.glob("*/templates") if p.parent.name != "web")

templates = Jinja2Templates(directory=str(_ROOT / "web" / "templates"))
templates.env.loader = ChoiceLoader([FileSystemLoader(str(d)) for d in _DIRS])
templates.env.filters["local"] = clock.fmt
templates.env.globals["CSRF_FIELD"] = CSRF_FIELD


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Any:
    """Render a page with the actor, CSRF token and current time available."""
    context.setdefault("actor", getattr(request.state, "actor", None))
    context["csrf_token"] = csrf_token(request)
    context["now"] = clock.now()
    return templates.TemplateResponse(request, name, context, status_code=status_code)
