"""Request bodies (decoded with msgspec) and query values, errors in the API's own words."""

from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from litestar import Request

from api.errors import BadRequest

T = TypeVar("T")

_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def iso_time(name: str, value: str | None) -> datetime | None:
    """A query parameter's ISO 8601 time (UTC unless it says otherwise); 422 if it is none."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest([f"{name} must be an ISO 8601 time"], 422) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _decoder(kind: type[T]) -> msgspec.json.Decoder[T]:
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    return decoder


async def read_json(request: Request[Any, Any, Any], kind: type[T]) -> T:
    """The body as `kind`; BadRequest when it is empty, not JSON, or of the wrong shape.

    The route's `request_max_body_size` is enforced while reading (413).
    """
    raw = await request.body()
    if not raw.strip():
        raise BadRequest(["request body is required"])
    try:
        return _decoder(kind).decode(raw)
    except msgspec.ValidationError as error:
        raise BadRequest([_describe(str(error))]) from None
    except msgspec.DecodeError as error:
        reason = str(error).removeprefix("JSON is malformed: ")
        raise BadRequest([f"request body is not valid JSON: {reason}"]) from None


def _describe(message: str) -> str:
    """`Expected `str | null`, got `int` - at `$.from.email`` -> `invalid 'from.email': ...`."""
    detail, _, where = message.partition(" - at `")
    detail = detail.replace(" | null", "")
    path = where.rstrip("`").removeprefix("$").removeprefix(".")
    if not path:
        return f"request body must be a JSON object ({detail})"
    return f"invalid '{path}': {detail[0].lower()}{detail[1:]}"
