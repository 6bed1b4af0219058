"""Response scripts: what the mock writes, when, and how the response ends.

Theory of operation: the trio shell never decides anything. For every request the sans-IO
core hands it a :class:`Script`: a status line and headers, an optional delay before them,
then a list of :class:`Write` steps (each a delay followed by one socket write), and an
``ending``: ``"complete"`` (finish the HTTP message), ``"cut"`` (close the connection with a
FIN, no chunked terminator) or ``"reset"`` (abortive close, RST). The shell plays it and
records how far it got.

Streams get one write per SSE event, so a client sees realistic chunking. Non-stream
bodies are one write with ``content-length``, or two halves when a ``cut``/``reset``/``stall``
fault needs a point inside the body.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from trio_gateway._mock._render import (
    CANARY_KEY,
    CANARY_URL,
    Answer,
    Dialect,
    Frame,
    broken_json,
    build_answer,
    dumps,
    encode_frames,
    error_body,
    error_message,
)
from trio_gateway._mock._render_anthropic import anthropic_body, anthropic_frames
from trio_gateway._mock._render_chat import chat_body, chat_frames
from trio_gateway._mock._render_responses import responses_body, responses_frames
from trio_gateway._mock._scenario import Plan

__all__ = [
    "REDIRECT_LOCATION",
    "Script",
    "Write",
    "answer_script",
    "count_tokens_script",
    "error_script",
    "json_script",
    "request_id",
]

Ending = Literal["complete", "cut", "reset"]

REDIRECT_LOCATION: Final = "http://canary.invalid/v1/messages"
_SSE_HEADERS: Final = (
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
)
_BODIES: Final[Mapping[Dialect, Callable[[Answer], dict[str, object]]]] = {
    "anthropic": anthropic_body,
    "openai-chat": chat_body,
    "openai-responses": responses_body,
}
_FRAMES: Final[Mapping[Dialect, Callable[[Answer], list[Frame]]]] = {
    "anthropic": anthropic_frames,
    "openai-chat": chat_frames,
    "openai-responses": responses_frames,
}


@dataclass(frozen=True, slots=True)
class Write:
    """One step of a script: wait ``delay`` seconds, then write ``data`` (if any).

    Attributes:
        delay: seconds to sleep first (virtual under a mock clock).
        data: the bytes of one event or body piece; empty means "only wait".
        stall: whether the delay is a scripted stall (the request shows ``"stalled"``).
    """

    delay: float
    data: bytes
    stall: bool = False


@dataclass(frozen=True, slots=True)
class Script:
    """Everything the shell needs to play one response.

    Attributes:
        status: the HTTP status.
        headers: response headers (``content-length`` included for fixed bodies).
        head_delay: seconds to wait before sending the head (``stall_headers``).
        writes: the body, step by step.
        is_stream: whether each write is one SSE event (they are counted).
        ending: how the response ends.
        outcome: the request's outcome when the script is played to the end.
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    head_delay: float = 0.0
    writes: tuple[Write, ...] = ()
    is_stream: bool = False
    ending: Ending = "complete"
    outcome: str = "completed"


def request_id(number: int) -> str:
    """The deterministic ``req_...`` id of request ``number``."""
    return f"req_mock{number:08d}"


def _id_header(dialect: Dialect, number: int) -> tuple[str, str]:
    return ("request-id" if dialect == "anthropic" else "x-request-id", request_id(number))


def json_script(
    status: int,
    payload: object,
    *,
    headers: Sequence[tuple[str, str]] = (),
    outcome: str = "completed",
) -> Script:
    """A complete JSON response with ``content-length``.

    Args:
        status: the HTTP status.
        payload: the JSON value to send.
        headers: extra headers.
        outcome: what the request log records once it is sent.

    Returns:
        A one-write script.
    """
    body = dumps(payload).encode()
    return _fixed(status, body, headers=headers, outcome=outcome)


def _fixed(
    status: int,
    body: bytes,
    *,
    headers: Sequence[tuple[str, str]] = (),
    outcome: str,
    content_type: str = "application/json",
) -> Script:
    head = (("content-type", content_type), ("content-length", str(len(body))), *headers)
    return Script(status, head, writes=(Write(0.0, body),), outcome=outcome)


def error_script(
    dialect: Dialect,
    status: int,
    message: str | None = None,
    *,
    number: int,
    headers: Sequence[tuple[str, str]] = (),
    outcome: str = "rejected",
) -> Script:
    """An error response in the dialect's shape.

    Args:
        dialect: the shape of the body.
        status: the HTTP status.
        message: the message, or the status's default.
        number: the request's serial number (for the request id).
        headers: extra headers such as ``retry-after``.
        outcome: what the request log records.

    Returns:
        A one-write script.
    """
    text = error_message(status) if message is None else message
    body = error_body(dialect, status, text, request_id=request_id(number))
    extra = (_id_header(dialect, number), *headers)
    return _fixed(status, body, headers=extra, outcome=outcome)


def answer_script(
    plan: Plan,
    *,
    dialect: Dialect,
    number: int,
    body: object,
    headers: Sequence[tuple[str, str]],
    default_interval: float,
) -> Script:
    """The script of a model endpoint's response under ``plan``.

    Args:
        plan: the parsed scenario.
        dialect: the endpoint's protocol.
        number: the request's serial number.
        body: the parsed request body (``stream``, ``model``, ``stream_options`` are read).
        headers: the request headers (for ``echo``).
        default_interval: the server's seconds between events, unless the plan says.

    Returns:
        The script: a scripted error, a redirect, a JSON body or an SSE stream.
    """
    scripted = _scripted_error(plan, dialect=dialect, number=number)
    if scripted is not None:
        return _delayed(scripted, plan)
    answer = build_answer(plan, dialect=dialect, number=number, body=body, headers=headers)
    stream = isinstance(body, dict) and body.get("stream") is True
    head = (*_SSE_HEADERS, _id_header(dialect, number)) if stream else None
    paced: tuple[bool, ...] | None = None  # token_pace: which events wait ``interval``
    if head is None:
        payload = dumps(_BODIES[dialect](answer))
        data = (broken_json(payload) if plan.malformed_at is not None else payload).encode()
        pieces = [data]
        if plan.end_after is not None or plan.stall_after is not None:
            pieces = [data[: len(data) // 2], data[len(data) // 2 :]]
        head = (
            ("content-type", "application/json"),
            ("content-length", str(len(data))),
            _id_header(dialect, number),
        )
    else:
        frames = _FRAMES[dialect](answer)
        pieces = encode_frames(frames, crlf=plan.has("crlf"), malformed_at=plan.malformed_at)
        if plan.has("token_pace"):
            paced = tuple(_is_token(frame) for frame in frames)
    interval = default_interval if plan.interval is None else plan.interval
    writes = (
        _timed(pieces, plan, interval=interval, paced=paced)
        if stream
        else _timed_body(pieces, plan)
    )
    outcome = "error_event" if stream and plan.error_after is not None else "completed"
    return Script(
        200,
        head,
        head_delay=plan.head_delay,
        writes=writes,
        is_stream=stream,
        ending=plan.ending or "complete",
        outcome=outcome,
    )


def count_tokens_script(plan: Plan, *, number: int) -> Script:
    """The answer of ``POST /v1/messages/count_tokens`` under ``plan`` (protocols.md §1.9).

    Args:
        plan: the parsed scenario; its scripted errors and ``stall_headers`` apply.
        number: the request's serial number.

    Returns:
        ``{"input_tokens": N}`` where N is the plan's uncached input tokens (``in``, 25 by
        default; 0 under ``zero_usage``), the number a ``/v1/messages`` answer would report.
    """
    scripted = _scripted_error(plan, dialect="anthropic", number=number)
    if scripted is None:
        tokens = 0 if plan.has("zero_usage") else plan.usage.uncached
        payload = {"input_tokens": tokens}
        scripted = json_script(200, payload, headers=(_id_header("anthropic", number),))
    return _delayed(scripted, plan)


def _timed(
    pieces: Sequence[bytes],
    plan: Plan,
    *,
    interval: float,
    stall_after: int | None = None,
    end_after: int | None = None,
    paced: Sequence[bool] | None = None,
) -> tuple[Write, ...]:
    stall_after = plan.stall_after if stall_after is None else stall_after
    end_after = plan.end_after if end_after is None else end_after
    writes: list[Write] = []
    for index, data in enumerate(pieces):
        if paced is None:
            delay = plan.first_delay if index == 0 else interval
        else:
            delay = (plan.first_delay if index == 0 else 0.0) + (interval if paced[index] else 0.0)
        stalled = stall_after == index
        writes.append(Write(delay + (plan.stall_secs if stalled else 0.0), data, stalled))
    if stall_after is not None and stall_after >= len(pieces):
        writes.append(Write(plan.stall_secs, b"", stall=True))
    if end_after is not None:
        del writes[end_after:]
    return tuple(writes)


def _is_token(frame: Frame) -> bool:
    """Whether ``frame`` carries content (a text, thinking or tool-argument delta)."""
    if frame.event is not None:
        return frame.event == "content_block_delta" or (
            frame.event.startswith("response.") and frame.event.endswith(".delta")
        )
    if not frame.data.startswith("{"):  # Chat's [DONE]
        return False
    chunk = json.loads(frame.data)  # Chat: data-only chunks
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    if not choices:
        return False
    delta = choices[0].get("delta") or {}
    return bool(delta.get("content") or delta.get("reasoning_content") or delta.get("tool_calls"))


def _timed_body(pieces: Sequence[bytes], plan: Plan) -> tuple[Write, ...]:
    # A fixed body has one point inside it: a stall or an early close with after >= 1
    # lands between its two halves, so the client always sees a truncated body.
    return _timed(
        pieces,
        plan,
        interval=0.0,
        stall_after=None if plan.stall_after is None else min(plan.stall_after, 1),
        end_after=None if plan.end_after is None else min(plan.end_after, 1),
    )


def _delayed(script: Script, plan: Plan) -> Script:
    return Script(
        script.status,
        script.headers,
        head_delay=plan.head_delay,
        writes=script.writes,
        outcome=script.outcome,
    )


def _scripted_error(plan: Plan, *, dialect: Dialect, number: int) -> Script | None:
    if plan.redirect:
        text = f"Temporary Redirect. Redirecting to {REDIRECT_LOCATION}\n".encode()
        return _fixed(
            307,
            text,
            headers=(("location", REDIRECT_LOCATION), _id_header(dialect, number)),
            outcome="error_status",
            content_type="text/plain; charset=utf-8",
        )
    if plan.status is None:
        return None
    extra: list[tuple[str, str]] = []
    message = None
    if plan.retry_after is not None:
        extra.append(("retry-after", plan.retry_after))
    if plan.canary:
        message = f"Incorrect API key provided: {CANARY_KEY}. Upstream {CANARY_URL} said no."
        extra.append(("x-internal-upstream", CANARY_URL))
    return error_script(
        dialect, plan.status, message, number=number, headers=extra, outcome="error_status"
    )
