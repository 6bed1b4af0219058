"""Property tests: any well-formed neutral stream gives a stream every client can read.

Random neutral streams (any mix of blocks, empty text blocks and empty deltas, odd Unicode,
a ``Finish`` or a ``Failure`` anywhere the neutral grammar allows it) go through each writer.
The writer must never raise, its bytes must decode (the gateway's own ``SSEDecoder``) into
frames that pass the protocol's checker up to a proper end, the text a client reassembles
must be the text that was fed, and the non-streaming body must agree with the stream.
"""

from __future__ import annotations

from typing import Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.translate.test_write import judge, parse, streamed_text, write
from trio_gateway._protocol._names import PROTOCOLS, Protocol
from trio_gateway._protocol._usage import Usage
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
    TranslationError,
)

_KINDS: Final[dict[BlockKind, tuple[DeltaKind, ...]]] = {
    "text": ("text", "refusal"),
    "thinking": ("thinking", "signature"),
    "tool_use": ("tool_args",),
    "redacted_thinking": (),
}
_STOPS: Final[tuple[StopReason, ...]] = (
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "refusal",
    "pause_turn",
    "model_context_window_exceeded",
)
# Short strings, often empty, sometimes with SSE-hostile characters.
_TEXT: Final = st.one_of(
    st.just(""),
    st.sampled_from(["a", " b", "\n", "\r\n", "\u2028", "\u0085", "é", "😀", '"}', "[DONE]"]),
    st.text(max_size=4),
)
_COUNT: Final = st.integers(0, 10_000)
_USAGE: Final = st.builds(
    Usage,
    input_tokens=_COUNT,
    output_tokens=_COUNT,
    cache_read_tokens=_COUNT,
    cache_write_5m_tokens=_COUNT,
    cache_write_1h_tokens=_COUNT,
    reasoning_tokens=_COUNT,
)


@st.composite
def blocks(draw: st.DrawFn) -> list[NeutralEvent]:
    kind = draw(st.sampled_from(list(_KINDS)))
    start = BlockStart(
        kind,
        tool_id=draw(_TEXT) if kind == "tool_use" else "",
        tool_name=draw(_TEXT) if kind == "tool_use" else "",
        data=draw(_TEXT) if kind == "redacted_thinking" else "",
        signature=draw(_TEXT) if kind == "thinking" else "",
    )
    deltas: list[NeutralEvent] = []
    if _KINDS[kind]:
        deltas = draw(st.lists(st.builds(Delta, st.sampled_from(_KINDS[kind]), _TEXT), max_size=4))
    return [start, *deltas, BlockStop()]


@st.composite
def neutral_streams(draw: st.DrawFn) -> list[NeutralEvent]:
    """``Start (BlockStart Delta* BlockStop)* (Finish | Failure)``, with the end anywhere it
    may come: a Failure at any point (even first, even inside a block), a Finish anywhere
    after Start (inside a block it closes the block)."""
    body: list[NeutralEvent] = [Start(usage=draw(st.none() | _USAGE))]
    for block in draw(st.lists(blocks(), max_size=5)):
        body += block
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(body)))
        failure = Failure(
            draw(st.none() | _TEXT), draw(_TEXT), draw(st.sampled_from([429, 500, 502, 529]))
        )
        return [*body[:cut], failure]
    cut = draw(st.integers(1, len(body)))
    finish = Finish(draw(st.sampled_from(_STOPS)), usage=draw(_USAGE))
    return [*body[:cut], finish]


def fed_text(protocol: Protocol, events: list[NeutralEvent]) -> str:
    kinds = ("text", "refusal") if protocol == "anthropic" else ("text",)
    return "".join(e.text for e in events if isinstance(e, Delta) and e.kind in kinds)


@settings(max_examples=200, deadline=None)
@given(
    protocol=st.sampled_from(PROTOCOLS),
    events=neutral_streams(),
    include_usage=st.booleans(),
)
def test_writers_turn_any_neutral_stream_into_a_valid_client_stream(
    protocol: Protocol, events: list[NeutralEvent], include_usage: bool
) -> None:
    writer, raw = write(protocol, events, include_usage=include_usage)
    assert writer.ended
    frames = parse(raw)
    assert judge(protocol, frames, include_usage=include_usage)
    assert streamed_text(protocol, frames) == fed_text(protocol, events)

    quiet, silent = write(protocol, events, include_usage=include_usage, stream=False)
    assert silent == b""
    if isinstance(events[-1], Finish):
        assert quiet.final_body() == writer.final_body()
    else:
        with pytest.raises(TranslationError):
            writer.final_body()
