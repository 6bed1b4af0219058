"""Server-sent events: an incremental, byte-faithful decoder and an encoder.

Theory of operation
-------------------
The relay forwards upstream bytes to its client *unchanged*, but only in units that end
where the client's parser is between events, and it reads the events on the side. So the
decoder has two jobs that it keeps apart:

1. **Framing** (``_scan``) finds where each *block* ends: a block runs from the end of the
   previous one up to and including the terminator of an empty line, because an empty line
   is what dispatches an event (WHATWG HTML §9.2.6). It looks only at line terminators,
   with ``bytes.find`` over bytes it has not looked at before, and remembers where it
   stopped (the h11 ``_receivebuffer.py`` rule: never rescan).
2. **Field parsing** (``_parse_block``) runs once per *completed* block, so partial blocks
   are never parsed twice.

Invariants:

- The ``raw`` outputs of :meth:`SSEDecoder.feed`, concatenated, followed by what
  :meth:`SSEDecoder.close` returns, equal the input minus one leading BOM.
- ``raw`` always ends between events, so the client sees nothing of an event before it has
  all of it.
- At most ``max_event_bytes`` are held back between calls.
- A large block (over ``_LARGE_BLOCK`` bytes) costs one copy of itself, not several: its
  held-back bytes grow in an ``io.BytesIO``, whose ``getvalue()`` hands over its buffer as
  the ``bytes`` of ``raw`` without copying, and its ``data`` is only joined if read
  (:class:`_LargeSSEEvent`). Pass-through forwards such an event without ever reading its
  data, so a 64 MiB event needs about 64 MiB, not five times that.

Lines end with CRLF, LF or CR, freely mixed (WHATWG §9.2.6, "the stream must then be parsed
by reading everything line by line"). The one place this needs care is a CR that is the last
byte available: it ends the line now, and an LF that arrives first in the next chunk is the
rest of the same CRLF, not a second line.

This module is sans-IO: it imports nothing that does I/O and it never awaits.
"""

from __future__ import annotations

import io  # BytesIO only: an in-memory buffer, no I/O
from dataclasses import dataclass
from typing import Final

from trio_gateway._errors import UpstreamProtocolError

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "SSEDecoder",
    "SSEEvent",
    "encode_comment",
    "encode_event",
]

DEFAULT_MAX_EVENT_BYTES: Final = 80 * 1024 * 1024
"""Largest block held back, in bytes. 80 MiB: well above the largest single event a
provider sends (a whole tool-call argument or an image in one ``data:`` line), and small
enough that a runaway upstream cannot exhaust memory. The limit counts the whole block
(field names, the JSON around the payload, its escapes, line ends), so it leaves a quarter
on top of a 64 MiB payload: 64 MiB of text in one delta is a 67,108,977-byte block. Compare
h11's ``DEFAULT_MAX_INCOMPLETE_EVENT_SIZE``, the same idea for HTTP heads."""

_LARGE_BLOCK: Final = 1 << 20
"""Blocks larger than this (1 MiB) are held in a ``BytesIO`` and parsed without copying
their data (see the theory of operation); smaller ones take the usual path untouched."""

_CR: Final = 0x0D  # U+000D CARRIAGE RETURN, as ``buf[i]`` returns it
_LF: Final = 0x0A  # U+000A LINE FEED
_BOM: Final = b"\xef\xbb\xbf"  # U+FEFF in UTF-8; WHATWG §9.2.6 drops one at the stream start


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event and where its block sits in the ``raw`` bytes of its feed.

    Attributes:
        event: the value of the last ``event`` field in the block, or ``None`` when the
            block had none. Consumers apply the WHATWG default type ``message`` to both
            ``None`` and ``""``.
        data: the ``data`` field values joined with LF, as raw (normally UTF-8) bytes.
        id: the last ``id`` field given in this block whose value has no NUL, else
            ``None``. The WHATWG last-event-id is sticky across events; this is not.
        start: offset of the block's first byte in the ``raw`` bytes of the same feed.
        end: offset just past the empty line that terminated the block.
    """

    event: str | None
    data: bytes
    id: str | None
    start: int
    end: int


class SSEDecoder:
    """Split an upstream byte stream into complete SSE blocks and parse their events.

    Feed it every chunk as it arrives. Each :meth:`feed` returns the bytes of the blocks
    that chunk completed, ready to forward as they are, and the events in them.

    Two deliberate choices (do not "fix"):

    - An empty line ended by a CR that is the last byte of a chunk dispatches at once,
      as browsers do. Waiting for the next byte to see whether it is an LF would hold every
      event of a CR-only upstream back by a whole event interval. If an LF does follow, it
      is returned on its own as the first byte of the next ``raw`` (it is in no event's
      span), so it is never mistaken for an incomplete block at :meth:`close`.
    - ``max_event_bytes`` bounds every block, not only the held-back one, so whether a
      stream is accepted does not depend on how its chunks were cut.

    Resource handling:
        Between calls at most ``max_event_bytes`` are held; during a call, that plus the
        chunk. After the limit is exceeded, the held bytes are released at once.

    Args:
        max_event_bytes: the largest block, in bytes, accepted. Defaults to
            :data:`DEFAULT_MAX_EVENT_BYTES`.
    """

    __slots__ = (
        "_after_cr",
        "_at_line_start",
        "_bom_head",
        "_buf",
        "_failed",
        "_large",
        "_max_event_bytes",
        "_pos",
    )

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max_event_bytes = max_event_bytes
        # Bytes of the incomplete block, held back until its empty line arrives.
        self._buf = bytearray()
        # Scan state over ``_buf``: where to look next, whether that is the start of a line,
        # and whether the byte before it was a CR (so an LF there completes a CRLF).
        self._pos = 0
        self._at_line_start = True
        self._after_cr = False
        # The first bytes of the stream while they may still be a split BOM; None once decided.
        self._bom_head: bytes | None = b""
        self._failed = False
        # The held-back block instead of ``_buf`` once it is larger than ``_LARGE_BLOCK``.
        self._large: io.BytesIO | None = None

    @property
    def pending(self) -> int:
        """The number of bytes held back for an incomplete block."""
        large = self._large.tell() if self._large is not None else 0
        return len(self._buf) + len(self._bom_head or b"") + large

    def feed(self, chunk: bytes) -> tuple[bytes, list[SSEEvent]]:
        """Take the next chunk of the stream.

        Args:
            chunk: the next bytes from the upstream, any size, split anywhere.

        Returns:
            ``(raw, events)``. ``raw`` is the exact input of every block this chunk
            completed (possibly ``chunk`` itself, never a copy when it can be avoided),
            continuing where the previous ``raw`` ended; ``b""`` if nothing completed.
            ``events`` are the events dispatched by those blocks, in order; their
            ``start``/``end`` index into this ``raw``.

        Raises:
            UpstreamProtocolError: a block is larger than ``max_event_bytes``. The
                held-back bytes are dropped and every later call raises again.
        """
        if self._failed:
            raise self._too_large()
        if type(chunk) is not bytes:
            # ``raw`` may be the chunk itself: it must not change under the caller's events.
            chunk = bytes(chunk)
        if self._bom_head is not None:
            chunk = self._strip_bom(chunk)
        if not chunk:
            return b"", []
        if self._large is not None:
            return self._feed_large(self._large, chunk)
        buf: bytes | bytearray
        if self._buf:
            self._buf += chunk
            buf = self._buf
        else:
            buf = chunk
        ends = self._scan(buf)
        done = ends[-1] if ends else 0
        if len(buf) > self._max_event_bytes:  # no block can be larger than ``buf``
            self._check_sizes(ends, len(buf) - done)
        return self._dispatch(self._split_off(buf, done), ends)

    def close(self) -> bytes:
        """Mark the end of the stream.

        Nothing is dispatched for an incomplete last block: WHATWG §9.2.6, "If the file ends
        in the middle of an event, before the final empty line, the incomplete event is not
        dispatched."

        Returns:
            The held-back bytes of the incomplete last block (now forgotten), or ``b""``.
        """
        tail = bytes(self._buf) + (self._bom_head or b"")
        if self._large is not None:
            tail = self._large.getvalue() + tail
            self._large = None
        self._buf = bytearray()
        self._pos = 0
        self._at_line_start = True
        self._after_cr = False
        self._bom_head = None
        return tail

    def _feed_large(self, large: io.BytesIO, chunk: bytes) -> tuple[bytes, list[SSEEvent]]:
        """:meth:`feed` while a large block is held back in ``large``.

        Only ``chunk`` is scanned, from the saved state (so nothing is rescanned), and only
        ``chunk`` is copied: into ``large``, whose ``getvalue()`` then becomes ``raw``
        without a copy of the held bytes.
        """
        held = large.tell()
        # The scan of ``chunk`` alone starts at 0; an LF completing a CRLF whose CR ended
        # the previous chunk is inside the held block (it cannot end it: a block-ending CR
        # leaves nothing held), so it is skipped here rather than taken as a block end.
        self._pos = 0
        if self._after_cr and chunk[0] == _LF:
            self._after_cr = False
            self._pos = 1
        ends = [held + end for end in self._scan(chunk)]
        total = held + len(chunk)
        done = ends[-1] if ends else 0
        if total > self._max_event_bytes:
            self._check_sizes(ends, total - done)
        if not ends:
            large.write(chunk)
            return b"", []
        with memoryview(chunk) as view:
            large.write(view[: done - held])
            self._buf = bytearray(view[done - held :])
        self._pos = len(self._buf)
        self._large = None
        # Not a copy: CPython's BytesIO.getvalue() returns its own buffer, shrunk in place,
        # when nothing else uses it; ``large`` is never written again.
        return self._dispatch(large.getvalue(), ends)

    def _dispatch(self, raw: bytes, ends: list[int]) -> tuple[bytes, list[SSEEvent]]:
        """``feed``'s result for the completed blocks of ``raw`` (ending at ``ends``), once
        the rest is held back; a held-back rest over ``_LARGE_BLOCK`` becomes a large block."""
        if len(self._buf) > _LARGE_BLOCK:
            self._hold_large()
        events: list[SSEEvent] = []
        start = 0
        for end in ends:
            event = _parse_block(raw, start, end)
            if event is not None:
                events.append(event)
            start = end
        return raw, events

    def _hold_large(self) -> None:
        """Move the held-back block from ``_buf`` into a ``BytesIO`` (a large block)."""
        self._large = io.BytesIO()
        self._large.write(self._buf)
        self._buf = bytearray()

    def _strip_bom(self, chunk: bytes) -> bytes:
        """Drop one leading UTF-8 BOM (WHATWG §9.2.6), even when it arrives split."""
        head = (self._bom_head or b"") + chunk
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._bom_head = head
            return b""
        self._bom_head = None
        return head[len(_BOM) :] if head.startswith(_BOM) else head

    def _scan(self, buf: bytes | bytearray) -> list[int]:
        """Find the ends of the blocks completed in ``buf``, starting from the saved state.

        ``buf`` starts at the start of the current block. The loop visits each line
        terminator at most once, and lets ``bytes.find`` skip whole runs of LF-only lines:
        in LF-only text an empty line is exactly ``b"\\n\\n"`` (or an LF at a line start).
        The position of the next CR is cached, so text without any CR is searched once.
        It stays one function because it is the per-chunk hot loop: helper calls per line
        would cost more than the scan itself.

        Returns:
            The offsets just past each completed block, in ``buf`` coordinates.
        """
        ends: list[int] = []
        n = len(buf)
        pos = self._pos
        at_line_start = self._at_line_start
        after_cr = self._after_cr
        cr = -1
        while pos < n:
            if after_cr:
                after_cr = False
                if buf[pos] == _LF:
                    # WHATWG: CRLF is one terminator. When that CR ended a block, the block
                    # has gone out already; the LF goes out now on its own, so it is never
                    # mistaken for the start of an incomplete block.
                    pos += 1
                    if pos == 1:
                        # Only a CR that ended a block leaves nothing held back (pos 0).
                        ends.append(pos)
                    continue
            if at_line_start and (buf[pos] == _LF or buf[pos] == _CR):
                # An empty line: "If the line is empty (a blank line), dispatch the event."
                end = pos + 1
                if buf[pos] == _CR:
                    if end == n:
                        after_cr = True  # dispatch now; a following LF is handled above
                    elif buf[end] == _LF:
                        end += 1
                ends.append(end)
                pos = end
                continue
            if cr < pos:
                cr = buf.find(b"\r", pos)
                if cr < 0:
                    cr = n
            blank = buf.find(b"\n\n", pos, cr)
            if blank >= 0:
                pos = blank + 2
                ends.append(pos)
                at_line_start = True
                continue
            if cr == n:
                at_line_start = buf[n - 1] == _LF
                pos = n
                break
            # No empty line before the CR at ``cr``; that CR ends a line. The line is empty
            # only if it started right at ``cr``; then the branch above dispatches it.
            if cr > pos:
                at_line_start = buf[cr - 1] == _LF
            pos = cr
            if not at_line_start:
                pos = cr + 1
                at_line_start = True
                if pos == n:
                    after_cr = True
                elif buf[pos] == _LF:
                    pos += 1
        self._pos = pos
        self._at_line_start = at_line_start
        self._after_cr = after_cr
        return ends

    def _check_sizes(self, ends: list[int], pending: int) -> None:
        """Enforce ``max_event_bytes`` on every completed block and on the held-back one."""
        largest = pending
        start = 0
        for end in ends:
            largest = max(largest, end - start)
            start = end
        if largest > self._max_event_bytes:
            self._failed = True
            self.close()
            raise self._too_large()

    def _split_off(self, buf: bytes | bytearray, done: int) -> bytes:
        """Return ``buf[:done]`` as bytes and keep ``buf[done:]`` as the held-back block."""
        self._pos -= done
        if isinstance(buf, bytes):
            if done == len(buf):
                return buf  # the common case: the chunk ends at a block boundary; no copy
            # Only the incomplete tail is copied (once); it will grow in place.
            self._buf = bytearray(memoryview(buf)[done:])
            return buf[:done]
        if not done:
            return b""
        with memoryview(buf) as view:
            raw = view[:done].tobytes()
            self._buf = bytearray(view[done:])
        return raw

    def _too_large(self) -> UpstreamProtocolError:
        return UpstreamProtocolError(
            f"upstream SSE event exceeds max_event_bytes ({self._max_event_bytes})"
        )


def _parse_block(raw: bytes, start: int, end: int) -> SSEEvent | None:
    """Parse the fields of one completed block (WHATWG §9.2.6, "process the field").

    Args:
        raw: the bytes holding the block.
        start: offset of the block's first byte.
        end: offset just past its terminating empty line.

    Returns:
        The event the block dispatches, or ``None`` when its data buffer stays empty.
    """
    if end - start > _LARGE_BLOCK:
        return _parse_large_block(raw, start, end)
    simple = _parse_simple_block(raw, start, end)
    if simple is not None:
        return simple
    return _parse_fields(raw, start, end)


def _parse_fields(raw: bytes, start: int, end: int) -> SSEEvent | None:
    """:func:`_parse_block` for any block, field by field (below ``_LARGE_BLOCK``)."""
    block = raw[start:end]
    if b"\r" in block:
        # CRLF first, then lone CRs: exactly the WHATWG line ends, at C speed. The bytes
        # replaced are terminators, never field content, so no value changes.
        block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    event: str | None = None
    event_id: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        # "Collect the characters on the line before the first U+003A COLON character (:)",
        # or the whole line, with the empty string as the value, when it has no colon.
        name, _, value = line.partition(b":")
        if not name:
            # An empty line (the block's terminator, or the LF of a CRLF split across
            # chunks), or "If the line starts with a U+003A COLON character (:)": ignore it.
            continue
        if value[:1] == b" ":
            value = value[1:]  # "If value starts with a U+0020 SPACE character, remove it"
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\x00" not in value:
            # "If the field value does not contain U+0000 NULL, then set the last event ID
            # buffer"; otherwise the field is ignored.
            event_id = value.decode("utf-8", "replace")
        # ``retry`` only sets the client's reconnection time, and "Otherwise: the field is
        # ignored"; neither affects what this decoder reports.
    if not data:
        # "If the data buffer is an empty string, set the data buffer and the event type
        # buffer to the empty string and return."
        return None
    return SSEEvent(event=event, data=b"\n".join(data), id=event_id, start=start, end=end)


def _parse_simple_block(raw: bytes, start: int, end: int) -> SSEEvent | None:
    """:func:`_parse_block` for the block nearly every upstream sends, else ``None``.

    That block is an optional ``event`` line, then one ``data`` line, with LF line ends
    and nothing else. It gives the same event as the field loop of :func:`_parse_block`,
    with a few ``bytes`` searches instead of a split, a partition per line and a join.
    """
    if raw.find(b"\r", start, end) >= 0:
        return None
    name: str | None = None
    line = start
    if raw.startswith(b"event:", line):
        line_end = raw.find(b"\n", line)
        value = line + 7 if raw.startswith(b" ", line + 6) else line + 6
        name = raw[value:line_end].decode("utf-8", "replace")
        line = line_end + 1
    if not raw.startswith(b"data:", line) or raw.find(b"\n", line) != end - 2:
        return None  # another field, more lines, or a comment: the general rules
    value = line + 6 if raw.startswith(b" ", line + 5) else line + 5
    # Positional: keyword arguments are a measurable share of this per-event path.
    return SSEEvent(name, raw[value : end - 2], None, start, end)


class _LargeSSEEvent(SSEEvent):
    """The event of a block larger than ``_LARGE_BLOCK``: ``data`` is joined from the
    block's bytes each time it is read, instead of being a second copy held from the
    start. Pass-through never reads it for the events it only forwards."""

    __slots__ = ("_raw", "_spans")
    _raw: bytes
    _spans: list[tuple[int, int]]

    def __init__(
        self,
        raw: bytes,
        spans: list[tuple[int, int]],
        *,
        event: str | None,
        event_id: str | None,
        start: int,
        end: int,
    ) -> None:
        # The dataclass is frozen: set the fields the way its own __init__ does.
        object.__setattr__(self, "event", event)
        object.__setattr__(self, "id", event_id)
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_spans", spans)

    @property
    def data(self) -> bytes:
        raw = self._raw
        return b"\n".join([raw[first:last] for first, last in self._spans])


def _parse_large_block(raw: bytes, start: int, end: int) -> SSEEvent | None:
    """:func:`_parse_block` for a large block, without copying its ``data`` values.

    The same WHATWG rules, applied line by line with ``bytes.find`` over offsets: only
    field names and the values of ``event`` and ``id`` are copied; ``data`` values are
    kept as spans of ``raw``. Each ``find`` resumes where the last one stopped, so the
    block is scanned once.
    """
    event: str | None = None
    event_id: str | None = None
    spans: list[tuple[int, int]] = []
    next_lf = raw.find(b"\n", start, end)
    next_cr = raw.find(b"\r", start, end)
    pos = start
    while pos < end:
        if 0 <= next_lf < pos:
            next_lf = raw.find(b"\n", pos, end)
        if 0 <= next_cr < pos:
            next_cr = raw.find(b"\r", pos, end)
        # The next line terminator: CR or LF, whichever comes first.
        line_end = next_lf if next_cr < 0 or 0 <= next_lf < next_cr else next_cr
        if line_end < 0:
            line_end = end  # a last line without one: never from the decoder, but parse it
        after = line_end + 1
        if raw[line_end] == _CR and after < end and raw[after] == _LF:
            after += 1  # CRLF is one terminator
        # The field name is at most 5 bytes when it is one this parser keeps; look for
        # the colon only that far, so a huge line without one is not scanned for it.
        colon = raw.find(b":", pos, min(line_end, pos + 6))
        name = raw[pos:colon] if colon >= 0 else raw[pos : min(line_end, pos + 6)]
        value_start = colon + 1 if colon >= 0 else line_end
        if value_start < line_end and raw[value_start] == 0x20:  # one leading SPACE
            value_start += 1
        if name == b"data":
            spans.append((value_start, line_end))
        elif name == b"event":
            event = raw[value_start:line_end].decode("utf-8", "replace")
        elif name == b"id":
            value = raw[value_start:line_end]
            if b"\x00" not in value:
                event_id = value.decode("utf-8", "replace")
        pos = after
    if not spans:
        return None
    return _LargeSSEEvent(raw, spans, event=event, event_id=event_id, start=start, end=end)


def encode_event(data: bytes | str, *, event: str | None = None) -> bytes:
    """Render one event: an optional ``event:`` line, one ``data:`` line per data line.

    Line ends inside ``data`` (CRLF, CR or LF) become separate ``data:`` lines, so a
    decoder gives back ``data`` with every line end as LF. Never writes ``id``, ``retry``
    or a BOM (protocols.md §4.5).

    Args:
        data: the payload; ``str`` is encoded as UTF-8.
        event: the event type, or ``None`` for none.

    Returns:
        The event, ending with its empty line, using LF line ends.

    Raises:
        ValueError: ``event`` contains CR or LF, which would split the field.
    """
    if isinstance(data, str):
        data = data.encode()
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    body = b"data: " + data.replace(b"\n", b"\ndata: ") + b"\n\n"
    if event is None:
        return body
    return b"event: " + _single_line(event, what="event") + b"\n" + body


def encode_comment(text: str = "") -> bytes:
    """Render a comment block, e.g. a keepalive: ``b": text\\n\\n"``, or ``b":\\n\\n"``.

    It dispatches nothing and is only safe at an event boundary (protocols.md §4.5).

    Args:
        text: the comment; empty for a bare ``:``.

    Returns:
        The comment line followed by an empty line.

    Raises:
        ValueError: ``text`` contains CR or LF.
    """
    if not text:
        return b":\n\n"
    return b": " + _single_line(text, what="comment") + b"\n\n"


def _single_line(text: str, *, what: str) -> bytes:
    encoded = text.encode()
    if b"\r" in encoded or b"\n" in encoded:
        raise ValueError(f"SSE {what} must not contain CR or LF: {text!r}")
    return encoded
