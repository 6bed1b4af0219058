"""Inspect a caller's request and prepare it for an upstream of the same protocol.

Theory of operation: on a pass-through route the caller's body goes upstream as sent
(DESIGN.md §4). :func:`parse_request` decodes it once and validates only what the gateway
itself relies on (model, streaming, the output cap for budget reservation); everything
else is the upstream's business. :func:`build_upstream_body` then makes the few changes the
gateway insists on and otherwise returns the raw bytes untouched.

Invariants:

- Callers can never turn usage reporting off: a streamed Chat request always goes upstream
  with ``stream_options.include_usage: true`` (RELIABILITY.md I4, B2).
- Callers can never choose the upstream: body fields such as ``api_base``, ``base_url``,
  ``api_key`` or ``extra_headers`` are never interpreted here or anywhere else; they are
  plain body content for the upstream to reject or ignore (RELIABILITY.md B3).
- What the upstream parses is what the gateway parsed: a body that repeats a key the
  gateway relies on is rejected, since parsers disagree on which occurrence wins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final, assert_never

from trio_gateway._errors import InvalidRequest
from trio_gateway._protocol._names import Protocol

__all__ = ["RequestInfo", "build_upstream_body", "parse_request"]

# Keys whose value the gateway acts on. If one is repeated inside an object, Python keeps the
# last occurrence while other parsers keep the first, so the upstream could see a different
# request than the gateway validated and billed (say, `include_usage` false, or another
# model). Such bodies are rejected. Do not relax: a forwarded raw body must mean one thing.
_RELIED_ON_KEYS: Final = frozenset(
    {
        "model",
        "stream",
        "stream_options",
        "include_usage",
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
    }
)


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the gateway needs to know about a caller's request.

    Attributes:
        model: the requested model name.
        stream: the caller asked for a streamed response.
        wants_usage_chunk: Chat: the caller set ``stream_options.include_usage`` to
            ``true``; other protocols always report usage in-stream, so ``True``.
        max_output_tokens: the output cap the caller gave (``max_tokens``,
            ``max_completion_tokens`` or ``max_output_tokens``), if any.
    """

    model: str
    stream: bool
    wants_usage_chunk: bool
    max_output_tokens: int | None


def parse_request(protocol: Protocol, body: bytes) -> tuple[dict[str, object], RequestInfo]:
    """Decode and check a caller's request body.

    Only the fields the gateway relies on are validated; unknown fields pass through.
    ``api_base``, ``base_url``, ``api_key``, ``extra_headers`` and the like are not
    interpreted (RELIABILITY.md B3): the upstream is always the configured one.

    Args:
        protocol: the dialect of the endpoint the request arrived on.
        body: the raw request body.

    Returns:
        The decoded JSON object and the :class:`RequestInfo` read from it.

    Raises:
        InvalidRequest: the body is not a JSON object, a relied-on field is invalid or
            repeated; ``param`` names the field (RELIABILITY.md B1).
    """
    try:
        decoded: object = json.loads(body, object_pairs_hook=_unambiguous_object)
    except (ValueError, RecursionError):
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(decoded, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    obj: dict[str, object] = decoded
    model = obj.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("`model` must be a non-empty string.", param="model")
    stream = _optional_bool(obj, "stream", param="stream") or False
    include_usage = _include_usage(obj)
    match protocol:
        case "anthropic":
            _require_list(obj, "messages")
            # protocols.md §1.2: max_tokens is required on the Messages API.
            if "max_tokens" not in obj:
                raise InvalidRequest("`max_tokens` is required.", param="max_tokens")
            limit = _positive_int(obj, "max_tokens", nullable=False)
            wants_usage_chunk = True
        case "openai-chat":
            _require_list(obj, "messages")
            legacy = _positive_int(obj, "max_tokens")
            # protocols.md §2.2: max_completion_tokens is preferred over the deprecated one.
            limit = _positive_int(obj, "max_completion_tokens") or legacy
            wants_usage_chunk = include_usage
        case "openai-responses":
            if not isinstance(obj.get("input"), str | list):
                raise InvalidRequest("`input` must be a string or an array.", param="input")
            limit = _positive_int(obj, "max_output_tokens")
            wants_usage_chunk = True
        case _:
            assert_never(protocol)
    info = RequestInfo(
        model=model, stream=stream, wants_usage_chunk=wants_usage_chunk, max_output_tokens=limit
    )
    return obj, info


def _unambiguous_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """Build a JSON object, refusing a repeated relied-on key (see ``_RELIED_ON_KEYS``)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen and key in _RELIED_ON_KEYS:
                param = "stream_options.include_usage" if key == "include_usage" else key
                raise InvalidRequest(f"The request body repeats the key `{key}`.", param=param)
            seen.add(key)
    return obj


def _optional_bool(obj: dict[str, object], key: str, *, param: str) -> bool | None:
    """A bool or absent/``null``; bools are what OpenAI and Anthropic accept."""
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise InvalidRequest(f"`{param}` must be a boolean.", param=param)


def _include_usage(obj: dict[str, object]) -> bool:
    """Read ``stream_options.include_usage`` (protocols.md §2.2), checking its shape."""
    options = obj.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise InvalidRequest("`stream_options` must be an object.", param="stream_options")
    param = "stream_options.include_usage"
    return _optional_bool(options, "include_usage", param=param) is True


def _require_list(obj: dict[str, object], key: str) -> None:
    if not isinstance(obj.get(key), list):
        raise InvalidRequest(f"`{key}` must be an array.", param=key)


def _positive_int(obj: dict[str, object], key: str, *, nullable: bool = True) -> int | None:
    """An int >= 1, or ``None`` when absent (or ``null`` where the API allows it).

    ``bool`` is not an int here, and neither are ``1.5`` or ``"10"`` (RELIABILITY.md B1).
    OpenAI's schemas declare the output caps nullable, so ``null`` means "not given";
    Anthropic's ``max_tokens`` is not nullable.
    """
    value = obj.get(key)
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"`{key}` must be an integer >= 1.", param=key)
    return value


def build_upstream_body(
    protocol: Protocol,
    body: dict[str, object],
    raw: bytes,
    info: RequestInfo,
    *,
    upstream_model: str | None,
) -> bytes:
    """Make the request body for a same-protocol upstream.

    Changes, and nothing else:

    - Chat with ``stream``: ``stream_options.include_usage`` is forced to ``true``, other
      ``stream_options`` keys kept. Callers can never turn usage reporting off
      (RELIABILITY.md I4, B2); the relay strips the usage chunk when they did not ask.
    - ``model`` becomes ``upstream_model`` when one is given and differs.

    Fields like ``api_base``, ``base_url``, ``api_key`` and ``extra_headers`` are left in
    the body as content and never interpreted (RELIABILITY.md B3).

    Args:
        protocol: the dialect of caller and upstream.
        body: the decoded request from :func:`parse_request`; not modified.
        raw: the request bytes ``body`` was decoded from.
        info: the :class:`RequestInfo` from :func:`parse_request`.
        upstream_model: the upstream's name for the model, if it differs.

    Returns:
        ``raw`` itself (byte-faithful) when nothing needs to change, otherwise compact
        UTF-8 JSON.
    """
    changes: dict[str, object] = {}
    if protocol == "openai-chat" and info.stream:
        options = body.get("stream_options")
        current = options if isinstance(options, dict) else {}
        if current.get("include_usage") is not True:
            changes["stream_options"] = {**current, "include_usage": True}
    if upstream_model is not None and upstream_model != body.get("model"):
        changes["model"] = upstream_model
    if not changes:
        return raw
    return _dumps({**body, **changes})


def _dumps(obj: dict[str, object]) -> bytes:
    """Compact UTF-8 JSON; lone surrogates (legal as JSON escapes) stay escaped."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(obj, separators=(",", ":")).encode("ascii")
