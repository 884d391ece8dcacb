"""Error responses in each API's own shape, and the exception handlers that produce them.

The sending API answers `{"success": false, "errors": [...]}`; the account-level APIs answer
`{"error": "..."}`, as Mailtrap does. Server-side failures carry a `request_id` that is also
logged, and never a traceback.
"""

import logging
import re
import uuid
from typing import Any

from litestar import Request, Response
from litestar.exceptions import (
    ClientException,
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    ValidationException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from domain.submission import InvalidSubmission
from engine.errors import Conflict, Forbidden, StoreUnavailable
from engine.sender_policy import SenderNotAllowed

log = logging.getLogger("postline.api")

RETRY_AFTER_SECONDS = "5"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class Unauthorized(Exception):
    """No token, or a token that is unknown or revoked."""


class TooManyRequests(Exception):
    """A rate limit of the account-level APIs was reached."""


class BadRequest(Exception):
    """The request is malformed; `errors` say how."""

    def __init__(self, errors: list[str], status: int = 400) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors
        self.status = status


def is_sending_api(path: str) -> bool:
    return path.startswith(("/api/send", "/api/batch", "/bulk/", "/api/_noop"))


def request_id(request: Request[Any, Any, Any]) -> str:
    given = request.headers.get("x-request-id", "")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def error_response(
    request: Request[Any, Any, Any],
    status: int,
    errors: list[str],
    *,
    with_request_id: bool = False,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    """An error in the shape of the API the request was made to."""
    body: dict[str, Any]
    if is_sending_api(request.url.path):
        body = {"success": False, "errors": errors}
    else:
        body = {"error": "; ".join(errors)}
    headers = dict(headers or {})
    if with_request_id:
        rid = request_id(request)
        body["request_id"] = rid
        headers["X-Request-Id"] = rid
    return Response(body, status_code=status, headers=headers)


def _validation_messages(error: ValidationException) -> list[str]:
    messages = []
    for item in error.extra or []:
        if not isinstance(item, dict):
            continue
        key, message = str(item.get("key", "")), str(item.get("message", ""))
        if key == "data":
            messages.append(
                "request body is required"
                if message == "'data'"
                else f"request body must be a JSON object ({message})"
            )
        else:
            messages.append(f"invalid '{key}': {message.replace(' | null', '')}")
    return messages or ["invalid request body"]


def on_invalid_submission(
    request: Request[Any, Any, Any], error: InvalidSubmission | BadRequest
) -> Response[Any]:
    return error_response(request, error.status, error.errors)


def on_unauthorized(request: Request[Any, Any, Any], _: Unauthorized) -> Response[Any]:
    message = "Unauthorized" if is_sending_api(request.url.path) else "Incorrect API token"
    return error_response(request, 401, [message])


def on_validation(request: Request[Any, Any, Any], error: ValidationException) -> Response[Any]:
    return error_response(request, 400, _validation_messages(error))


def on_too_large(request: Request[Any, Any, Any], _: RequestEntityTooLarge) -> Response[Any]:
    limit = request.route_handler.request_max_body_size
    size = f"{limit // (1024 * 1024)} MB" if isinstance(limit, int) else "the limit"
    return error_response(request, 413, [f"request body is larger than {size}"])


def on_client_error(request: Request[Any, Any, Any], error: ClientException) -> Response[Any]:
    if isinstance(error, NotFoundException):
        return error_response(request, 404, ["Not Found"])
    if isinstance(error, MethodNotAllowedException):
        return error_response(
            request,
            405,
            [f"method {request.method} is not allowed here"],
            headers=dict(error.headers or {}),
        )
    detail = error.detail or "Bad Request"
    if detail.startswith("JSON is malformed"):
        detail = "request body is not valid JSON: " + detail.removeprefix("JSON is malformed: ")
    return error_response(request, error.status_code, [detail])


def on_http_error(request: Request[Any, Any, Any], error: HTTPException) -> Response[Any]:
    return error_response(request, error.status_code, [error.detail or "error"])


def on_store_unavailable(request: Request[Any, Any, Any], error: StoreUnavailable) -> Response[Any]:
    response = error_response(
        request,
        503,
        ["Service unavailable: the message store cannot be reached; retry later"],
        with_request_id=True,
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )
    log.warning(
        "503 %s %s request_id=%s: %s",
        request.method,
        request.url.path,
        response.headers["X-Request-Id"],
        error,
    )
    return response


def on_sender_not_allowed(
    request: Request[Any, Any, Any], error: SenderNotAllowed
) -> Response[Any]:
    return error_response(request, 401, ["Unauthorized", str(error)])


def on_too_many(request: Request[Any, Any, Any], _: TooManyRequests) -> Response[Any]:
    return Response(
        {"errors": "Rate limit exceeded"}, status_code=429, headers={"Retry-After": "60"}
    )


def on_forbidden(request: Request[Any, Any, Any], error: Forbidden) -> Response[Any]:
    """403 in each API's shape: the sending API's list, the account APIs' `{"errors": "..."}`."""
    if is_sending_api(request.url.path):
        return error_response(request, 403, ["Forbidden", str(error)])
    reason = f": {error}" if str(error) else ""
    return Response({"errors": f"Access forbidden{reason}"}, status_code=403)


def on_conflict(request: Request[Any, Any, Any], _: Conflict) -> Response[Any]:
    return error_response(request, 409, ["a concurrent change won; retry the request"])


def on_internal_error(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    response = error_response(request, 500, ["Internal server error"], with_request_id=True)
    log.error(
        "500 %s %s request_id=%s",
        request.method,
        request.url.path,
        response.headers["X-Request-Id"],
        exc_info=error,
    )
    return response


EXCEPTION_HANDLERS: dict[type[Exception], Any] = {
    InvalidSubmission: on_invalid_submission,
    BadRequest: on_invalid_submission,
    Unauthorized: on_unauthorized,
    ValidationException: on_validation,
    RequestEntityTooLarge: on_too_large,
    ClientException: on_client_error,
    HTTPException: on_http_error,
    StoreUnavailable: on_store_unavailable,
    Conflict: on_conflict,
    Forbidden: on_forbidden,
    TooManyRequests: on_too_many,
    SenderNotAllowed: on_sender_not_allowed,
    Exception: on_internal_error,
}
