"""Tests for the request and response heads (``trio_gateway._http1_head``), against h11.

The upstream client used h11 0.16 for both heads before; this module must write the same
request bytes and accept, reject and normalise response heads exactly as h11 does. Each
response input runs through both whole, split at every byte boundary and a byte at a time,
with and without the connection ending after it (STYLE.md §9: parsers are tested at every
split); hypothesis adds heads built from the grammar's pieces and from stray bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_gateway._http1_head import HeadError, encode_request, header_fields, read_head

LIMIT = 96  # a small max_incomplete, so the over-long-head rule is cheap to reach


@dataclass(frozen=True)
class Outcome:
    """What one parser made of the input: ``error``, nothing yet (``status`` 0), or the
    final head, its keep-alive and the bytes after it."""

    error: bool
    status: int = 0
    headers: tuple[tuple[bytes, bytes], ...] = ()
    keep_alive: bool = False
    leftover: bytes = b""


def by_h11(pieces: list[bytes], *, eof: bool) -> Outcome:
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=LIMIT)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    fed = [piece for piece in pieces if piece] + ([b""] if eof else [])
    try:
        for piece in fed:
            conn.receive_data(piece)
            while True:
                event = conn.next_event()
                if isinstance(event, h11.Response):
                    headers = tuple((name, value) for name, value in event.headers)
                    keep_alive = conn.our_state is h11.DONE
                    return Outcome(False, event.status_code, headers, keep_alive, leftover(conn))
                if event is h11.NEED_DATA:
                    break
                assert isinstance(event, h11.InformationalResponse), event
    except h11.RemoteProtocolError:
        return Outcome(True)
    return Outcome(False)


def leftover(conn: h11.Connection) -> bytes:
    data, _ = conn.trailing_data
    return bytes(data)


def by_module(pieces: list[bytes], *, eof: bool) -> Outcome:
    buffer = bytearray()
    fed = [piece for piece in pieces if piece] + ([b""] if eof else [])
    try:
        for piece in fed:
            buffer += piece
            while (head := read_head(buffer, eof=not piece, max_incomplete=LIMIT)) is not None:
                if head.status >= 200:
                    headers = tuple(head.headers)
                    return Outcome(False, head.status, headers, head.keep_alive, bytes(buffer))
    except HeadError:
        return Outcome(True)
    return Outcome(False)


def splits(data: bytes) -> Iterator[list[bytes]]:
    yield [data]
    for i in range(len(data) + 1):
        yield [data[:i], data[i:]]
    yield [data[i : i + 1] for i in range(len(data))]


def check_same(data: bytes) -> Outcome:
    """Every split, with and without EOF; returns the outcome of the whole input."""
    for pieces in splits(data):
        for eof in (False, True):
            expected = by_h11(pieces, eof=eof)
            assert by_module(pieces, eof=eof) == expected, (pieces, eof)
    return by_h11([data], eof=False)


GOOD = [
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\nbody bytes",
    b"HTTP/1.1 200 \r\nContent-Length: 5\r\n\r\nhello",  # empty reason phrase
    b"HTTP/1.1 200\r\n\r\n",  # no reason phrase at all (h11 is lenient)
    b"HTTP/1.1 404 Not \t Found\xff\r\nX:  spaced  value \t\r\n\r\n",  # obs-text, tabs
    b"HTTP/1.1 200 OK\nA: b\n\n",  # bare LF
    b"HTTP/1.1 200 OK\r\nA: b\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\r\n  folded\r\n\tagain\r\n\r\n",  # obsolete line folding
    b"HTTP/1.1 200 OK\r\nX:\r\n\r\n",  # empty value
    b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\ncontent-length: 7\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\nContent-Length: 3\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: closed\r\n\r\n",  # not the close token
    b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",  # HTTP/1.0: no keep-alive
    b"HTTP/2.0 200 OK\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",  # informational ones skipped
    b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 199 X\r\n\r\nHTTP/1.1 500 E\r\n\r\n",
    b"HTTP/1.1 999 Whatever\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",  # the next one stays in the buffer
]

BAD = [
    b"\r\nHTTP/1.1 200 OK\r\n\r\n",  # a blank line first
    b" HTTP/1.1 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n folded first\r\n\r\n",
    b"HTTP/1.1 20 OK\r\n\r\n",
    b"HTTP/1.1 099 X\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",  # nobody asked
    b"HTTP/11 200 OK\r\n\r\n",
    b"http/1.1 200 OK\r\n\r\n",
    b"HTTP/1.1  200 OK\r\n\r\n",
    b"HTTP/1.1 200 O\x00K\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX : y\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 123456789012345678901\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: " + b"y" * LIMIT + b"\r\n",  # incomplete and over the limit
    b"HTTP/1.1 200 OK\r\n",  # ends (with EOF) inside the head
]


@pytest.mark.parametrize("data", GOOD)
def test_good_heads_match_h11(data: bytes) -> None:
    whole = check_same(data)
    assert not whole.error
    assert whole.status >= 200


@pytest.mark.parametrize("data", BAD)
def test_bad_heads_match_h11(data: bytes) -> None:
    check_same(data)
    assert by_module([data], eof=True).error


def test_a_long_head_that_arrives_whole_is_accepted_as_by_h11() -> None:
    data = b"HTTP/1.1 200 OK\r\nX: " + b"y" * (2 * LIMIT) + b"\r\n\r\n"
    assert by_module([data], eof=False).status == 200
    assert not by_module([data[:LIMIT], data[LIMIT:]], eof=False).error  # LIMIT bytes wait
    assert by_module([data[: LIMIT + 1], data[LIMIT + 1 :]], eof=False).error
    check_same(data)


def test_normalised_headers_and_keep_alive() -> None:
    buffer = bytearray(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nX-Up: A\r\nConnection: Close\r\n\r\nabc"
    )
    head = read_head(buffer, eof=False, max_incomplete=LIMIT)
    assert head is not None
    assert head.headers == [(b"content-length", b"3"), (b"x-up", b"A"), (b"connection", b"Close")]
    assert head.keep_alive is False
    assert buffer == b"abc"


def test_header_fields_is_the_shared_section_check() -> None:
    assert header_fields([b"A: b\r", b" c"]) == [(b"a", b"b c")]
    with pytest.raises(HeadError):
        header_fields([b"Transfer-Encoding: gzip"])


_HEAD_PIECES = st.sampled_from([
    b"HTTP/1.1 ", b"HTTP/1.0 ", b"200", b"100", b"101", b"204", b"99", b" OK", b" ", b"\t",
    b"\r\n", b"\n", b"\r", b":", b"X", b"Content-Length", b"Transfer-Encoding", b"chunked",
    b"Connection", b"close", b"5", b",", b"\x00", b"\xff", b"-", b"a b",
])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_HEAD_PIECES, max_size=24), st.binary(max_size=8), st.booleans())
def test_heads_built_from_grammar_pieces_match_h11(
    pieces: list[bytes], noise: bytes, eof: bool
) -> None:
    data = b"".join(pieces) + noise
    for split in ([data], [data[:7], data[7:]], [data[i : i + 1] for i in range(len(data))]):
        assert by_module(split, eof=eof) == by_h11(split, eof=eof), split


# ----------------------------------------------------------------- the request head


def by_h11_request(
    method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[bytes, bool] | None:
    conn = h11.Connection(h11.CLIENT)
    try:
        pieces = [conn.send(h11.Request(method=method, target=target, headers=headers))]
        if body:
            pieces.append(conn.send(h11.Data(data=body)))
        pieces.append(conn.send(h11.EndOfMessage()))
    except (h11.LocalProtocolError, UnicodeEncodeError):
        return None
    return b"".join(piece or b"" for piece in pieces), conn.our_state is h11.DONE


def by_module_request(
    method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[bytes, bool] | None:
    try:
        return encode_request(method, target, headers, body)
    except ValueError:
        return None


HOST = (b"host", b"api.example.com")
BODY = b'{"model": "m"}'
LENGTH = (b"content-length", b"%d" % len(BODY))

REQUESTS = [
    ("POST", "/v1/messages", [HOST, LENGTH, (b"X-Api-Key", b"sk-1"), (b"accept", b"*/*")], BODY),
    ("POST", "/v1/messages?beta=true", [LENGTH, HOST], BODY),  # Host is written first
    ("GET", "/v1/models", [HOST], b""),
    ("POST", "/", [HOST, (b"content-length", b"0")], b""),
    ("POST", "/", [HOST, (b"Content-Length", b"14 , 14")], BODY),
    ("POST", "/", [HOST, LENGTH, LENGTH], BODY),  # a repeat is dropped, as by h11
    ("POST", "/", [HOST, LENGTH, (b"connection", b"Keep-Alive, CLOSE")], BODY),
    ("POST", "/", [HOST, LENGTH, (b"x-empty", b"")], BODY),
    ("POST", "/", [HOST, LENGTH, (b"x", b"obs\xfftext ok")], BODY),
    ("POST", "/a b", [HOST, LENGTH], BODY),  # invalid from here on
    ("POST", "", [HOST, LENGTH], BODY),
    ("PO ST", "/", [HOST, LENGTH], BODY),
    ("POST", "/é", [HOST, LENGTH], BODY),
    ("POST", "/", [LENGTH], BODY),
    ("POST", "/", [HOST, HOST, LENGTH], BODY),
    ("POST", "/", [HOST, LENGTH, (b"x", b"a\r\nInjected: yes")], BODY),
    ("POST", "/", [HOST, LENGTH, (b"x", b" leading")], BODY),
    ("POST", "/", [HOST, LENGTH, (b"x", b"nul\x00")], BODY),
    ("POST", "/", [HOST, LENGTH, (b"bad name", b"x")], BODY),
    ("POST", "/", [HOST, LENGTH, (b"", b"x")], BODY),
    ("POST", "/", [HOST, (b"content-length", b"1, 2")], BODY),
    ("POST", "/", [HOST, LENGTH, (b"transfer-encoding", b"gzip")], BODY),
]


@pytest.mark.parametrize(("method", "target", "headers", "body"), REQUESTS)
def test_request_bytes_match_h11(
    method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    assert by_module_request(method, target, headers, body) == by_h11_request(
        method, target, headers, body
    )


def test_the_valid_requests_above_are_accepted() -> None:
    accepted = [by_module_request(*request) for request in REQUESTS[:9]]
    assert None not in accepted
    assert [keep_alive for _, keep_alive in filter(None, accepted)].count(False) == 1
    assert all(by_module_request(*request) is None for request in REQUESTS[9:])
