"""Sending domains on the paths the official SDK calls (`/api/accounts/{id}/sending_domains`).

Create, list, get, update settings, delete, `POST .../{id}/verify` to check the DNS records now
(they are also checked every hour), and `POST .../{id}/rotate_dkim` for a new DKIM key. Another
account's domains answer 404. Adding and deleting a domain takes account admin access; reading
one takes viewer access to it, changing, verifying or rotating it admin access to it (a
domain's own token has that).
"""

from typing import Any

from litestar import Request, Response, delete, get, patch, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from api.auth import caller, require_account
from api.body import read_json
from api.errors import BadRequest, TooManyRequests
from domain.addresses import is_valid_address
from domain.dns_records import setup_instructions
from domain.submission import Address, Draft
from engine.accept import Origin
from engine.accounts import Principal
from engine.domains import (
    DomainRefused,
    NoSuchDomain,
    add_domain,
    change_settings,
    delete_domain,
    domain_view,
    expected,
    get_domain,
    rotate_dkim,
    row_of,
)
from engine.errors import Forbidden
from engine.runtime import Runtime
from projections.sending_domains import find_domain, list_domains

TAGS = ["Sending domains"]
# Setup instructions are mail from the installation's own address: a few an hour per account.
INSTRUCTIONS_RATE = "10/hour"
PATH = "/api/accounts/{account_id:int}/sending_domains"


def _fields(data: Any) -> dict[str, Any]:
    """The domain object of a request body: `{"sending_domain": {...}}` (the SDK's form) or
    `{"domain": {...}}` (the newer API's)."""
    if isinstance(data, dict):
        inner = data.get("sending_domain", data.get("domain"))
        if isinstance(inner, dict):
            return inner
    raise BadRequest(['the body must be {"sending_domain": {...}}'], 422)


async def _domain_scope(
    request: Request[Any, Any, Any], account_id: int, domain_id: int, *, admin: bool = False
) -> tuple[Runtime, Principal]:
    """The caller, for one domain's path: an id no domain can have answers 404; a token
    without access to this domain (`admin`: to change it) answers 403."""
    runtime, principal = await caller(request, account_id, domain_id)
    access = principal.access
    if not (access.administers_domain(domain_id) if admin else access.reads_domain(domain_id)):
        found = await runtime.run(find_domain, runtime.store.db, principal.account_id, domain_id)
        if found is None:  # not this account's (or no longer there): as for anyone, 404
            raise NotFoundException
        level = "admin" if admin else "viewer"
        raise Forbidden(f"this API token needs {level} access to sending domain {domain_id}")
    return runtime, principal


async def _view(runtime: Runtime, principal: Principal, domain_id: int) -> dict[str, Any]:
    account_id = principal.account_id
    await runtime.read_your_writes(runtime.domains)
    row = await runtime.run(find_domain, runtime.store.db, account_id, domain_id)
    if row is None:
        # Not in the read model (yet): the log has the answer, whether it lags or not.
        try:
            domain = await runtime.run(get_domain, runtime.store, account_id, domain_id)
        except NoSuchDomain:
            raise NotFoundException from None
        row = row_of(domain)
    return domain_view(row, runtime.domain_config, principal.access)


@get(PATH, tags=TAGS, summary="The account's sending domains and their DNS status")
async def list_sending_domains(
    request: Request[Any, Any, Any], account_id: FromPath[int]
) -> dict[str, Any]:
    runtime, principal = await caller(request, account_id)
    await runtime.read_your_writes(runtime.domains)
    rows = await runtime.run(list_domains, runtime.store.db, principal.account_id)
    readable = [row for row in rows if principal.access.reads_domain(row["domain_id"])]
    access = principal.access
    return {"data": [domain_view(row, runtime.domain_config, access) for row in readable]}


@post(PATH, tags=TAGS, summary="Add a sending domain", status_code=200)
async def create_sending_domain(
    request: Request[Any, Any, Any], account_id: FromPath[int]
) -> dict[str, Any]:
    runtime, principal = await caller(request, account_id)
    require_account(principal, admin=True)
    account = principal.account_id
    name = _fields(await read_json(request, dict)).get("domain_name")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest(["domain_name is required"], 422)
    try:
        domain_id = await runtime.run(
            add_domain,
            runtime.store,
            runtime.secrets,
            runtime.domain_config,
            account,
            name,
            principal.token_name,
            principal.actor,
        )
    except DomainRefused as error:
        raise BadRequest([str(error)], 422) from None
    return await _view(runtime, principal, domain_id)


@get(f"{PATH}/{{domain_id:int}}", tags=TAGS, summary="One sending domain and its DNS records")
async def get_sending_domain(
    request: Request[Any, Any, Any], account_id: FromPath[int], domain_id: FromPath[int]
) -> dict[str, Any]:
    runtime, principal = await _domain_scope(request, account_id, domain_id)
    return await _view(runtime, principal, domain_id)


@patch(f"{PATH}/{{domain_id:int}}", tags=TAGS, summary="Change a sending domain's settings")
async def update_sending_domain(
    request: Request[Any, Any, Any],
    account_id: FromPath[int],
    domain_id: FromPath[int],
) -> dict[str, Any]:
    runtime, principal = await _domain_scope(request, account_id, domain_id, admin=True)
    account = principal.account_id
    changes = _fields(await read_json(request, dict))
    wrong = [k for k, v in changes.items() if not isinstance(v, bool)]
    if wrong:
        raise BadRequest([f"{', '.join(sorted(wrong))}: must be true or false"], 422)
    try:
        await runtime.run(
            change_settings, runtime.store, account, domain_id, changes, principal.actor
        )
    except NoSuchDomain:
        raise NotFoundException from None
    except ValueError as error:
        raise BadRequest([str(error)], 422) from None
    return await _view(runtime, principal, domain_id)


@delete(f"{PATH}/{{domain_id:int}}", tags=TAGS, summary="Delete a sending domain")
async def delete_sending_domain(
    request: Request[Any, Any, Any], account_id: FromPath[int], domain_id: FromPath[int]
) -> Response[None]:
    runtime, principal = await _domain_scope(request, account_id, domain_id)
    require_account(principal, admin=True)
    account = principal.account_id
    try:
        revoked = await runtime.run(
            delete_domain,
            runtime.store,
            account,
            domain_id,
            principal.token_name,
            principal.actor,
        )
    except NoSuchDomain:
        raise NotFoundException from None
    await runtime.read_your_writes(runtime.domains)
    runtime.senders.forget(account)  # a deleted domain stops sending at once
    if revoked:
        runtime.auth.forget()  # and so do its tokens
    return Response(None, status_code=204)


@post(
    f"{PATH}/{{domain_id:int}}/verify",
    tags=TAGS,
    summary="Check the domain's DNS records now",
    status_code=200,
)
async def verify_sending_domain(
    request: Request[Any, Any, Any], account_id: FromPath[int], domain_id: FromPath[int]
) -> dict[str, Any]:
    runtime, principal = await _domain_scope(request, account_id, domain_id, admin=True)
    account = principal.account_id
    try:
        await runtime.domain_checker.check(account, domain_id)
    except NoSuchDomain:
        raise NotFoundException from None
    view = await _view(runtime, principal, domain_id)
    runtime.senders.forget(account)  # a domain verified just now may send at once
    return view


@post(
    f"{PATH}/{{domain_id:int}}/rotate_dkim",
    tags=TAGS,
    summary="Put a new DKIM key on the standby selector; it signs once DNS publishes it",
    status_code=200,
)
async def rotate_domain_dkim(
    request: Request[Any, Any, Any], account_id: FromPath[int], domain_id: FromPath[int]
) -> dict[str, Any]:
    runtime, principal = await _domain_scope(request, account_id, domain_id, admin=True)
    account = principal.account_id
    try:
        await runtime.run(
            rotate_dkim,
            runtime.store,
            runtime.secrets,
            runtime.domain_config,
            account,
            domain_id,
            principal.actor,
        )
    except NoSuchDomain:
        raise NotFoundException from None
    await runtime.read_your_writes(runtime.domains)
    return await _view(runtime, principal, domain_id)


@post(
    f"{PATH}/{{domain_id:int}}/send_setup_instructions",
    tags=TAGS,
    summary="Mail the DNS records to publish to someone who runs the domain's DNS",
    status_code=204,
)
async def send_setup_instructions(
    request: Request[Any, Any, Any], account_id: FromPath[int], domain_id: FromPath[int]
) -> Response[None]:
    runtime, principal = await _domain_scope(request, account_id, domain_id, admin=True)
    if not await request.app.state.instructions_limit.allows(principal.account_id):
        raise TooManyRequests
    email = (await read_json(request, dict)).get("email")
    if not isinstance(email, str) or not is_valid_address(email):
        raise BadRequest(["email must be a valid email address"], 422)
    config = runtime.domain_config
    if config.system_sender is None:
        raise BadRequest(
            ["this installation mails no instructions: its operator sets POSTLINE_SYSTEM_SENDER"],
            422,
        )
    try:
        domain = await runtime.run(get_domain, runtime.store, principal.account_id, domain_id)
    except NoSuchDomain:
        raise NotFoundException from None
    draft = Draft(
        sender=Address(email=config.system_sender, name="Postline"),
        to=[Address(email=email)],
        subject=f"DNS records to publish for {domain.name}",
        text=setup_instructions(domain.name, expected(domain, config)),
        category="setup instructions",
    )
    client = request.client
    origin = Origin(principal, "transactional", "system", client.host if client else None)
    await runtime.acceptor.send(origin, draft)
    return Response(None, status_code=204)


HANDLERS = [
    list_sending_domains,
    create_sending_domain,
    get_sending_domain,
    update_sending_domain,
    delete_sending_domain,
    verify_sending_domain,
    rotate_domain_dkim,
    send_setup_instructions,
]
