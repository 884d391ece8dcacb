"""Webhooks on the paths the official SDK calls (`/api/accounts/{id}/webhooks`).

List, get, create (the `signing_secret` is in that answer only), update (`url`, `active` to
pause or resume, `payload_format`, `event_types`), delete; and beyond the SDK:
`POST .../{id}/test` (posts a sample event now), `POST .../{id}/rotate_secret` (a new secret,
in force at once) and `GET .../{id}/deliveries` (the recent attempts). Account admins only: a
webhook's URL may carry its receiver's credentials.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, patch, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from api.auth import actor, caller, require_account
from api.body import read_json
from api.errors import BadRequest
from domain.webhooks import InvalidWebhook, view
from engine.runtime import Runtime
from engine.webhook_sender import signed_batch
from engine.webhooks import (
    NoSuchWebhook,
    change_webhook,
    create_webhook,
    delete_webhook,
    get_webhook,
    rotate_secret,
)
from projections.webhook_outbox import attempts, resume, subscriptions_of, waiting

TAGS = ["Webhooks"]
PATH = "/api/accounts/{account_id:int}/webhooks"
ITEM = PATH + "/{webhook_id:int}"


async def _admin(
    request: Request[Any, Any, Any], account_id: int, webhook_id: int | None = None
) -> tuple[Runtime, int]:
    runtime, principal = await caller(request, account_id, webhook_id)
    require_account(principal, admin=True)
    return runtime, principal.account_id


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    fields = body.get("webhook", body)
    if not isinstance(fields, dict):
        raise BadRequest(["webhook must be an object"], 422)
    return fields


def _allow_private(runtime: Runtime) -> bool:
    return runtime.webhook_sender.settings.allow_private


@get(PATH, tags=TAGS, summary="The account's webhooks")
async def list_webhooks(
    request: Request[Any, Any, Any], account_id: FromPath[int]
) -> dict[str, Any]:
    runtime, account = await _admin(request, account_id)
    await runtime.read_your_writes(runtime.webhook_outbox)
    subs = await runtime.run(subscriptions_of, runtime.store.db, account)
    return {"data": [view(s.webhook_id, s.settings) for s in subs]}


@post(PATH, tags=TAGS, summary="Create a webhook (its signing secret is shown once)")
async def add_webhook(
    request: Request[Any, Any, Any], account_id: FromPath[int]
) -> Response[dict[str, Any]]:
    runtime, account = await _admin(request, account_id)
    fields = _fields(await read_json(request, dict))
    try:
        created = await runtime.run(
            create_webhook,
            runtime.store,
            runtime.secrets,
            account,
            fields,
            _allow_private(runtime),
            actor(request),
        )
    except InvalidWebhook as error:
        raise BadRequest(error.problems, 422) from None
    body = {**view(created.webhook_id, created.settings), "signing_secret": created.signing_secret}
    return Response({"data": body}, status_code=200)


@get(ITEM, tags=TAGS, summary="One webhook")
async def one_webhook(
    request: Request[Any, Any, Any], account_id: FromPath[int], webhook_id: FromPath[int]
) -> dict[str, Any]:
    runtime, account = await _admin(request, account_id, webhook_id)
    webhook = await _get(runtime, account, webhook_id)
    pending = await runtime.run(waiting, runtime.store.db, webhook_id)
    return {"data": {**view(webhook_id, webhook.settings), "pending_events": pending}}


@patch(ITEM, tags=TAGS, summary="Change a webhook; `active` pauses and resumes it")
async def update_webhook(
    request: Request[Any, Any, Any], account_id: FromPath[int], webhook_id: FromPath[int]
) -> dict[str, Any]:
    runtime, account = await _admin(request, account_id, webhook_id)
    fields = _fields(await read_json(request, dict))
    before = await _get(runtime, account, webhook_id)
    was_active = before.settings["active"]
    try:
        webhook = await runtime.run(
            change_webhook,
            runtime.store,
            account,
            webhook_id,
            fields,
            _allow_private(runtime),
            actor(request),
        )
    except NoSuchWebhook:
        raise NotFoundException from None
    except InvalidWebhook as error:
        raise BadRequest(error.problems, 422) from None
    if webhook.settings["active"] and not was_active:  # resumed: its failures are forgotten
        await runtime.run(resume, runtime.store.db, webhook_id)
    return {"data": view(webhook_id, webhook.settings)}


@delete(ITEM, tags=TAGS, summary="Delete a webhook (what it had yet to be sent goes too)")
async def remove_webhook(
    request: Request[Any, Any, Any], account_id: FromPath[int], webhook_id: FromPath[int]
) -> Response[None]:
    runtime, account = await _admin(request, account_id, webhook_id)
    try:
        await runtime.run(delete_webhook, runtime.store, account, webhook_id, actor(request))
    except NoSuchWebhook:
        raise NotFoundException from None
    return Response(None, status_code=204)


@post(ITEM + "/rotate_secret", tags=TAGS, summary="A new signing secret, in force at once")
async def new_secret(
    request: Request[Any, Any, Any], account_id: FromPath[int], webhook_id: FromPath[int]
) -> Response[dict[str, Any]]:
    runtime, account = await _admin(request, account_id, webhook_id)
    try:
        secret = await runtime.run(
            rotate_secret, runtime.store, runtime.secrets, account, webhook_id, actor(request)
        )
    except NoSuchWebhook:
        raise NotFoundException from None
    webhook = await _get(runtime, account, webhook_id)
    body = {**view(webhook_id, webhook.settings), "signing_secret": secret}
    return Response({"data": body}, status_code=200)


@post(ITEM + "/test", tags=TAGS, summary="Post a sample event to the webhook now")
async def test_webhook(
    request: Request[Any, Any, Any], account_id: FromPath[int], webhook_id: FromPath[int]
) -> Response[dict[str, Any]]:
    runtime, account = await _admin(request, account_id, webhook_id)
    webhook = await _get(runtime, account, webhook_id)
    settings = webhook.settings
    body, headers = signed_batch(
        [_sample(settings)],
        settings["payload_format"],
        runtime.secrets.open(webhook.sealed_secret).decode(),
    )
    posted = await runtime.webhook_sender.client.post(settings["url"], body, headers)
    return Response(
        {
            "success": posted.ok,
            "status_code": posted.status_code,
            "latency_ms": posted.latency_ms,
            "error": posted.error,
        },
        status_code=200,
    )


@get(ITEM + "/deliveries", tags=TAGS, summary="The webhook's recent delivery attempts")
async def deliveries(
    request: Request[Any, Any, Any], account_id: FromPath[int], webhook_id: FromPath[int]
) -> dict[str, Any]:
    runtime, account = await _admin(request, account_id, webhook_id)
    await _get(runtime, account, webhook_id)
    return {"data": await runtime.run(attempts, runtime.store.db, webhook_id)}


async def _get(runtime: Runtime, account: int, webhook_id: int) -> Any:
    try:
        return await runtime.run(get_webhook, runtime.store, account, webhook_id)
    except NoSuchWebhook:
        raise NotFoundException from None


def _sample(settings: dict[str, Any]) -> str:
    """A made-up event of the kind the webhook receives, as JSON text."""
    now = int(datetime.now(UTC).timestamp())
    if settings["webhook_type"] == "audit_log":
        event: dict[str, Any] = {
            "event": "activity_log.webhook.test",
            "description": "sent a test payload",
            "actor": {"name": "Postline"},
            "timestamp": now,
        }
    else:
        event = {
            "event": "delivery",
            "message_id": str(uuid.uuid4()),
            "sending_stream": settings["sending_stream"],
            "email": "receiver@example.com",
            "sending_domain_name": "example.com",
            "timestamp": now,
            "event_id": str(uuid.uuid4()),
            "category": "Test",
        }
    return msgspec.json.encode(event).decode()


HANDLERS = [
    list_webhooks,
    add_webhook,
    one_webhook,
    update_webhook,
    remove_webhook,
    new_secret,
    test_webhook,
    deliveries,
]
