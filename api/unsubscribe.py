"""Unsubscribe links: `GET /unsubscribe/{token}` asks, `POST` (RFC 8058 one-click) records.

A GET never unsubscribes (link scanners follow links); mailbox providers' one-click POST and
the page's button do. No API token: the signed token is the authority.
"""

import html
from typing import Any

from litestar import MediaType, Request, Response, get, post
from litestar.params import FromPath

from engine.errors import Conflict
from engine.opt_outs import UNSUBSCRIBE_PATH, NotDeliveredYet, unsubscribe
from engine.runtime import Runtime

TAGS = ["Unsubscribe"]
PATH = f"{UNSUBSCRIBE_PATH}/{{token:str}}"

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 4em auto;">{body}</body></html>
"""


def _page(status: int, title: str, body: str) -> Response[str]:
    page = _PAGE.format(title=html.escape(title), body=body)
    return Response(page, status_code=status, media_type=MediaType.HTML)


def _gone() -> Response[str]:
    return _page(404, "Link not recognised", "<p>This unsubscribe link is not valid.</p>")


@get(PATH, tags=TAGS, summary="The unsubscribe page (asks; does not unsubscribe)")
async def unsubscribe_page(request: Request[Any, Any, Any], token: FromPath[str]) -> Response[str]:
    runtime: Runtime = request.app.state.runtime
    if runtime.unsubscribe_links.message_of(token) is None:
        return _gone()
    return _page(  # the form posts back to this very URL, wherever it is served
        200,
        "Unsubscribe",
        "<p>Stop receiving these emails?</p>"
        '<form method="post">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>',
    )


@post(PATH, tags=TAGS, summary="Unsubscribe (RFC 8058 one-click)", status_code=200)
async def unsubscribe_now(request: Request[Any, Any, Any], token: FromPath[str]) -> Response[str]:
    runtime: Runtime = request.app.state.runtime
    message_id = runtime.unsubscribe_links.message_of(token)
    if message_id is None:
        return _gone()
    client = request.client
    agent = request.headers.get("user-agent")
    try:
        found = await runtime.run(
            unsubscribe, runtime.store, message_id, client.host if client else None, agent
        )
    except (NotDeliveredYet, Conflict):
        response = _page(503, "Try again", "<p>Please try again in a minute.</p>")
        response.headers["Retry-After"] = "60"
        return response
    if found is None:
        return _gone()
    return _page(200, "Unsubscribed", "<p>You are unsubscribed.</p>")


HANDLERS = [unsubscribe_page, unsubscribe_now]
