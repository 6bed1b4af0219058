"""OpenAI Chat Completions bodies and SSE streams for the mock (protocols.md §2.3-2.6).

Stream invariants (what the openai stream helper requires, §2.4):
    * data-only events, every chunk has ``object: "chat.completion.chunk"``;
    * ``role`` only in the first chunk; a tool call's ``id``/``type``/``name`` only in its
      first delta, later deltas carry only argument fragments;
    * reasoning (the ``thinking`` scenario) streams as ``delta.reasoning_content`` pieces,
      as DeepSeek- and vLLM-compatible upstreams send it (not OpenAI: protocols.md §5.6),
      all of them after the role chunk and before the first content delta; a body carries
      the full text in ``message.reasoning_content``;
    * the finish chunk has an empty ``delta`` and the ``finish_reason``;
    * a usage chunk (``choices: []``) only when the request asked for
      ``stream_options.include_usage``, as the last chunk before ``data: [DONE]``; while it
      is asked for, every other chunk carries ``"usage": null`` as the real API does.
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

__all__ = ["chat_body", "chat_frames", "chat_usage"]

_FINISH_REASONS: Final = {"end": "stop", "tool": "tool_calls", "length": "length"}
_FINGERPRINT: Final = "fp_mock"

Chunk = dict[str, object]


def chat_usage(usage: Usage) -> dict[str, object]:
    """The ``usage`` object (protocols.md §2.5): prompt tokens include the cached ones."""
    return {
        "prompt_tokens": usage.openai_input,
        "completion_tokens": usage.output,
        "total_tokens": usage.openai_input + usage.output,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": usage.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_body(answer: Answer) -> dict[str, object]:
    """The non-streaming ``chat.completion`` object (protocols.md §2.3)."""
    tool_calls = None
    if answer.tool_args:
        function = {"name": TOOL_NAME, "arguments": TOOL_ARGUMENTS}
        tool_calls = [{"id": answer.ident("call_"), "type": "function", "function": function}]
    message: dict[str, object] = {
        "role": "assistant",
        "content": answer.full_text if answer.text or not tool_calls else None,
        "refusal": None,
        "annotations": [],
        "tool_calls": tool_calls,
    }
    if answer.thinking:
        message["reasoning_content"] = answer.full_thinking
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": _FINISH_REASONS[answer.stop],
    }
    return {
        "id": answer.ident("chatcmpl-"),
        "object": "chat.completion",
        "created": CREATED,
        "model": answer.model,
        "choices": [choice],
        "usage": chat_usage(answer.usage),
        "service_tier": "default",
        "system_fingerprint": _FINGERPRINT,
    }


def chat_frames(answer: Answer) -> list[Frame]:
    """The SSE events of a streamed answer, faults of the plan applied.

    Args:
        answer: the answer; ``include_usage``, the plan's ``usage_with_choices``,
            ``no_terminator`` and ``error_event`` are honoured here.

    Returns:
        One data-only frame per chunk, then ``[DONE]``.
    """
    plan = answer.plan
    deltas: list[dict[str, object]] = [{"role": "assistant", "content": "", "refusal": None}]
    deltas += ({"reasoning_content": piece} for piece in answer.thinking)
    deltas += ({"content": piece} for piece in answer.text)
    if answer.tool_args:
        first = {"name": TOOL_NAME, "arguments": ""}
        call = {"index": 0, "id": answer.ident("call_"), "type": "function", "function": first}
        deltas.append({"tool_calls": [call]})
        deltas += (
            {"tool_calls": [{"index": 0, "function": {"arguments": part}}]}
            for part in answer.tool_args
        )
    chunks = [_chunk(answer, delta) for delta in deltas]
    finish = _chunk(answer, {}, finish_reason=_FINISH_REASONS[answer.stop])
    chunks.append(finish)
    if answer.include_usage:
        if plan.has("usage_with_choices"):
            finish["usage"] = chat_usage(answer.usage)
        else:
            chunks.append({**_chunk(answer, None), "usage": chat_usage(answer.usage)})
    frames = [Frame(None, dumps(chunk)) for chunk in chunks]
    if plan.error_after is not None:
        error = {"message": "Overloaded", "type": "server_error", "param": None, "code": None}
        return [*frames[: plan.error_after], Frame(None, dumps({"error": error}))]
    if not plan.has("no_terminator"):
        frames.append(Frame(None, "[DONE]"))
    return frames


def _chunk(
    answer: Answer, delta: dict[str, object] | None, *, finish_reason: str | None = None
) -> Chunk:
    choices = [] if delta is None else [
        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    ]  # fmt: skip
    chunk: Chunk = {
        "id": answer.ident("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": answer.model,
        "service_tier": "default",
        "system_fingerprint": _FINGERPRINT,
        "choices": choices,
    }
    if answer.include_usage:
        chunk["usage"] = None
    return chunk
