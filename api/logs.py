"""Email logs: the list with its filters, one message with its history, and its raw `.eml`.

`GET /api/accounts/{account_id}/email_logs` (the SDK's path; `/api/email_logs` takes the account
from the token) lists newest first, 50 a page, `search_after` the previous page's
`next_page_cursor`. A domain token sees the mail of its domains only.
"""

import uuid
from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from api.auth import authenticate, caller
from api.errors import BadRequest, TooManyRequests
from domain.log_filters import InvalidFilter, parse_filters
from engine.accounts import Principal
from engine.raw_messages import RAW_PATH, LinkExpired, raw_message
from engine.runtime import Runtime
from projections.email_log_list import Page, list_messages
from projections.email_logs import get_message

TAGS = ["Email logs"]
# Mailtrap allows 60 list calls a minute per account (429 beyond); counted per process.
LIST_RATE = "60/minute"
DETAIL_RATE = "1000/minute"


def _canonical_uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


async def _list(request: Request[Any, Any, Any], principal: Principal) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    if not await request.app.state.log_list_limit.allows(principal.account_id):
        raise TooManyRequests
    params = request.query_params
    search_after = params.get("search_after")
    if search_after is not None and (search_after := _canonical_uuid(search_after)) is None:
        raise BadRequest(["search_after must be a message id (a UUID)"], 422)
    try:
        query = parse_filters(params.multi_items())
        await runtime.read_your_writes(runtime.email_logs)
        page: Page = await runtime.run(
            lambda: list_messages(
                runtime.store.db,
                principal.account_id,
                query,
                domains=principal.access.readable_domains(),
                search_after=search_after,
            )
        )
    except InvalidFilter as error:
        raise BadRequest([str(error)], 422) from None
    return {
        "messages": page.messages,
        "total_count": page.total_count,
        "next_page_cursor": page.next_page_cursor,
    }


async def _email_log(
    request: Request[Any, Any, Any], message_id: str, principal: Principal
) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    if not await request.app.state.log_detail_limit.allows(principal.account_id):
        raise TooManyRequests
    canonical = _canonical_uuid(message_id)
    if canonical is None:
        raise NotFoundException
    db = runtime.store.db
    found = await runtime.run(get_message, db, principal.account_id, canonical)
    if found is None and await runtime.read_your_writes(runtime.email_logs):
        # The message may have been accepted an instant ago: look again once the read model
        # has caught up with everything committed before this request.
        found = await runtime.run(get_message, db, principal.account_id, canonical)
    readable = principal.access.readable_domains()
    if found is None or (readable is not None and found["sending_domain_id"] not in readable):
        raise NotFoundException
    base = runtime.public_url or str(request.base_url)
    found["raw_message_url"] = runtime.raw_links.url(base, principal.account_id, canonical)
    return found


@get("/api/email_logs", tags=TAGS, summary="Messages, newest first, with filters")
async def email_logs(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return await _list(request, await authenticate(request))


@get(
    "/api/accounts/{account_id:int}/email_logs",
    tags=TAGS,
    summary="Messages, newest first, with filters (account-scoped path)",
)
async def account_email_logs(
    request: Request[Any, Any, Any], account_id: FromPath[int]
) -> dict[str, Any]:
    _, principal = await caller(request, account_id)
    return await _list(request, principal)


@get(
    "/api/email_logs/{message_id:str}",
    tags=TAGS,
    summary="One message with its status and event history",
)
async def email_log(request: Request[Any, Any, Any], message_id: FromPath[str]) -> dict[str, Any]:
    return await _email_log(request, message_id, await authenticate(request))


@get(
    "/api/accounts/{account_id:int}/email_logs/{message_id:str}",
    tags=TAGS,
    summary="One message with its status and event history (account-scoped path)",
)
async def account_email_log(
    request: Request[Any, Any, Any], account_id: FromPath[int], message_id: FromPath[str]
) -> dict[str, Any]:
    _, principal = await caller(request, account_id)
    return await _email_log(request, message_id, principal)


@get(
    RAW_PATH + "/{token:str}",
    tags=TAGS,
    summary="A message's raw source (.eml), through the signed link its log entry gives",
    security=[],
)
async def raw(request: Request[Any, Any, Any], token: FromPath[str]) -> Response[bytes]:
    runtime: Runtime = request.app.state.runtime
    try:
        target = runtime.raw_links.read(token)
    except LinkExpired:
        raise BadRequest(["This link has expired: get a new one from the email log"], 410) from None
    found = None if target is None else await runtime.run(raw_message, runtime.store, *target)
    if found is None:
        raise NotFoundException
    return Response(
        found.data,
        media_type="message/rfc822",
        headers={"Content-Disposition": f'attachment; filename="{found.message_id}.eml"'},
    )


HANDLERS = [email_logs, account_email_logs, email_log, account_email_log, raw]
