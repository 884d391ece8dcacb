"""API token authentication: `Authorization: Bearer <token>` or `Api-Token: <token>`."""

from typing import Any

from litestar import Request
from litestar.exceptions import NotFoundException

from api.errors import Unauthorized
from domain.activity import Actor
from engine.accounts import Principal
from engine.errors import Forbidden
from engine.runtime import Runtime


def token_of(request: Request[Any, Any, Any]) -> str | None:
    """The API token a request carries, if any."""
    headers = request.headers
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        value = value.strip()
        return value if scheme.lower() == "bearer" and value else None
    token = headers.get("api-token", "").strip()
    return token or None


async def authenticate(request: Request[Any, Any, Any]) -> Principal:
    """The caller's principal, or Unauthorized. Runs before the body is read."""
    token = token_of(request)
    if token is None:
        raise Unauthorized
    runtime: Runtime = request.app.state.runtime
    principal = runtime.auth.cached(token) or await runtime.run(runtime.auth.authenticate, token)
    if principal is None:
        raise Unauthorized
    request.state.principal = principal
    return principal


def actor(request: Request[Any, Any, Any]) -> Actor:
    """Who makes the request's changes, for the audit log (after `authenticate`)."""
    principal: Principal = request.state.principal
    return principal.actor


MAX_ID = 2**63 - 1  # ids are 64-bit: anything larger names nothing


async def caller(
    request: Request[Any, Any, Any], account_id: int, item_id: int | None = None
) -> tuple[Runtime, Principal]:
    """The runtime and the caller, for a path under `/api/accounts/{account_id}` (and one
    item's id in it): another account's id, or an id nothing can have, answers 404, as if
    nothing were there."""
    principal = await authenticate(request)
    if account_id != principal.account_id:
        raise NotFoundException
    if item_id is not None and not 0 < item_id <= MAX_ID:
        raise NotFoundException
    return request.app.state.runtime, principal


async def account_scope(
    request: Request[Any, Any, Any], account_id: int, *, admin: bool = False
) -> tuple[Runtime, int]:
    """As `caller`, for what needs account-wide access (`admin`: to change, else to read);
    a token without it answers 403."""
    runtime, principal = await caller(request, account_id)
    require_account(principal, admin=admin)
    return runtime, principal.account_id


def require_account(principal: Principal, *, admin: bool = False) -> None:
    """Forbidden unless the principal has account-wide access (`admin`: to change)."""
    access = principal.access
    if not (access.administers_account() if admin else access.reads_account()):
        level = "admin" if admin else "viewer"
        raise Forbidden(f"this API token needs {level} access to the account")
