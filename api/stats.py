"""Sending stats: `GET /api/accounts/{account_id}/stats[/domains|/categories|
/email_service_providers|/date]` (the official SDK's `stats_api`), and the same under
`/api/stats` for the token's own account.

Query: `start_date` and `end_date` (`YYYY-MM-DD`, UTC days, both included; required) and the
filters `sending_domain_ids[]` (alias `domain_ids[]`), `sending_streams[]`, `categories[]`,
`email_service_providers[]`. The answer is a stats object, or for a grouped path a list of
`{"sending_domain_id"|"category"|"email_service_provider"|"date": value, "stats": {...}}`.
Rates and counting rules: domain/stats.py. A token with access to some sending domains only
sees those domains' stats. 10 calls a minute per account, shared by every stats path.
"""

import re
from dataclasses import dataclass, replace
from datetime import date
from typing import Annotated, Any

from litestar import Request, get
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter

from api.auth import authenticate, caller
from api.errors import BadRequest, TooManyRequests
from domain.message import STREAMS
from domain.stats import esp_name, stats_object
from engine.accounts import Principal
from engine.errors import Forbidden
from engine.runtime import Runtime
from projections.stats import GROUPS, StatsQuery, account_domains, grouped_stats, stats

TAGS = ["Stats"]
DEFAULT_RATE = "10/minute"  # Mailtrap's, shared by the stats paths; counted per process
MAX_FILTER_VALUES = 1000
# The grouped paths and the key each item names its value by.
GROUP_KEYS = {
    "domains": "sending_domain_id",
    "categories": "category",
    "email_service_providers": "email_service_provider",
    "date": "date",
}
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _day(name: str, value: str | None, problems: list[str]) -> date | None:
    if value is None or not value.strip():
        problems.append(f"{name} is required (YYYY-MM-DD)")
        return None
    try:
        if not _DAY.fullmatch(value.strip()):
            raise ValueError(value)
        return date.fromisoformat(value.strip())
    except ValueError:
        problems.append(f"{name} must be a date (YYYY-MM-DD)")
        return None


@dataclass(frozen=True, slots=True)
class Filters:
    """The query parameters as given (checked once the caller is known: `parse_query`)."""

    start_date: str | None
    end_date: str | None
    domain_ids: list[str] | None
    streams: list[str] | None
    categories: list[str] | None
    providers: list[str] | None


_LIST = "give it once per value"


async def provide_filters(
    start_date: Annotated[
        str | None, QueryParameter(description="First day, UTC (YYYY-MM-DD); required")
    ] = None,
    end_date: Annotated[
        str | None, QueryParameter(description="Last day, UTC (YYYY-MM-DD), included; required")
    ] = None,
    sending_domain_ids: Annotated[
        list[str] | None,
        QueryParameter(name="sending_domain_ids[]", description=f"Sending domain ids; {_LIST}"),
    ] = None,
    domain_ids: Annotated[
        list[str] | None,
        QueryParameter(name="domain_ids[]", description="Another name for sending_domain_ids[]"),
    ] = None,
    sending_streams: Annotated[
        list[str] | None,
        QueryParameter(name="sending_streams[]", description=f"transactional, bulk; {_LIST}"),
    ] = None,
    categories: Annotated[
        list[str] | None, QueryParameter(name="categories[]", description=f"Categories; {_LIST}")
    ] = None,
    email_service_providers: Annotated[
        list[str] | None,
        QueryParameter(
            name="email_service_providers[]",
            description=f"Email service providers (Google, Yahoo, Outlook, ...); {_LIST}",
        ),
    ] = None,
) -> Filters:
    domains = [*(sending_domain_ids or []), *(domain_ids or [])]
    return Filters(
        start_date,
        end_date,
        domains or None,
        sending_streams,
        categories,
        email_service_providers,
    )


def parse_query(filters: Filters) -> StatsQuery:
    """The stats query the parameters ask for; BadRequest (422) saying what is wrong."""
    problems: list[str] = []
    start = _day("start_date", filters.start_date, problems)
    end = _day("end_date", filters.end_date, problems)
    if start and end and start > end:
        problems.append("start_date must not be after end_date")
    domains, streams = filters.domain_ids, filters.streams
    categories, providers = filters.categories, filters.providers
    domain_ids: frozenset[int] | None = None
    if domains is not None:
        if all(v.strip().isdigit() for v in domains):
            domain_ids = frozenset(int(v) for v in domains)
        else:
            problems.append("sending_domain_ids[] must be sending domain ids (integers)")
    if streams is not None and not set(streams) <= set(STREAMS):
        problems.append(f"sending_streams[] must be {' or '.join(STREAMS)}")
    for name, given in (
        ("sending_domain_ids[]", domains),
        ("sending_streams[]", streams),
        ("categories[]", categories),
        ("email_service_providers[]", providers),
    ):
        if given is not None and len(given) > MAX_FILTER_VALUES:
            problems.append(f"{name} takes at most {MAX_FILTER_VALUES} values")
    if problems or start is None or end is None:
        raise BadRequest(problems, 422)
    return StatsQuery(
        start=start,
        end=end,
        domain_ids=domain_ids,
        streams=frozenset(streams) if streams is not None else None,
        categories=frozenset(categories) if categories is not None else None,
        providers=(
            frozenset(esp_name(p) or p for p in providers) if providers is not None else None
        ),
    )


def _readable_domains(principal: Principal) -> frozenset[int] | None:
    """The domains a token without account-wide read access may see (None: all of them)."""
    readable = principal.access.readable_domains()
    if readable is not None and not readable:
        raise Forbidden("this API token needs viewer access to the account or a sending domain")
    return readable


async def _answer(
    request: Request[Any, Any, Any], account_id: int | None, group: str | None, filters: Filters
) -> Any:
    if group is not None and group not in GROUPS:
        raise NotFoundException
    if account_id is None:
        principal = await authenticate(request)
        runtime: Runtime = request.app.state.runtime
    else:
        runtime, principal = await caller(request, account_id)
    readable = _readable_domains(principal)
    account = principal.account_id
    if not await request.app.state.stats_limit.allows(account):
        raise TooManyRequests
    query = parse_query(filters)
    await runtime.read_your_writes(runtime.stats)
    db = runtime.store.db
    if query.domain_ids is not None:
        unknown = query.domain_ids - await runtime.run(account_domains, db, account)
        if unknown:
            ids = ", ".join(str(i) for i in sorted(unknown))
            raise BadRequest([f"Sending domain does not exist: {ids}"], 422)
        if readable is not None and not query.domain_ids <= readable:
            ids = ", ".join(str(i) for i in sorted(query.domain_ids - readable))
            raise Forbidden(f"this API token needs viewer access to sending domain {ids}")
    elif readable is not None:
        query = replace(query, domain_ids=readable)
    if group is None:
        return stats_object(await runtime.run(stats, db, account, query))
    found = await runtime.run(grouped_stats, db, account, query, group)
    key = GROUP_KEYS[group]
    return [{key: value, "stats": stats_object(counts)} for value, counts in found]


_FILTERS = {"filters": Provide(provide_filters)}
_GROUPED = "Sending stats over a range of days by domain, category, email service provider or date"


@get(
    "/api/accounts/{account_id:int}/stats",
    tags=TAGS,
    summary="Sending stats over a range of days",
    dependencies=_FILTERS,
)
async def account_stats(
    request: Request[Any, Any, Any], account_id: FromPath[int], filters: NamedDependency[Filters]
) -> dict[str, Any]:
    return await _answer(request, account_id, None, filters)


@get(
    "/api/accounts/{account_id:int}/stats/{group:str}",
    tags=TAGS,
    summary=f"{_GROUPED} (`group`: domains, categories, email_service_providers, date)",
    dependencies=_FILTERS,
)
async def account_grouped_stats(
    request: Request[Any, Any, Any],
    account_id: FromPath[int],
    group: FromPath[str],
    filters: NamedDependency[Filters],
) -> list[dict[str, Any]]:
    return await _answer(request, account_id, group, filters)


@get(
    "/api/stats",
    tags=TAGS,
    summary="Sending stats over a range of days (the token's account)",
    dependencies=_FILTERS,
)
async def own_stats(
    request: Request[Any, Any, Any], filters: NamedDependency[Filters]
) -> dict[str, Any]:
    return await _answer(request, None, None, filters)


@get(
    "/api/stats/{group:str}",
    tags=TAGS,
    summary=f"{_GROUPED} (the token's account)",
    dependencies=_FILTERS,
)
async def own_grouped_stats(
    request: Request[Any, Any, Any], group: FromPath[str], filters: NamedDependency[Filters]
) -> list[dict[str, Any]]:
    return await _answer(request, None, group, filters)


HANDLERS = [account_stats, account_grouped_stats, own_stats, own_grouped_stats]
