"""The shared core of the upstream stream readers: state, emission rules, error statuses.

Theory of operation: a reader turns each upstream SSE event into zero or more neutral
events (``_events``). The protocol readers (``_read_anthropic``, ``_read_chat``,
``_read_responses``) only interpret their protocol's events; every neutral event goes out
through the few emitting methods of :class:`Reader` here, and those methods are what keep the
output well-formed whatever the upstream sends:

- :meth:`Reader._open_block` emits the ``Start`` first if nothing did yet (PEER-BUGS 5), and
  closes the open block before it opens another (PEER-BUGS 3);
- :meth:`Reader._delta` drops a delta when no block is open or the open block is of another
  kind (PEER-BUGS 2), and drops empty deltas;
- :meth:`Reader._finish` closes the open block and emits a lazy ``Start`` before ``Finish``;
  :meth:`Reader._fail` emits ``Failure`` as it is, first or inside a block (a ``BlockStop``
  would claim that a cut tool call is complete);
- once a ``Finish`` or ``Failure`` went out, nothing else is emitted. The protocol readers
  keep interpreting later events anyway, so usage that arrives after the end (a Responses
  ``response.failed`` after ``error``) is still accounted.

Invariants:

- The events returned by all ``feed`` calls and ``end_of_stream``, concatenated, match
  ``Start (BlockStart Delta* BlockStop)* (Finish | Failure)``, except that a ``Failure`` may
  come first or inside an open block (``_events`` module docs).
- No upstream bytes make a reader raise: JSON is read as ``object`` and narrowed, and data
  that does not decode is counted in ``malformed_events``.

This module is sans-IO: it imports nothing that does I/O and it never awaits.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import replace
from typing import Final

from trio_gateway._protocol._sse import SSEEvent
from trio_gateway._protocol._usage import Usage, UsageSource
from trio_gateway._translate._events import (
    BlockKind,
    BlockStart,
    BlockStop,
    Delta,
    DeltaKind,
    Failure,
    Finish,
    NeutralEvent,
    Start,
    StopReason,
)

__all__ = [
    "MALFORMED",
    "Reader",
    "failure_status",
    "int_field",
    "loads",
    "obj_field",
    "str_field",
]

_DELTA_BLOCK: Final[Mapping[DeltaKind, BlockKind]] = {
    "text": "text",
    "refusal": "text",
    "thinking": "thinking",
    "signature": "thinking",
    "tool_args": "tool_use",
}
"""The block kind each delta kind belongs in (``_events`` module docs)."""

# Error type/code fragments → HTTP status, first match wins. Authentication and permission
# errors are the gateway's own credentials failing upstream, not the caller's: 502.
_STATUS_BY_FRAGMENT: Final[tuple[tuple[tuple[str, ...], int], ...]] = (
    (("rate_limit", "too_many_requests"), 429),
    (("overloaded",), 529),
    (("invalid_request", "invalid_prompt"), 400),
    (("timeout",), 504),
    (("authentication", "permission"), 502),
)
_DEFAULT_FAILURE_STATUS: Final = 502
_MAX_RAW_MESSAGE: Final = 1000
"""Longest raw upstream data used as a ``Failure.message`` when an error event does not
parse: enough to diagnose, bounded so a garbage frame cannot bloat logs."""


class _Malformed:
    """Sentinel type for "this data did not decode as JSON"."""


MALFORMED: Final = _Malformed()
"""What :func:`loads` returns for data that is not JSON."""


def loads(data: bytes) -> object:
    """``json.loads`` that returns :data:`MALFORMED` instead of raising on upstream garbage."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError: ValueErrors
        return MALFORMED


def obj_field(obj: object, key: str) -> dict[str, object] | None:
    """``obj[key]`` when ``obj`` is a JSON object and the value is one too, else ``None``."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else None


def str_field(obj: object, key: str) -> str | None:
    """``obj[key]`` when ``obj`` is a JSON object and the value a string, else ``None``."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


def int_field(obj: object, key: str) -> int | None:
    """``obj[key]`` when ``obj`` is a JSON object and the value an integer (not a bool)."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def failure_status(*names: str | None) -> int:
    """The HTTP status an upstream error maps to, from its type and/or code strings.

    Args:
        names: the upstream's error type, code, or both (``None`` for absent ones); all are
            searched, so ``type="requests", code="rate_limit_exceeded"`` is a rate limit.

    Returns:
        429 for rate limits, 529 for overload, 400 for invalid requests or prompts, 504 for
        timeouts, and 502 for everything else: an authentication or permission error is the
        gateway's upstream credentials failing, not the caller's.
    """
    text = " ".join(name.lower() for name in names if name)
    for fragments, status in _STATUS_BY_FRAGMENT:
        if any(fragment in text for fragment in fragments):
            return status
    return _DEFAULT_FAILURE_STATUS


class Reader(ABC):
    """Turns one upstream stream, event by event, into a well-formed neutral stream.

    Attributes:
        usage: the running usage seen so far, in ledger semantics, for billing.
        done: a ``Finish`` or ``Failure`` has been emitted; :meth:`feed` then returns
            ``[]`` but still accounts usage from later events.
        malformed_events: frames whose data had to be decoded but was not valid JSON.
        upstream_id: the upstream's message / completion / response id, once seen.
    """

    __slots__ = (
        "_open",
        "_out",
        "_started",
        "_usage_final",
        "_usage_seen",
        "done",
        "malformed_events",
        "upstream_id",
        "usage",
    )

    def __init__(self) -> None:
        self.usage = Usage()
        self.done = False
        self.malformed_events = 0
        self.upstream_id: str | None = None
        self._usage_seen = False
        self._usage_final = False
        self._started = False
        self._open: BlockKind | None = None
        self._out: list[NeutralEvent] = []

    @property
    def usage_source(self) -> UsageSource:
        """``"reported"`` once the upstream's final usage arrived, ``"partial"`` when only
        some was seen (an Anthropic ``message_start``), ``"none"`` otherwise."""
        if self._usage_final:
            return "reported"
        return "partial" if self._usage_seen else "none"

    def feed(self, event: SSEEvent) -> list[NeutralEvent]:
        """Read one upstream event.

        Args:
            event: the next event of the upstream body, as :class:`SSEDecoder` gave it.

        Returns:
            The neutral events it produces, possibly none; always none once :attr:`done`.
        """
        out: list[NeutralEvent] = []
        self._out = out
        self._handle(event)
        return out

    def end_of_stream(self) -> list[NeutralEvent]:
        """The upstream body ended. Never called twice.

        Returns:
            ``[Finish]`` only where the protocol allows a clean end here (Chat, after a
            ``finish_reason``, even without ``[DONE]``); otherwise ``[]``, and the caller
            reports the broken stream itself.
        """
        out: list[NeutralEvent] = []
        self._out = out
        if not self.done:
            self._end()
        return out

    @abstractmethod
    def _handle(self, event: SSEEvent) -> None:
        """Interpret one upstream event, emitting through the methods below."""

    @abstractmethod
    def _end(self) -> None:
        """The body ended before any terminal event: emit a clean end if the protocol
        allows one there, else nothing."""

    # -- decoding and usage ---------------------------------------------------------------

    def _decode(self, data: bytes) -> object:
        """Decode JSON data; data that does not parse is counted and returned as MALFORMED."""
        result = loads(data)
        if result is MALFORMED:
            self.malformed_events += 1
        return result

    def _usage_reported(self, *, final: bool) -> None:
        """Record that usage arrived: the upstream's final numbers, or only some of them."""
        self._usage_seen = True
        if final:
            self._usage_final = True

    # -- emission: the only places neutral events are made --------------------------------

    def _start(self, *, model: str | None = None, usage: Usage | None = None) -> None:
        """Emit ``Start`` unless one went out already (or the stream is over)."""
        if self._started or self.done:
            return
        self._started = True
        self._out.append(Start(upstream_id=self.upstream_id, model=model, usage=usage))

    def _open_block(self, start: BlockStart) -> None:
        """Close the open block, if any, and open ``start`` (after a lazy ``Start``)."""
        if self.done:
            return
        self._close_block()
        self._start()
        self._out.append(start)
        self._open = start.kind

    def _close_block(self) -> None:
        """Emit ``BlockStop`` for the open block, if one is open."""
        if self._open is not None and not self.done:
            self._out.append(BlockStop())
            self._open = None

    def _delta(self, kind: DeltaKind, text: str) -> None:
        """Emit a non-empty delta into the open block, if the block is of its kind."""
        if text and not self.done and self._open == _DELTA_BLOCK[kind]:
            self._out.append(Delta(kind, text))

    def _finish(self, stop_reason: StopReason, *, stop_sequence: str | None = None) -> None:
        """Close the open block and emit ``Finish`` with a copy of the running usage."""
        if self.done:
            return
        self._close_block()
        self._start()
        self._out.append(
            Finish(
                stop_reason=stop_reason,
                stop_sequence=stop_sequence,
                usage=replace(self.usage),
                usage_reported=self._usage_final,
            )
        )
        self.done = True

    def _fail(self, error_type: str | None, message: str, *, status: int | None = None) -> None:
        """Emit ``Failure``; its status comes from ``error_type`` unless given."""
        if self.done:
            return
        if status is None:
            status = failure_status(error_type)
        self._out.append(Failure(error_type=error_type, message=message, status=status))
        self.done = True

    def _fail_malformed_error(self, data: bytes) -> None:
        """An event named ``error`` whose data is not JSON is still the upstream failing:
        report it with the raw data, bounded, as the message (the caller sanitises)."""
        self._fail(None, data[:_MAX_RAW_MESSAGE].decode("utf-8", "replace"))
