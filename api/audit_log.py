"""The audit log: `GET /api/accounts/{account_id}/audit_log`, newest first, 100 a page.

`before` (the previous page's `next_page_cursor`) pages on; `since` and `until` (ISO 8601)
bound the time. It takes admin access to the account: it is security tooling's view.
"""

import re
from typing import Any

from litestar import Request, get
from litestar.params import FromPath

from api.auth import account_scope
from api.body import iso_time
from api.errors import BadRequest
from projections.audit_log import list_entries


@get(
    "/api/accounts/{account_id:int}/audit_log",
    tags=["Audit log"],
    summary="Control-plane changes (tokens, domains, suppressions): who, what, when",
)
async def audit_log(request: Request[Any, Any, Any], account_id: FromPath[int]) -> dict[str, Any]:
    runtime, account = await account_scope(request, account_id, admin=True)
    query = request.query_params
    before = query.get("before")
    if before is not None and not re.fullmatch(r"[0-9]{1,18}", before):
        raise BadRequest(["before must be a next_page_cursor of this list"], 422)
    since, until = iso_time("since", query.get("since")), iso_time("until", query.get("until"))
    await runtime.read_your_writes(runtime.audit)
    entries, cursor = await runtime.run(
        lambda: list_entries(
            runtime.store.db,
            account,
            before=None if before is None else int(before),
            since=since,
            until=until,
        )
    )
    return {"data": entries, "next_page_cursor": cursor}


HANDLERS = [audit_log]
