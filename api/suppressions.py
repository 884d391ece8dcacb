"""The suppression list on the paths the official SDK calls (`/api/accounts/{id}/suppressions`).

List (filters `email`, `start_time`, `end_time`; cursor `last_id`; up to 1,000 a page), add
(`{"email", "domain_id", "sending_stream", "type"}`), and delete, which reactivates the address
and answers with the record as it was. Another account's records answer 404.
"""

import uuid
from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from api.auth import account_scope, actor
from api.body import iso_time, read_json
from api.errors import BadRequest, TooManyRequests
from domain.addresses import is_valid_address
from domain.suppressions import STREAMS, TYPES
from engine.domains import NoSuchDomain, get_domain
from engine.runtime import Runtime
from engine.suppressions import reactivate, suppress
from projections.suppressions import find_suppression, list_suppressions

TAGS = ["Suppressions"]
PATH = "/api/accounts/{account_id:int}/suppressions"
# Mailtrap allows 10 suppression calls a minute per account (429 beyond); counted per process.
DEFAULT_RATE = "10/minute"


async def _scope(
    request: Request[Any, Any, Any], account_id: int, *, admin: bool = False
) -> tuple[Runtime, int]:
    """The caller's account (account-wide access: `admin` to change the list), within the
    suppression API's rate limit."""
    runtime, account = await account_scope(request, account_id, admin=admin)
    if not await request.app.state.suppression_limit.allows(account):
        raise TooManyRequests
    return runtime, account


@get(PATH, tags=TAGS, summary="The suppression list (up to 1,000 a page; `last_id` pages on)")
async def list_suppressed(
    request: Request[Any, Any, Any], account_id: FromPath[int]
) -> list[dict[str, Any]]:
    runtime, account = await _scope(request, account_id)
    query = request.query_params
    await runtime.read_your_writes(runtime.suppressions)
    found = await runtime.run(
        lambda: list_suppressions(
            runtime.store.db,
            account,
            email=query.get("email"),
            start=iso_time("start_time", query.get("start_time")),
            end=iso_time("end_time", query.get("end_time")),
            after=query.get("last_id"),
        )
    )
    if found is None:
        raise BadRequest(["last_id is not a suppression of this account"], 422)
    return found


@post(PATH, tags=TAGS, summary="Add an address to the suppression list", status_code=201)
async def add_suppression(
    request: Request[Any, Any, Any], account_id: FromPath[int]
) -> dict[str, Any]:
    runtime, account = await _scope(request, account_id, admin=True)
    body = await read_json(request, dict)
    email, domain_id = body.get("email"), body.get("domain_id")
    stream, kind = body.get("sending_stream"), body.get("type") or "manual import"
    problems = []
    if not isinstance(email, str) or not is_valid_address(email):
        problems.append("email must be a valid email address")
    if not isinstance(domain_id, int) or isinstance(domain_id, bool):
        problems.append("domain_id must be the id of one of the account's sending domains")
    if stream not in STREAMS:
        problems.append(f"sending_stream must be one of {', '.join(STREAMS)}")
    if kind not in TYPES:
        problems.append(f"type must be one of {', '.join(TYPES)}")
    if problems:
        raise BadRequest(problems, 422)
    try:
        domain = await runtime.run(get_domain, runtime.store, account, domain_id)
    except NoSuchDomain:
        raise BadRequest(
            ["domain_id must be the id of one of the account's sending domains"], 422
        ) from None
    record_id = await runtime.run(
        suppress, runtime.store, account, email, domain.name, stream, kind, None, actor(request)
    )
    await runtime.read_your_writes(runtime.suppressions)
    found = await runtime.run(find_suppression, runtime.store.db, account, str(record_id))
    if found is None:  # recorded, but the list has not caught up within the wait
        found = {
            "id": str(record_id),
            "type": kind,
            "created_at": None,
            "email": email,
            "sending_stream": stream,
            "domain_name": domain.name,
        }
    return {"data": found}


@delete(
    f"{PATH}/{{suppression_id:str}}",
    tags=TAGS,
    summary="Reactivate a suppressed address",
    status_code=200,
)
async def remove_suppression(
    request: Request[Any, Any, Any], account_id: FromPath[int], suppression_id: FromPath[str]
) -> Response[dict[str, Any]]:
    runtime, account = await _scope(request, account_id, admin=True)
    try:
        record_id = uuid.UUID(suppression_id)
    except ValueError:
        raise NotFoundException from None
    await runtime.read_your_writes(runtime.suppressions)
    found = await runtime.run(find_suppression, runtime.store.db, account, str(record_id))
    if found is None or not await runtime.run(
        reactivate, runtime.store, account, record_id, actor(request)
    ):
        raise NotFoundException
    return Response(found, status_code=200)


HANDLERS = [list_suppressed, add_suppression, remove_suppression]
