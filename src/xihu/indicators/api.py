"""JSON routes of the indicators domain."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from xihu.indicators import service as indicators_service
from xihu.indicators.schemas import IndicatorRead
from xihu.web.deps import get_session

router = APIRouter(tags=["indicators"])


@router.get("/api/indicators", response_model=list[IndicatorRead])
def indicators(session: Session = Depends(get_session)) -> list[IndicatorRead]:
    """共富指标: every indicator with its target, latest district value and progress status."""
    return indicators_service.list_indicators(session=session)
