"""The neutral stream events between an upstream reader and a client writer.

Theory of operation: a translated stream is ``upstream SSE event → reader → neutral events →
writer → client frames``. The neutral vocabulary is Anthropic's (the richest of the three:
typed content blocks, cumulative usage, explicit stop reasons), and usage is the ledger's
:class:`~trio_gateway._protocol._usage.Usage` (Anthropic semantics: ``input_tokens`` is the
uncached input).

A well-formed neutral stream, which every reader must produce and every writer may rely on
(writers still check it and raise :class:`TranslationError` if it is broken):

    Start  (BlockStart  Delta*  BlockStop)*  (Finish | Failure)

- ``Start`` exactly once, first.
- Blocks strictly one at a time: a ``BlockStart``, its deltas, its ``BlockStop``; a delta's
  kind matches its block (``text``/``refusal`` → text block, ``thinking``/``signature`` →
  thinking block, ``tool_args`` → tool_use block); ``redacted_thinking`` blocks have no deltas.
- A reader may emit a text block that stays empty; writers for Anthropic clients drop empty
  text blocks (protocols.md §1.3).
- ``Finish`` or ``Failure`` exactly once, last. ``Failure`` may come at any point after
  ``Start`` (also inside an open block), and may come first when the upstream failed before
  it said anything; nothing follows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from trio_gateway._protocol._usage import Usage

__all__ = [
    "BlockKind",
    "BlockStart",
    "BlockStop",
    "Delta",
    "DeltaKind",
    "Failure",
    "Finish",
    "NeutralEvent",
    "Start",
    "StopReason",
    "TranslationError",
]

StopReason = Literal[
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "refusal",
    "pause_turn",
    "model_context_window_exceeded",
]
"""Why the answer ended, in Anthropic's words (protocols.md §1.5, mapping in §5.3)."""

BlockKind = Literal["text", "thinking", "redacted_thinking", "tool_use"]
DeltaKind = Literal["text", "refusal", "thinking", "signature", "tool_args"]


class TranslationError(Exception):
    """A translator met a state its invariants forbid (a bug, or an upstream stream no
    reader could normalise). The relay ends the client stream with an in-band error."""


@dataclass(frozen=True, slots=True)
class Start:
    """The upstream began its answer.

    Attributes:
        upstream_id: the upstream's own message / completion / response id, if it sent one
            (for logs; clients get ids made by the gateway).
        model: the model name the upstream reported, if any.
        usage: the input-side usage already known (Anthropic ``message_start``), else None.
    """

    upstream_id: str | None = None
    model: str | None = None
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class BlockStart:
    """A content block opens.

    Attributes:
        kind: what the block holds.
        tool_id: ``tool_use`` only: the call id as the upstream sent it (writers sanitise
            it for their protocol).
        tool_name: ``tool_use`` only: the function name.
        data: ``redacted_thinking`` only: the opaque payload.
        signature: ``thinking`` only: a signature already known at the start (Responses
            reasoning items carry none until done; Anthropic sends it as a delta).
    """

    kind: BlockKind
    tool_id: str = ""
    tool_name: str = ""
    data: str = ""
    signature: str = ""


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of the open block: text, refusal text, thinking text, a signature, or a
    fragment of a tool call's JSON arguments (concatenate all fragments, then parse)."""

    kind: DeltaKind
    text: str


@dataclass(frozen=True, slots=True)
class BlockStop:
    """The open block is complete."""


@dataclass(frozen=True, slots=True)
class Finish:
    """The upstream finished cleanly.

    Attributes:
        stop_reason: why it stopped (protocols.md §5.3).
        stop_sequence: the matched stop sequence, when ``stop_reason`` is ``stop_sequence``.
        usage: the final usage (ledger semantics, protocols.md §5.4).
        usage_reported: whether the upstream actually reported ``usage`` (False: it is zeros
            or only partial).
    """

    stop_reason: StopReason
    stop_sequence: str | None = None
    usage: Usage = field(default_factory=Usage)
    usage_reported: bool = True


@dataclass(frozen=True, slots=True)
class Failure:
    """The upstream reported an error inside its stream (or broke it).

    Attributes:
        error_type: the upstream's error type or code string, if any (raw).
        message: the upstream's message, raw: writers sanitise it before a client sees it.
        status: the HTTP status this error maps to, for callers that are still uncommitted
            (non-streaming): 429 for rate limits, 529 for overload, 500/502 otherwise.
    """

    error_type: str | None
    message: str
    status: int = 502


NeutralEvent = Start | BlockStart | Delta | BlockStop | Finish | Failure
