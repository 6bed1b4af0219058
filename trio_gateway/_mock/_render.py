"""The protocol-neutral answer, SSE framing and error bodies shared by the three dialects.

Theory of operation: a :class:`~trio_gateway._mock._scenario.Plan` and a few request facts
become one :class:`Answer` (what the model "says": thinking, text deltas, tool-argument
fragments, stop kind and usage). Each dialect module turns an answer into either a full JSON
body or a list of :class:`Frame` objects; :func:`encode_frames` turns frames into wire bytes,
one ``bytes`` per event, applying the ``crlf`` and ``malformed`` faults.

Usage semantics (deterministic, see the mock's brief):
    * Anthropic: ``input_tokens`` = uncached, ``cache_read_input_tokens`` = cache reads,
      ``cache_creation_input_tokens`` = both write tiers, split in ``cache_creation``.
    * OpenAI: prompt/input tokens = uncached + cache reads (cached ones are included),
      ``cached_tokens`` = cache reads; there are no cache-write tiers.
    * Output tokens = text deltas + tool-argument fragments + reasoning tokens.

Everything here is pure: strings and dicts in, strings and bytes out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from trio_gateway._mock._scenario import Plan

__all__ = [
    "CANARY_KEY",
    "CANARY_URL",
    "Answer",
    "Dialect",
    "Frame",
    "Usage",
    "broken_json",
    "build_answer",
    "dumps",
    "encode_frames",
    "error_body",
    "error_message",
]

#: The three dialects; the same spellings as ``trio_gateway._protocol._names.Protocol``.
#: The mock deliberately imports nothing from the gateway core, so a gateway bug cannot
#: hide itself by changing both sides at once.
Dialect = Literal["anthropic", "openai-chat", "openai-responses"]
StopKind = Literal["end", "tool", "length"]

CANARY_KEY: Final = "sk-CANARY-0123456789abcdefCANARY"
CANARY_URL: Final = "http://internal-upstream.example:8443/v1"
CREATED: Final = 1_750_000_000
TOOL_NAME: Final = "get_weather"
TOOL_ARGUMENTS: Final = '{"city": "Paris"}'
_TOOL_FRAGMENTS: Final = ('{"ci', 'ty": "P', "ari", 's"}')
_THINKING: Final = ("Let me think", " about this", " step by", " step.")
SIGNATURE: Final = "EqMockSignatureZXhhbXBsZS1zaWduYXR1cmUtZm9yLXRoZS1tb2NrLXVwc3RyZWFt"
_WORDS: Final = (
    "Hello",
    " from",
    " the",
    " mock",
    " upstream",
    ".",
    " Streaming",
    " works",
    ",",
    " token",
    " by",
    " token",
    "!",
)
_FILLER: Final = "lorem ipsum dolor sit amet "
# The Responses ``include`` value that adds ``encrypted_content`` to reasoning items (§3.6).
_ENCRYPTED_REASONING: Final = "reasoning.encrypted_content"
_CUMULATIVE_OUTPUT: Final = 40
_HIDDEN_HEADERS: Final = frozenset({"authorization", "x-api-key", "proxy-authorization", "cookie"})
_BULKY_FIELDS: Final = frozenset({"messages", "input", "system", "instructions", "tools"})


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one answer, in protocol-neutral form.

    Attributes:
        uncached: input tokens neither read from nor written to the cache.
        cache_read: input tokens read from the cache.
        cache_write_5m: input tokens written to the 5-minute tier.
        cache_write_1h: input tokens written to the 1-hour tier.
        output: all generated tokens, reasoning included.
        reasoning: reasoning/thinking tokens (a subset of ``output``).
    """

    uncached: int
    cache_read: int
    cache_write_5m: int
    cache_write_1h: int
    output: int
    reasoning: int

    @property
    def cache_write(self) -> int:
        """Both cache-write tiers together (Anthropic ``cache_creation_input_tokens``)."""
        return self.cache_write_5m + self.cache_write_1h

    @property
    def openai_input(self) -> int:
        """OpenAI prompt/input tokens: uncached plus cached (no write tiers)."""
        return self.uncached + self.cache_read


@dataclass(frozen=True, slots=True)
class Answer:
    """What the mock model answers to one request, before any dialect is chosen.

    Attributes:
        number: the request's serial number, used for deterministic ids.
        model: the model name to report.
        plan: the scenario plan (the renderers read its flags).
        thinking: thinking / reasoning-summary deltas (empty unless ``thinking``).
        text: text deltas.
        tool_args: tool-argument fragments (empty unless ``tools``).
        stop: why the answer ended.
        usage: the token counts.
        include_usage: whether a Chat client asked for ``stream_options.include_usage``.
        include_encrypted_reasoning: whether a Responses client asked for
            ``include: ["reasoning.encrypted_content"]``.
    """

    number: int
    model: str
    plan: Plan
    thinking: tuple[str, ...]
    text: tuple[str, ...]
    tool_args: tuple[str, ...]
    stop: StopKind
    usage: Usage
    include_usage: bool
    include_encrypted_reasoning: bool = False

    def ident(self, prefix: str) -> str:
        """A deterministic id such as ``msg_mock00000007`` for this request."""
        return f"{prefix}mock{self.number:08d}"

    @property
    def full_text(self) -> str:
        """The concatenated text deltas."""
        return "".join(self.text)

    @property
    def full_thinking(self) -> str:
        """The concatenated thinking deltas."""
        return "".join(self.thinking)

    @property
    def has_text_part(self) -> bool:
        """Whether the answer has a text block (always, unless it is a bare tool call)."""
        return bool(self.text) or not self.tool_args


@dataclass(frozen=True, slots=True)
class Frame:
    """One SSE event before encoding: an optional ``event:`` name and one ``data:`` line."""

    event: str | None
    data: str


def dumps(value: object) -> str:
    """Compact JSON as the real APIs send it (protocols.md §4.6)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def build_answer(
    plan: Plan,
    *,
    dialect: Dialect,
    number: int,
    body: object,
    headers: Sequence[tuple[str, str]],
) -> Answer:
    """Decide the content and usage of the answer to one request.

    Args:
        plan: the parsed scenario.
        dialect: the protocol of the request (``cumulative`` only counts for Anthropic).
        number: the request's serial number.
        body: the parsed request body.
        headers: request headers, lower-cased names (``echo`` reflects them).

    Returns:
        The answer; nothing here depends on time or randomness.
    """
    request = body if isinstance(body, dict) else {}
    model = request.get("model")
    text = _text_deltas(plan, headers=headers, body=body)
    tool_args = _TOOL_FRAGMENTS if plan.has("tools") else ()
    params = plan.usage
    output = len(text) + len(tool_args) + params.reasoning
    if plan.has("cumulative") and dialect == "anthropic":
        output = _CUMULATIVE_OUTPUT
    usage = Usage(
        params.uncached, params.cache_read, params.cache_write_5m, params.cache_write_1h,
        output, params.reasoning,
    )  # fmt: skip
    if plan.has("zero_usage"):
        usage = Usage(0, 0, 0, 0, 0, 0)
    stream_options = request.get("stream_options")
    include = request.get("include")
    return Answer(
        number=number,
        model=model if isinstance(model, str) else "mock",
        plan=plan,
        thinking=_THINKING if plan.has("thinking") else (),
        text=text,
        tool_args=tool_args,
        stop="length" if plan.has("incomplete") else "tool" if tool_args else "end",
        usage=usage,
        include_usage=isinstance(stream_options, dict)
        and stream_options.get("include_usage") is True,
        include_encrypted_reasoning=isinstance(include, list) and _ENCRYPTED_REASONING in include,
    )


def _text_deltas(
    plan: Plan, *, headers: Sequence[tuple[str, str]], body: object
) -> tuple[str, ...]:
    count = plan.text_deltas
    if plan.has("echo"):
        deltas = _split(echo_text(headers, body), max(count, 1))
    else:
        deltas = tuple(_WORDS[i % len(_WORDS)] for i in range(count))
    if plan.huge_bytes is not None:
        filler = (_FILLER * (plan.huge_bytes // len(_FILLER) + 1))[: plan.huge_bytes]
        at = min(1, len(deltas) - 1)
        deltas = (*deltas[:at], filler, *deltas[at + 1 :]) if deltas else (filler,)
    return deltas


def _split(text: str, pieces: int) -> tuple[str, ...]:
    size = max(1, math.ceil(len(text) / pieces))
    return tuple(text[i : i + size] for i in range(0, len(text), size)) or ("",)


def echo_text(headers: Sequence[tuple[str, str]], body: object) -> str:
    """The ``echo`` scenario's answer: JSON of what the mock received.

    Args:
        headers: request headers; credentials and cookies are left out.
        body: the parsed body; the bulky fields (messages, input, system, instructions,
            tools) are left out, but every top-level key is listed in ``body_keys``.

    Returns:
        Compact, key-sorted JSON text.
    """
    fields = body if isinstance(body, dict) else {}
    seen = {
        "headers": [[name, value] for name, value in headers if name not in _HIDDEN_HEADERS],
        "body": {k: v for k, v in fields.items() if k not in _BULKY_FIELDS},
        "body_keys": sorted(fields),
    }
    return json.dumps(seen, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def encode_frames(
    frames: Iterable[Frame], *, crlf: bool = False, malformed_at: int | None = None
) -> list[bytes]:
    """Encode SSE frames, one ``bytes`` per event (each becomes one socket write).

    Args:
        frames: the events in order.
        crlf: end lines with CRLF instead of LF (the ``crlf`` scenario).
        malformed_at: replace that event's data with invalid JSON, keeping its ``event:``
            line (the ``malformed`` scenario).

    Returns:
        ``event: X\\ndata: D\\n\\n`` (or ``data: D\\n\\n``) per frame.
    """
    newline = "\r\n" if crlf else "\n"
    encoded: list[bytes] = []
    for index, frame in enumerate(frames):
        data = broken_json(frame.data) if index == malformed_at else frame.data
        head = f"event: {frame.event}{newline}" if frame.event is not None else ""
        encoded.append(f"{head}data: {data}{newline}{newline}".encode())
    return encoded


def broken_json(data: str) -> str:
    """Invalid JSON made from ``data``: its first member, then garbage."""
    # e.g. '{"type":"content_block_delta", oops' - the shape the failoverbench wall sends.
    return data.split(",", 1)[0] + ", oops"


# status -> (Anthropic error.type, OpenAI error.type, OpenAI error.code, message)
_ERRORS: Final[Mapping[int, tuple[str, str, str | None, str]]] = {
    400: ("invalid_request_error", "invalid_request_error", None, "Invalid request."),
    401: ("authentication_error", "invalid_request_error", "invalid_api_key", "Invalid API key."),
    402: ("billing_error", "insufficient_quota", "insufficient_quota", "Billing problem."),
    403: ("permission_error", "request_forbidden", None, "Permission denied."),
    404: ("not_found_error", "invalid_request_error", None, "Not found."),
    405: ("invalid_request_error", "invalid_request_error", None, "Method not allowed."),
    408: ("timeout_error", "server_error", None, "Request timed out."),
    409: ("invalid_request_error", "invalid_request_error", None, "Conflict."),
    413: ("request_too_large", "invalid_request_error", None, "Request too large."),
    429: ("rate_limit_error", "requests", "rate_limit_exceeded", "Rate limit reached."),
    500: ("api_error", "server_error", None, "The server had an error processing the request."),
    502: ("api_error", "server_error", None, "Bad gateway."),
    503: ("api_error", "server_error", None, "The service is temporarily unavailable."),
    504: ("timeout_error", "server_error", None, "Request timed out."),
    529: ("overloaded_error", "server_error", None, "Overloaded"),
}


def _error_row(status: int) -> tuple[str, str, str | None, str]:
    row = _ERRORS.get(status)
    if row is not None:
        return row
    if status >= 500:
        return ("api_error", "server_error", None, f"Upstream error {status}.")
    return ("invalid_request_error", "invalid_request_error", None, f"Request failed ({status}).")


def error_message(status: int) -> str:
    """The default human-readable message for an error status."""
    return _error_row(status)[3]


def error_body(dialect: Dialect, status: int, message: str, *, request_id: str) -> bytes:
    """An error response body in the dialect's shape (protocols.md §1.8, §2.6).

    Args:
        dialect: Anthropic gets ``{"type":"error","error":{...},"request_id":...}``; both
            OpenAI dialects get ``{"error":{"message","type","param","code"}}``.
        status: the HTTP status; it picks a realistic error type.
        message: the error message.
        request_id: the ``req_...`` id (Anthropic only).

    Returns:
        Compact JSON bytes.
    """
    anthropic_type, openai_type, openai_code, _ = _error_row(status)
    if dialect == "anthropic":
        error: dict[str, object] = {
            "type": "error",
            "error": {"type": anthropic_type, "message": message},
            "request_id": request_id,
        }
    else:
        error = {
            "error": {"message": message, "type": openai_type, "param": None, "code": openai_code}
        }
    return dumps(error).encode()
