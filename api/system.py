"""Health checks, and the no-op endpoint that benchmarks use as the framework's ceiling."""

from typing import Any

from litestar import Request, Response, get, post

from api.body import read_json
from domain.limits import DEFAULT_LIMITS
from domain.submission import BatchDraft, Draft
from engine.errors import StoreUnavailable
from engine.runtime import Runtime

NOOP_MESSAGE_ID = "00000000-0000-0000-0000-000000000000"


@get("/healthz", tags=["System"], summary="Liveness", include_in_schema=True)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", tags=["System"], summary="Readiness: the event store answers")
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    runtime: Runtime = request.app.state.runtime
    try:
        head = await runtime.run(runtime.store.head)
    except StoreUnavailable as error:
        return Response({"status": "unavailable", "error": str(error)}, status_code=503)
    committer = runtime.committer
    return Response(
        {
            "status": "ready",
            "log_position": head,
            "commits": {"transactions": committer.batches, "events": committer.events},
        }
    )


@post("/api/_noop", status_code=200, include_in_schema=False)
async def noop(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Decode and validate like /api/send, store nothing (enabled with --enable-noop-endpoint)."""
    await read_json(request, Draft)
    return {"success": True, "message_ids": [NOOP_MESSAGE_ID]}


@post(
    "/api/_noop/batch",
    status_code=200,
    include_in_schema=False,
    request_max_body_size=DEFAULT_LIMITS.max_batch_bytes,
)
async def noop_batch(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Decode and validate like /api/batch, store nothing (enabled with --enable-noop-endpoint)."""
    await read_json(request, BatchDraft)
    return {"success": True, "responses": [], "errors": []}
