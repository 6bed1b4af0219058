"""Client stream writers: neutral stream events → the client protocol's frames or body.

Theory of operation: a translated answer flows ``upstream SSE → reader → neutral events
(_events) → writer → client``. :func:`make_writer` picks the writer for the client's
protocol; every writer has the :class:`Writer` interface:

- :meth:`Writer.feed` turns one neutral event into the client's SSE frames (``b""`` when
  nothing is due), or only accumulates it for a non-streaming client;
- :meth:`Writer.fail` ends the stream with an in-band error consistent with what was already
  written (also for gateway-side failures: the data-interval timeout, an upstream EOF before
  its terminal event);
- :meth:`Writer.final_body` is the non-streaming response body after a ``Finish``.

The protocol modules (``_write_anthropic``, ``_write_chat``, ``_write_responses``) hold the
wire shapes; ``_write_base`` the grammar checks, accumulation, ids and usage arithmetic.

Invariants:

- Every object a writer emits has passed its protocol's checker (``_check``), so a bug in a
  writer surfaces as :class:`~trio_gateway._translate._events.TranslationError` instead of a
  frame that breaks the client's SDK.
- Clients see their own model name and ids derived from the gateway's request id, never
  the upstream's.
"""

from __future__ import annotations

from typing import assert_never

from trio_gateway._protocol._names import Protocol
from trio_gateway._translate._write_anthropic import AnthropicWriter
from trio_gateway._translate._write_base import Writer
from trio_gateway._translate._write_chat import ChatWriter
from trio_gateway._translate._write_responses import ResponsesWriter

__all__ = ["Writer", "make_writer"]


def make_writer(
    client: Protocol,
    *,
    request_id: str,
    model: str,
    created: int,
    include_usage: bool = True,
    stream: bool = True,
) -> Writer:
    """The writer for one answer to a client of protocol ``client``.

    Args:
        client: the client's protocol.
        request_id: the gateway's request id (``req_<hex>``). Client ids derive from it:
            Anthropic ``msg_<hex>``, Chat ``chatcmpl-<hex>``, Responses ``resp_<hex>`` and
            items ``msg_<hex>_<n>``, ``fc_<hex>_<n>``, ``rs_<hex>_<n>`` (``n`` = the item's
            ``output_index``).
        model: the model name the client asked for.
        created: Unix seconds, for ``created`` / ``created_at``.
        include_usage: Chat only: whether the client asked for
            ``stream_options.include_usage`` (the usage chunk is sent only then).
        stream: False for a non-streaming client: nothing is rendered, and
            :meth:`Writer.final_body` gives the body.

    Returns:
        A fresh writer.
    """
    match client:
        case "anthropic":
            return AnthropicWriter(
                request_id=request_id, model=model, created=created, stream=stream
            )
        case "openai-chat":
            return ChatWriter(
                request_id=request_id,
                model=model,
                created=created,
                stream=stream,
                include_usage=include_usage,
            )
        case "openai-responses":
            return ResponsesWriter(
                request_id=request_id, model=model, created=created, stream=stream
            )
        case _:
            assert_never(client)
