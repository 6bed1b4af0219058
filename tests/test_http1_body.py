"""Tests for the body de-framer (``trio_gateway._http1_body``), against h11 itself.

The reader must accept and reject exactly what h11 0.16 does, which the upstream client used
for bodies before. Each input runs through both, whole, split at every byte boundary, and a
byte at a time, with and without the connection ending after it; the outcomes (the body, the
end of the body, the bytes after it, or an error) must be the same (STYLE.md §9: parsers are
tested at every split).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import h11
import pytest

from trio_gateway._http1_body import BodyReader, FramingError, body_framing
from trio_gateway._http1_head import read_head

LIMIT = 64  # a small max_incomplete, so the over-long-line rule is cheap to reach


@dataclass(frozen=True)
class Outcome:
    """What one parser made of the input: ``error``, or the body, its end and what followed."""

    error: bool
    body: bytes = b""
    done: bool = False
    leftover: bytes = b""


def head(*headers: str) -> bytes:
    return ("HTTP/1.1 200 OK\r\n" + "".join(f"{h}\r\n" for h in headers) + "\r\n").encode()


CHUNKED = head("Transfer-Encoding: chunked")


def by_h11(response_head: bytes, pieces: list[bytes], *, eof: bool) -> Outcome:
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=LIMIT)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(response_head)
    assert isinstance(conn.next_event(), h11.Response)
    body = bytearray()
    done = False
    # An empty piece would be end of file to h11: only the final one is.
    fed = [piece for piece in pieces if piece] + ([b""] if eof else [])
    try:
        done = any(True for _ in drain(conn, body))  # before any byte, as receive_some
        for piece in fed:
            conn.receive_data(piece)
            if not done:
                done = any(True for _ in drain(conn, body))
    except h11.RemoteProtocolError:
        return Outcome(True)
    return Outcome(False, bytes(body), done, conn.trailing_data[0] if done else b"")


def drain(conn: h11.Connection, body: bytearray) -> Iterator[h11.EndOfMessage]:
    """Collect data events into ``body`` until h11 needs data; yield its end of message."""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            yield event
            return
        else:
            assert event is h11.NEED_DATA
            return


def by_reader(response_head: bytes, pieces: list[bytes], *, eof: bool) -> Outcome:
    response = read_head(bytearray(response_head), eof=False, max_incomplete=LIMIT)
    assert response is not None
    framing, length = body_framing("GET", response.status, response.headers)
    reader = BodyReader(framing, length, max_incomplete=LIMIT)
    body = bytearray()
    try:
        for piece in pieces:
            body += reader.feed(piece)
        if eof:
            reader.feed_eof()
    except FramingError:
        return Outcome(True)
    return Outcome(False, bytes(body), reader.done, reader.leftover if reader.done else b"")


def splits(data: bytes) -> Iterator[list[bytes]]:
    yield [data]
    for i in range(len(data) + 1):
        yield [data[:i], data[i:]]
    yield [data[i : i + 1] for i in range(len(data))]


def check_same(response_head: bytes, data: bytes) -> set[Outcome]:
    seen = set()
    for pieces in splits(data):
        for eof in (False, True):
            expected = by_h11(response_head, pieces, eof=eof)
            assert by_reader(response_head, pieces, eof=eof) == expected, (pieces, eof)
            seen.add(expected)
    return seen


GOOD_CHUNKED = [
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    b"A\r\n0123456789\r\n0\r\n\r\n",
    b"a\r\n0123456789\r\n0000\r\n\r\n",
    b"00000000000000000005\r\nhello\r\n0\r\n\r\n",  # 20 hex digits: h11's limit
    b"5;name=value\r\nhello\r\n0;x\r\n\r\n",  # chunk extensions are ignored
    b'5;a="b;c" \t\r\nhello\r\n0\r\n\r\n',
    b"5 \t \r\nhello\r\n0\r\n\r\n",  # trailing whitespace (h11 is lenient)
    b"5\r\nhello\r\n0\r\nX-Sum: 1\r\nY: two words\r\n\r\n",  # trailers, discarded
    b"5\r\nhello\r\n0\r\nX: a\r\n  folded\r\n\r\n",  # obsolete line folding
    b"5\r\nhello\r\n0\r\nX: a\n\n",  # bare LF ends a trailer section, as in h11
    b"5\r\nhello\r\n0\r\n\n",
    b"5\r\nhello\r\n0\r\nX:\r\n\r\n",  # empty trailer value
    b"5\r\nhello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n",  # bytes after the body: leftover
    b"5\r\nhello\r\n0\r\n\r\n\r\n",
    b"2\r\n\r\n\r\n0\r\n\r\n",  # chunk data that looks like framing
    b"1\r\n0\r\n0\r\n\r\n",
]

BAD_CHUNKED = [
    b"zz\r\nabc\r\n",
    b"\r\nhello\r\n",  # empty chunk size
    b"000000000000000000005\r\nhello\r\n0\r\n\r\n",  # 21 hex digits
    b"-5\r\nhello\r\n",
    b" 5\r\nhello\r\n",
    b"5 ;x\r\nhello\r\n",  # h11 takes no whitespace before an extension
    b"0x5\r\nhello\r\n",
    b"5\r\nhelloXY0\r\n\r\n",  # no CRLF after the chunk data
    b"5\r\nhello\nX0\r\n\r\n",
    b"5\r\nhello\r0\r\n\r\n",
    b"5;a\nb\r\nhello\r\n0\r\n\r\n",  # LF inside an extension
    b"5\r\nhello\r\n0\r\nnot a header\r\n\r\n",
    b"5\r\nhello\r\n0\r\n folded first\r\n\r\n",
    b"5\r\nhello\r\n0\r\nContent-Length: x\r\n\r\n",  # h11's own header rules apply
    b"5\r\nhello\r\n0\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"5\r\nhello\r\n0\r\nX: a\x00b\r\n\r\n",
    b"5\r\nhello\r\n0\r\nX: a\r\r\n\r\n",
    b"5;" + b"e" * (LIMIT + 10) + b"\r\nhello\r\n0\r\n\r\n",  # over-long line
    b"5\r\nhello\r\n" + b"f" * (LIMIT + 10),
    b"5\r\nhello\r\n0\r\nX: " + b"y" * (LIMIT + 10) + b"\r\n\r\n",
]


@pytest.mark.parametrize("data", GOOD_CHUNKED)
def test_chunked_bodies_match_h11(data: bytes) -> None:
    assert check_same(CHUNKED, data) == {by_reader(CHUNKED, [data], eof=False)}
    whole = by_reader(CHUNKED, [data], eof=False)
    assert whole.done
    assert not whole.error


@pytest.mark.parametrize("data", GOOD_CHUNKED)
def test_truncated_chunked_bodies_match_h11(data: bytes) -> None:
    """Every prefix (the connection ended early, or more is still to come)."""
    for end in range(len(data)):
        prefix = data[:end]
        for pieces in ([prefix], [prefix[i : i + 1] for i in range(end)]):
            for eof in (False, True):
                expected = by_h11(CHUNKED, pieces, eof=eof)
                assert by_reader(CHUNKED, pieces, eof=eof) == expected, (pieces, eof)


@pytest.mark.parametrize("data", BAD_CHUNKED)
def test_malformed_chunked_bodies_match_h11(data: bytes) -> None:
    check_same(CHUNKED, data)
    # A byte at a time: a long line arriving whole is accepted, as by h11 (the limit is on
    # what waits for more bytes, h11's max_incomplete_event_size).
    assert by_reader(CHUNKED, [data[i : i + 1] for i in range(len(data))], eof=True).error


@pytest.mark.parametrize(
    ("response_head", "data"),
    [
        (head("Content-Length: 5"), b"hello"),
        (head("Content-Length: 5"), b"hello, and more"),
        (head("Content-Length: 0"), b""),
        (head("Content-Length: 0"), b"extra"),
        (head("Content-Length: 5, 5"), b"hel"),
        (head(), b"read until the end"),  # no framing header: the body ends at EOF
        (head("Transfer-Encoding: chunked", "Content-Length: 3"), b"3\r\nabc\r\n0\r\n\r\n"),
    ],
    ids=["exact", "extra", "zero", "zero-extra", "short", "close", "te-beats-cl"],
)
def test_other_framings_match_h11(response_head: bytes, data: bytes) -> None:
    check_same(response_head, data)


def test_a_long_line_that_arrives_a_byte_at_a_time_is_cut_at_the_limit() -> None:
    reader = BodyReader("chunked", 0, max_incomplete=LIMIT)
    for _ in range(LIMIT):
        assert reader.feed(b"0") == b""
    with pytest.raises(FramingError, match="too long"):  # LIMIT + 1 bytes wait: as h11
        reader.feed(b"0")


@pytest.mark.parametrize(
    ("method", "status", "headers", "expected"),
    [
        ("GET", 200, [("Content-Length", "7")], ("length", 7)),
        ("GET", 200, [("Transfer-Encoding", "chunked")], ("chunked", 0)),
        ("GET", 200, [], ("close", 0)),
        ("HEAD", 200, [("Content-Length", "7")], ("length", 0)),
        ("GET", 204, [], ("length", 0)),
        ("GET", 304, [("Content-Length", "7")], ("length", 0)),
        ("CONNECT", 200, [], ("unsupported", 0)),
        ("CONNECT", 407, [("Content-Length", "2")], ("length", 2)),
    ],
)
def test_body_framing(
    method: str, status: int, headers: list[tuple[str, str]], expected: tuple[str, int]
) -> None:
    raw = f"HTTP/1.1 {status} X\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
    response = read_head(bytearray(raw.encode()), eof=False, max_incomplete=LIMIT)
    assert response is not None
    assert body_framing(method, response.status, response.headers) == expected


def test_reusable_only_after_a_framed_end_with_nothing_after() -> None:
    reader = BodyReader("chunked", 0, max_incomplete=LIMIT)
    reusable = []
    for data, body in [(b"3\r\nabc\r\n", b"abc"), (b"0\r\n\r\n", b""), (b"x", b"")]:
        assert reader.feed(data) == body
        reusable.append(reader.reusable)
    assert reusable == [False, True, False]
    closing = BodyReader("close", 0, max_incomplete=LIMIT)
    assert closing.feed(b"abc") == b"abc"
    closing.feed_eof()
    assert closing.done
    assert not closing.reusable
    with pytest.raises(ValueError, match="protocol switch"):
        BodyReader("unsupported", 0, max_incomplete=LIMIT)
