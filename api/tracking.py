"""Open and click tracking: `GET /t/o/{token}` (the pixel) and `GET /t/c/{token}` (a link).

No API token: the signed token names the message (and the link's target). The reader gets the
pixel or the redirect even when the event cannot be recorded (the store is down): a lost open
is better than a broken email.
"""

import base64
import logging
from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from domain.tracking import redirect_location
from engine.runtime import Runtime
from engine.tracking import CLICK_PATH, OPEN_PATH, record_click, record_open

log = logging.getLogger("postline.tracking")
TAGS = ["Tracking"]
# A transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, max-age=0"}


def _client(request: Request[Any, Any, Any]) -> tuple[str | None, str | None]:
    return (request.client.host if request.client else None), request.headers.get("user-agent")


@get(OPEN_PATH + "/{token:str}", tags=TAGS, summary="The open-tracking pixel", security=[])
async def opened(request: Request[Any, Any, Any], token: FromPath[str]) -> Response[bytes]:
    runtime: Runtime = request.app.state.runtime
    links = runtime.tracking_links
    message_id = None if links is None else links.opened(token)
    if message_id is None:
        raise NotFoundException
    try:
        await runtime.run(record_open, runtime.store, message_id, *_client(request))
    except Exception as error:  # the reader still gets the pixel
        log.warning("open of %s not recorded: %s", message_id, error)
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@get(
    CLICK_PATH + "/{token:str}",
    tags=TAGS,
    summary="A tracked link: records, redirects",
    security=[],
)
async def clicked(request: Request[Any, Any, Any], token: FromPath[str]) -> Response[None]:
    runtime: Runtime = request.app.state.runtime
    links = runtime.tracking_links
    found = None if links is None else links.clicked(token)
    if found is None:
        raise NotFoundException
    message_id, target = found
    try:
        await runtime.run(record_click, runtime.store, message_id, target, *_client(request))
    except Exception as error:  # the reader still gets where they were going
        log.warning("click of %s not recorded: %s", message_id, error)
    return Response(
        None, status_code=302, headers={"Location": redirect_location(target), **NO_STORE}
    )


HANDLERS = [opened, clicked]
