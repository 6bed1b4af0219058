"""Tests for the SSE decoder and encoder (WHATWG HTML §9.2.5-9.2.6; RELIABILITY.md #8, B15).

Every parser test runs the same input through many chunkings: the whole input, every two-way
split, a byte at a time, and random chunkings from hypothesis. The events, the concatenated
``raw`` and the ``close()`` tail must not depend on where the chunks were cut.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, SupportsIndex, overload

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_gateway._errors import UpstreamProtocolError
from trio_gateway._protocol._sse import (
    _LARGE_BLOCK,
    DEFAULT_MAX_EVENT_BYTES,
    SSEDecoder,
    SSEEvent,
    _parse_block,
    _parse_fields,
    _parse_large_block,
    _parse_simple_block,
    encode_comment,
    encode_event,
)

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

Triple = tuple[str | None, bytes, str | None]

BOM = b"\xef\xbb\xbf"

# (block bytes, the event it dispatches or None). Joined, they are the fixture stream.
FIXTURE_BLOCKS: list[tuple[bytes, Triple | None]] = [
    (b": leading comment\n\n", None),
    (b'event: message_start\ndata: {"a":1}\n\n', ("message_start", b'{"a":1}', None)),
    (b"data: line one\r\ndata: line two\r\n\r\n", (None, b"line one\nline two", None)),
    (b"data:no space\rid: 7\r\r", (None, b"no space", "7")),
    # One leading space is stripped, not two; a comment inside an event; `data` without a
    # colon is an empty data line; LF and CRLF mixed in one block.
    (b"data:  two spaces\n: inner comment\ndata\n\r\n", (None, b" two spaces\n", None)),
    # An id with NUL is ignored (the earlier valid one stands); retry and unknown fields too.
    (
        b"id: ok\nid: bad\x00id\nretry: 3000\nunknown: field\ndata: after\n\n",
        (None, b"after", "ok"),
    ),
    (b"id: \x00\ndata: n\n\n", (None, b"n", None)),
    (b"event: only-event\nid: 9\nretry: 10\n\n", None),  # no data: nothing dispatched
    (b"\n", None),
    (b"\r\n", None),
    (b"\r", None),
    (b"data:\n\n", (None, b"", None)),  # an empty data line does dispatch
    (b"data\r\n\r\n", (None, b"", None)),
    (b"event:\ndata: e\n\n", ("", b"e", None)),
    (b"event: \xff\ndata: r\n\n", ("\ufffd", b"r", None)),
    # U+0085, U+2028, U+2029 are line breaks to str.splitlines(), not to SSE; multibyte UTF-8.
    (
        b"event: uni\ndata: \xc2\x85|\xe2\x80\xa8|\xe2\x80\xa9|\xe2\x82\xac|\xf0\x9f\x98\x80\n\n",
        ("uni", b"\xc2\x85|\xe2\x80\xa8|\xe2\x80\xa9|\xe2\x82\xac|\xf0\x9f\x98\x80", None),
    ),
    (b"id: 42\nevent: a\nevent: b\r\ndata: last: wins\n\n", ("b", b"last: wins", "42")),
    (b"data: x\xef\xbb\xbfy\n\n", (None, b"x\xef\xbb\xbfy", None)),
]
FIXTURE_BODY = b"".join(block for block, _ in FIXTURE_BLOCKS)
FIXTURE_TAIL = b"event: partial\r\ndata: never dispatched\r"
FIXTURE = FIXTURE_BODY + FIXTURE_TAIL
FIXTURE_EVENTS = [expected for _, expected in FIXTURE_BLOCKS if expected is not None]


@dataclass(frozen=True, slots=True)
class Decoded:
    """Everything a decoder produced for one chunking of a stream."""

    events: list[Triple]
    raw: bytes
    tail: bytes
    pieces: list[tuple[bytes, list[SSEEvent]]]


def triple(event: SSEEvent) -> Triple:
    return (event.event, event.data, event.id)


def decode(chunks: Iterable[bytes], *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Decoded:
    decoder = SSEDecoder(max_event_bytes=max_event_bytes)
    pieces = [decoder.feed(chunk) for chunk in chunks]
    tail = decoder.close()
    assert decoder.pending == 0
    for raw, events in pieces:
        check_spans(raw, events)
    return Decoded(
        events=[triple(event) for _, events in pieces for event in events],
        raw=b"".join(raw for raw, _ in pieces),
        tail=tail,
        pieces=pieces,
    )


def check_spans(raw: bytes, events: Sequence[SSEEvent]) -> None:
    """Spans are ordered, end with a line terminator and slice out a block that re-parses
    on its own to the same single event."""
    previous_end = 0
    for event in events:
        assert previous_end <= event.start < event.end <= len(raw)
        assert raw[event.end - 1 : event.end] in {b"\n", b"\r"}
        previous_end = event.end
        block = raw[event.start : event.end]
        decoder = SSEDecoder()
        block_raw, block_events = decoder.feed(block)
        assert block_raw == block
        assert [triple(e) for e in block_events] == [triple(event)]
        assert (block_events[0].start, block_events[0].end) == (0, len(block))
        assert decoder.close() == b""


def two_way_splits(data: bytes) -> Iterable[tuple[int, list[bytes]]]:
    for cut in range(len(data) + 1):
        yield cut, [data[:cut], data[cut:]]


def one_byte_at_a_time(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# --- the fixture stream at every chunking -----------------------------------------------


def test_fixture_whole() -> None:
    decoded = decode([FIXTURE])
    assert decoded.events == FIXTURE_EVENTS
    assert decoded.raw == FIXTURE_BODY
    assert decoded.tail == FIXTURE_TAIL
    ((raw, events),) = decoded.pieces
    dispatching = [block for block, expected in FIXTURE_BLOCKS if expected is not None]
    assert [raw[e.start : e.end] for e in events] == dispatching


def test_fixture_every_two_way_split() -> None:
    for cut, chunks in two_way_splits(FIXTURE):
        decoded = decode(chunks)
        assert decoded.events == FIXTURE_EVENTS, cut
        assert decoded.raw == FIXTURE_BODY, cut
        assert decoded.tail == FIXTURE_TAIL, cut


def test_fixture_one_byte_at_a_time() -> None:
    decoded = decode(one_byte_at_a_time(FIXTURE))
    assert decoded.events == FIXTURE_EVENTS
    assert decoded.raw == FIXTURE_BODY
    assert decoded.tail == FIXTURE_TAIL


def test_events_come_out_as_soon_as_their_blank_line_ends() -> None:
    decoder = SSEDecoder()
    for block, expected in FIXTURE_BLOCKS:
        outputs = [decoder.feed(byte) for byte in one_byte_at_a_time(block)]
        # A blank line ended by CRLF dispatches at its CR; the LF follows on its own.
        dispatch_at = len(block) - (2 if block.endswith(b"\r\n") else 1)
        assert [i for i, (raw, _) in enumerate(outputs) if raw] == list(
            range(dispatch_at, len(block))
        ), block
        assert b"".join(raw for raw, _ in outputs) == block
        events = [triple(e) for _, new in outputs for e in new]
        assert events == ([expected] if expected else [])
        assert [triple(e) for e in outputs[dispatch_at][1]] == events
        assert decoder.pending == 0


def test_a_chunk_ending_at_a_block_boundary_is_returned_as_is() -> None:
    chunk = b"event: a\ndata: 1\n\n: ping\n\ndata: 2\n\n"
    raw, events = SSEDecoder().feed(chunk)
    assert raw is chunk
    assert [(e.start, e.end) for e in events] == [(0, 18), (26, 35)]


def test_empty_chunk_changes_nothing() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a") == (b"", [])
    assert decoder.feed(b"") == (b"", [])
    assert decoder.pending == 7
    raw, events = decoder.feed(b"\n\n")
    assert raw == b"data: a\n\n"
    assert [triple(e) for e in events] == [(None, b"a", None)]


def test_utf8_sequence_split_across_chunks_is_kept_intact() -> None:
    stream = "event: ünï\ndata: h€llo 😀\n\n".encode()
    for cut, chunks in two_way_splits(stream):
        assert decode(chunks).events == [("ünï", "h€llo 😀".encode(), None)], cut


def test_id_is_reported_only_for_the_block_that_set_it() -> None:
    decoded = decode([b"id: 1\ndata: a\n\ndata: b\n\n"])
    assert decoded.events == [(None, b"a", "1"), (None, b"b", None)]


# --- line terminators across chunk boundaries ----------------------------------------------


def test_cr_at_chunk_end_then_lf_is_one_crlf() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r") == (b"", [])
    raw, events = decoder.feed(b"\ndata: y\n\n")
    assert raw == b"data: x\r\ndata: y\n\n"
    assert [triple(e) for e in events] == [(None, b"x\ny", None)]


def test_cr_at_chunk_end_then_cr_is_two_line_ends() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r") == (b"", [])
    raw, events = decoder.feed(b"\rdata: y\n\n")
    assert raw == b"data: x\r\rdata: y\n\n"
    assert [triple(e) for e in events] == [(None, b"x", None), (None, b"y", None)]
    assert [(e.start, e.end) for e in events] == [(0, 9), (9, 18)]


def test_blank_line_cr_at_chunk_end_dispatches_without_waiting() -> None:
    # A CR-only upstream ends every event with a CR that is the last byte of its chunk;
    # waiting for the next byte would delay every event by one event interval.
    decoder = SSEDecoder()
    raw, events = decoder.feed(b"data: x\r\r")
    assert raw == b"data: x\r\r"
    assert [triple(e) for e in events] == [(None, b"x", None)]
    # The LF that completes that CRLF goes out at once, and is not a second blank line.
    raw, events = decoder.feed(b"\ndata: y\r\n\r\n")
    assert raw == b"\ndata: y\r\n\r\n"
    assert [(triple(e), e.start, e.end) for e in events] == [((None, b"y", None), 1, 12)]
    assert decoder.close() == b""


def test_lf_completing_a_split_crlf_is_not_held_back() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\n\r")[0] == b"data: x\n\r"
    assert decoder.feed(b"\n") == (b"\n", [])
    assert decoder.pending == 0
    assert decoder.close() == b""


def test_lf_after_a_crlf_split_is_a_blank_line_of_its_own() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: x\r")
    raw, events = decoder.feed(b"\n\n")
    assert raw == b"data: x\r\n\n"
    assert [triple(e) for e in events] == [(None, b"x", None)]


# --- byte order mark --------------------------------------------------------------------


def test_leading_bom_is_dropped() -> None:
    raw, events = SSEDecoder().feed(BOM + b"event: a\ndata: 1\n\n")
    assert raw == b"event: a\ndata: 1\n\n"
    assert [(triple(e), e.start) for e in events] == [(("a", b"1", None), 0)]


def test_leading_bom_split_across_chunks_is_dropped() -> None:
    stream = BOM + b"event: a\ndata: 1\n\n"
    for cut, chunks in two_way_splits(stream):
        decoded = decode(chunks)
        assert decoded.events == [("a", b"1", None)], cut
        assert decoded.raw == stream[3:], cut
    decoder = SSEDecoder()
    assert decoder.feed(BOM[:1]) == (b"", [])
    assert decoder.feed(BOM[1:2]) == (b"", [])
    assert decoder.pending == 2
    assert decoder.feed(BOM[2:]) == (b"", [])
    assert decoder.pending == 0


def test_bom_prefix_that_is_not_a_bom_is_kept() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"\xef\xbb") == (b"", [])
    assert decoder.pending == 2
    raw, events = decoder.feed(b"x: y\n\ndata: z\n\n")
    assert raw == b"\xef\xbbx: y\n\ndata: z\n\n"
    assert [triple(e) for e in events] == [(None, b"z", None)]
    partial = SSEDecoder()
    partial.feed(b"\xef")
    assert partial.close() == b"\xef"


def test_bom_after_the_start_is_not_dropped() -> None:
    # A second BOM makes the first field name "\ufeffdata", an unknown field.
    decoded = decode([BOM + BOM + b"data: a\n\ndata: b\n\n" + BOM + b"data: c\n\n"])
    assert decoded.events == [(None, b"b", None)]
    assert decoded.raw == BOM + b"data: a\n\ndata: b\n\n" + BOM + b"data: c\n\n"
    assert decode([b"data: " + BOM + b"\n\n"]).events == [(None, BOM, None)]


# --- max_event_bytes --------------------------------------------------------------------


def test_default_limit_is_80_mib() -> None:
    assert DEFAULT_MAX_EVENT_BYTES == 83_886_080


def test_block_exactly_at_the_limit_passes() -> None:
    block = b"data: " + b"a" * 56 + b"\n\n"
    assert len(block) == 64
    for chunks in ([block], one_byte_at_a_time(block)):
        decoded = decode(chunks, max_event_bytes=64)
        assert decoded.events == [(None, b"a" * 56, None)]
        assert decoded.raw == block
    # Several blocks at the limit in one chunk, and an incomplete one at the limit after them.
    decoder = SSEDecoder(max_event_bytes=64)
    raw, events = decoder.feed(block + block + block[:-1])
    assert raw == block + block
    assert [triple(e) for e in events] == [(None, b"a" * 56, None)] * 2
    assert decoder.pending == 63
    raw, events = decoder.feed(block[-1:] + block)
    assert raw == block + block
    assert len(events) == 2


def test_block_one_past_the_limit_raises() -> None:
    block = b"data: " + b"a" * 57 + b"\n\n"
    with pytest.raises(UpstreamProtocolError, match=r"exceeds max_event_bytes \(64\)"):
        SSEDecoder(max_event_bytes=64).feed(b"data: ok\n\n" + block)
    decoder = SSEDecoder(max_event_bytes=64)
    *head, last = one_byte_at_a_time(block)
    for byte in head:
        assert decoder.feed(byte) == (b"", [])
    assert decoder.pending == 64
    with pytest.raises(UpstreamProtocolError):
        decoder.feed(last)


def test_oversized_incomplete_block_raises_and_memory_stays_bounded() -> None:
    limit = 1000
    chunk = b"a" * 300
    decoder = SSEDecoder(max_event_bytes=limit)
    raw, events = decoder.feed(b"data: ok\n\ndata: ")
    assert (raw, [triple(e) for e in events]) == (b"data: ok\n\n", [(None, b"ok", None)])
    held = [decoder.pending]
    for _ in range(3):
        assert decoder.feed(chunk) == (b"", [])
        held.append(decoder.pending)
    assert held == [6, 306, 606, 906]  # every byte is held while within the limit
    with pytest.raises(UpstreamProtocolError) as raised:
        decoder.feed(chunk)  # the first chunk that takes it past the limit
    assert raised.value.message == "upstream SSE event exceeds max_event_bytes (1000)"
    assert decoder.pending == 0  # the held-back bytes are released
    with pytest.raises(UpstreamProtocolError):
        decoder.feed(b"\n\n")  # a failed decoder stays failed


# --- large events -----------------------------------------------------------------------


def test_ten_megabyte_data_line_in_64_kib_chunks() -> None:
    payload = bytes(range(32, 127)) * (10 * 1024 * 1024 // 95)
    stream = b"event: big\ndata: " + payload + b"\n\ndata: next\n\n"
    size = 64 * 1024
    decoder = SSEDecoder()
    raws: list[bytes] = []
    events: list[SSEEvent] = []
    forwarded = 0
    for offset in range(0, len(stream), size):
        raw, new = decoder.feed(stream[offset : offset + size])
        forwarded += len(raw)
        assert decoder.pending == min(offset + size, len(stream)) - forwarded
        raws.append(raw)
        events.extend(new)
    assert len(raws) == -(-len(stream) // size)
    assert [i for i, raw in enumerate(raws) if raw] == [len(raws) - 1]
    assert b"".join(raws) == stream
    assert [(e.event, len(e.data), e.id) for e in events] == [
        ("big", len(payload), None),
        (None, 4, None),
    ]
    assert events[0].data == payload
    assert decoder.close() == b""


# Past _LARGE_BLOCK the held-back block grows in a BytesIO and only the new chunk is scanned;
# the block is then parsed without copying its data. Same results, at every chunking.

_PAYLOAD: Final = bytes(range(32, 127)) * (2 * _LARGE_BLOCK // 95)  # 2 MiB, no CR or LF
_BIG_BLOCK: Final = b"id: 7\r\nevent: big\r\ndata: " + _PAYLOAD + b"\r\ndata:second\rdata\n\r\n"
_BIG_BODY: Final = b"data: a\n\n" + _BIG_BLOCK + b"event: after\ndata: b\n\n"
_BIG_EVENTS: Final[list[Triple]] = [
    (None, b"a", None),
    ("big", _PAYLOAD + b"\nsecond\n", "7"),
    ("after", b"b", None),
]


def test_large_block_at_many_chunkings() -> None:
    tail = b"data: cut"
    stream = _BIG_BODY + tail
    chunkings = [chunked(stream, list(range(size, len(stream), size))) for size in (65536, 65537)]
    chunkings.append([stream])
    # A first chunk past _LARGE_BLOCK, then a cut at every byte around the big block's last
    # line ends: a CR that ends a chunk while the large block is held, its LF next.
    first = _LARGE_BLOCK + 100
    big_end = len(b"data: a\n\n") + len(_BIG_BLOCK)
    chunkings += [chunked(stream, [first, cut]) for cut in range(big_end - 24, big_end + 2)]
    for chunks in chunkings:
        decoded = decode(chunks)
        assert decoded.events == _BIG_EVENTS, [len(chunk) for chunk in chunks]
        assert decoded.raw == _BIG_BODY
        assert decoded.tail == tail


def test_large_block_held_back_is_counted_and_returned_by_close() -> None:
    head = b"event: big\ndata: " + _PAYLOAD
    decoder = SSEDecoder()
    for chunk in chunked(head, list(range(65536, len(head), 65536))):
        assert decoder.feed(chunk) == (b"", [])
    assert decoder.pending == len(head)
    assert decoder.close() == head
    assert decoder.pending == 0


def test_large_block_at_the_limit_passes_and_past_it_raises() -> None:
    limit = 3 * _LARGE_BLOCK
    block = b"data: " + b"a" * (limit - 8) + b"\n\n"
    chunks = chunked(block + b"data: b\n\n", list(range(65536, len(block), 65536)))
    assert decode(chunks, max_event_bytes=limit).events == [
        (None, b"a" * (limit - 8), None),
        (None, b"b", None),
    ]
    decoder = SSEDecoder(max_event_bytes=limit)
    *head, last = chunked(block[:-2] + b"a\n\n", list(range(65536, len(block), 65536)))
    for chunk in head:
        assert decoder.feed(chunk) == (b"", [])
    assert decoder.pending > _LARGE_BLOCK  # held in the large-block buffer
    with pytest.raises(UpstreamProtocolError, match=rf"exceeds max_event_bytes \({limit}\)"):
        decoder.feed(last)
    assert decoder.pending == 0  # the held-back bytes are released
    with pytest.raises(UpstreamProtocolError):
        decoder.feed(b"data: x\n\n")


def test_large_block_parser_agrees_with_the_usual_one_on_the_fixture() -> None:
    before = b"data: before\n\n"
    for block, expected in FIXTURE_BLOCKS:
        raw = before + block + b"data: after\n\n"
        start, end = len(before), len(before) + len(block)
        large = _parse_large_block(raw, start, end)
        assert (large and (triple(large), large.start, large.end)) == (
            expected and (expected, start, end)
        ), block


_block_pieces = st.sampled_from(
    [b"data", b"event", b"id", b"retry", b"dat", b"x", b":", b" ", b"\x00", b"\xff", b"\n", b"\r"]
)


@settings(max_examples=200, deadline=None)
@given(block=st.lists(_block_pieces, max_size=30).map(b"".join))
def test_large_block_parser_agrees_with_the_usual_one_on_any_bytes(block: bytes) -> None:
    raw = b"data: before\n\n" + block + b"\n\ndata: after\n\n"
    start, end = 14, 14 + len(block) + 2
    usual = _parse_block(raw, start, end)  # a small block: the usual parser
    large = _parse_large_block(raw, start, end)
    assert (usual and (triple(usual), usual.start, usual.end)) == (
        large and (triple(large), large.start, large.end)
    )


# --- linear work (issue 6: "cost per request grows linearly with stream length") ---------


class CountingBytes(bytes):
    """``bytes`` that count the bytes their ``find`` calls read (up to the match, or the
    whole range) and their indexing reads."""

    looked: int

    def find(
        self,
        sub: ReadableBuffer | SupportsIndex,
        start: SupportsIndex | None = None,
        end: SupportsIndex | None = None,
        /,
    ) -> int:
        found = super().find(sub, start, end)
        first = 0 if start is None else int(start)
        last = len(self) if end is None else min(int(end), len(self))
        if found >= 0:
            last = found + (len(sub) if isinstance(sub, bytes) else 1)
        self.looked = getattr(self, "looked", 0) + max(0, last - first)
        return found

    @overload
    def __getitem__(self, key: SupportsIndex, /) -> int: ...
    @overload
    def __getitem__(self, key: slice, /) -> bytes: ...
    def __getitem__(self, key: SupportsIndex | slice, /) -> int | bytes:
        value = super().__getitem__(key)
        self.looked = getattr(self, "looked", 0) + (1 if isinstance(value, int) else len(value))
        return value


class CountingDecoder(SSEDecoder):
    """A decoder that adds up the bytes its scans look at."""

    def __init__(self) -> None:
        super().__init__()
        self.looked = 0

    def _scan(self, buf: bytes | bytearray) -> list[int]:
        counted = CountingBytes(buf)
        ends = super()._scan(counted)
        self.looked += getattr(counted, "looked", 0)
        return ends


def test_a_large_event_in_small_chunks_is_scanned_once() -> None:
    # A decoder that rescanned what it holds on every chunk would look at ~n^2 / 8 KiB
    # bytes here (2 GiB), not ~2n (one search for CR, one for a blank line).
    stream = b"event: big\ndata: " + _PAYLOAD * 8 + b"\n\ndata: next\n\n"  # 16 MiB
    decoder = CountingDecoder()
    raws = [
        decoder.feed(chunk)[0] for chunk in chunked(stream, list(range(4096, len(stream), 4096)))
    ]
    assert b"".join(raws) == stream
    assert decoder.looked <= 3 * len(stream)


def test_a_large_block_with_many_lines_is_parsed_in_one_pass() -> None:
    # LF-only lines: a parser that searched for the next CR from every line start would
    # look at the rest of the block once per line (20 000 times).
    lines = 20_000
    raw = CountingBytes(b"data: x\n" * lines + b"\n")
    event = _parse_large_block(raw, 0, len(raw))
    assert raw.looked <= 4 * len(raw)
    assert event is not None
    assert event.data == b"\n".join([b"x"] * lines)


# --- end of stream ----------------------------------------------------------------------


def test_close_returns_the_incomplete_block_and_dispatches_nothing() -> None:
    decoder = SSEDecoder()
    raw, events = decoder.feed(b"data: done\n\nevent: cut\ndata: half")
    assert raw == b"data: done\n\n"
    assert [triple(e) for e in events] == [(None, b"done", None)]
    assert decoder.pending == len(b"event: cut\ndata: half")
    assert decoder.close() == b"event: cut\ndata: half"
    assert decoder.pending == 0
    assert decoder.close() == b""


def test_close_with_nothing_pending_returns_empty() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: a\r\n\r\n")
    assert decoder.close() == b""


# --- encoder ----------------------------------------------------------------------------


def test_encode_event_shapes() -> None:
    assert encode_event(b"hi") == b"data: hi\n\n"
    assert encode_event("", event="ping") == b"event: ping\ndata: \n\n"
    assert encode_event("a\r\nb\rc\nd", event="x") == (
        b"event: x\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    )
    assert encode_event("h€") == "data: h€\n\n".encode()


def test_encode_comment_shapes() -> None:
    assert encode_comment() == b":\n\n"
    assert encode_comment("ping") == b": ping\n\n"
    assert decode([encode_comment("ping"), encode_comment()]).events == []


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\n"])
def test_encoder_refuses_line_breaks_in_single_line_fields(bad: str) -> None:
    with pytest.raises(ValueError, match="must not contain CR or LF"):
        encode_event(b"x", event=bad)
    with pytest.raises(ValueError, match="must not contain CR or LF"):
        encode_comment(bad)


@pytest.mark.parametrize(
    ("data", "event", "expected"),
    [
        (b"plain", None, b"plain"),
        (b" leading space", "e", b" leading space"),
        (b"a\r\nb", None, b"a\nb"),
        (b"a\rb\n", "x:y", b"a\nb\n"),
        (b"\n\n", None, b"\n\n"),
        (b"", "", b""),
        ("data: id: 1 €".encode(), "ünï", "data: id: 1 €".encode()),
    ],
)
def test_encoder_round_trips(data: bytes, event: str | None, expected: bytes) -> None:
    assert decode([encode_event(data, event=event)]).events == [(event, expected, None)]


_line_free_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"))


@settings(max_examples=200)
@given(data=st.binary(max_size=40), event=st.none() | _line_free_text)
def test_encoder_round_trips_any_payload(data: bytes, event: str | None) -> None:
    encoded = encode_event(data, event=event)
    normalized = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    assert decode([encoded]).events == [(event, normalized, None)]
    lines = encoded[:-2].split(b"\n")
    assert all(line.startswith((b"data: ", b"event: ")) for line in lines)


# --- random streams from a model (RELIABILITY.md B15) ------------------------------------

_LINE_ENDS = (b"\n", b"\r\n", b"\r")
# Field values: the bytes that trip parsers (colons, spaces, NUL, BOM, the Unicode line
# separators, invalid UTF-8) and arbitrary bytes; never CR or LF, which end a line.
_value_bytes = st.one_of(
    st.sampled_from(
        [
            *(b"", b" ", b"  x", b":", b"a:b", b" :", b"\x00", BOM, b"\xc2\x85", b"\xe2\x80\xa8"),
            *(b"\xe2\x80\xa9", b"\xf0\x9f\x98", b"\xff", b'{"type":"ping"}', b"[DONE]"),
        ]
    ),
    st.binary(max_size=8).map(lambda value: value.translate(None, b"\r\n")),
)


@dataclass(frozen=True, slots=True)
class ModelStream:
    """A generated stream: its bytes and what a conforming decoder must make of them."""

    stream: bytes
    body: bytes
    tail: bytes
    events: list[Triple]
    blocks: list[bytes]  # the block of each event, in order


# Strategies are built once: building them inside a composite costs a validation per draw.
_form = st.integers(0, 2)
_line_kind = st.sampled_from(["data", "data", "event", "id", "retry", "comment", "other"])
_other_name = st.sampled_from([b"foo", b"Data", b"datum", b"ID", b"events", b" data"])
_retry = st.integers(0, 10**6)
_lines_per_block = st.integers(0, 4)
_any_line_end = st.sampled_from(_LINE_ENDS)
_line_end_after_cr = st.sampled_from((b"\r\n", b"\r"))  # an LF would join the CR as CRLF


def write_field(draw: st.DrawFn, name: bytes, value: bytes) -> bytes:
    """Write ``name`` and ``value`` in one of the forms WHATWG reads back as exactly them."""
    form = draw(_form)
    if value.startswith(b" ") or form == 0:
        return name + b": " + value  # a leading space in the value needs the separator one
    if form == 2 and not value:
        return name  # "the whole line as the field name, and the empty string as the value"
    return name + b":" + value


@st.composite
def event_block(draw: st.DrawFn) -> tuple[list[bytes], Triple | None]:
    """The field lines of one block (no terminators) and the event it must dispatch."""
    lines: list[bytes] = []
    event: str | None = None
    event_id: str | None = None
    data: list[bytes] = []
    for _ in range(draw(_lines_per_block)):
        kind = draw(_line_kind)
        value = draw(_value_bytes)
        if kind == "data":
            data.append(value)
            lines.append(write_field(draw, b"data", value))
        elif kind == "event":
            event = draw(_line_free_text)
            lines.append(write_field(draw, b"event", event.encode()))
        elif kind == "id":
            if b"\x00" not in value:
                event_id = value.decode("utf-8", "replace")
            lines.append(write_field(draw, b"id", value))
        elif kind == "retry":
            lines.append(b"retry: " + str(draw(_retry)).encode())
        elif kind == "comment":
            lines.append(b":" + value)
        else:
            lines.append(write_field(draw, draw(_other_name), value))
    expected = (event, b"\n".join(data), event_id) if data else None
    return lines, expected


_blocks = st.lists(event_block(), max_size=6)
_tail_block = st.none() | event_block()


@st.composite
def model_streams(draw: st.DrawFn) -> ModelStream:
    """A stream of random blocks with random line ends, an optional BOM and an optional
    incomplete last block, with the events and bytes a conforming decoder yields."""
    previous_end = b""

    def terminate(line: bytes) -> bytes:
        nonlocal previous_end
        blank_after_cr = not line and previous_end == b"\r"
        previous_end = draw(_line_end_after_cr if blank_after_cr else _any_line_end)
        return line + previous_end

    body: list[bytes] = []
    events: list[Triple] = []
    blocks: list[bytes] = []
    for lines, expected in draw(_blocks):
        block = b"".join(terminate(line) for line in [*lines, b""])
        body.append(block)
        if expected is not None:
            events.append(expected)
            blocks.append(block)
    tail_block = draw(_tail_block)
    tail = b"".join(terminate(line) for line in tail_block[0]) if tail_block else b""
    if tail and draw(st.booleans()):
        tail = tail.rstrip(b"\r\n")  # the stream may stop in the middle of a line
    bom = BOM if draw(st.booleans()) else b""
    joined = b"".join(body)
    return ModelStream(
        stream=bom + joined + tail, body=joined, tail=tail, events=events, blocks=blocks
    )


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


@settings(max_examples=200, deadline=None)
@given(model=model_streams(), data=st.data())
def test_random_streams_at_any_chunking(model: ModelStream, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(model.stream)), max_size=12), label="cuts")
    chunkings = {
        "whole": [model.stream],
        "random": chunked(model.stream, cuts),
        "bytewise": one_byte_at_a_time(model.stream),
    }
    ((raw, events),) = decode([model.stream]).pieces
    assert [raw[event.start : event.end] for event in events] == model.blocks
    for name, chunks in chunkings.items():
        decoded = decode(chunks)
        assert decoded.events == model.events, name
        assert decoded.raw == model.body, name
        assert decoded.tail == model.tail, name
        assert decoded.raw + decoded.tail == model.stream.removeprefix(BOM), name


SIMPLE_SHAPES: Final = [
    b"event: ping\ndata: {}\n\n",
    b"event:ping\ndata:{}\n\n",
    b"event:  two spaces\ndata:  two spaces\n\n",
    b"event:\ndata:\n\n",
    b"event: a:b\ndata: c:d\n\n",
    b"data: only data\n\n",
    b"data\n\n",
    b"event: x\n\n",
    b"event: x\nevent: y\ndata: z\n\n",
    b"event: x\ndata: a\ndata: b\n\n",
    b"data: a\nevent: x\n\n",
    b"event: x\nid: 7\ndata: a\n\n",
    b": comment\ndata: a\n\n",
    b"event : x\ndata : a\n\n",
    b"event: x\r\ndata: a\r\n\r\n",
    b"event: x\rdata: a\r\r",
    b"event: \xff\xfe\ndata: \x00\n\n",
    b"\n",
    b"\n\n",
]


@pytest.mark.parametrize("block", SIMPLE_SHAPES)
def test_the_simple_block_path_parses_as_the_field_loop(block: bytes) -> None:
    padded = b"data: before\n\n" + block + b"data: after\n\n"
    start = len(b"data: before\n\n")
    end = start + len(block)
    simple = _parse_simple_block(padded, start, end)
    assert simple is None or simple == _parse_fields(padded, start, end)
    assert _parse_block(padded, start, end) == _parse_fields(padded, start, end)


@settings(max_examples=300)
@given(
    st.lists(
        st.sampled_from([b"event", b"data", b"id", b"", b"x"]).flatmap(
            lambda name: st.tuples(
                st.just(name),
                st.sampled_from([b":", b": ", b":  ", b"", b" :"]),
                st.binary(max_size=6).filter(lambda v: b"\n" not in v),
            )
        ),
        max_size=4,
    )
)
def test_the_simple_block_path_agrees_on_generated_blocks(
    fields: list[tuple[bytes, bytes, bytes]],
) -> None:
    block = b"".join(name + sep + value + b"\n" for name, sep, value in fields) + b"\n"
    simple = _parse_simple_block(block, 0, len(block))
    assert simple is None or simple == _parse_fields(block, 0, len(block))
