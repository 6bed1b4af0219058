"""The OpenAI Responses writer: neutral events → ``response.*`` SSE events or a ``response``.

Theory of operation (protocols.md §3.6, §5.9): every event is ``event: <type>`` with
``data.type`` and a ``sequence_number`` counting from 0; one ``resp_`` id throughout. ``Start``
gives ``response.created`` + ``response.in_progress``. Each neutral block becomes one output
item (``output_index`` dense in item order, item ids ``<prefix>_<token>_<output_index>``):

- text → a ``message`` item, opened LAZILY on the first non-empty delta (an empty neutral
  text block emits nothing); its parts follow the deltas: ``output_text`` for text,
  ``refusal`` for refusal text, a new part whenever the kind changes;
- tool_use → a ``function_call`` item whose ``call_id`` is the neutral tool id;
- thinking → a ``reasoning`` item; its summary part opens on the first non-empty thinking
  delta, and ``output_item.done`` carries the Anthropic signature packed into
  ``encrypted_content`` (§5.7), so the next request can restore the thinking block;
- redacted_thinking → a ``reasoning`` item with an empty summary and the packed ``data``.

``Finish`` gives ``response.completed``, or ``response.incomplete`` for the stop reasons
§5.3 maps there, carrying the full output and usage; that object is also the non-streaming
body. A failure gives ``error`` + ``response.failed`` (``error_event``), after a
``response.created`` if none went out yet, so the SDK sees a well-formed stream.

Invariants: every event passes
:class:`~trio_gateway._translate._check.ResponsesStreamCheck`; the request echo fields the
writer cannot know (temperature, tools, ...) are null or the API's defaults, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, assert_never

from trio_gateway._errors import GatewayError
from trio_gateway._protocol._error_bodies import error_event
from trio_gateway._protocol._usage import Usage
from trio_gateway._translate._check import ResponsesStreamCheck
from trio_gateway._translate._events import Delta, DeltaKind, Finish, Start, StopReason
from trio_gateway._translate._signature import pack_anthropic_thinking
from trio_gateway._translate._write_base import Block, Writer, openai_prompt_tokens

__all__ = ["INCOMPLETE_REASONS", "ResponsesWriter", "responses_usage_body"]

INCOMPLETE_REASONS: Final[Mapping[StopReason, str]] = {
    "max_tokens": "max_output_tokens",
    "model_context_window_exceeded": "max_output_tokens",
    "refusal": "content_filter",  # protocols.md §5.3: policy
}
"""Stop reasons that make a response ``incomplete``, with their ``incomplete_details.reason``
(protocols.md §5.3); every other stop reason is ``completed``."""

_ITEM_PREFIX: Final[Mapping[str, str]] = {
    "text": "msg",
    "tool_use": "fc",
    "thinking": "rs",
    "redacted_thinking": "rs",
}


def responses_usage_body(usage: Usage) -> dict[str, object]:
    """The Responses ``usage`` object (protocols.md §3.5, §5.4): input tokens include the
    cached ones, output tokens include reasoning."""
    prompt = openai_prompt_tokens(usage)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": prompt + usage.output_tokens,
    }


def _part(kind: DeltaKind, text: str) -> dict[str, object]:
    if kind == "refusal":
        return {"type": "refusal", "refusal": text}
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


class ResponsesWriter(Writer):
    """Writes an answer for an OpenAI Responses client (see the module docs)."""

    __slots__ = ("_final", "_items", "_part_kind", "_part_text", "_parts", "_seq", "_summary")

    def __init__(self, *, request_id: str, model: str, created: int, stream: bool) -> None:
        super().__init__(
            request_id=request_id,
            model=model,
            created=created,
            stream=stream,
            check=ResponsesStreamCheck(),
        )
        self._seq = 0
        self._items: list[dict[str, object]] = []  # output items, as done
        self._final: dict[str, object] | None = None
        # The open message item's parts: finished ones, and the kind and text of the last.
        self._parts: list[dict[str, object]] = []
        self._part_kind: DeltaKind | None = None
        self._part_text: list[str] = []
        # The open reasoning item's summary text, None while its part is not open.
        self._summary: list[str] | None = None

    @property
    def _response_id(self) -> str:
        return f"resp_{self._token}"

    def _event(self, kind: str, fields: dict[str, object]) -> bytes:
        data: dict[str, object] = {"type": kind, "sequence_number": self._seq}
        self._seq += 1
        return self._emit(kind, data | fields)

    def _item_event(self, kind: str, block: Block, fields: dict[str, object]) -> bytes:
        return self._event(kind, {"item_id": block.ident, "output_index": block.index} | fields)

    def _response(
        self,
        *,
        status: str,
        output: list[object],
        usage: dict[str, object] | None = None,
        incomplete: str | None = None,
    ) -> dict[str, object]:
        # The fields the SDK's ``Response`` model requires, as ``_mock/_render_responses.py``
        # has them; what echoes the request (temperature, text format, ...) is unknown here,
        # so null (all optional in the SDK), except the required tool fields.
        return {
            "id": self._response_id,
            "object": "response",
            "created_at": self._created,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": None if incomplete is None else {"reason": incomplete},
            "instructions": None,
            "max_output_tokens": None,
            "model": self._model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": None,
            "service_tier": None,
            "store": False,
            "temperature": None,
            "text": None,
            "tool_choice": "auto",
            "tools": [],
            "top_p": None,
            "truncation": None,
            "usage": usage,
            "user": None,
            "metadata": None,
        }

    def _on_start(self, event: Start) -> bytes:
        created = self._event("response.created", {"response": self._starting()})
        return created + self._event("response.in_progress", {"response": self._starting()})

    def _starting(self) -> dict[str, object]:
        return self._response(status="in_progress", output=[])

    def _add_item(self, block: Block, item: dict[str, object]) -> bytes:
        block.index = len(self._items)  # items are done one at a time, in order
        block.ident = f"{_ITEM_PREFIX[block.kind]}_{self._token}_{block.index}"
        fields: dict[str, object] = {"output_index": block.index}
        fields["item"] = {"id": block.ident} | item
        return self._event("response.output_item.added", fields)

    def _done_item(self, block: Block, item: dict[str, object]) -> bytes:
        done = {"id": block.ident} | item
        self._items.append(done)
        fields: dict[str, object] = {"output_index": block.index, "item": done}
        return self._event("response.output_item.done", fields)

    def _call_id(self, block: Block) -> str:
        return block.tool_id or f"call_{self._token}_{block.index}"

    def _on_block_start(self, block: Block) -> bytes:
        match block.kind:
            case "text":
                return b""  # opened on its first non-empty delta
            case "tool_use":
                block.index = len(self._items)  # the fallback call_id needs it now
                return self._add_item(block, self._function_call(block, "in_progress", ""))
            case "thinking" | "redacted_thinking":
                self._summary = None
                return self._add_item(block, {"type": "reasoning", "summary": []})
            case _:
                assert_never(block.kind)

    def _function_call(self, block: Block, status: str, arguments: str) -> dict[str, object]:
        return {
            "type": "function_call",
            "status": status,
            "call_id": self._call_id(block),
            "name": block.tool_name,
            "arguments": arguments,
        }

    def _on_delta(self, block: Block, delta: Delta) -> bytes:
        if not delta.text:
            return b""
        match delta.kind:
            case "text" | "refusal":
                return self._message_delta(block, delta.kind, delta.text)
            case "thinking":
                return self._summary_delta(block, delta.text)
            case "tool_args":
                fields: dict[str, object] = {"delta": delta.text}
                return self._item_event("response.function_call_arguments.delta", block, fields)
            case "signature":
                return b""  # packed into encrypted_content when the item is done
            case _:
                assert_never(delta.kind)

    def _summary_delta(self, block: Block, text: str) -> bytes:
        head = b""
        if self._summary is None:
            self._summary = []
            fields: dict[str, object] = {"summary_index": 0}
            fields["part"] = {"type": "summary_text", "text": ""}
            head = self._item_event("response.reasoning_summary_part.added", block, fields)
        self._summary.append(text)
        fields = {"summary_index": 0, "delta": text}
        return head + self._item_event("response.reasoning_summary_text.delta", block, fields)

    def _message_delta(self, block: Block, kind: DeltaKind, text: str) -> bytes:
        out = b""
        if block.index is None:
            self._parts, self._part_kind, self._part_text = [], None, []
            item: dict[str, object] = {"type": "message", "status": "in_progress"}
            out += self._add_item(block, item | {"role": "assistant", "content": []})
        if kind != self._part_kind:
            out += self._close_part(block)
            self._part_kind = kind
            fields: dict[str, object] = {"content_index": len(self._parts)}
            fields["part"] = _part(kind, "")
            out += self._item_event("response.content_part.added", block, fields)
        self._part_text.append(text)
        fields = {"content_index": len(self._parts), "delta": text}
        if kind == "refusal":
            return out + self._item_event("response.refusal.delta", block, fields)
        fields["logprobs"] = []
        return out + self._item_event("response.output_text.delta", block, fields)

    def _close_part(self, block: Block) -> bytes:
        kind = self._part_kind
        if kind is None:
            return b""
        text = "".join(self._part_text)
        index = len(self._parts)
        part = _part(kind, text)
        self._parts.append(part)
        self._part_kind, self._part_text = None, []
        fields: dict[str, object] = {"content_index": index}
        if kind == "refusal":
            out = self._item_event("response.refusal.done", block, fields | {"refusal": text})
        else:
            done = fields | {"text": text, "logprobs": []}
            out = self._item_event("response.output_text.done", block, done)
        return out + self._item_event("response.content_part.done", block, fields | {"part": part})

    def _on_block_stop(self, block: Block) -> bytes:
        if block.index is None:
            return b""  # an empty text block
        match block.kind:
            case "text":
                out = self._close_part(block)
                item: dict[str, object] = {"type": "message", "status": "completed"}
                return out + self._done_item(
                    block, item | {"role": "assistant", "content": self._parts}
                )
            case "tool_use":
                arguments = block.joined("tool_args")
                fields: dict[str, object] = {"name": block.tool_name, "arguments": arguments}
                out = self._item_event("response.function_call_arguments.done", block, fields)
                return out + self._done_item(
                    block, self._function_call(block, "completed", arguments)
                )
            case "thinking":
                return self._close_reasoning(block)
            case "redacted_thinking":
                encrypted = pack_anthropic_thinking("redacted_thinking", block.data)
                item = {"type": "reasoning", "summary": []}
                if block.data:
                    item["encrypted_content"] = encrypted
                return self._done_item(block, item)
            case _:
                assert_never(block.kind)

    def _close_reasoning(self, block: Block) -> bytes:
        out = b""
        summary: list[object] = []
        if self._summary is not None:
            text = "".join(self._summary)
            part = {"type": "summary_text", "text": text}
            summary.append(part)
            fields: dict[str, object] = {"summary_index": 0}
            out += self._item_event(
                "response.reasoning_summary_text.done", block, fields | {"text": text}
            )
            out += self._item_event(
                "response.reasoning_summary_part.done", block, fields | {"part": part}
            )
            self._summary = None
        item: dict[str, object] = {"type": "reasoning", "summary": summary}
        if signature := block.signature:
            item["encrypted_content"] = pack_anthropic_thinking("thinking", signature)
        return out + self._done_item(block, item)

    def _on_finish(self, finish: Finish) -> bytes:
        incomplete = INCOMPLETE_REASONS.get(finish.stop_reason)
        status = "completed" if incomplete is None else "incomplete"
        output: list[object] = list(self._items)
        last = self._items[-1] if self._items else None
        if incomplete is not None and last is not None and last.get("type") == "message":
            # The answer was cut inside its last message (as the API marks it).
            output[-1] = last | {"status": "incomplete"}
        usage = responses_usage_body(finish.usage)
        self._final = self._response(
            status=status, output=output, usage=usage, incomplete=incomplete
        )
        return self._event(f"response.{status}", {"response": self._final})

    def _on_fail(self, error: GatewayError) -> bytes:
        out = b"" if self._started else self._on_start(Start())
        sequence_number = self._seq
        # error_event renders ``error`` then ``response.failed`` with these numbers; the
        # checker needs only their envelope (no re-parsing of the rendered bytes).
        self._check.observe("error", {"type": "error", "sequence_number": sequence_number})
        failed = {"id": self._response_id, "status": "failed"}
        self._check.observe(
            "response.failed",
            {"type": "response.failed", "sequence_number": sequence_number + 1, "response": failed},
        )
        self._seq += 2
        frames = error_event(
            error,
            "openai-responses",
            request_id=self._request_id,
            response_id=self._response_id,
            sequence_number=sequence_number,
            model=self._model,
            created_at=self._created,
        )
        return out + self._rendered(frames)

    def _body(self, finish: Finish) -> dict[str, object]:
        assert self._final is not None  # set by _on_finish, which precedes any Finish body
        return self._final
