"""Every error answer has one shape: ``{"error": {"code", "message", "details"}}``.

Framework errors (404, 405, 413, 415, validation) are rewritten into it by the app-level
handlers, which also turn body validation failures into 422 and unreadable bodies into 400.
Messages never repeat a secret: they are written here, or are msgspec's field-level messages.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any, Final, TypeVar

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from bridge.api.request import MAX_JSON_DEPTH, is_utf8, json_depth_exceeds
from bridge.logs import get_logger

T = TypeVar("T")
MAX_DETAILS: Final = 20
PARAMETER_ALIASES: Final = {"state_filter": "state"}
"""Python names of query parameters whose wire name is reserved by Litestar (``state``)."""
"""Validation problems listed in one error answer."""
log = get_logger("bridge.api")
REDIS_RETRY_AFTER_S: Final = 5
"""``Retry-After`` of a 503 while Redis does not answer: about the time a Sentinel failover takes."""
_DECODE_HINTS: Final = ("malformed", "invalid json", "json is", "utf-8", "truncated", "unexpected", "decode")


class ErrorBody(msgspec.Struct, kw_only=True):
    code: str
    message: str
    details: Any = None


class ErrorResponse(msgspec.Struct, kw_only=True):
    error: ErrorBody


class ApiError(HTTPException):
    """An error a route raises on purpose, with a stable machine-readable ``code``."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code
        self.details = details


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: Any = None
) -> Response[Any]:
    return Response(
        content=ErrorResponse(error=ErrorBody(code=code, message=message, details=details)),
        status_code=status,
        media_type=MediaType.JSON,
        headers=headers,
    )


def _code_for(status: int) -> str:
    try:
        return re.sub(r"[^a-z0-9]+", "_", HTTPStatus(status).phrase.lower()).strip("_")
    except ValueError:
        return "error"


def _validation_details(extra: Any) -> list[dict[str, Any]]:
    items = extra if isinstance(extra, list) else [extra] if extra else []
    details = []
    for item in items[:MAX_DETAILS]:
        if isinstance(item, dict):
            detail = {k: v for k, v in item.items() if k in ("message", "key", "source")}
            if detail.get("key") in PARAMETER_ALIASES:
                detail["key"] = PARAMETER_ALIASES[detail["key"]]
            details.append(detail)
        else:
            details.append({"message": str(item)})
    return details


def _is_unreadable_body(details: list[dict[str, Any]]) -> bool:
    text = " ".join(str(d.get("message", "")) for d in details).lower()
    return any(hint in text for hint in _DECODE_HINTS)


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, ApiError):
        return error_response(exc.status_code, exc.code, exc.detail, exc.details, exc.headers)
    status = exc.status_code
    if isinstance(exc, ValidationException):
        details = _validation_details(exc.extra)
        if _is_unreadable_body(details):
            return error_response(400, "invalid_json", "the request body is not valid JSON", details)
        return error_response(422, "validation_error", "the request is not valid", details)
    if status == 400 and str(exc.detail).lower().startswith(_DECODE_HINTS):
        return error_response(400, "invalid_json", f"the request body is not valid JSON: {exc.detail}")
    headers = getattr(exc, "headers", None)
    message = (
        exc.detail if exc.detail and exc.detail != HTTPStatus(status).phrase else _default_message(status)
    )
    return error_response(status, _code_for(status), message, headers=headers)


def _default_message(status: int) -> str:
    messages = {
        401: "missing or invalid API key",
        404: "no such resource",
        405: "method not allowed on this resource",
        413: "request body too large",
        415: "unsupported media type: send application/json",
    }
    return messages.get(status, HTTPStatus(status).phrase)


def handle_redis_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Redis still unreachable after the client's retries (an outage longer than a failover)."""
    log.warning("redis unavailable", path=request.url.path, error=type(exc).__name__)
    return error_response(
        503,
        "storage_unavailable",
        "the bridge's storage does not answer; retry later",
        headers={"Retry-After": str(REDIS_RETRY_AFTER_S)},
    )


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error", path=request.url.path, error=repr(exc))
    return error_response(500, "internal_error", "internal error; see the server log")


def validation_details(exc: msgspec.ValidationError) -> list[dict[str, Any]]:
    """One detail naming the field from a msgspec error (``... - at `$.bulk_ids[0]```)."""
    message, _, path = str(exc).partition(" - at `$")
    key = path.rstrip("`").lstrip(".") or None
    return [{"message": message, "key": key, "source": "body"}]


def _integral(value: Any) -> Any:
    """``5.0`` is the integer 5 in JSON Schema: make it one, so ``int`` fields accept it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    return value


def decode_strictly(raw: bytes, kind: type[T]) -> T:
    """Decode a JSON body into ``kind`` with no type coercion ("1" is not 1; 1.0 is 1)."""
    if json_depth_exceeds(raw):
        raise ApiError(400, "invalid_json", f"the request body is nested deeper than {MAX_JSON_DEPTH} levels")
    if not is_utf8(raw):
        raise ApiError(400, "invalid_json", "the request body is not valid JSON: it is not UTF-8")
    try:
        return msgspec.convert(_integral(msgspec.json.decode(raw)), kind, strict=True)
    except msgspec.ValidationError as exc:
        raise ApiError(422, "validation_error", "the request is not valid", validation_details(exc)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from None
