"""API tokens on the paths the official SDK calls (`/api/accounts/{id}/api_tokens`).

List, get, create (the secret is in the answer, once), delete, and `POST .../{id}/reset`
(a successor with the same permissions; the old secret works 12 more hours). A caller sees
its own token and those it could manage: tokens granting nothing it is not admin of.
"""

from datetime import UTC, datetime
from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from api.auth import caller
from api.body import read_json
from api.errors import BadRequest
from domain.accounts import TokenRefused
from domain.permissions import InvalidGrant, grants_of
from engine.accounts import Minted
from engine.errors import Forbidden
from engine.tokens import (
    DEFAULT,
    NoSuchToken,
    create_token,
    delete_token,
    get_token,
    reset_token,
    visible,
)
from projections.api_tokens import list_tokens, row_of, token_view

TAGS = ["API tokens"]
PATH = "/api/accounts/{account_id:int}/api_tokens"


def _expiry(body: dict[str, Any]) -> object:
    """`expires_at` of a body: absent (the default year), null (never) or an ISO 8601 time."""
    if "expires_at" not in body:
        return DEFAULT
    value = body["expires_at"]
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(["expires_at must be an ISO 8601 time or null"], 422) from None


def _with_secret(minted: Minted) -> dict[str, Any]:
    return {**token_view(row_of(minted.token)), "token": minted.secret}


@get(PATH, tags=TAGS, summary="The API tokens this token can see")
async def list_api_tokens(
    request: Request[Any, Any, Any], account_id: FromPath[int]
) -> list[dict[str, Any]]:
    runtime, principal = await caller(request, account_id)
    await runtime.read_your_writes(runtime.tokens)
    rows = await runtime.run(list_tokens, runtime.store.db, principal.account_id, datetime.now(UTC))
    return [
        token_view(row)
        for row in rows
        if visible(principal, grants_of(row["resources"]), int(row["token_id"]))
    ]


@get(f"{PATH}/{{token_id:int}}", tags=TAGS, summary="One API token (never its secret)")
async def get_api_token(
    request: Request[Any, Any, Any], account_id: FromPath[int], token_id: FromPath[int]
) -> dict[str, Any]:
    runtime, principal = await caller(request, account_id, token_id)
    try:
        token = await runtime.run(get_token, runtime.store, principal.account_id, token_id)
    except NoSuchToken:
        raise NotFoundException from None
    if not token.usable(datetime.now(UTC)):
        raise NotFoundException
    if not visible(principal, token.grants, token_id):
        raise Forbidden("this token grants more than the caller's token administers")
    return token_view(row_of(token))


@post(PATH, tags=TAGS, summary="Create an API token (its secret is shown once)", status_code=200)
async def create_api_token(
    request: Request[Any, Any, Any], account_id: FromPath[int]
) -> dict[str, Any]:
    runtime, principal = await caller(request, account_id)
    body = await read_json(request, dict)
    expiry = _expiry(body)
    try:
        minted = await runtime.run(
            create_token,
            runtime.store,
            principal,
            body.get("name"),
            body.get("resources"),
            expiry,
            datetime.now(UTC),
        )
    except (TokenRefused, InvalidGrant) as error:
        raise BadRequest([str(error)], 422) from None
    return _with_secret(minted)


@delete(f"{PATH}/{{token_id:int}}", tags=TAGS, summary="Delete an API token at once")
async def delete_api_token(
    request: Request[Any, Any, Any], account_id: FromPath[int], token_id: FromPath[int]
) -> Response[None]:
    runtime, principal = await caller(request, account_id, token_id)
    try:
        await runtime.run(delete_token, runtime.store, principal, token_id, datetime.now(UTC))
    except NoSuchToken:
        raise NotFoundException from None
    except TokenRefused as error:
        raise BadRequest([str(error)], 422) from None
    runtime.auth.forget()  # refused from now on in this process; in others within seconds
    await runtime.read_your_writes(runtime.tokens)
    return Response(None, status_code=204)


@post(
    f"{PATH}/{{token_id:int}}/reset",
    tags=TAGS,
    summary="Replace an API token; the old secret works 12 hours more",
    status_code=200,
)
async def reset_api_token(
    request: Request[Any, Any, Any], account_id: FromPath[int], token_id: FromPath[int]
) -> dict[str, Any]:
    runtime, principal = await caller(request, account_id, token_id)
    raw = await request.body()
    body = await read_json(request, dict) if raw.strip() and raw.strip() != b"null" else {}
    expiry = _expiry(body)
    try:
        minted = await runtime.run(
            reset_token, runtime.store, principal, token_id, expiry, datetime.now(UTC)
        )
    except NoSuchToken:
        raise NotFoundException from None
    except TokenRefused as error:
        raise BadRequest([str(error)], 422) from None
    runtime.auth.forget()  # the old token's principal now carries its shortened expiry
    return _with_secret(minted)


HANDLERS = [list_api_tokens, get_api_token, create_api_token, delete_api_token, reset_api_token]
