"""Rendering errors to wire bytes: the one place where a :class:`GatewayError` becomes bytes.

Theory of operation (STYLE.md §7): the shell catches a ``GatewayError`` and asks this module
for bytes in the caller's protocol. Which function it calls depends on whether the response
is committed:

- :func:`error_response` before anything was sent: a real HTTP status, headers and a JSON
  body (protocols.md §1.8, §2.6), so the SDKs pick the right exception class and retry
  429/5xx themselves;
- :func:`error_event` after the 200 went out: complete in-band SSE frames (protocols.md §5.10
  "in-stream"). A cut stream must end with one of these, never with a clean end
  (RELIABILITY.md finding 7).

Invariants:

- The type string a caller sees is derived from the HTTP status (protocols.md §5.10), so an
  upstream 429 is a ``rate_limit_error`` for every caller. The few class-specific exceptions
  are the ``_*_BY_CLASS`` tables below, looked up along the MRO.
- The message is ``error.message`` verbatim: it is already safe to show (no secret, no host;
  upstream text went through ``_upstream_errors.sanitize_text``). This module adds no detail.
- SSE output follows protocols.md §4.6: LF only, one ``data:`` line of compact JSON, a blank
  line after every frame, never a BOM, ``id:`` or ``retry:``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, assert_never

from trio_gateway._errors import (
    Forbidden,
    GatewayError,
    HeadersTooLarge,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    UnknownModel,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from trio_gateway._protocol._frames import dumps as _dumps
from trio_gateway._protocol._frames import encode as _encode
from trio_gateway._protocol._frames import json_event as _frame
from trio_gateway._protocol._names import Protocol

__all__ = [
    "Headers",
    "anthropic_error_type",
    "error_event",
    "error_response",
    "openai_error_type",
    "ping_frame",
]

Headers = list[tuple[bytes, bytes]]

# protocols.md §1.8 table; "other 4xx" is invalid_request_error and "other 5xx" api_error.
# 502 and 503: §5.10 leaves "overloaded_error or api_error" to policy. 502 means the upstream
# misbehaved (api_error); 503 means the gateway is shedding load (overloaded_error).
_ANTHROPIC_TYPE_BY_STATUS: Final[Mapping[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# protocols.md §5.10 ("Anthropic error.type -> OpenAI error.type"), keyed by status.
_OPENAI_TYPE_BY_STATUS: Final[Mapping[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}

# Class-specific type strings, which win over the status. A deadline the gateway enforced is
# a timeout whatever status it is sent with (STYLE.md §9 expects OpenAI type "timeout").
_ANTHROPIC_TYPE_BY_CLASS: Final[Mapping[type[GatewayError], str]] = {
    UpstreamTimeout: "timeout_error",
}
_OPENAI_TYPE_BY_CLASS: Final[Mapping[type[GatewayError], str]] = {
    UpstreamTimeout: "timeout",
}

# OpenAI ``error.code``: machine-readable reason (protocols.md §2.6). The first three are the
# strings OpenAI itself sends for the same situation; the rest are the gateway's own names.
_OPENAI_CODE_BY_CLASS: Final[Mapping[type[GatewayError], str]] = {
    Unauthorized: "invalid_api_key",
    UnknownModel: "model_not_found",
    RateLimited: "rate_limit_exceeded",
    Forbidden: "permission_denied",
    NotFound: "not_found",
    MethodNotAllowed: "method_not_allowed",
    PayloadTooLarge: "request_too_large",
    HeadersTooLarge: "headers_too_large",
    ServiceUnavailable: "service_unavailable",
    UpstreamTimeout: "upstream_timeout",
    UpstreamUnavailable: "upstream_unavailable",
    UpstreamProtocolError: "upstream_protocol_error",
}
# For errors without a class code (an upstream status passed on): protocols.md §5.10
# "rate_limit_error -> rate_limit_exceeded (code)".
_OPENAI_CODE_BY_STATUS: Final[Mapping[int, str]] = {
    429: "rate_limit_exceeded",
}

# ``response.error.code`` is a closed Literal in the openai SDK's ``ResponseError`` (and typed
# clients in other languages may enforce it), so ``response.failed`` only carries these; the
# precise code travels in the preceding ``error`` event, whose ``code`` is free-form.
_RESPONSES_FAILED_CODES: Final[frozenset[str]] = frozenset(
    {"server_error", "rate_limit_exceeded", "invalid_prompt"}
)

# protocols.md §4.5: Anthropic's own ping; OpenAI clients accept comment lines only.
_ANTHROPIC_PING: Final = b'event: ping\ndata: {"type": "ping"}\n\n'
_OPENAI_KEEPALIVE: Final = b": keepalive\n\n"

_REQUEST_ID_HEADER: Final[Mapping[Protocol, bytes]] = {
    "anthropic": b"request-id",
    "openai-chat": b"x-request-id",
    "openai-responses": b"x-request-id",
}
# Request ids are opaque tokens; 128 characters is far above any id format in use.
_MAX_REQUEST_ID_CHARS: Final = 128
# Longest header value passed through from an error (retry-after & co.); an HTTP date is 29.
_MAX_HEADER_VALUE_CHARS: Final = 64


def anthropic_error_type(status: int) -> str:
    """The Anthropic ``error.type`` for an HTTP status (protocols.md §1.8, §5.10).

    Args:
        status: the HTTP status the caller gets.

    Returns:
        The table entry; otherwise ``invalid_request_error`` for a 4xx and ``api_error``
        for anything else.
    """
    if status in _ANTHROPIC_TYPE_BY_STATUS:
        return _ANTHROPIC_TYPE_BY_STATUS[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def openai_error_type(status: int) -> str:
    """The OpenAI ``error.type`` for an HTTP status (protocols.md §2.6, §5.10).

    Args:
        status: the HTTP status the caller gets.

    Returns:
        The table entry; otherwise ``invalid_request_error`` for a 4xx and ``server_error``
        for anything else.
    """
    if status in _OPENAI_TYPE_BY_STATUS:
        return _OPENAI_TYPE_BY_STATUS[status]
    return "invalid_request_error" if 400 <= status < 500 else "server_error"


def error_response(
    error: GatewayError, protocol: Protocol, *, request_id: str
) -> tuple[int, Headers, bytes]:
    """Render an error as a complete HTTP response, for use while nothing is committed.

    Args:
        error: the error to render.
        protocol: the caller's protocol.
        request_id: the gateway's id for this request; echoed in a header (``request-id``
            for Anthropic, ``x-request-id`` for OpenAI) and in the Anthropic body. Characters
            outside visible ASCII are dropped, so the id can never split a header.

    Returns:
        ``(status, headers, body)``. Headers have lower-case names and carry
        ``content-type``, the request id, ``retry-after`` when the error has one and, for an
        :class:`UpstreamStatusError`, ``retry-after-ms`` and ``x-should-retry`` when set
        (protocols.md §5.10 "headers"). No ``content-length``: the shell frames the body.
    """
    rid = _clean_request_id(request_id)
    headers: Headers = [
        (b"content-type", b"application/json"),
        (_REQUEST_ID_HEADER[protocol], rid.encode("ascii")),
    ]
    extra: list[tuple[bytes, str | None]] = [(b"retry-after", error.retry_after)]
    if isinstance(error, UpstreamStatusError):
        extra += [
            (b"retry-after-ms", error.retry_after_ms),
            (b"x-should-retry", error.should_retry),
        ]
    if isinstance(error, MethodNotAllowed):
        # RFC 9110 §15.5.6: a 405 MUST list the methods the resource supports.
        extra.append((b"allow", ", ".join(error.allow)))
    for name, value in extra:
        encoded = _header_value(value)
        if encoded is not None:
            headers.append((name, encoded))
    body = _anthropic_body(error, rid) if protocol == "anthropic" else _openai_body(error)
    return _status(error), headers, _encode(_dumps(body))


def error_event(
    error: GatewayError,
    protocol: Protocol,
    *,
    request_id: str,
    response_id: str | None = None,
    sequence_number: int = 0,
    model: str | None = None,
    created_at: int | None = None,
) -> bytes:
    """Render an error as the in-band SSE frames that end a committed stream.

    The result is one or two complete frames, each ending in a blank line, written at an event
    boundary; the stream must be closed right after them (protocols.md §4.6). There is no
    ``data: [DONE]`` for Chat: the stream failed, it did not finish.

    Args:
        error: the error to render.
        protocol: the caller's protocol.
        request_id: the gateway's id for this request (Anthropic body, default response id).
        response_id: Responses only: the ``resp_…`` id already sent in ``response.created``;
            defaults to ``"resp_" + request_id``. SDKs check that it never changes.
        sequence_number: Responses only: the next unused ``sequence_number``; the ``error``
            event gets it and ``response.failed`` gets the one after.
        model: Responses only: the ``model`` sent in ``response.created`` (default ``""``).
        created_at: Responses only: the ``created_at`` sent in ``response.created``
            (default ``0``).

    Returns:
        Anthropic: ``event: error``. Chat: ``data: {"error": …}``. Responses: ``event:
        error`` with both the nested ``error`` object and the flat ``code``/``message``/
        ``param``, then ``event: response.failed`` (protocols.md §3.6, gateway rule).
    """
    rid = _clean_request_id(request_id)
    match protocol:
        case "anthropic":
            return _frame("error", _anthropic_body(error, rid))
        case "openai-chat":
            # protocols.md §2.6: an object with a truthy "error" key makes the SDK raise.
            return _frame(None, _openai_body(error))
        case "openai-responses":
            return _responses_frames(
                error,
                response_id=response_id or f"resp_{rid}",
                sequence_number=sequence_number,
                model=model or "",
                created_at=created_at or 0,
            )
        case _:
            assert_never(protocol)


def ping_frame(protocol: Protocol) -> bytes:
    """The keepalive to write at an event boundary after a silence (protocols.md §4.5).

    Args:
        protocol: the caller's protocol.

    Returns:
        Anthropic: the ``event: ping`` event Anthropic itself sends. OpenAI Chat and
        Responses: a comment line, the only form every OpenAI SDK ignores.
    """
    match protocol:
        case "anthropic":
            return _ANTHROPIC_PING
        case "openai-chat" | "openai-responses":
            return _OPENAI_KEEPALIVE
        case _:
            assert_never(protocol)


def _responses_frames(
    error: GatewayError, *, response_id: str, sequence_number: int, model: str, created_at: int
) -> bytes:
    """``error`` (nested + flat fields) then ``response.failed`` (protocols.md §3.6)."""
    message = _message(error)
    param = _param(error)
    error_type = _openai_type(error)
    # The flat ``code`` is what openai-python's ResponseErrorEvent exposes: fall back to the
    # type so it is never null.
    code = _openai_code(error) or error_type
    error_data: dict[str, object] = {
        "type": "error",
        "sequence_number": sequence_number,
        "code": code,
        "message": message,
        "param": param,
        "error": {"type": error_type, "code": code, "message": message, "param": param},
    }
    # The fields the openai SDK's ``Response`` model requires, plus the failure itself.
    response: dict[str, object] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "failed",
        "error": {"code": _failed_code(code, _status(error)), "message": message},
        "incomplete_details": None,
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": None,
    }
    failed_data: dict[str, object] = {
        "type": "response.failed",
        "sequence_number": sequence_number + 1,
        "response": response,
    }
    return _frame("error", error_data) + _frame("response.failed", failed_data)


def _failed_code(code: str, status: int) -> str:
    if code in _RESPONSES_FAILED_CODES:
        return code
    if status == 429:
        return "rate_limit_exceeded"
    return "invalid_prompt" if 400 <= status < 500 else "server_error"


def _anthropic_body(error: GatewayError, request_id: str) -> dict[str, object]:
    # protocols.md §1.8 body shape.
    return {
        "type": "error",
        "error": {"type": _anthropic_type(error), "message": _message(error)},
        "request_id": request_id,
    }


def _openai_body(error: GatewayError) -> dict[str, object]:
    # protocols.md §2.6 body shape; all four keys are always present.
    return {
        "error": {
            "message": _message(error),
            "type": _openai_type(error),
            "param": _param(error),
            "code": _openai_code(error),
        }
    }


def _status(error: GatewayError) -> int:
    status = error.status
    if 400 <= status <= 599:
        return status
    # Only an UpstreamStatusError built with a non-error status gets here: never answer an
    # error with a 1xx/2xx/3xx.
    return 502 if isinstance(error, UpstreamError) else 500


def _message(error: GatewayError) -> str:
    return error.message or f"HTTP {_status(error)}"


def _param(error: GatewayError) -> str | None:
    return error.param if isinstance(error, InvalidRequest) else None


def _by_class(error: GatewayError, table: Mapping[type[GatewayError], str]) -> str | None:
    for cls in type(error).__mro__:
        if cls in table:
            return table[cls]
    return None


def _anthropic_type(error: GatewayError) -> str:
    return _by_class(error, _ANTHROPIC_TYPE_BY_CLASS) or anthropic_error_type(_status(error))


def _openai_type(error: GatewayError) -> str:
    return _by_class(error, _OPENAI_TYPE_BY_CLASS) or openai_error_type(_status(error))


def _openai_code(error: GatewayError) -> str | None:
    return _by_class(error, _OPENAI_CODE_BY_CLASS) or _OPENAI_CODE_BY_STATUS.get(_status(error))


def _clean_request_id(request_id: str) -> str:
    visible = "".join(ch for ch in request_id if "!" <= ch <= "~")
    return visible[:_MAX_REQUEST_ID_CHARS]


def _header_value(value: str | None) -> bytes | None:
    """``value`` as header bytes, or None when absent or unsafe (control characters,
    non-ASCII, too long): a bad value is dropped rather than allowed to split a header."""
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _MAX_HEADER_VALUE_CHARS:
        return None
    if not all(" " <= ch <= "~" for ch in value):
        return None
    return value.encode("ascii")
