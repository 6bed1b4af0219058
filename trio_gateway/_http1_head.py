"""Sans-IO HTTP/1.1 heads for the upstream client: the request head it writes and the
response head it reads.

Why not h11 for the heads too: per upstream request h11 builds and validates a ``Request``
event, runs its state machine for three outgoing events, copies the response through its
receive buffer and builds a ``Response`` event. A micro-benchmark of exactly that (the
gateway's request to the mock, its response head) took 156 µs of CPU against 8 µs for the
same work done here, and a py-spy profile at c=64 put h11's share of the upstream client at
about 6 % of the event loop's samples (bench/README.md, table of changes).

It writes and accepts exactly what h11 0.16 writes and accepts for the requests the pool
sends and the response heads it reads (``tests/test_http1_head.py`` checks both against h11
on the same inputs, heads at every split): the same request line and header checks (method a
token, target visible ASCII, field names tokens, field values without CR, LF or NUL and
without leading or trailing whitespace), Host first, the same status-line grammar (the reason
phrase optional), the same header-section end (the first blank line, bare LF accepted),
obsolete line folding joined, the same Content-Length and Transfer-Encoding rules, the same
limit on an incomplete head, and the same keep-alive rule (``Connection: close`` on either
side, or an HTTP/1.0 response, ends the connection after this exchange).

Invariants:
    * Nothing here awaits; :func:`read_head` takes complete heads off the front of the
      caller's buffer and leaves everything after them there (the start of the body).
    * Every rejection is :class:`HeadError` (a response) or :class:`ValueError` (a request
      the caller built wrong); messages never quote the bytes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["HeadError", "ResponseHead", "encode_request", "header_fields", "read_head"]

# The grammar of h11 0.16 (_abnf.py): RFC 9110/9112 with the leniencies h11 has.
_TOKEN: Final = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_FIELD_VALUE: Final = rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?"
_TOKEN_RE: Final = re.compile(_TOKEN)
_FIELD_VALUE_RE: Final = re.compile(_FIELD_VALUE)
_TARGET_RE: Final = re.compile(rb"[\x21-\x7e]+")
#: A header line, matched whole: name, colon, optional whitespace, value, whitespace.
_HEADER_LINE: Final = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _FIELD_VALUE + rb")[ \t]*")
#: A status line, matched whole; ``http_version`` and ``status_code`` are groups 1 and 2.
_STATUS_LINE: Final = re.compile(rb"HTTP/([0-9]\.[0-9]) ([0-9]{3})(?: (?:[ \t]|[^\x00\s])*)?")
#: The leading whitespace of an obsolete line folding (a continuation line).
_OBS_FOLD: Final = re.compile(rb"[ \t]+")
#: The end of a header section: the first blank line, bare LF accepted.
BLANK_LINE: Final = re.compile(rb"\n\r?\n")
_CONTENT_LENGTH_RE: Final = re.compile(rb"[0-9]+")
_CONTENT_LENGTH_MAX_DIGITS: Final = 20


class HeadError(Exception):
    """A malformed response head (or trailer section, via :func:`header_fields`)."""


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """One response head.

    Attributes:
        status: the status code (100–999).
        headers: ``(name, value)`` pairs in wire order; names lowercased, a Content-Length
            reduced to its one value and a Transfer-Encoding lowercased, as h11 does.
        keep_alive: HTTP/1.1 or later without ``Connection: close``.
    """

    status: int
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool


def encode_request(
    method: str, target: str, headers: Sequence[tuple[bytes, bytes]], body: bytes
) -> tuple[bytes, bool]:
    """The whole request, head and body, as h11 writes it (any ``host`` header first).

    Returns:
        ``(request bytes, keep_alive)``: keep-alive is off if a header says
        ``Connection: close``.

    Raises:
        ValueError: an invalid method, target, header name or value, Content-Length or
            Transfer-Encoding (``UnicodeEncodeError`` for a non-ASCII method or target).
    """
    method_bytes = method.encode("ascii")
    target_bytes = target.encode("ascii")
    if _TOKEN_RE.fullmatch(method_bytes) is None or _TARGET_RE.fullmatch(target_bytes) is None:
        raise ValueError("invalid request method or target")
    for name, value in headers:
        if _TOKEN_RE.fullmatch(name) is None or _FIELD_VALUE_RE.fullmatch(value) is None:
            raise ValueError("invalid request header")
    fields = _normalised(headers, ValueError)
    if sum(name == b"host" for _, name, _ in fields) != 1:
        raise ValueError("a request needs exactly one Host header")
    lines = [b"%s %s HTTP/1.1\r\n" % (method_bytes, target_bytes)]
    lines += [b"%s: %s\r\n" % (raw, value) for raw, name, value in fields if name == b"host"]
    lines += [b"%s: %s\r\n" % (raw, value) for raw, name, value in fields if name != b"host"]
    lines.append(b"\r\n")
    if body:
        lines.append(body)
    return b"".join(lines), not _says_close(fields)


def read_head(buffer: bytearray, *, eof: bool, max_incomplete: int) -> ResponseHead | None:
    """Take the next complete response head off the front of ``buffer``.

    Informational heads (1xx) are returned like final ones; the caller reads on past them.

    Args:
        buffer: bytes received so far; a returned head is deleted from its front.
        eof: the connection has ended (nothing more will be added).
        max_incomplete: the most bytes held without a complete head (h11's
            ``max_incomplete_event_size``).

    Returns:
        The head, or None if more bytes are needed.

    Raises:
        HeadError: the head is malformed, over ``max_incomplete`` while incomplete, a 101
            (no upgrade was asked for), or the connection ended before it was complete.
    """
    if buffer and buffer[0] < 0x21:  # h11: a blank line or whitespace where a status line goes
        raise HeadError("no status line")
    blank = BLANK_LINE.search(buffer)
    if blank is None:
        if eof:
            raise HeadError("the connection ended inside a response head")
        if len(buffer) > max_incomplete:
            raise HeadError("response head too long")
        return None
    end = blank.end()
    lines = bytes(buffer[: blank.start()]).split(b"\n")
    del buffer[:end]
    status_line = lines[0].removesuffix(b"\r")
    status = _STATUS_LINE.fullmatch(status_line)
    if status is None:
        raise HeadError("illegal status line")
    code = int(status[2])
    if code < 100:
        raise HeadError("illegal status code")
    if code == 101:
        raise HeadError("a protocol switch nobody asked for")
    fields = _section(lines[1:])
    keep_alive = status[1] >= b"1.1" and not _says_close(fields)
    return ResponseHead(code, [(name, value) for _, name, value in fields], keep_alive)


def header_fields(lines: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    """Validate and normalise the lines of a header (or trailer) section as h11 does.

    Args:
        lines: the section's lines split on LF (a CR before the LF is dropped here).

    Returns:
        ``(name, value)`` pairs: names lowercased, a Content-Length reduced to its value and a
        Transfer-Encoding lowercased.

    Raises:
        HeadError: a continuation line first, an illegal line, or a Content-Length or
            Transfer-Encoding that h11 refuses.
    """
    return [(name, value) for _, name, value in _section(lines)]


_Field = tuple[bytes, bytes, bytes]  # (name as sent, name lowercased, value)


def _section(lines: Sequence[bytes]) -> list[_Field]:
    """:func:`header_fields`, keeping each name as sent too."""
    joined: list[bytes] = []
    for raw in lines:
        line = raw.removesuffix(b"\r")
        fold = _OBS_FOLD.match(line)
        if fold is None:
            joined.append(line)
        elif not joined:
            raise HeadError("continuation line at the start of a header section")
        else:
            joined[-1] += b" " + line[fold.end() :]
    pairs: list[tuple[bytes, bytes]] = []
    for line in joined:
        field = _HEADER_LINE.fullmatch(line)
        if field is None:
            raise HeadError("illegal header line")
        pairs.append((field[1], field[2]))
    return _normalised(pairs, HeadError)


def _normalised(pairs: Sequence[tuple[bytes, bytes]], error: type[Exception]) -> list[_Field]:
    """h11's ``normalize_and_validate`` on validated pairs: lowercase names; Content-Length
    values (comma-separated) must agree and be 1–20 digits, and only the first is kept; one
    Transfer-Encoding, "chunked" in any case."""
    out: list[_Field] = []
    content_length: bytes | None = None
    chunked = False
    for raw_name, raw_value in pairs:
        name = raw_name.lower()
        value = raw_value
        if name == b"content-length":
            lengths = {length.strip() for length in value.split(b",")}
            if len(lengths) != 1:
                raise error("conflicting Content-Length values")
            value = lengths.pop()
            if (
                _CONTENT_LENGTH_RE.fullmatch(value) is None
                or len(value) > _CONTENT_LENGTH_MAX_DIGITS
                or (content_length is not None and value != content_length)
            ):
                raise error("bad Content-Length")
            if content_length is not None:
                continue  # a repeat of the same length: h11 keeps the first only
            content_length = value
        elif name == b"transfer-encoding":
            value = value.lower()
            if chunked or value != b"chunked":
                raise error("only one Transfer-Encoding, chunked, is supported")
            chunked = True
        out.append((raw_name, name, value))
    return out


def _says_close(fields: Sequence[_Field]) -> bool:
    """A ``Connection`` header lists ``close`` (comma-separated, any case)."""
    return any(
        name == b"connection" and b"close" in (token.strip() for token in value.lower().split(b","))
        for _, name, value in fields
    )
