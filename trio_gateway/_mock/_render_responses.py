"""OpenAI Responses bodies and SSE streams for the mock (protocols.md §3.4-3.6).

Stream invariants (what the openai 3.54 stream helper checks, §3.6):
    * ``event:`` line plus ``data.type``; ``sequence_number`` dense from 0;
    * the first event is ``response.created``; every lifecycle event carries the same
      response id;
    * output items are announced in order (``output_index`` dense), their parts too;
    * exactly one terminal event: ``response.completed``, ``response.incomplete`` or
      (after an ``error`` event) ``response.failed``; nothing follows it;
    * a reasoning item carries ``encrypted_content`` (an opaque, deterministic
      ``enc_<item id>``) only when the request's ``include`` asked for
      ``reasoning.encrypted_content``, and then only once it is done: in its
      ``output_item.done`` and in the final ``output``.
"""

from __future__ import annotations

from typing import Final

from trio_gateway._mock._render import (
    CREATED,
    TOOL_ARGUMENTS,
    TOOL_NAME,
    Answer,
    Frame,
    Usage,
    dumps,
)

__all__ = ["responses_body", "responses_frames", "responses_usage"]

Event = dict[str, object]
Item = dict[str, object]

_OVERLOADED: Final = "Overloaded"


def responses_usage(usage: Usage) -> dict[str, object]:
    """The ``usage`` object (protocols.md §3.5): input tokens include the cached ones."""
    return {
        "input_tokens": usage.openai_input,
        "input_tokens_details": {"cached_tokens": usage.cache_read},
        "output_tokens": usage.output,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning},
        "total_tokens": usage.openai_input + usage.output,
    }


def _status(answer: Answer) -> str:
    return "incomplete" if answer.stop == "length" else "completed"


def _response(answer: Answer, *, status: str, output: list[Item], final: bool) -> Event:
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    error = {"code": "server_error", "message": _OVERLOADED} if status == "failed" else None
    return {
        "id": answer.ident("resp_"),
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": None,
        "max_output_tokens": None,
        "model": answer.model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": responses_usage(answer.usage) if final and status != "failed" else None,
        "user": None,
        "metadata": {},
    }


def _reasoning_item(answer: Answer, *, done: bool) -> Item:
    summary = [{"type": "summary_text", "text": answer.full_thinking}] if done else []
    item: Item = {"id": answer.ident("rs_"), "type": "reasoning", "summary": summary}
    if done and answer.include_encrypted_reasoning:
        item["encrypted_content"] = "enc_" + answer.ident("rs_")
    return item


def _text_part(text: str) -> dict[str, object]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _message_item(answer: Answer, *, done: bool) -> Item:
    return {
        "id": answer.ident("msg_"),
        "type": "message",
        "status": _status(answer) if done else "in_progress",
        "role": "assistant",
        "content": [_text_part(answer.full_text)] if done else [],
    }


def _function_item(answer: Answer, *, done: bool) -> Item:
    return {
        "id": answer.ident("fc_"),
        "type": "function_call",
        "status": "completed" if done else "in_progress",
        "call_id": answer.ident("call_"),
        "name": TOOL_NAME,
        "arguments": TOOL_ARGUMENTS if done else "",
    }


def _final_output(answer: Answer) -> list[Item]:
    output: list[Item] = []
    if answer.thinking:
        output.append(_reasoning_item(answer, done=True))
    if answer.has_text_part:
        output.append(_message_item(answer, done=True))
    if answer.tool_args:
        output.append(_function_item(answer, done=True))
    return output


def responses_body(answer: Answer) -> dict[str, object]:
    """The non-streaming ``response`` object (protocols.md §3.4)."""
    return _response(answer, status=_status(answer), output=_final_output(answer), final=True)


def responses_frames(answer: Answer) -> list[Frame]:
    """The SSE events of a streamed answer, faults of the plan applied.

    Args:
        answer: the answer; the plan's ``incomplete``, ``no_terminator`` and
            ``error_event`` are honoured here.

    Returns:
        One frame per event, sequence numbers dense from 0.
    """
    plan = answer.plan
    events: list[Event] = [
        {"type": "response.created", "response": _starting(answer)},
        {"type": "response.in_progress", "response": _starting(answer)},
    ]
    index = 0
    if answer.thinking:
        events += _reasoning_events(answer, index)
        index += 1
    if answer.has_text_part:
        events += _message_events(answer, index)
        index += 1
    if answer.tool_args:
        events += _function_events(answer, index)
    status = _status(answer)
    final = _response(answer, status=status, output=_final_output(answer), final=True)
    events.append({"type": f"response.{status}", "response": final})
    if plan.has("no_terminator"):
        events.pop()
    if plan.error_after is not None:
        events = [*events[: plan.error_after], *_failure_events(answer)]
    numbered = [
        {"type": event["type"], "sequence_number": number, **event}
        for number, event in enumerate(events)
    ]
    return [Frame(str(event["type"]), dumps(event)) for event in numbered]


def _starting(answer: Answer) -> Event:
    return _response(answer, status="in_progress", output=[], final=False)


def _failure_events(answer: Answer) -> list[Event]:
    # Both the nested and the flat error fields (protocols.md §3.6 gateway rule), so
    # every client sees the failure; then the terminal response.failed.
    nested = {"type": "server_error", "code": "server_error", "message": _OVERLOADED}
    error: Event = {
        "type": "error",
        "code": "server_error",
        "message": _OVERLOADED,
        "param": None,
        "error": {**nested, "param": None},
    }
    failed = _response(answer, status="failed", output=[], final=True)
    return [error, {"type": "response.failed", "response": failed}]


def _item_events(index: int, added: Item, body: list[Event], done: Item) -> list[Event]:
    ids = {"item_id": added["id"], "output_index": index}
    return [
        {"type": "response.output_item.added", "output_index": index, "item": added},
        *({**event, **ids} for event in body),
        {"type": "response.output_item.done", "output_index": index, "item": done},
    ]


def _reasoning_events(answer: Answer, index: int) -> list[Event]:
    part = {"summary_index": 0}
    text = answer.full_thinking
    body: list[Event] = [
        {"type": "response.reasoning_summary_part.added", **part,
         "part": {"type": "summary_text", "text": ""}},
        *({"type": "response.reasoning_summary_text.delta", **part, "delta": piece}
          for piece in answer.thinking),
        {"type": "response.reasoning_summary_text.done", **part, "text": text},
        {"type": "response.reasoning_summary_part.done", **part,
         "part": {"type": "summary_text", "text": text}},
    ]  # fmt: skip
    added = _reasoning_item(answer, done=False)
    return _item_events(index, added, body, _reasoning_item(answer, done=True))


def _message_events(answer: Answer, index: int) -> list[Event]:
    part = {"content_index": 0}
    text = answer.full_text
    body: list[Event] = [
        {"type": "response.content_part.added", **part, "part": _text_part("")},
        *({"type": "response.output_text.delta", **part, "delta": piece, "logprobs": []}
          for piece in answer.text),
        {"type": "response.output_text.done", **part, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **part, "part": _text_part(text)},
    ]  # fmt: skip
    added = _message_item(answer, done=False)
    return _item_events(index, added, body, _message_item(answer, done=True))


def _function_events(answer: Answer, index: int) -> list[Event]:
    body: list[Event] = [
        {"type": "response.function_call_arguments.delta", "delta": piece}
        for piece in answer.tool_args
    ]
    done = {"name": TOOL_NAME, "arguments": TOOL_ARGUMENTS}
    body.append({"type": "response.function_call_arguments.done", **done})
    added = _function_item(answer, done=False)
    return _item_events(index, added, body, _function_item(answer, done=True))
