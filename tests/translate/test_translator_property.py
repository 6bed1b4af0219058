"""Property: the whole translation, as the relay runs it, never raises and always produces a
stream the client protocol's checker accepts.

Upstream streams come from the reader property grammar (valid, slightly invalid and pure
noise, ``test_read_property``), encoded as SSE and cut into random chunks; they go through
:class:`Translator` exactly as ``Relay._forward`` feeds it (``forward`` per decoder output,
``end_of_stream`` at EOF, ``error_frame`` when the upstream ended without its terminal event).
The client frames are judged by the checkers of ``_check.py``, independently of the writers'
own runtime checks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import sse_events
from tests.translate.test_read_property import _SIZES, _STREAMS, Frame, _encode
from trio_gateway._errors import UpstreamProtocolError
from trio_gateway._protocol._names import PROTOCOLS, Protocol
from trio_gateway._protocol._sse import SSEDecoder
from trio_gateway._translate._check import (
    AnthropicStreamCheck,
    ChatStreamCheck,
    ResponsesStreamCheck,
    StreamCheck,
)
from trio_gateway._translate._stream import Translator

_SETTINGS: Final = settings(max_examples=150, deadline=None)


def _checker(client: Protocol, include_usage: bool) -> StreamCheck:
    match client:
        case "anthropic":
            return AnthropicStreamCheck()
        case "openai-chat":
            return ChatStreamCheck(include_usage=include_usage)
        case "openai-responses":
            return ResponsesStreamCheck()


def _run(
    upstream: Protocol,
    client: Protocol,
    frames: Sequence[Frame],
    sizes: Sequence[int],
    include_usage: bool,
) -> None:
    translator = Translator(
        upstream,
        client,
        request_id="req_prop",
        model="m",
        created=1,
        include_usage=include_usage,
        stream=True,
        secrets=("sk-secret",),
    )
    body = _encode(frames)
    decoder = SSEDecoder()
    out = b""
    pos = step = 0
    while pos < len(body) and not translator.finished:
        size = sizes[step % len(sizes)]
        chunk, events = decoder.feed(body[pos : pos + size])
        out += translator.forward(chunk, events)
        pos += size
        step += 1
    if not translator.finished:
        out += translator.end_of_stream()
    if not translator.finished:
        # What the relay does when the upstream ends before its terminal event.
        out += translator.error_frame(
            UpstreamProtocolError("upstream ended early"), request_id="req_prop"
        )
    checker = _checker(client, include_usage)
    for name, data in sse_events(out):
        checker.observe(name, data if data == "[DONE]" else json.loads(data))
    assert checker.ended, out[-300:]
    assert b"sk-secret" not in out
    assert translator.usage.input_tokens >= 0


_PAIR: Final = st.sampled_from([(u, c) for u in PROTOCOLS for c in PROTOCOLS if u != c])


@_SETTINGS
@given(st.data(), _PAIR, _SIZES, st.booleans())
def test_any_upstream_stream_becomes_a_valid_client_stream(
    data: st.DataObject,
    pair: tuple[Protocol, Protocol],
    sizes: list[int],
    include_usage: bool,
) -> None:
    upstream, client = pair
    frames = list(data.draw(_STREAMS[upstream]))
    if data.draw(st.booleans()):
        # An in-band upstream error quoting the upstream's key, anywhere in the stream.
        at = data.draw(st.integers(min_value=0, max_value=len(frames)))
        frames.insert(at, _ERRORS[upstream])
    _run(upstream, client, frames, sizes, include_usage)


_LEAK: Final = {"type": "api_error", "message": "bad key sk-secret for upstream"}
_ERRORS: Final[dict[Protocol, Frame]] = {
    "anthropic": ("error", json.dumps({"type": "error", "error": _LEAK})),
    "openai-chat": (None, json.dumps({"error": _LEAK})),
    "openai-responses": ("error", json.dumps({"type": "error", "error": _LEAK})),
}
