"""`POST /api/send` and `POST /api/batch`, on the transactional and the bulk stream.

The bulk stream is served on the same paths under `/bulk` (`/bulk/api/send`), and on `/api/...`
when the request's Host starts with `bulk.` (as with Mailtrap's bulk.api host).
"""

from typing import Any

import msgspec
from litestar import Request, Router, post

from api.auth import authenticate
from api.body import read_json
from domain.limits import DEFAULT_LIMITS, MB
from domain.submission import BatchDraft, Draft
from engine.accept import Origin
from engine.runtime import Runtime


class SendResponse(msgspec.Struct):
    success: bool
    message_ids: list[str]


class BatchItem(msgspec.Struct, omit_defaults=True):
    success: bool
    message_ids: list[str] | None = None
    errors: list[str] | None = None


class BatchResponse(msgspec.Struct):
    success: bool
    responses: list[BatchItem]
    errors: list[str]


# A 10 MB message travels as up to ~14 MB of JSON (base64 attachments).
SEND_BODY_LIMIT = 20 * MB
BATCH_BODY_LIMIT = DEFAULT_LIMITS.max_batch_bytes


async def _origin(request: Request[Any, Any, Any], stream: str) -> Origin:
    principal = await authenticate(request)
    if stream == "transactional" and request.headers.get("host", "").startswith("bulk."):
        stream = "bulk"
    client = request.client
    return Origin(
        principal=principal, stream=stream, source="api", client_ip=client.host if client else None
    )


def _routes(stream: str) -> list[Any]:
    @post(
        "/api/send",
        request_max_body_size=SEND_BODY_LIMIT,
        status_code=200,
        operation_id=f"send_{stream}",
        summary=f"Send an email ({stream})",
        description="One message per recipient (to, cc, bcc); the reply comes after the "
        "messages are durably stored.",
    )
    async def send(request: Request[Any, Any, Any]) -> SendResponse:
        origin = await _origin(request, stream)
        draft = await read_json(request, Draft)
        runtime: Runtime = request.app.state.runtime
        ids = await runtime.acceptor.send(origin, draft)
        return SendResponse(success=True, message_ids=ids)

    @post(
        "/api/batch",
        request_max_body_size=BATCH_BODY_LIMIT,
        status_code=200,
        operation_id=f"batch_{stream}",
        summary=f"Send up to 500 emails in one call ({stream})",
        description="Each request is merged over `base` (a field set in a request replaces the "
        "base's). Answers 200 with one result per request.",
    )
    async def batch(request: Request[Any, Any, Any]) -> BatchResponse:
        origin = await _origin(request, stream)
        draft = await read_json(request, BatchDraft)
        runtime: Runtime = request.app.state.runtime
        results = await runtime.acceptor.batch(origin, draft)
        return BatchResponse(
            success=True,
            responses=[
                BatchItem(success=True, message_ids=r.message_ids)
                if r.success
                else BatchItem(success=False, errors=r.errors)
                for r in results
            ],
            errors=[],
        )

    return [send, batch]


transactional = Router(path="/", route_handlers=_routes("transactional"), tags=["Sending"])
bulk = Router(path="/bulk", route_handlers=_routes("bulk"), tags=["Sending (bulk stream)"])
