"""The pass-through stream tap: usage, terminal state and in-band errors of a relayed stream.

Theory of operation: when client and upstream speak the same protocol the relay forwards
the upstream's SSE bytes unchanged (DESIGN.md §4, byte fidelity) and hands every complete
event to :meth:`StreamTap.inspect`, which

- accounts usage (DESIGN.md §5),
- notices the terminal event and in-band errors, and
- applies the only rewrites the gateway allows.

``inspect`` runs once per event on the hot path, so it decodes JSON only for the few
frames that can carry usage, a terminal state or an error, or that must be rewritten. The
cheap tests come first: the SSE event name, then a substring test on the raw data.

Invariants:

- The common case returns the very ``frame`` object it was given (callers test ``is``).
- A frame larger than ``_VIEW_FRAME_BYTES`` is lent to ``inspect`` as a ``memoryview`` of
  the decoder's ``raw`` (a slice would copy it), and the ``data`` of a large event is read
  only for the frames that need it, so a 64 MiB event is never held twice.
- A frame whose JSON does not parse is counted in ``malformed_events`` and forwarded
  unchanged: never dropped, never raised on (DESIGN.md §4).
- The allowed rewrites are: Anthropic frames without an ``event:`` line get one, Anthropic
  ``data: [DONE]`` frames are dropped (DESIGN.md §4), and a Chat usage the caller did not
  ask for is removed (protocols.md §2.4, RELIABILITY.md B2).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, assert_never, overload

from trio_gateway._errors import GatewayError
from trio_gateway._protocol._error_bodies import error_event
from trio_gateway._protocol._names import Protocol
from trio_gateway._protocol._sse import SSEEvent
from trio_gateway._protocol._usage import (
    Usage,
    UsageSource,
    anthropic_usage,
    openai_chat_usage,
    openai_responses_usage,
)

__all__ = ["Frame", "InBandError", "StreamTap", "usage_from_body"]

Frame = bytes | memoryview
"""The raw bytes of one event's block: ``bytes``, or a view of a large one (no copy)."""

_DONE: Final = b"[DONE]"
_USAGE_KEY: Final = b'"usage"'
_ERROR_KEY: Final = b'"error"'
_NULL_USAGE: Final = b'"usage":null'
_NULL_USAGE_SPACED: Final = b'"usage": null'
_MAX_RAW_MESSAGE: Final = 1000
#: Frames larger than this are inspected through a memoryview instead of a copy.
_VIEW_FRAME_BYTES: Final = 1 << 20
_RESPONSES_TERMINAL: Final = frozenset(
    {"response.completed", "response.incomplete", "response.failed"}
)
# Quoted type names that make an unnamed Responses frame worth decoding.
_RESPONSES_MARKERS: Final = (
    b'"response.created"',
    b'"response.completed"',
    b'"response.incomplete"',
    b'"response.failed"',
    b'"error"',
)


class _Malformed:
    """Sentinel for "this data did not decode as JSON"."""


_MALFORMED: Final = _Malformed()


@dataclass(frozen=True, slots=True)
class InBandError:
    """An error the upstream sent inside a stream that had already started.

    Attributes:
        error_type: the upstream's error type (or code) string, if it sent one.
        message: the upstream's message text, raw: sanitise it before showing it.
    """

    error_type: str | None
    message: str


class StreamTap:
    """Watches one relayed upstream stream, event by event.

    Attributes:
        usage: the usage seen so far (cumulative; see :attr:`usage_source`).
        finished: a proper terminal event was seen: Anthropic ``message_stop``, Chat
            ``data: [DONE]``, Responses ``response.completed`` / ``.incomplete`` /
            ``.failed``. An in-band error alone does not set it: the relay treats
            ``error is not None`` as the end of the stream.
        error: the first in-band error the upstream sent, if any.
        malformed_events: frames whose JSON had to be decoded but did not parse (they were
            still forwarded unchanged; RELIABILITY.md U12).
        events: the number of events inspected. For Responses this is the next
            ``sequence_number`` when the gateway synthesises an error event.
        response_id: Responses: ``response.id`` from ``response.created``; Anthropic: the
            message id from ``message_start``; Chat: left ``None``.
    """

    __slots__ = (
        "_handler",
        "_protocol",
        "_strip_usage_chunk",
        "_usage_final",
        "_usage_seen",
        "error",
        "events",
        "finished",
        "malformed_events",
        "response_id",
        "usage",
    )

    def __init__(self, protocol: Protocol, *, strip_usage_chunk: bool = False) -> None:
        """Create a tap for a stream in ``protocol``.

        Args:
            protocol: the dialect of the upstream (and the client: this is pass-through).
            strip_usage_chunk: Chat only. The gateway forced ``stream_options.include_usage``
                on although the caller did not ask for it, so the usage must not reach the
                caller (RELIABILITY.md I4, B2).
        """
        self._protocol: Protocol = protocol
        self._strip_usage_chunk = strip_usage_chunk
        self._usage_seen = False
        self._usage_final = False
        self.usage = Usage()
        self.finished = False
        self.error: InBandError | None = None
        self.malformed_events = 0
        self.events = 0
        self.response_id: str | None = None
        # The plain function, called with the tap: a bound method kept on the tap would
        # be a reference cycle, which only the cyclic collector frees (bench/README.md).
        self._handler: Callable[[StreamTap, SSEEvent, Frame], Frame | None]
        match protocol:
            case "anthropic":
                self._handler = StreamTap._inspect_anthropic
            case "openai-chat":
                self._handler = StreamTap._inspect_chat
            case "openai-responses":
                self._handler = StreamTap._inspect_responses
            case _:
                assert_never(protocol)

    @property
    def usage_source(self) -> UsageSource:
        """``"reported"`` once the upstream's final usage is known, ``"partial"`` when only
        some was seen (an Anthropic ``message_start``), ``"none"`` otherwise."""
        if self._usage_final:
            return "reported"
        return "partial" if self._usage_seen else "none"

    @overload
    def inspect(self, event: SSEEvent, frame: bytes) -> bytes | None: ...
    @overload
    def inspect(self, event: SSEEvent, frame: memoryview) -> Frame | None: ...
    def inspect(self, event: SSEEvent, frame: Frame) -> Frame | None:
        """Account one upstream event and decide what to forward.

        Args:
            event: the decoded event.
            frame: the raw upstream bytes of the event's block (a memoryview of a large
                one, which :meth:`forward` does not copy).

        Returns:
            ``frame`` itself (the same object) in the common case, rewritten bytes, or
            ``None`` to drop the frame.
        """
        self.events += 1
        return self._handler(self, event, frame)

    def forward(self, raw: bytes, events: list[SSEEvent]) -> bytes:
        """The bytes to send for one decoder output: ``raw`` itself unless a frame was
        rewritten or dropped (then only that frame changes; every other byte is the
        upstream's)."""
        if not events:
            return raw
        parts: list[Frame] | None = None
        position = 0
        handler = self._handler
        for event in events:
            start = event.start
            end = event.end
            frame: Frame
            if end - start <= _VIEW_FRAME_BYTES:
                frame = raw[start:end]
            else:
                frame = memoryview(raw)[start:end]
            # What inspect() does, inlined: a call level per event is measurable here.
            self.events += 1
            out = handler(self, event, frame)
            if out is frame:
                continue
            if parts is None:
                parts = []
            parts.append(raw[position : event.start])
            if out is not None:
                parts.append(out)
            position = event.end
        if parts is None:
            return raw
        parts.append(raw[position:])
        return b"".join(parts)

    def end_of_stream(self) -> bytes:
        """The upstream body ended; a pass-through stream has nothing to add."""
        return b""

    def error_frame(self, error: GatewayError, *, request_id: str) -> bytes:
        """In-band frames that end the relayed stream with ``error`` (for Responses: the id
        of ``response.created`` and the next ``sequence_number``)."""
        return error_event(
            error,
            self._protocol,
            request_id=request_id,
            response_id=self.response_id,
            sequence_number=self.events,
        )

    # -- shared helpers -------------------------------------------------------------------

    def _decode(self, data: bytes) -> object:
        """Decode JSON data, counting the failure (DESIGN.md §4: forwarded anyway)."""
        result = _loads(data)
        if result is _MALFORMED:
            self.malformed_events += 1
        return result

    def _set_error(self, error: InBandError) -> None:
        """Keep the first in-band error: later ones (``response.failed``) repeat it."""
        if self.error is None:
            self.error = error

    # -- anthropic ------------------------------------------------------------------------

    def _inspect_anthropic(self, event: SSEEvent, frame: Frame) -> Frame | None:
        name = event.event
        if name:
            return self._anthropic_event(name, event, frame, _MALFORMED)
        data = event.data
        if not data:
            return frame
        if len(data) < 16 and data.strip() == _DONE:
            # DESIGN.md §4: an OpenAI-style terminator some compatible upstreams add; the
            # Anthropic SDK would try to decode it as JSON.
            return None
        obj = self._decode(data)
        kind = obj.get("type") if isinstance(obj, dict) else None
        if not isinstance(kind, str) or not kind or "\n" in kind or "\r" in kind:
            return frame
        if name is not None:
            # An empty `event:` line: a prepended line would lose to it (the last `event`
            # field wins, WHATWG §9.2.6), so account for the frame but forward it as is.
            return self._anthropic_event(kind, event, frame, obj)
        # DESIGN.md §4 byte-fidelity exception: the Anthropic SDK ignores frames without an
        # `event:` line (protocols.md §4.2), so name the frame after its JSON `type`.
        named = b"event: " + kind.encode() + b"\n" + frame
        return self._anthropic_event(kind, event, named, obj)

    def _anthropic_event(self, name: str, event: SSEEvent, frame: Frame, obj: object) -> Frame:
        """Handle a named Anthropic event; ``obj`` is its JSON if already decoded. Only the
        events that carry usage or an error read ``event.data``."""
        match name:
            case "message_start":
                self._anthropic_message_start(self._decoded(event.data, obj))
            case "message_delta":
                data = event.data
                if _USAGE_KEY in data:
                    self._anthropic_message_delta(self._decoded(data, obj))
            case "message_stop":
                self.finished = True
            case "error":
                data = event.data
                decoded = self._decoded(data, obj)
                self._set_error(_nested_error(decoded, data, type_keys=("type",)))
            case _:
                # content_block_*, ping and unknown events (protocols.md §1.7): neither
                # decoded nor read (a 64 MiB text delta is forwarded without a copy).
                pass
        return frame

    def _decoded(self, data: bytes, obj: object) -> object:
        return self._decode(data) if obj is _MALFORMED else obj

    def _anthropic_message_start(self, obj: object) -> None:
        message = obj.get("message") if isinstance(obj, dict) else None
        if not isinstance(message, dict):
            return
        message_id = message.get("id")
        if isinstance(message_id, str):
            self.response_id = message_id
        usage = message.get("usage")
        if isinstance(usage, dict):
            # protocols.md §1.6: input-side counts and a placeholder output count.
            anthropic_usage(usage, into=self.usage)
            self._usage_seen = True

    def _anthropic_message_delta(self, obj: object) -> None:
        usage = obj.get("usage") if isinstance(obj, dict) else None
        if isinstance(usage, dict):
            # protocols.md §1.6: cumulative, so fields override; never summed (U15).
            anthropic_usage(usage, into=self.usage)
            self._usage_seen = self._usage_final = True

    # -- openai-chat ----------------------------------------------------------------------

    def _inspect_chat(self, event: SSEEvent, frame: Frame) -> Frame | None:
        data = event.data
        if len(data) < 16 and data.strip() == _DONE:
            # protocols.md §2.4: the literal terminator of every Chat stream.
            self.finished = True
            return frame
        has_usage = _USAGE_KEY in data
        has_error = _ERROR_KEY in data
        if not has_error and (not has_usage or _is_null_usage(data)):
            return frame
        obj = self._decode(data)
        if not isinstance(obj, dict):
            return frame
        error = obj.get("error")
        if error:
            # protocols.md §2.6: any chunk with a truthy `error` makes the SDK raise.
            self._set_error(_chat_error(error))
        usage = obj.get("usage") if has_usage else None
        if not isinstance(usage, dict):
            return frame  # `usage: null` on ordinary chunks: left untouched.
        # PEER-BUGS 28: usage may ride on a chunk that still has choices; take it anyway.
        self.usage = openai_chat_usage(usage)
        self._usage_seen = self._usage_final = True
        if not self._strip_usage_chunk:
            return frame
        return _strip_chat_usage(obj)

    # -- openai-responses -----------------------------------------------------------------

    def _inspect_responses(self, event: SSEEvent, frame: Frame) -> Frame:
        name = event.event
        obj: object = _MALFORMED
        if not name:  # None, or an empty `event:` line (the default type, WHATWG §9.2.6)
            # protocols.md §3.6: the SDK dispatches on `data.type`, so unnamed frames count.
            data = event.data
            if not any(marker in data for marker in _RESPONSES_MARKERS):
                return frame
            obj = self._decode(data)
            kind = obj.get("type") if isinstance(obj, dict) else None
            if not isinstance(kind, str):
                return frame
            name = kind
        # Only these read ``event.data``: a large delta is forwarded without a copy.
        if name == "response.created":
            response = _field(self._decoded(event.data, obj), "response")
            response_id = _field(response, "id")
            if isinstance(response_id, str):
                self.response_id = response_id
        elif name in _RESPONSES_TERMINAL:
            self._responses_terminal(name, self._decoded(event.data, obj))
        elif name == "error":
            data = event.data
            decoded = self._decoded(data, obj)
            self._set_error(_nested_error(decoded, data, type_keys=("type", "code")))
        return frame

    def _responses_terminal(self, name: str, obj: object) -> None:
        # protocols.md §3.6 / §5.4: usage of the terminal event is final, including in
        # response.incomplete and response.failed (RELIABILITY.md U17).
        self.finished = True
        response = _field(obj, "response")
        usage = _field(response, "usage")
        if isinstance(usage, dict):
            self.usage = openai_responses_usage(usage)
            self._usage_seen = self._usage_final = True
        if name == "response.failed":
            error = _field(response, "error")
            if isinstance(error, dict):
                self._set_error(_error_fields(error, type_keys=("code", "type")))
            else:
                self._set_error(InBandError(None, "response.failed"))


def _is_null_usage(data: bytes) -> bool:
    """True if the only ``usage`` key is ``null``: some compatible upstreams send
    ``"usage":null`` on every chunk (protocols.md §2.4), which must not cost a decode."""
    return (_NULL_USAGE in data or _NULL_USAGE_SPACED in data) and data.count(_USAGE_KEY) == 1


def _loads(data: bytes) -> object:
    """``json.loads`` that returns ``_MALFORMED`` instead of raising on upstream garbage."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return _MALFORMED


def _field(obj: object, key: str) -> object:
    return obj.get(key) if isinstance(obj, dict) else None


def _str_field(obj: dict[str, object], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str):
            return value
    return None


def _error_fields(obj: dict[str, object], *, type_keys: tuple[str, ...]) -> InBandError:
    return InBandError(_str_field(obj, type_keys), _str_field(obj, ("message",)) or "")


def _raw_message(data: bytes) -> str:
    return data[:_MAX_RAW_MESSAGE].decode("utf-8", "replace")


def _nested_error(obj: object, data: bytes, *, type_keys: tuple[str, ...]) -> InBandError:
    """Read an ``error`` event: ``{"error": {type, message}}`` or flat ``code``/``message``.

    The flat form is the documented Responses ``ResponseErrorEvent``, the nested one is
    what the live API sends (protocols.md §3.6); Anthropic nests (protocols.md §1.7).
    The flat form's own ``type`` is the event type (``"error"``), so only ``code`` names
    the error there.
    """
    if obj is _MALFORMED:
        return InBandError(None, _raw_message(data))
    if not isinstance(obj, dict):
        return InBandError(None, "")
    nested = obj.get("error")
    if isinstance(nested, dict):
        return _error_fields(nested, type_keys=type_keys)
    if isinstance(nested, str) and nested:
        return InBandError(None, nested)
    return _error_fields(obj, type_keys=("code",))


def _chat_error(error: object) -> InBandError:
    """Read a truthy Chat ``error`` value (protocols.md §2.6)."""
    if isinstance(error, dict):
        return _error_fields(error, type_keys=("type", "code"))
    if isinstance(error, str):
        return InBandError(None, error)
    return InBandError(None, "")


def _strip_chat_usage(chunk: dict[str, object]) -> bytes | None:
    """Remove a usage the caller did not ask for (protocols.md §2.4, RELIABILITY.md B2).

    A usage-only chunk (``choices`` empty or absent) is dropped: naive clients index
    ``choices[0]``. A usage riding on a chunk with choices is cut out of that chunk.
    """
    choices = chunk.get("choices")
    if choices is None or choices == []:
        return None
    del chunk["usage"]
    body = json.dumps(chunk, separators=(",", ":"), ensure_ascii=False)
    return b"data: " + _encode(body, chunk) + b"\n\n"


def _encode(text: str, obj: object) -> bytes:
    """UTF-8 of ``text``; lone surrogates (legal as JSON escapes) force ASCII escapes."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(obj, separators=(",", ":")).encode("ascii")


def usage_from_body(protocol: Protocol, body: bytes) -> tuple[Usage, UsageSource]:
    """Read the usage of a non-streamed JSON response body.

    Args:
        protocol: the dialect of the body.
        body: the raw response body.

    Returns:
        The usage and ``"reported"``, or a zero :class:`Usage` and ``"none"`` when the body
        does not parse or has no ``usage`` object.
    """
    usage = _field(_loads(body), "usage")
    if not isinstance(usage, dict):
        return Usage(), "none"
    match protocol:
        case "anthropic":
            return anthropic_usage(usage), "reported"
        case "openai-chat":
            return openai_chat_usage(usage), "reported"
        case "openai-responses":
            return openai_responses_usage(usage), "reported"
        case _:
            assert_never(protocol)
