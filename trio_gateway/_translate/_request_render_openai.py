"""Render a :class:`Conversation` as an OpenAI Chat Completions or Responses request
(protocols.md §2.2, §3.1–§3.3, §5.1).

Theory of operation: system texts become one leading ``system`` message (Chat) or
``instructions`` (Responses). An assistant turn becomes one assistant message with its text
and all its tool calls (Chat), or a ``message`` item followed by its ``function_call`` items
(Responses). A user turn's tool results come first, as ``tool`` messages (Chat) or
``function_call_output`` items (Responses), then the rest of its content. Anthropic thinking
budgets become reasoning efforts.

Policies: Chat assistant texts are concatenated as they are (Anthropic splits one answer into
several text blocks around citations); the texts of one tool result are joined with a blank
line; an error result is prefixed ``Error: ``; tool-result images, which a Chat ``tool``
message cannot hold, go into the user message that follows; tool choice and parallelism are
sent only with tools (the APIs reject them alone).

Invariants:

- The request is always streamed: Chat with ``stream_options.include_usage`` (the gateway
  bills from it), Responses with ``store: false`` (the gateway is stateless).
- Responses function tools always carry ``strict``, ``false`` unless the client asked for
  strict (protocols.md §3.3 MUST).
- Anthropic ``metadata`` is never copied; only its user id, as ``safety_identifier``.
- Thinking is dropped, except on Responses for thinking blocks that are really OpenAI
  reasoning items the gateway packed (protocols.md §5.7), which become those items again.
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
    Text,
    Thinking,
    ToolCall,
    ToolResult,
    Turn,
)
from trio_gateway._translate._request_read import invalid, nonblank, safety_identifier
from trio_gateway._translate._signature import unpack_openai_reasoning

__all__ = ["render_chat", "render_responses"]

_MAX_CHAT_STOP: Final = 4
_ERROR_PREFIX: Final = "Error: "
_DEFAULT_FILENAME: Final = "document.pdf"
_LOW_BUDGET: Final = 4096
_MEDIUM_BUDGET: Final = 16384

Wire = dict[str, object]


def render_chat(conversation: Conversation, *, model: str) -> dict[str, object]:
    """The Chat Completions body for ``conversation`` (see the module docstring).

    Raises:
        InvalidRequest: the client asked for something Chat cannot express; ``param``
            names the client's field.
    """
    c = conversation
    if c.top_k is not None:
        raise invalid(c.top_k.param, "OpenAI Chat Completions has no `top_k`.")
    messages: list[Wire] = []
    system = nonblank(c.system)
    if system:
        messages.append({"role": "system", "content": "\n\n".join(system)})
    for turn in c.turns:
        messages.extend(_chat_turn(turn))
    body: Wire = {"model": model, "messages": messages}
    if c.max_tokens is not None:
        body["max_completion_tokens"] = c.max_tokens
    if c.stop is not None:
        if len(c.stop.value) > _MAX_CHAT_STOP:
            raise invalid(c.stop.param, "OpenAI Chat Completions accepts at most 4 stop sequences.")
        body["stop"] = list(c.stop.value)
    _sampling(c, body)
    if c.tools:
        body["tools"] = [_chat_tool(c, i) for i in range(len(c.tools))]
        _tool_choice(c, body, chat=True)
    effort = _effort(c)
    if effort is not None:
        body["reasoning_effort"] = effort
    fmt = c.response_format
    if fmt is not None:
        if fmt.kind == "json_object":
            body["response_format"] = {"type": "json_object"}
        else:
            schema: Wire = {"name": fmt.name or "output", "schema": fmt.schema}
            if fmt.description is not None:
                schema["description"] = fmt.description
            schema["strict"] = True if fmt.strict is None else fmt.strict
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
    if c.user is not None:
        body["safety_identifier"] = safety_identifier(c.user)
    for option in c.chat_only:
        body[option.key] = option.value
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    return body


def render_responses(conversation: Conversation, *, model: str) -> dict[str, object]:
    """The Responses body for ``conversation`` (see the module docstring).

    Raises:
        InvalidRequest: the client asked for something Responses cannot express; ``param``
            names the client's field.
    """
    c = conversation
    if c.stop is not None:
        raise invalid(c.stop.param, "the OpenAI Responses API has no stop sequences.")
    if c.top_k is not None:
        raise invalid(c.top_k.param, "the OpenAI Responses API has no `top_k`.")
    if c.chat_only:
        raise invalid(c.chat_only[0].param, "cannot be translated to the OpenAI Responses API.")
    body: Wire = {"model": model}
    system = nonblank(c.system)
    if system:
        body["instructions"] = "\n\n".join(system)
    items: list[Wire] = []
    for turn in c.turns:
        items.extend(_responses_turn(turn))
    body["input"] = items
    if c.max_tokens is not None:
        body["max_output_tokens"] = c.max_tokens
    _sampling(c, body)
    if c.tools:
        body["tools"] = [_responses_tool(c, i) for i in range(len(c.tools))]
        _tool_choice(c, body, chat=False)
    effort = _effort(c)
    summary = None if c.reasoning is None else c.reasoning.summary
    if effort is not None or summary is not None:
        reasoning: Wire = {} if effort is None else {"effort": effort}
        reasoning["summary"] = summary or "auto"
        body["reasoning"] = reasoning
        body["include"] = ["reasoning.encrypted_content"]
    fmt = c.response_format
    if fmt is not None:
        if fmt.kind == "json_object":
            body["text"] = {"format": {"type": "json_object"}}
        else:
            wire: Wire = {"type": "json_schema", "name": fmt.name or "output", "schema": fmt.schema}
            if fmt.description is not None:
                wire["description"] = fmt.description
            wire["strict"] = True if fmt.strict is None else fmt.strict
            body["text"] = {"format": wire}
    if c.user is not None:
        body["safety_identifier"] = safety_identifier(c.user)
    body["stream"] = True
    body["store"] = False
    return body


def _sampling(c: Conversation, body: Wire) -> None:
    if c.temperature is not None:
        body["temperature"] = c.temperature.value
    if c.top_p is not None:
        body["top_p"] = c.top_p


def _effort(c: Conversation) -> str | None:
    """The OpenAI reasoning effort: the client's own, or one derived from Anthropic's
    thinking (budget < 4096 → low, < 16384 → medium, else high; adaptive → its effort)."""
    reasoning = c.reasoning
    if reasoning is None:
        return None
    match reasoning.thinking:
        case "enabled":
            budget = reasoning.budget_tokens or 0
            if budget < _LOW_BUDGET:
                return "low"
            return "medium" if budget < _MEDIUM_BUDGET else "high"
        case "adaptive":
            return reasoning.effort or "medium"
        case "disabled":
            return None
        case None:
            return reasoning.effort


def _tool_choice(c: Conversation, body: Wire, *, chat: bool) -> None:
    choice = c.tool_choice
    if choice is not None:
        match choice.mode:
            case "auto" | "none":
                body["tool_choice"] = choice.mode
            case "any":
                body["tool_choice"] = "required"
            case "tool" if chat:
                body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
            case "tool":
                body["tool_choice"] = {"type": "function", "name": choice.name}
    if c.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = c.parallel_tool_calls


def _chat_tool(c: Conversation, i: int) -> Wire:
    tool = c.tools[i]
    function: Wire = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    function["parameters"] = dict(tool.schema)
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _responses_tool(c: Conversation, i: int) -> Wire:
    tool = c.tools[i]
    wire: Wire = {"type": "function", "name": tool.name}
    if tool.description is not None:
        wire["description"] = tool.description
    wire["parameters"] = dict(tool.schema)
    wire["strict"] = tool.strict is True
    return wire


def _result_text(result: ToolResult) -> str:
    text = "\n\n".join(p.text for p in result.parts if isinstance(p, Text))
    return _ERROR_PREFIX + text if result.is_error else text


def _data_url(source: Base64Source) -> str:
    return f"data:{source.media_type};base64,{source.data}"


# --- Chat ----------------------------------------------------------------------------------


def _chat_turn(turn: Turn) -> list[Wire]:
    if turn.role == "assistant":
        texts = [p.text for p in turn.parts if isinstance(p, Text)]
        calls = [
            {
                "id": p.id,
                "type": "function",
                "function": {"name": p.name, "arguments": p.arguments},
            }
            for p in turn.parts
            if isinstance(p, ToolCall)
        ]
        content = "".join(texts)
        if not content and not calls:
            return []
        message: Wire = {"role": "assistant", "content": content or None}
        if calls:
            message["tool_calls"] = calls
        return [message]
    messages: list[Wire] = []
    media: list[Text | Image | Document] = []
    for part in turn.parts:
        if isinstance(part, ToolResult):
            messages.append(
                {"role": "tool", "tool_call_id": part.call_id, "content": _result_text(part)}
            )
            # Images cannot go in a tool message: they follow in a user message.
            media.extend(p for p in part.parts if isinstance(p, Image))
    rest = media + [p for p in turn.parts if isinstance(p, Text | Image | Document)]
    if len(rest) == 1 and isinstance(rest[0], Text):
        messages.append({"role": "user", "content": rest[0].text})
    elif rest:
        messages.append({"role": "user", "content": [_chat_part(p) for p in rest]})
    return messages


def _chat_part(part: Text | Image | Document) -> Wire:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text}
    source = part.source
    if isinstance(part, Image):
        url = _data_url(source) if isinstance(source, Base64Source) else source.url
        return {"type": "image_url", "image_url": {"url": url}}
    if not isinstance(source, Base64Source):
        raise invalid(part.param, "OpenAI Chat Completions cannot fetch documents by URL.")
    file = {"file_data": _data_url(source), "filename": part.filename or _DEFAULT_FILENAME}
    return {"type": "file", "file": file}


# --- Responses -----------------------------------------------------------------------------


def _responses_turn(turn: Turn) -> list[Wire]:
    if turn.role == "assistant":
        items = [item for p in turn.parts if (item := _reasoning_item(p)) is not None]
        content: list[Wire] = [
            {"type": "output_text", "text": p.text, "annotations": []}
            for p in turn.parts
            if isinstance(p, Text) and p.text
        ]
        if content:
            items.append({"type": "message", "role": "assistant", "content": content})
        items.extend(
            {"type": "function_call", "call_id": p.id, "name": p.name, "arguments": p.arguments}
            for p in turn.parts
            if isinstance(p, ToolCall)
        )
        return items
    items = [
        {"type": "function_call_output", "call_id": p.call_id, "output": _output(p)}
        for p in turn.parts
        if isinstance(p, ToolResult)
    ]
    parts = [_responses_part(p) for p in turn.parts if isinstance(p, Text | Image | Document)]
    if parts:
        items.append({"type": "message", "role": "user", "content": parts})
    return items


def _reasoning_item(part: Part) -> Wire | None:
    """A thinking block the gateway packed from a Responses reasoning item, as that item."""
    if not isinstance(part, Thinking):
        return None
    unpacked = unpack_openai_reasoning(part.signature)
    if unpacked is None:
        return None  # a real Anthropic signature: foreign to OpenAI
    item_id, encrypted = unpacked
    summary = [{"type": "summary_text", "text": part.text}] if part.text else []
    item: Wire = {"type": "reasoning", "id": item_id, "summary": summary}
    if encrypted is not None:
        item["encrypted_content"] = encrypted
    return item


def _output(result: ToolResult) -> object:
    """``function_call_output.output``: a string, or parts when there are images."""
    if all(isinstance(p, Text) for p in result.parts):
        return _result_text(result)
    parts: list[Wire] = []
    prefixed = not result.is_error
    for part in result.parts:
        if isinstance(part, Text):
            text = part.text if prefixed else _ERROR_PREFIX + part.text
            prefixed = True
            parts.append({"type": "input_text", "text": text})
        else:
            parts.append(_responses_part(part))
    if not prefixed:
        parts.insert(0, {"type": "input_text", "text": _ERROR_PREFIX.strip()})
    return parts


def _responses_part(part: Text | Image | Document) -> Wire:
    if isinstance(part, Text):
        return {"type": "input_text", "text": part.text}
    source = part.source
    if isinstance(part, Image):
        url = _data_url(source) if isinstance(source, Base64Source) else source.url
        return {"type": "input_image", "image_url": url, "detail": "auto"}
    if not isinstance(source, Base64Source):
        return {"type": "input_file", "file_url": source.url}
    return {
        "type": "input_file",
        "file_data": _data_url(source),
        "filename": part.filename or _DEFAULT_FILENAME,
    }
