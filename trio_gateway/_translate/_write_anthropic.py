"""The Anthropic Messages writer: neutral events → ``/v1/messages`` SSE frames or ``Message``.

Theory of operation (protocols.md §1.7, §5.5, §5.6 output side): ``message_start`` on
``Start``; one Anthropic block per neutral block, strictly one at a time; ``message_delta``
then ``message_stop`` on ``Finish``; ``event: error`` on a failure. Three rules need state:

- text blocks open LAZILY, on their first non-empty text (or refusal) delta, so a neutral
  text block that stays empty emits nothing and block indices stay dense (§1.3: a client
  echoes an empty text block back and the API rejects it);
- a thinking block's signature goes out as ONE ``signature_delta`` just before its
  ``content_block_stop``, as Anthropic sends it: the SDK assigns ``signature_delta`` rather
  than appending it, so several fragments would keep only the last;
- ``message_start.usage`` has every field a native one has, zeros when unknown, and
  ``message_delta.usage`` repeats the input-side counts beside ``output_tokens``, because
  translated upstreams only know them at the end (§5.4, PEER-BUGS 6, 7, 29).

Invariants: every frame has ``event:`` equal to ``data.type`` and passes
:class:`~trio_gateway._translate._check.AnthropicStreamCheck`; nothing follows
``message_stop`` or ``error``.
"""

from __future__ import annotations

from typing import assert_never

from trio_gateway._errors import GatewayError
from trio_gateway._protocol._error_bodies import error_event
from trio_gateway._protocol._usage import Usage
from trio_gateway._translate._check import AnthropicStreamCheck
from trio_gateway._translate._events import Delta, Finish, Start
from trio_gateway._translate._write_base import (
    Block,
    Writer,
    anthropic_usage_body,
    sanitize_tool_id,
    tool_input,
)

__all__ = ["AnthropicWriter"]


class AnthropicWriter(Writer):
    """Writes an answer for an Anthropic Messages client (see the module docs)."""

    __slots__ = ("_next_index",)

    def __init__(self, *, request_id: str, model: str, created: int, stream: bool) -> None:
        super().__init__(
            request_id=request_id,
            model=model,
            created=created,
            stream=stream,
            check=AnthropicStreamCheck(),
        )
        self._next_index = 0

    def _message(self, *, content: list[object], finish: Finish | None) -> dict[str, object]:
        return {
            "id": f"msg_{self._token}",
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": content,
            "stop_reason": None if finish is None else finish.stop_reason,
            "stop_sequence": None if finish is None else finish.stop_sequence,
        }

    def _on_start(self, event: Start) -> bytes:
        message = self._message(content=[], finish=None)
        message["usage"] = anthropic_usage_body(event.usage or Usage())
        return self._emit("message_start", {"type": "message_start", "message": message})

    def _open_block(self, block: Block, content_block: dict[str, object]) -> bytes:
        block.index = self._next_index
        self._next_index += 1
        start: dict[str, object] = {"type": "content_block_start", "index": block.index}
        return self._emit("content_block_start", start | {"content_block": content_block})

    def _block_delta(self, block: Block, delta: dict[str, object]) -> bytes:
        data: dict[str, object] = {"type": "content_block_delta", "index": block.index}
        data["delta"] = delta
        return self._emit("content_block_delta", data)

    def _on_block_start(self, block: Block) -> bytes:
        match block.kind:
            case "text":
                return b""  # opened on its first non-empty delta
            case "thinking":
                return self._open_block(
                    block, {"type": "thinking", "thinking": "", "signature": ""}
                )
            case "redacted_thinking":
                return self._open_block(block, {"type": "redacted_thinking", "data": block.data})
            case "tool_use":
                block.ident = sanitize_tool_id(
                    block.tool_id, f"toolu_{self._token}_{self._next_index}"
                )
                tool: dict[str, object] = {"type": "tool_use", "id": block.ident}
                tool |= {"name": block.tool_name, "input": {}}
                return self._open_block(block, tool)
            case _:
                assert_never(block.kind)

    def _on_delta(self, block: Block, delta: Delta) -> bytes:
        match delta.kind:
            case "text" | "refusal":
                if not delta.text:
                    return b""
                head = b""
                if block.index is None:
                    head = self._open_block(block, {"type": "text", "text": ""})
                return head + self._block_delta(block, {"type": "text_delta", "text": delta.text})
            case "thinking":
                if not delta.text:
                    return b""
                return self._block_delta(block, {"type": "thinking_delta", "thinking": delta.text})
            case "signature":
                return b""  # sent whole at the block's stop (module docs)
            case "tool_args":
                # Passed through even when empty: Anthropic itself opens with "" (§1.7).
                json_delta: dict[str, object] = {"type": "input_json_delta"}
                json_delta["partial_json"] = delta.text
                return self._block_delta(block, json_delta)
            case _:
                assert_never(delta.kind)

    def _on_block_stop(self, block: Block) -> bytes:
        if block.index is None:
            return b""  # an empty text block: never opened, never closed
        head = b""
        if block.kind == "thinking" and (signature := block.signature):
            head = self._block_delta(block, {"type": "signature_delta", "signature": signature})
        stop = {"type": "content_block_stop", "index": block.index}
        return head + self._emit("content_block_stop", stop)

    def _on_finish(self, finish: Finish) -> bytes:
        usage = anthropic_usage_body(finish.usage)
        message_delta: dict[str, object] = {
            "type": "message_delta",
            "delta": {"stop_reason": finish.stop_reason, "stop_sequence": finish.stop_sequence},
            "usage": {
                key: usage[key]
                for key in (
                    "input_tokens",
                    "cache_creation_input_tokens",
                    "cache_read_input_tokens",
                    "output_tokens",
                )
            },
        }
        head = self._emit("message_delta", message_delta)
        return head + self._emit("message_stop", {"type": "message_stop"})

    def _on_fail(self, error: GatewayError) -> bytes:
        # The checker needs only the type of what error_event renders (no re-parsing).
        self._check.observe("error", {"type": "error"})
        return self._rendered(error_event(error, "anthropic", request_id=self._request_id))

    def _body(self, finish: Finish) -> dict[str, object]:
        content: list[object] = [
            part for block in self._blocks if (part := _content(block)) is not None
        ]
        message = self._message(content=content, finish=finish)
        message["usage"] = anthropic_usage_body(finish.usage)
        return message


def _content(block: Block) -> dict[str, object] | None:
    """A block of the non-streaming ``Message`` (protocols.md §1.5); None for a dropped one."""
    if block.index is None:
        return None
    match block.kind:
        case "text":
            return {"type": "text", "text": block.joined("text", "refusal")}
        case "thinking":
            thinking = block.joined("thinking")
            return {"type": "thinking", "thinking": thinking, "signature": block.signature}
        case "redacted_thinking":
            return {"type": "redacted_thinking", "data": block.data}
        case "tool_use":
            arguments = block.joined("tool_args")
            return {
                "type": "tool_use",
                "id": block.ident,
                "name": block.tool_name,
                "input": tool_input(arguments),
            }
        case _:
            assert_never(block.kind)
