"""The client writers' shared core: neutral-stream validation, accumulation, ids and usage.

Theory of operation: a writer turns the neutral events of one answer (``_events``) into the
client's SSE frames, or, for a non-streaming client, into its JSON body. :class:`Writer`
here does the part every protocol shares and leaves the wire shapes to its subclasses
(``_write_anthropic``, ``_write_chat``, ``_write_responses``):

- :meth:`Writer.feed` validates the neutral grammar BEFORE any state changes (so a rejected
  event leaves the writer as it was and :meth:`Writer.fail` still ends the stream cleanly),
  records the event in the accumulated :class:`Block` list, then calls one ``_on_*`` hook;
- every frame goes out through :meth:`Writer._emit`, which first shows the object to the
  protocol's checker (``_check``), then renders it with ``json_event`` unless the client is
  not streaming;
- :meth:`Writer.final_body` builds the non-streaming body from the same blocks, so streamed
  and non-streamed answers never disagree.

Invariants:

- The neutral grammar is ``Start (BlockStart Delta* BlockStop)* (Finish | Failure)``; a
  ``Failure`` may also come first or inside a block, and a ``Finish`` inside a block closes it
  first (the only leniency: it is unambiguous). Anything else raises
  :class:`TranslationError`, and so does any event after the end.
- Nothing is written after the stream ended; :meth:`Writer.fail` after the end returns
  ``b""``.
- Client ids derive only from the request id: the same request id gives the same ids.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, NoReturn, assert_never

from trio_gateway._errors import GatewayError, UpstreamStatusError
from trio_gateway._protocol._frames import json_event
from trio_gateway._protocol._usage import Usage
from trio_gateway._translate._check import StreamCheck
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
    TranslationError,
)

__all__ = [
    "Block",
    "Writer",
    "anthropic_usage_body",
    "id_token",
    "openai_prompt_tokens",
    "sanitize_tool_id",
    "tool_input",
]

# _events module docs: which delta kinds each block kind takes.
_DELTA_KINDS: Final[Mapping[BlockKind, frozenset[DeltaKind]]] = {
    "text": frozenset({"text", "refusal"}),
    "thinking": frozenset({"thinking", "signature"}),
    "tool_use": frozenset({"tool_args"}),
    "redacted_thinking": frozenset(),
}

# protocols.md §1.3: Anthropic tool-use ids match ^[a-zA-Z0-9_-]+$.
_TOOL_ID_UNSAFE: Final = re.compile(r"[^a-zA-Z0-9_-]")
_ID_UNSAFE: Final = re.compile(r"[^a-zA-Z0-9]")
_REQUEST_PREFIX: Final = "req_"


@dataclass(slots=True)
class Block:
    """One neutral content block, as accumulated so far.

    Attributes:
        kind, tool_id, tool_name, data, start_signature: from its ``BlockStart``.
        pieces: its deltas in order, ``(kind, text)``.
        index: the writer's wire index for it (Anthropic block index, Chat tool-call index,
            Responses ``output_index``), or None while it has none (a text block not opened
            yet, or a block the protocol drops).
        ident: the writer's client-visible id for it (tool-use id, item id), if any.
    """

    kind: BlockKind
    tool_id: str = ""
    tool_name: str = ""
    data: str = ""
    start_signature: str = ""
    pieces: list[tuple[DeltaKind, str]] = field(default_factory=list)
    index: int | None = None
    ident: str = ""

    def joined(self, *kinds: DeltaKind) -> str:
        """The concatenated text of its deltas of the given kinds."""
        return "".join(text for kind, text in self.pieces if kind in kinds)

    @property
    def signature(self) -> str:
        """The thinking signature: its signature deltas, else the one it started with."""
        return self.joined("signature") or self.start_signature


class Writer:
    """Base of the client writers: see the module docs; use :func:`make_writer`.

    Args:
        request_id: the gateway's request id (``req_<hex>``); client ids derive from it.
        model: the model name the client asked for (what it sees).
        created: Unix seconds for ``created`` / ``created_at``.
        stream: False renders nothing (every call returns ``b""``) but still accumulates.
        check: the protocol's checker, shown every object before it is written.
    """

    __slots__ = (
        "_blocks",
        "_check",
        "_created",
        "_ended",
        "_finish",
        "_model",
        "_open",
        "_request_id",
        "_started",
        "_stream",
        "_token",
    )

    def __init__(
        self, *, request_id: str, model: str, created: int, stream: bool, check: StreamCheck
    ) -> None:
        self._request_id = request_id
        self._token = id_token(request_id)
        self._model = model
        self._created = created
        self._stream = stream
        self._check = check
        self._blocks: list[Block] = []
        self._open: Block | None = None
        self._started = False
        self._ended = False
        self._finish: Finish | None = None

    @property
    def ended(self) -> bool:
        """Whether the stream's terminal frames (or its error frames) were produced."""
        return self._ended

    def feed(self, event: NeutralEvent) -> bytes:
        """The client frames for one neutral event.

        Args:
            event: the next event of a well-formed neutral stream (``_events``).

        Returns:
            The frames, ``b""`` when nothing is due (and always when not streaming).

        Raises:
            TranslationError: the event breaks the neutral grammar (the writer's state is
                unchanged: call :meth:`fail`), or a produced frame broke the client
                protocol's invariants (a bug).
        """
        if self._ended:
            _reject(event, "after the end of the stream")
        match event:
            case Failure(message=message, status=status):
                return self.fail(UpstreamStatusError(message, status=status))
            case Start():
                if self._started:
                    _reject(event, "after Start")
                self._started = True
                return self._on_start(event)
            case BlockStart():
                return self._block_start(event)
            case Delta():
                block = self._open
                if block is None or event.kind not in _DELTA_KINDS[block.kind]:
                    _reject(event, "outside a block of its kind")
                block.pieces.append((event.kind, event.text))
                return self._on_delta(block, event)
            case BlockStop():
                block = self._open
                if block is None:
                    _reject(event, "without an open block")
                self._open = None
                return self._on_block_stop(block)
            case Finish():
                if not self._started:
                    _reject(event, "before Start")
                head = b""
                if (block := self._open) is not None:
                    self._open = None
                    head = self._on_block_stop(block)
                self._ended = True
                self._finish = event
                return head + self._on_finish(event)
            case _:
                assert_never(event)

    def fail(self, error: GatewayError) -> bytes:
        """Frames that end the stream with an in-band error, consistent with what was
        already written.

        Args:
            error: what to report (its message must be safe to show).

        Returns:
            The error frames; ``b""`` if the stream already ended (or when not streaming).
        """
        if self._ended:
            return b""
        self._ended = True
        return self._on_fail(error)

    def final_body(self) -> dict[str, object]:
        """The client's non-streaming response body, assembled from everything fed.

        Raises:
            TranslationError: no ``Finish`` was fed (the answer failed or is not over).
        """
        if self._finish is None:
            raise TranslationError("final_body before a Finish")
        return self._body(self._finish)

    def _block_start(self, event: BlockStart) -> bytes:
        if not self._started:
            _reject(event, "before Start")
        if self._open is not None:
            _reject(event, "inside an open block")
        if event.kind not in _DELTA_KINDS:
            _reject(event, "of an unknown kind")
        block = Block(
            event.kind,
            tool_id=event.tool_id,
            tool_name=event.tool_name,
            data=event.data,
            start_signature=event.signature,
        )
        self._blocks.append(block)
        self._open = block
        return self._on_block_start(block)

    def _emit(self, name: str | None, data: dict[str, object]) -> bytes:
        """Check one object, then render it as a frame (``b""`` when not streaming)."""
        self._check.observe(name, data)
        return json_event(name, data) if self._stream else b""

    def _rendered(self, frames: bytes) -> bytes:
        """Pre-rendered frames (error frames), or ``b""`` when not streaming."""
        return frames if self._stream else b""

    # The protocol hooks. Each returns the frames due (already through _emit).

    def _on_start(self, event: Start) -> bytes:
        raise NotImplementedError

    def _on_block_start(self, block: Block) -> bytes:
        raise NotImplementedError

    def _on_delta(self, block: Block, delta: Delta) -> bytes:
        raise NotImplementedError

    def _on_block_stop(self, block: Block) -> bytes:
        raise NotImplementedError

    def _on_finish(self, finish: Finish) -> bytes:
        raise NotImplementedError

    def _on_fail(self, error: GatewayError) -> bytes:
        raise NotImplementedError

    def _body(self, finish: Finish) -> dict[str, object]:
        raise NotImplementedError


def _reject(event: NeutralEvent, why: str) -> NoReturn:
    raise TranslationError(f"neutral {type(event).__name__} {why}")


def id_token(request_id: str) -> str:
    """The id part client ids are built from: ``req_0a1b…`` → ``0a1b…`` (letters and digits
    only, so every derived id is safe in any protocol); ``"0"`` if nothing is left."""
    return _ID_UNSAFE.sub("", request_id.removeprefix(_REQUEST_PREFIX)) or "0"


def sanitize_tool_id(tool_id: str, fallback: str) -> str:
    """A tool-use id matching ``^[a-zA-Z0-9_-]+$`` (protocols.md §1.3): every other character
    becomes ``_``; ``fallback`` when ``tool_id`` is empty."""
    return _TOOL_ID_UNSAFE.sub("_", tool_id) or fallback


def tool_input(arguments: str) -> dict[str, object]:
    """A tool call's ``input`` object from its JSON arguments (protocols.md §5.1 rule 2).

    Empty arguments are ``{}``; arguments that do not parse to a JSON object are kept
    verbatim as ``{"_raw": arguments}`` (policy: nothing the model wrote is lost).
    """
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError):
        value = None
    return value if isinstance(value, dict) else {"_raw": arguments}


def anthropic_usage_body(usage: Usage) -> dict[str, object]:
    """A full Anthropic ``usage`` object, as a native message carries it (protocols.md §1.6).

    ``service_tier`` is ``standard``: the tier of a translated upstream has no Anthropic name.
    """
    return {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_write_5m_tokens + usage.cache_write_1h_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.cache_write_5m_tokens,
            "ephemeral_1h_input_tokens": usage.cache_write_1h_tokens,
        },
        "output_tokens": usage.output_tokens,
        "service_tier": "standard",
    }


def openai_prompt_tokens(usage: Usage) -> int:
    """OpenAI prompt / input tokens: ALL input, cached included (protocols.md §5.4)."""
    return (
        usage.input_tokens
        + usage.cache_read_tokens
        + usage.cache_write_5m_tokens
        + usage.cache_write_1h_tokens
    )
