"""Email logs: `GET /api/email_logs/{message_id}` (and the SDK's account-scoped path)."""

import uuid
from typing import Any

from litestar import Request, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from api.auth import authenticate, require_account
from engine.runtime import Runtime
from projections.email_logs import get_message


def _canonical_uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


async def _email_log(
    request: Request[Any, Any, Any], message_id: str, account_id: int | None
) -> dict[str, Any]:
    principal = await authenticate(request)
    canonical = _canonical_uuid(message_id)
    if canonical is None or account_id not in (None, principal.account_id):
        raise NotFoundException
    require_account(principal)
    runtime: Runtime = request.app.state.runtime
    db = runtime.store.db
    found = await runtime.run(get_message, db, principal.account_id, canonical)
    if found is None and await runtime.read_your_writes(runtime.email_logs):
        # The message may have been accepted an instant ago: look again once the read model
        # has caught up with everything committed before this request.
        found = await runtime.run(get_message, db, principal.account_id, canonical)
    if found is None:
        raise NotFoundException
    return found


@get(
    "/api/email_logs/{message_id:str}",
    tags=["Email logs"],
    summary="One message with its status and event history",
)
async def email_log(request: Request[Any, Any, Any], message_id: FromPath[str]) -> dict[str, Any]:
    return await _email_log(request, message_id, None)


@get(
    "/api/accounts/{account_id:int}/email_logs/{message_id:str}",
    tags=["Email logs"],
    summary="One message with its status and event history (account-scoped path)",
)
async def account_email_log(
    request: Request[Any, Any, Any], account_id: FromPath[int], message_id: FromPath[str]
) -> dict[str, Any]:
    return await _email_log(request, message_id, account_id)
