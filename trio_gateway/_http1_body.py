"""Sans-IO de-framing of an HTTP/1.1 response body, once its head has been parsed
(``_http1_head.read_head``).

Why not h11 for the body too: h11 builds a ``Data`` event, runs its state machine and copies
through its receive buffer for every chunk; the upstream sends one chunk per SSE event, so
that was the largest share of the gateway's own per-event CPU (bench/README.md, "Where the
time goes"). :class:`BodyReader` turns one socket read into the body bytes it completes with
a ``find`` and a regex per chunk header and one slice per chunk.

It accepts and rejects exactly what h11 0.16 accepts and rejects (``tests/test_http1_body.py``
checks both on the same inputs at every split): the same chunk-header grammar (1–20 hex
digits, any ``;``-extension, trailing spaces or tabs), the same CRLF after chunk data, the
same trailer section (validated as h11 validates header lines, then discarded) and the same
limit on bytes held while waiting for the end of a line (``max_incomplete``, h11's
``max_incomplete_event_size``).

Invariants:
    * :meth:`BodyReader.feed` returns every body byte its input completes; what it keeps is
      only an incomplete line (a chunk header, the CRLF after chunk data, the trailer) or,
      once ``done``, the bytes after the body (``leftover``).
    * Nothing awaits here, so a cancelled socket read in the caller loses nothing.
    * Once :class:`FramingError` was raised the reader is broken; the caller stops using it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, Literal, TypeAlias

from trio_gateway._http1_head import BLANK_LINE, HeadError, header_fields

__all__ = ["BodyReader", "Framing", "FramingError", "body_framing"]

Framing: TypeAlias = Literal["length", "chunked", "close", "unsupported"]

# The grammar of h11 0.16 (_abnf.py), which follows RFC 9112 §7.1 but also takes spaces or
# tabs before the CRLF ("some servers in the wild" send them) and any bytes but LF after a ";".
_CHUNK_HEADER: Final = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;.*)?[ \t]*\r\n")
# The size line every chunk of a typical upstream has: no extension, no whitespace.
_PLAIN_CHUNK_HEADER: Final = re.compile(rb"([0-9A-Fa-f]{1,20})\r\n")

# Chunked states.
_SIZE: Final = 0  # expecting a chunk-size line
_DATA: Final = 1  # inside chunk data (``_remaining`` bytes to go)
_CRLF: Final = 2  # expecting the CRLF after chunk data
_TRAILER: Final = 3  # after the last chunk: trailer lines up to a blank line


class FramingError(Exception):
    """The body's framing is malformed, or the connection ended before the body did."""


def body_framing(
    method: str, status: int, headers: Sequence[tuple[bytes, bytes]]
) -> tuple[Framing, int]:
    """How the body of a response (``status``, ``headers`` as ``read_head`` normalised them,
    the answer to ``method``) is delimited; h11's ``_body_framing``.

    Returns:
        ``("length", n)``, ``("chunked", 0)``, ``("close", 0)`` (read to end of file) or
        ``("unsupported", 0)`` (a 2xx to CONNECT switches protocols; h11 pauses there).
    """
    if method == "CONNECT" and 200 <= status < 300:
        return "unsupported", 0
    if status in (204, 304) or method == "HEAD":
        return "length", 0
    length = None
    for name, value in headers:  # lowercased names, validated values (``read_head``)
        if name == b"transfer-encoding":  # exactly one is admitted, and only "chunked"
            return "chunked", 0
        if name == b"content-length" and length is None:
            length = int(value)
    return ("close", 0) if length is None else ("length", length)


class BodyReader:
    """De-frames one body: :meth:`feed` socket bytes in, body bytes out.

    Args:
        framing: from :func:`body_framing` (not ``"unsupported"``).
        length: the Content-Length for ``"length"``.
        max_incomplete: the most bytes held while waiting for the end of a line.

    Attributes:
        done: the whole body has been returned.
        leftover: bytes received after the end of the body (meaningful once ``done``).
    """

    __slots__ = (
        "_framing",
        "_max_incomplete",
        "_remaining",
        "_scanned",
        "_state",
        "done",
        "leftover",
    )

    def __init__(self, framing: Framing, length: int, *, max_incomplete: int) -> None:
        if framing == "unsupported":
            raise ValueError("no body reader for a protocol switch")
        self._framing = framing
        self._max_incomplete = max_incomplete
        self._remaining = length
        self._state = _SIZE
        self._scanned = 0  # how much of ``leftover`` holds no line end (chunked only)
        self.done = framing == "length" and length == 0
        self.leftover = b""

    @property
    def reusable(self) -> bool:
        """The body ended by its own framing with nothing after it (keep-alive is possible)."""
        return self.done and self._framing != "close" and not self.leftover

    def feed(self, data: bytes) -> bytes:
        """Add ``data``; return the body bytes now complete (``b""`` if none).

        Raises:
            FramingError: malformed framing, or too many bytes without a line end.
        """
        if self.leftover:
            data = self.leftover + data
            self.leftover = b""
        if self.done:
            self.leftover = data
            return b""
        if self._framing == "chunked":
            return self._feed_chunked(data)
        if self._framing == "close":
            return data
        remaining = self._remaining
        if len(data) < remaining:
            self._remaining = remaining - len(data)
            return data
        self._remaining = 0
        self.done = True
        self.leftover = data[remaining:]
        return data[:remaining] if self.leftover else data

    def feed_eof(self) -> None:
        """The connection ended: fine for a body read to end of file.

        Raises:
            FramingError: the body is not complete (or a partial line was pending).
        """
        if self._framing == "close" and not self.leftover:
            self.done = True
        elif not self.done:
            raise FramingError("the connection ended before the body was complete")

    def _feed_chunked(self, data: bytes) -> bytes:
        """The chunked loop. ~55 lines: one pass over the buffer with its state in locals
        (attribute reads per chunk were measurable), so it stays whole."""
        out: list[bytes] = []
        pos = 0
        end = len(data)
        state = self._state
        remaining = self._remaining
        if state == _SIZE and not self._scanned:
            # The common case first: whole chunks with a plain size line ("1a8\r\n"), which
            # the general path below would accept the same way; anything else goes there.
            while (header := _PLAIN_CHUNK_HEADER.match(data, pos)) is not None:
                start = header.end()
                stop = start + int(header[1], 16)
                if stop == start or not data.startswith(b"\r\n", stop):
                    break  # the last chunk, or a chunk not complete in ``data``
                out.append(data[start:stop])
                pos = stop + 2
        while True:
            if state == _DATA:
                take = min(remaining, end - pos)
                if take == end:  # the whole input is chunk data (pos is 0)
                    out.append(data)
                elif take:
                    out.append(data[pos : pos + take])
                pos += take
                remaining -= take
                if remaining:
                    break
                state = _CRLF
            if state == _CRLF:
                footer = data[pos : pos + 2]
                if footer != b"\r\n"[: len(footer)]:
                    raise FramingError("malformed chunk footer")
                if len(footer) < 2:
                    break
                pos += 2
                state = _SIZE
            if state == _SIZE:
                line_end = data.find(b"\r\n", pos + self._scanned)
                if line_end < 0:
                    self._scanned = max(0, end - pos - 1)
                    break
                self._scanned = 0
                header = _CHUNK_HEADER.fullmatch(data, pos, line_end + 2)
                if header is None:
                    raise FramingError("illegal chunk header")
                pos = line_end + 2
                remaining = int(header[1], 16)
                state = _DATA if remaining else _TRAILER
                continue
            # _TRAILER
            trailer_end = self._trailer_end(data, pos)
            if trailer_end < 0:
                break
            pos = trailer_end
            self.done = True
            break
        self._state = state
        self._remaining = remaining
        if pos < end:
            self.leftover = data[pos:]
            if not self.done and end - pos > self._max_incomplete:
                raise FramingError("incomplete line too long")
        if len(out) == 1:
            return out[0]
        return b"".join(out)

    def _trailer_end(self, data: bytes, pos: int) -> int:
        """Where the trailer section starting at ``pos`` ends (validated), or -1."""
        if data.startswith(b"\n", pos):
            return pos + 1
        if data.startswith(b"\r\n", pos):
            return pos + 2
        blank = BLANK_LINE.search(data, pos + self._scanned)
        if blank is None:
            self._scanned = max(0, len(data) - pos - 2)
            return -1
        self._scanned = 0
        # Validated as a header section, as h11 does, then discarded (RFC 9110 §6.5.1 lets
        # a recipient drop trailers it does not understand).
        try:
            header_fields(data[pos : blank.start()].split(b"\n"))
        except HeadError as exc:
            raise FramingError("illegal trailer section") from exc
        return blank.end()
