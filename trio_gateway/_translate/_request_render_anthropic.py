"""Render a :class:`Conversation` as an Anthropic Messages request (protocols.md §1.2–§1.4, §5.1).

Theory of operation: turns are rendered to content blocks, empty turns vanish, consecutive
same-role turns merge into one message (Anthropic requires alternation), and each message's
blocks are ordered as the API demands: in a user message all ``tool_result`` blocks first
(§1.3); in an assistant message thinking, then text, then every ``tool_use``. Reasoning
efforts become thinking budgets; an Anthropic client's own ``thinking`` passes as is.

Invariants:

- No empty or whitespace-only text block is ever sent (§1.3).
- ``tool_use.id`` and ``tool_result.tool_use_id`` go through the same sanitiser, so they match.
- Thinking blocks whose signature the gateway made from OpenAI reasoning are foreign here
  and dropped.
- ``thinking`` is omitted when the last assistant message has tool calls without a signed
  thinking block first (the API would reject it, §5.1 rule 7). Thinking made from an
  OpenAI effort has a budget below ``max_tokens`` and is never combined with a forced tool
  choice (the API refuses that too).
- Errors name the client's field (``Setting.param`` / part ``param``).
"""

from __future__ import annotations

from typing import Final

from trio_gateway._translate._request_model import (
    Base64Source,
    Conversation,
    Document,
    Image,
    Part,
    RedactedThinking,
    Text,
    Thinking,
    ToolCall,
    ToolResult,
)
from trio_gateway._translate._request_read import (
    arguments_object,
    invalid,
    nonblank,
    sanitize_tool_id,
)
from trio_gateway._translate._signature import unpack_openai_reasoning

__all__ = ["render_anthropic"]

_IMAGE_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_DOCUMENT_TYPES: Final = frozenset({"application/pdf"})
_BUDGETS: Final = {"low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768, "max": 32768}
_MIN_BUDGET: Final = 1024
_THINKING_BLOCKS: Final = frozenset({"thinking", "redacted_thinking"})
# Block order inside a message: lower ranks first, stable within a rank.
_USER_RANK: Final = {"tool_result": 0}
_ASSISTANT_RANK: Final = {"thinking": 0, "redacted_thinking": 0, "text": 1, "tool_use": 2}

Block = dict[str, object]


def render_anthropic(
    conversation: Conversation, *, model: str, default_max_tokens: int
) -> dict[str, object]:
    """The Anthropic Messages body for ``conversation`` (see the module docstring).

    Raises:
        InvalidRequest: the client asked for something Anthropic cannot express; ``param``
            names the client's field.
    """
    c = conversation
    if c.chat_only:
        raise invalid(c.chat_only[0].param, "cannot be translated to the Anthropic Messages API.")
    max_tokens = c.max_tokens or default_max_tokens
    body: dict[str, object] = {"model": model, "max_tokens": max_tokens}
    system = [{"type": "text", "text": text} for text in nonblank(c.system)]
    if system:
        body["system"] = system
    messages = _messages(c)
    if c.stop is not None:
        body["stop_sequences"] = list(c.stop.value)
    if c.temperature is not None:
        if c.temperature.value > 1:
            raise invalid(c.temperature.param, "Anthropic accepts a temperature between 0 and 1.")
        body["temperature"] = c.temperature.value
    if c.top_p is not None:
        body["top_p"] = c.top_p
    if c.top_k is not None:
        body["top_k"] = c.top_k.value
    _tools(c, body)
    output_config: dict[str, object] = {}
    thinking = _thinking(c, max_tokens)
    if thinking is not None and thinking["type"] != "disabled" and not _replayable(messages):
        thinking = None
    if thinking is not None:
        body["thinking"] = thinking
    if thinking is None or thinking["type"] == "disabled":
        _strip_final_thinking(messages)
    body["messages"] = [{"role": role, "content": blocks} for role, blocks in messages]
    if c.client == "anthropic" and c.reasoning is not None and c.reasoning.effort is not None:
        output_config["effort"] = c.reasoning.effort
    if c.response_format is not None:
        if c.response_format.kind != "json_schema" or c.response_format.schema is None:
            raise invalid(
                c.response_format.param, "Anthropic supports only JSON-schema output formats."
            )
        output_config["format"] = {"type": "json_schema", "schema": c.response_format.schema}
    if output_config:
        body["output_config"] = output_config
    if c.user is not None:
        body["metadata"] = {"user_id": c.user}
    body["stream"] = True
    return body


def _messages(c: Conversation) -> list[tuple[str, list[Block]]]:
    """``(role, blocks)`` per message: empty turns dropped, same-role turns merged, blocks
    ordered for the API."""
    merged: list[tuple[str, list[Block]]] = []
    for turn in c.turns:
        blocks = [block for part in turn.parts if (block := _block(part)) is not None]
        if not blocks:
            continue
        if merged and merged[-1][0] == turn.role:
            merged[-1][1].extend(blocks)
        else:
            merged.append((turn.role, blocks))
    for role, blocks in merged:
        rank = _USER_RANK if role == "user" else _ASSISTANT_RANK
        blocks.sort(key=lambda block: rank.get(str(block["type"]), 1))
    return merged


def _block(part: Part) -> Block | None:
    match part:
        case Text(text=text):
            return {"type": "text", "text": text} if text.strip() else None
        case Image() | Document():
            return _media(part)
        case ToolCall(id=call_id, name=name, arguments=arguments):
            tool_input = arguments_object(arguments, "arguments")
            return {
                "type": "tool_use",
                "id": sanitize_tool_id(call_id),
                "name": name,
                "input": tool_input,
            }
        case ToolResult(call_id=call_id, parts=parts, is_error=is_error):
            block: Block = {"type": "tool_result", "tool_use_id": sanitize_tool_id(call_id)}
            content = [inner for p in parts if (inner := _block(p)) is not None]
            if content:
                block["content"] = content
            if is_error:
                block["is_error"] = True
            return block
        case Thinking(text=text, signature=signature):
            if unpack_openai_reasoning(signature) is not None:
                return None  # OpenAI reasoning: foreign to Anthropic
            return {"type": "thinking", "thinking": text, "signature": signature}
        case RedactedThinking(data=data):
            return {"type": "redacted_thinking", "data": data}


def _media(part: Image | Document) -> Block:
    kind, allowed = (
        ("image", _IMAGE_TYPES) if isinstance(part, Image) else ("document", _DOCUMENT_TYPES)
    )
    source = part.source
    if isinstance(source, Base64Source):
        if source.media_type not in allowed:
            raise invalid(part.param, f"Anthropic does not accept `{source.media_type}` {kind}s.")
        wire: Block = {"type": "base64", "media_type": source.media_type, "data": source.data}
    else:
        wire = {"type": "url", "url": source.url}
    return {"type": kind, "source": wire}


def _tools(c: Conversation, body: dict[str, object]) -> None:
    if not c.tools:
        return  # tool_choice without tools is an API error
    tools: list[Block] = []
    for tool in c.tools:
        wire: Block = {"name": tool.name}
        if tool.description is not None:
            wire["description"] = tool.description
        wire["input_schema"] = dict(tool.schema)
        if tool.strict is not None:
            wire["strict"] = tool.strict
        tools.append(wire)
    body["tools"] = tools
    choice = c.tool_choice
    if choice is None and c.parallel_tool_calls is not False:
        return
    wire_choice: Block = {"type": "auto" if choice is None else choice.mode}
    if choice is not None and choice.mode == "tool":
        wire_choice["name"] = choice.name
    if c.parallel_tool_calls is False and wire_choice["type"] != "none":
        wire_choice["disable_parallel_tool_use"] = True
    body["tool_choice"] = wire_choice


def _thinking(c: Conversation, max_tokens: int) -> Block | None:
    """The ``thinking`` object: the Anthropic client's own, or one made from an effort."""
    reasoning = c.reasoning
    if reasoning is None:
        return None
    if c.client == "anthropic":
        if reasoning.thinking is None:
            return None
        thinking: Block = {"type": reasoning.thinking}
        if reasoning.budget_tokens is not None:
            thinking["budget_tokens"] = reasoning.budget_tokens
        if reasoning.display is not None:
            thinking["display"] = reasoning.display
        return thinking
    budget = _BUDGETS.get(reasoning.effort or "")
    if budget is None:
        return None  # none / minimal, or no effort at all
    choice = c.tool_choice
    if c.tools and choice is not None and choice.mode in {"any", "tool"}:
        return None  # Anthropic refuses thinking together with a forced tool call
    budget = min(budget, max_tokens - 1)
    if budget < _MIN_BUDGET:
        return None
    return {"type": "enabled", "budget_tokens": budget}


def _replayable(messages: list[tuple[str, list[Block]]]) -> bool:
    """Whether thinking may be on: the last assistant message, if it calls tools, starts
    with a signed thinking block (protocols.md §1.3, §5.1 rule 7)."""
    for role, blocks in reversed(messages):
        if role == "assistant":
            if not any(block["type"] == "tool_use" for block in blocks):
                return True
            return blocks[0]["type"] in _THINKING_BLOCKS
    return True


def _strip_final_thinking(messages: list[tuple[str, list[Block]]]) -> None:
    """With thinking off, a final assistant message may not hold thinking blocks (§1.3)."""
    if not messages or messages[-1][0] != "assistant":
        return
    blocks = messages[-1][1]
    blocks[:] = [block for block in blocks if block["type"] not in _THINKING_BLOCKS]
    if not blocks:
        messages.pop()
