"""JSON routes of the appeals domain; they translate HTTP and call the service."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Depends, File, Header, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from sqlalchemy.orm import Session

from xihu.appeals import duplicates, importer
from xihu.appeals import service as appeal_service
from xihu.appeals.enums import Channel, State
from xihu.appeals.schemas import (
    AppealCreate,
    AppealPage,
    AppealRead,
    BatchIn,
    CompleteIn,
    DecideExtensionIn,
    DispatchIn,
    ExtensionIn,
    ImportResult,
    MergeIn,
    MessageIn,
    PublicAppeal,
    PublicSimilarAppeal,
    RateIn,
    ReasonIn,
    SimilarAppeal,
    SlaPolicyIn,
    SlaPolicyRead,
    SubmitResult,
    TransferIn,
)
from xihu.core.security import Actor
from xihu.web.deps import (
    get_actor,
    get_session,
    run_in_own_unit_of_work,
    verify_csrf_api,
    wake_background_work,
)

router = APIRouter(prefix="/api/appeals", tags=["appeals"])
staff = APIRouter(prefix="/api/appeals", tags=["appeals (staff)"], dependencies=[Depends(verify_csrf_api)])


_KEY_MAX = 80  # the longest Idempotency-Key taken


class _IntakeRoute(APIRoute):
    """`POST /api/appeals` as documented, with a lean way through for the well-formed JSON bodies of intake.

    The busiest route of all: skipping FastAPI's general request handling (dependencies, body fields,
    response model, jsonable_encoder) saves about a tenth of the web process's CPU per intake
    (bench/intake_profile.py). A JSON body that validates goes straight to the use case here; anything else
    (another content type, broken JSON, invalid fields, an overlong Idempotency-Key) takes FastAPI's own
    way, so errors read exactly as on every other route.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The lean handler, falling back on FastAPI's for every request it does not take."""
        standard = super().get_route_handler()

        async def handle(request: Request) -> Response:
            key = request.headers.get("idempotency-key")
            content_type = request.headers.get("content-type", "")
            if (
                content_type.partition(";")[0].strip().lower() != "application/json"
                or len(key or "") > _KEY_MAX
            ):
                return await standard(request)
            try:
                data = AppealCreate.model_validate_json(await request.body())
            except ValidationError:
                return await standard(request)  # the body is kept by the request: it is read once
            result = await _store(request, data, key)
            return Response(
                result.model_dump_json(),
                status_code=201 if result.created else 200,
                media_type="application/json",
            )

        return handle


async def _store(request: Request, data: AppealCreate, idempotency_key: str | None) -> SubmitResult:
    def submit_as(*, session: Session, actor: Actor) -> SubmitResult:
        channel = Channel.hotline if actor.is_staff else Channel.api
        return appeal_service.submit(
            session=session, actor=actor, appeal_in=data, channel=channel, idempotency_key=idempotency_key
        )

    # no dependency chain, and stored and committed in one trip to the thread pool
    return await run_in_own_unit_of_work(request, submit_as)


async def submit(
    data: AppealCreate,
    request: Request,
    response: Response,
    idempotency_key: str | None = Header(default=None, alias="Idempotency-Key", max_length=_KEY_MAX),
) -> SubmitResult:
    """Submit an appeal. Send an `Idempotency-Key` header so that a retry returns the same appeal."""
    result = await _store(request, data, idempotency_key)
    if not result.created:
        response.status_code = 200
    return result


router.add_api_route(
    "",
    submit,
    methods=["POST"],
    response_model=SubmitResult,
    status_code=201,
    responses={200: {"description": "重复提交：返回同一诉求 (replayed)"}},
    route_class_override=_IntakeRoute,
)


@router.get("/track/{code}", response_model=PublicAppeal)
def track(code: str, session: Session = Depends(get_session)) -> PublicAppeal:
    """Public progress of an appeal by its tracking code (personal data masked)."""
    return appeal_service.track(session=session, tracking_code=code)


@router.post("/track/{code}/rate", response_model=PublicAppeal)
def rate(code: str, data: RateIn, session: Session = Depends(get_session)) -> PublicAppeal:
    """The citizen rates the result."""
    return appeal_service.rate(session=session, tracking_code=code, data=data)


@router.post("/track/{code}/reopen", response_model=PublicAppeal)
def reopen(code: str, data: ReasonIn, session: Session = Depends(get_session)) -> PublicAppeal:
    """The citizen asks once for the appeal to be handled again after an unsatisfied rating."""
    return appeal_service.reopen(session=session, tracking_code=code, reason=data.reason)


@router.get("/track/{code}/photos/{photo_id}")
def public_photo(
    code: str, photo_id: int, request: Request, session: Session = Depends(get_session)
) -> FileResponse:
    """A photo of an appeal, for whoever holds its tracking code."""
    name, ctype = appeal_service.photo(session=session, actor=None, photo_id=photo_id, tracking_code=code)
    return FileResponse(
        request.app.state.settings.uploads_dir / name,
        media_type=ctype,
        headers={"Content-Disposition": "inline", "Cache-Control": "private, max-age=3600"},
    )


@staff.get("", response_model=AppealPage)
def search(
    state: list[State] | None = Query(default=None),
    unit_id: int | None = None,
    street_id: int | None = None,
    q: str | None = Query(default=None, max_length=50),
    overdue: bool = False,
    flagged: bool = False,
    page: int = Query(default=1, ge=1, le=10000),
    size: int = Query(default=20, ge=1, le=100),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> AppealPage:
    """Appeals the logged-in staff member may see."""
    return appeal_service.search(
        session=session,
        actor=actor,
        states=state,
        unit_id=unit_id,
        street_id=street_id,
        q=q,
        overdue=overdue,
        flagged=flagged,
        page=page,
        size=size,
    )


@staff.get("/{appeal_id}", response_model=AppealRead)
def read(
    appeal_id: int, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> AppealRead:
    """One appeal with timeline and SLA clocks (viewing personal data is audited)."""
    return appeal_service.read(session=session, actor=actor, appeal_id=appeal_id)


@staff.get("/{appeal_id}/suggestions")
def suggestions(
    appeal_id: int, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> list[dict[str, Any]]:
    """The router's suggested units for an appeal, with reasons."""
    return appeal_service.suggestions_for(session=session, actor=actor, appeal_id=appeal_id)


@staff.get("/{appeal_id}/photos/{photo_id}")
def staff_photo(
    appeal_id: int,
    photo_id: int,
    request: Request,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> FileResponse:
    """A photo of an appeal the staff member may see."""
    name, ctype = appeal_service.photo(session=session, actor=actor, photo_id=photo_id, appeal_id=appeal_id)
    return FileResponse(
        request.app.state.settings.uploads_dir / name,
        media_type=ctype,
        headers={"Content-Disposition": "inline"},
    )


@staff.post("/{appeal_id}/dispatch", response_model=AppealRead)
def dispatch(
    appeal_id: int,
    data: DispatchIn,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> AppealRead:
    """派单."""
    return appeal_service.dispatch(session=session, actor=actor, appeal_id=appeal_id, data=data)


@staff.post("/{appeal_id}/sign", response_model=AppealRead)
def sign(
    appeal_id: int,
    data: MessageIn | None = None,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> AppealRead:
    """签收."""
    return appeal_service.sign(
        session=session, actor=actor, appeal_id=appeal_id, message=data.message if data else ""
    )


@staff.post("/{appeal_id}/start", response_model=AppealRead)
def start(
    appeal_id: int,
    data: MessageIn | None = None,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> AppealRead:
    """开始处置."""
    return appeal_service.start(
        session=session, actor=actor, appeal_id=appeal_id, message=data.message if data else ""
    )


@staff.post("/{appeal_id}/return", response_model=AppealRead)
def return_(
    appeal_id: int, data: ReasonIn, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> AppealRead:
    """退回 to the dispatcher with a reason."""
    return appeal_service.return_to_dispatcher(
        session=session, actor=actor, appeal_id=appeal_id, reason=data.reason
    )


@staff.post("/{appeal_id}/transfer", response_model=AppealRead)
def transfer(
    appeal_id: int,
    data: TransferIn,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> AppealRead:
    """转办."""
    return appeal_service.transfer(session=session, actor=actor, appeal_id=appeal_id, data=data)


@staff.post("/{appeal_id}/assist", response_model=AppealRead)
def assist(
    appeal_id: int,
    data: MessageIn,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> AppealRead:
    """协办意见."""
    return appeal_service.assist(session=session, actor=actor, appeal_id=appeal_id, message=data.message)


@staff.post("/{appeal_id}/extension", response_model=AppealRead)
def request_extension(
    appeal_id: int,
    data: ExtensionIn,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> AppealRead:
    """申请延期."""
    return appeal_service.request_extension(session=session, actor=actor, appeal_id=appeal_id, data=data)


@staff.post("/{appeal_id}/extension/decide", response_model=AppealRead)
def decide_extension(
    appeal_id: int,
    data: DecideExtensionIn,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> AppealRead:
    """延期审批."""
    return appeal_service.decide_extension(session=session, actor=actor, appeal_id=appeal_id, data=data)


@staff.post("/{appeal_id}/supervise", response_model=AppealRead)
def supervise(
    appeal_id: int, data: ReasonIn, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> AppealRead:
    """督办."""
    return appeal_service.supervise(session=session, actor=actor, appeal_id=appeal_id, reason=data.reason)


@staff.post("/{appeal_id}/complete", response_model=AppealRead)
def complete(
    appeal_id: int,
    data: CompleteIn,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> AppealRead:
    """办结 with a reply."""
    return appeal_service.complete(session=session, actor=actor, appeal_id=appeal_id, data=data)


@staff.post("/{appeal_id}/close", response_model=AppealRead)
def close(
    appeal_id: int,
    data: MessageIn | None = None,
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> AppealRead:
    """归档."""
    return appeal_service.close(
        session=session, actor=actor, appeal_id=appeal_id, reason=data.message if data else ""
    )


@staff.post("/{appeal_id}/merge", response_model=AppealRead)
def merge(
    appeal_id: int, data: MergeIn, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> AppealRead:
    """合并 as a duplicate."""
    return appeal_service.merge(session=session, actor=actor, appeal_id=appeal_id, data=data)


@staff.post("/batch")
def batch(
    data: BatchIn, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> list[dict[str, Any]]:
    """Sign or start several appeals at once."""
    return appeal_service.batch(session=session, actor=actor, ids=data.ids, action=data.action)


imports = APIRouter(prefix="/api/imports", tags=["imports"], dependencies=[Depends(verify_csrf_api)])


@imports.post("", response_model=ImportResult, status_code=202)
async def start_import(
    request: Request,
    background: BackgroundTasks,
    file: UploadFile = File(...),
    actor: Actor = Depends(get_actor),
    session: Session = Depends(get_session),
) -> ImportResult:
    """Queue an import of a 12345 export (CSV or Excel) for a worker; poll the job for progress and errors."""
    data = await file.read()
    job = importer.create_job(
        session=session,
        actor=actor,
        filename=file.filename or "upload",
        data=data,
        data_dir=request.app.state.settings.data_dir,
    )
    wake_background_work(request, background)
    return job


@imports.get("/{job_id}/errors.csv")
def import_errors_csv(
    job_id: int, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> Response:
    """Every failed row of an import, as CSV: line, 工单编号 and why."""
    return Response(
        importer.errors_csv(session=session, actor=actor, job_id=job_id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="import-{job_id}-errors.csv"'},
    )


@imports.get("/{job_id}", response_model=ImportResult)
def import_status(
    job_id: int, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> ImportResult:
    """Progress and per-row errors of an import."""
    return importer.status(session=session, actor=actor, job_id=job_id)


@router.get("/similar", response_model=list[PublicSimilarAppeal])
def similar_public(
    text: str = Query(min_length=1, max_length=2000),
    place_code: str | None = Query(default=None, max_length=16),
    street_id: int | None = None,
    community_id: int | None = None,
    lat: float | None = Query(default=None, ge=-90, le=90),
    lon: float | None = Query(default=None, ge=-180, le=180),
    session: Session = Depends(get_session),
) -> list[PublicSimilarAppeal]:
    """For the citizen's hint while writing: similar appeals of the last 7 days nearby (masked title, state,
    date and score only; never ids or tracking codes)."""
    return duplicates.similar_public(
        session=session,
        text=text,
        place_code=place_code or None,
        street_id=street_id,
        community_id=community_id,
        lat=lat,
        lon=lon,
    )


@staff.get("/{appeal_id}/similar", response_model=list[SimilarAppeal])
def similar_staff(
    appeal_id: int, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> list[SimilarAppeal]:
    """Possible duplicates of an appeal (ids and tracking codes, for merging)."""
    return duplicates.similar_to_appeal(session=session, actor=actor, appeal_id=appeal_id)


sla_router = APIRouter(prefix="/api/sla/policies", tags=["sla"], dependencies=[Depends(verify_csrf_api)])


@sla_router.get("", response_model=list[SlaPolicyRead])
def sla_policies(
    actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> list[SlaPolicyRead]:
    """SLA policies by category, priority and unit (admins)."""
    return appeal_service.list_sla_policies(session=session, actor=actor)


@sla_router.put("", response_model=SlaPolicyRead)
def save_sla_policy(
    data: SlaPolicyIn, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> SlaPolicyRead:
    """Create or replace the policy of a category/priority/unit combination (admins)."""
    return appeal_service.save_sla_policy(session=session, actor=actor, data=data)


@sla_router.delete("/{policy_id}", status_code=204)
def delete_sla_policy(
    policy_id: int, actor: Actor = Depends(get_actor), session: Session = Depends(get_session)
) -> Response:
    """Remove a policy (admins)."""
    appeal_service.delete_sla_policy(session=session, actor=actor, policy_id=policy_id)
    return Response(status_code=204)
