"""The OpenAI Chat Completions writer: neutral events → ``chat.completion.chunk`` frames or a
``chat.completion`` body.

Theory of operation (protocols.md §2.4, §5.8): data-only frames, one choice (index 0). The
first chunk carries ``role`` (and only it does); text goes to ``delta.content``, refusal text
to ``delta.refusal``; a tool-use block becomes one tool call whose index ``k`` counts tool
blocks from 0: its first delta carries ``id``, ``type`` and ``function.name`` (once), later
ones only non-empty ``function.arguments`` fragments, because the SDK concatenates every
string it sees twice. Thinking has no Chat field and is dropped (§5.7 policy). ``Finish``
gives a ``delta: {}`` chunk with the ``finish_reason`` (§5.3), then the usage chunk
(``choices: []``) if the client asked for ``stream_options.include_usage``, then
``data: [DONE]``. While usage is asked for, every other chunk has ``"usage": null`` as the
native API sends it.

Invariants: no ``event:`` line ever; every chunk passes
:class:`~trio_gateway._translate._check.ChatStreamCheck`; nothing follows ``[DONE]`` or the
error object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from trio_gateway._errors import GatewayError
from trio_gateway._protocol._error_bodies import error_event
from trio_gateway._protocol._usage import Usage
from trio_gateway._translate._check import ChatStreamCheck
from trio_gateway._translate._events import Delta, Finish, Start, StopReason
from trio_gateway._translate._write_base import Block, Writer, openai_prompt_tokens

__all__ = ["FINISH_REASONS", "ChatWriter", "chat_usage_body"]

FINISH_REASONS: Final[Mapping[StopReason, str]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",  # protocols.md §5.3: policy, lossy
    "model_context_window_exceeded": "length",
}
"""Anthropic stop reason → Chat ``finish_reason`` (protocols.md §5.3)."""

_DONE: Final = b"data: [DONE]\n\n"


def chat_usage_body(usage: Usage) -> dict[str, object]:
    """The Chat ``usage`` object (protocols.md §2.5, §5.4): prompt tokens include the cached
    ones, completion tokens include reasoning."""
    prompt = openai_prompt_tokens(usage)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


class ChatWriter(Writer):
    """Writes an answer for an OpenAI Chat Completions client (see the module docs).

    Args:
        include_usage: whether the client asked for ``stream_options.include_usage``.
    """

    __slots__ = ("_include_usage", "_tools")

    def __init__(
        self, *, request_id: str, model: str, created: int, stream: bool, include_usage: bool
    ) -> None:
        super().__init__(
            request_id=request_id,
            model=model,
            created=created,
            stream=stream,
            check=ChatStreamCheck(include_usage=include_usage),
        )
        self._include_usage = include_usage
        self._tools = 0

    def _chunk(self, choices: list[object], *, usage: object = None) -> bytes:
        chunk: dict[str, object] = {
            "id": f"chatcmpl-{self._token}",
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }
        if self._include_usage:
            chunk["usage"] = usage
        return self._emit(None, chunk)

    def _delta(self, delta: dict[str, object], *, finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._chunk([choice])

    def _on_start(self, event: Start) -> bytes:
        # protocols.md §2.4: the only chunk with a role; content "" as the native API sends.
        return self._delta({"role": "assistant", "content": "", "refusal": None})

    def _on_block_start(self, block: Block) -> bytes:
        if block.kind != "tool_use":
            return b""
        block.index = self._tools
        self._tools += 1
        block.ident = block.tool_id or f"call_{self._token}_{block.index}"
        function = {"name": block.tool_name, "arguments": ""}
        call = {"index": block.index, "id": block.ident, "type": "function", "function": function}
        return self._delta({"tool_calls": [call]})

    def _on_delta(self, block: Block, delta: Delta) -> bytes:
        if not delta.text:
            return b""
        match delta.kind:
            case "text":
                return self._delta({"content": delta.text})
            case "refusal":
                return self._delta({"refusal": delta.text})
            case "tool_args":
                call = {"index": block.index, "function": {"arguments": delta.text}}
                return self._delta({"tool_calls": [call]})
            case _:
                return b""  # thinking and signatures: no Chat field (§5.7)

    def _on_block_stop(self, block: Block) -> bytes:
        return b""

    def _on_finish(self, finish: Finish) -> bytes:
        out = self._delta({}, finish_reason=FINISH_REASONS[finish.stop_reason])
        if self._include_usage:
            out += self._chunk([], usage=chat_usage_body(finish.usage))
        self._check.observe(None, "[DONE]")
        return out + self._rendered(_DONE)

    def _on_fail(self, error: GatewayError) -> bytes:
        # The checker needs only a truthy "error" (no re-parsing of error_event's output).
        self._check.observe(None, {"error": {"message": error.message}})
        return self._rendered(error_event(error, "openai-chat", request_id=self._request_id))

    def _body(self, finish: Finish) -> dict[str, object]:
        text = "".join(b.joined("text") for b in self._blocks if b.kind == "text")
        refusal = "".join(b.joined("refusal") for b in self._blocks if b.kind == "text")
        calls: list[object] = [
            {
                "id": b.ident,
                "type": "function",
                "function": {"name": b.tool_name, "arguments": b.joined("tool_args")},
            }
            for b in self._blocks
            if b.kind == "tool_use"
        ]
        message = {
            "role": "assistant",
            # protocols.md §2.3: null content when the answer is only tool calls or a refusal.
            "content": text if text or not (calls or refusal) else None,
            "refusal": refusal or None,
            "annotations": [],
            "tool_calls": calls or None,
        }
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": FINISH_REASONS[finish.stop_reason],
        }
        return {
            "id": f"chatcmpl-{self._token}",
            "object": "chat.completion",
            "created": self._created,
            "model": self._model,
            "choices": [choice],
            "usage": chat_usage_body(finish.usage),
        }
