"""Read an Anthropic Messages request body into a :class:`Conversation` (protocols.md §1.2–§1.4).

Theory of operation: every top-level field is either understood, advisory (dropped and
listed: ``cache_control``, ``service_tier``, ``context_management``, ``inference_geo``), or
refused with a 400 naming it. Content blocks are read by type; server-tool blocks and
versioned server tools have no OpenAI equivalent and are refused by their ``type`` path.

Invariants:

- Raises nothing but :class:`~trio_gateway._errors.InvalidRequest`, whose ``param`` is the
  JSON path of the offending field.
- ``cache_control`` is dropped wherever it appears and listed once.
- Mid-conversation ``system`` messages (typed by the newest SDK) are hoisted into ``system``.
"""

from __future__ import annotations

from typing import Final

from trio_gateway._translate._request_model import (
    Base64Source,
    Conversation,
    Document,
    Image,
    Part,
    Reasoning,
    RedactedThinking,
    ResponseFormat,
    Setting,
    Text,
    Thinking,
    ThinkingType,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    ToolResult,
    Turn,
    UrlSource,
)
from trio_gateway._translate._request_read import (
    Notes,
    as_list,
    as_object,
    as_str,
    check_fields,
    dumps_arguments,
    invalid,
    json_object,
    opt_bool,
    opt_effort,
    opt_int,
    opt_number,
    opt_object,
    opt_str,
    string_list,
)

__all__ = ["parse_anthropic"]

_UNDERSTOOD: Final = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "stream",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "metadata",
        "output_config",
    }
)
_ADVISORY: Final = frozenset(
    {"cache_control", "service_tier", "context_management", "inference_geo"}
)
_USER_BLOCKS: Final = frozenset({"text", "image", "document", "tool_result"})
_ASSISTANT_BLOCKS: Final = frozenset({"text", "tool_use", "thinking", "redacted_thinking"})
_TOOL_CHOICES: Final[dict[str, ToolChoiceMode]] = {
    "auto": "auto",
    "any": "any",
    "tool": "tool",
    "none": "none",
}
_THINKING: Final[dict[str, ThinkingType]] = {
    "enabled": "enabled",
    "adaptive": "adaptive",
    "disabled": "disabled",
}


def parse_anthropic(body: dict[str, object]) -> Conversation:
    """Read an Anthropic Messages request (see the module docstring).

    Raises:
        InvalidRequest: a field is malformed or cannot be translated; ``param`` names it.
    """
    notes = Notes()
    check_fields(body, _UNDERSTOOD, _ADVISORY, notes)
    system = list(_system(body.get("system"), "system", notes))
    turns: list[Turn] = []
    for i, raw in enumerate(as_list(body.get("messages"), "messages")):
        param = f"messages[{i}]"
        message = as_object(raw, param)
        role = message.get("role")
        if role == "system":
            system.extend(_system(message.get("content"), f"{param}.content", notes))
        elif role == "user" or role == "assistant":
            turns.append(Turn(role, _content(message.get("content"), role, param, notes)))
        else:
            raise invalid(f"{param}.role", "must be `user` or `assistant`.")
    stop = string_list(body["stop_sequences"], "stop_sequences") if "stop_sequences" in body else ()
    temperature = opt_number(body, "temperature", "temperature")
    top_k = opt_int(body, "top_k", "top_k")
    metadata = opt_object(body, "metadata", "metadata")
    choice, parallel = _tool_choice(body)
    reasoning, response_format = _reasoning(body)
    return Conversation(
        client="anthropic",
        system=tuple(system),
        turns=tuple(turns),
        tools=_tools(body, notes),
        tool_choice=choice,
        parallel_tool_calls=parallel,
        max_tokens=opt_int(body, "max_tokens", "max_tokens"),
        stop=Setting(stop, "stop_sequences") if stop else None,
        temperature=None if temperature is None else Setting(temperature, "temperature"),
        top_p=opt_number(body, "top_p", "top_p", maximum=1),
        top_k=None if top_k is None else Setting(top_k, "top_k"),
        reasoning=reasoning,
        response_format=response_format,
        user=None if metadata is None else opt_str(metadata, "user_id", "metadata.user_id"),
        ignored=notes.result(),
    )


def _system(value: object, param: str, notes: Notes) -> tuple[str, ...]:
    """``system``: a string or an array of text blocks (``cache_control`` dropped)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    texts: list[str] = []
    for j, raw in enumerate(as_list(value, param)):
        block = as_object(raw, f"{param}[{j}]")
        if block.get("type") != "text":
            raise invalid(f"{param}[{j}].type", "must be `text`.")
        notes.note_cache_control(block)
        texts.append(as_str(block.get("text"), f"{param}[{j}].text"))
    return tuple(texts)


def _content(value: object, role: str, param: str, notes: Notes) -> tuple[Part, ...]:
    """A message's ``content``: a string or an array of blocks allowed for ``role``."""
    if isinstance(value, str):
        return (Text(value),)
    allowed = _USER_BLOCKS if role == "user" else _ASSISTANT_BLOCKS
    parts: list[Part] = []
    for j, raw in enumerate(as_list(value, f"{param}.content")):
        path = f"{param}.content[{j}]"
        block = as_object(raw, path)
        kind = as_str(block.get("type"), f"{path}.type")
        if kind in _USER_BLOCKS | _ASSISTANT_BLOCKS and kind not in allowed:
            raise invalid(f"{path}.type", f"a `{kind}` block is not allowed in a {role} turn.")
        if kind not in allowed:
            raise invalid(f"{path}.type", f"a `{kind}` block cannot be translated.")
        notes.note_cache_control(block)
        parts.append(_block(block, path, notes))
    return tuple(parts)


def _block(block: dict[str, object], path: str, notes: Notes) -> Part:
    match block["type"]:
        case "text":
            return Text(as_str(block.get("text"), f"{path}.text"))
        case "image":
            return Image(_image_source(block, path), f"{path}.source")
        case "document":
            return _document(block, path)
        case "tool_result":
            return _tool_result(block, path, notes)
        case "tool_use":
            tool_input = as_object(block.get("input"), f"{path}.input")
            return ToolCall(
                id=_nonempty(block.get("id"), f"{path}.id"),
                name=as_str(block.get("name"), f"{path}.name"),
                arguments=dumps_arguments(tool_input, f"{path}.input"),
            )
        case "thinking":
            return Thinking(
                text=as_str(block.get("thinking"), f"{path}.thinking"),
                signature=opt_str(block, "signature", f"{path}.signature") or "",
            )
        case _:  # redacted_thinking: the callers allow nothing else
            return RedactedThinking(as_str(block.get("data"), f"{path}.data"))


def _nonempty(value: object, param: str) -> str:
    text = as_str(value, param)
    if not text:
        raise invalid(param, "must not be empty.")
    return text


def _image_source(block: dict[str, object], path: str) -> Base64Source | UrlSource:
    source = as_object(block.get("source"), f"{path}.source")
    match source.get("type"):
        case "base64":
            return Base64Source(
                media_type=as_str(source.get("media_type"), f"{path}.source.media_type"),
                data=as_str(source.get("data"), f"{path}.source.data"),
            )
        case "url":
            return UrlSource(as_str(source.get("url"), f"{path}.source.url"))
        case other:
            raise invalid(f"{path}.source.type", f"a `{other}` source cannot be translated.")


def _document(block: dict[str, object], path: str) -> Text | Document:
    """A document: base64 (PDF), plain-text source (→ text) or URL."""
    source = as_object(block.get("source"), f"{path}.source")
    if source.get("type") == "text":
        return Text(as_str(source.get("data"), f"{path}.source.data"))
    return Document(_image_source(block, path), f"{path}.source")


def _tool_result(block: dict[str, object], path: str, notes: Notes) -> ToolResult:
    content = block.get("content")
    parts: list[Text | Image] = []
    if isinstance(content, str):
        parts.append(Text(content))
    elif content is not None:
        for k, raw in enumerate(as_list(content, f"{path}.content")):
            inner_path = f"{path}.content[{k}]"
            inner = as_object(raw, inner_path)
            notes.note_cache_control(inner)
            match inner.get("type"):
                case "text":
                    parts.append(Text(as_str(inner.get("text"), f"{inner_path}.text")))
                case "image":
                    parts.append(Image(_image_source(inner, inner_path), f"{inner_path}.source"))
                case other:
                    raise invalid(
                        f"{inner_path}.type",
                        f"a `{other}` block in a tool result cannot be translated.",
                    )
    return ToolResult(
        call_id=_nonempty(block.get("tool_use_id"), f"{path}.tool_use_id"),
        parts=tuple(parts),
        is_error=opt_bool(block, "is_error", f"{path}.is_error") or False,
    )


def _tools(body: dict[str, object], notes: Notes) -> tuple[Tool, ...]:
    if body.get("tools") is None:
        return ()
    tools: list[Tool] = []
    for i, raw in enumerate(as_list(body["tools"], "tools")):
        path = f"tools[{i}]"
        tool = as_object(raw, path)
        kind = tool.get("type")
        if kind is not None and kind != "custom":
            raise invalid(f"{path}.type", f"the server tool `{kind}` cannot be translated.")
        notes.note_cache_control(tool)
        tools.append(
            Tool(
                name=as_str(tool.get("name"), f"{path}.name"),
                description=opt_str(tool, "description", f"{path}.description"),
                schema=json_object(tool.get("input_schema"), f"{path}.input_schema"),
                strict=opt_bool(tool, "strict", f"{path}.strict"),
            )
        )
    return tuple(tools)


def _tool_choice(body: dict[str, object]) -> tuple[ToolChoice | None, bool | None]:
    raw = opt_object(body, "tool_choice", "tool_choice")
    if raw is None:
        return None, None
    mode = _TOOL_CHOICES.get(str(raw.get("type")))
    if mode is None:
        raise invalid("tool_choice.type", "must be `auto`, `any`, `tool` or `none`.")
    name = as_str(raw.get("name"), "tool_choice.name") if mode == "tool" else None
    disable = opt_bool(raw, "disable_parallel_tool_use", "tool_choice.disable_parallel_tool_use")
    return ToolChoice(mode, name), (False if disable else None)


def _reasoning(body: dict[str, object]) -> tuple[Reasoning | None, ResponseFormat | None]:
    """``thinking`` and ``output_config`` (effort and structured output)."""
    thinking = opt_object(body, "thinking", "thinking")
    config = opt_object(body, "output_config", "output_config") or {}
    effort = opt_effort(config, "effort", "output_config.effort")
    response_format = None
    raw_format = opt_object(config, "format", "output_config.format")
    if raw_format is not None:
        if raw_format.get("type") != "json_schema":
            raise invalid("output_config.format.type", "must be `json_schema`.")
        schema = json_object(raw_format.get("schema"), "output_config.format.schema")
        response_format = ResponseFormat("json_schema", "output_config.format", schema=schema)
    if thinking is None:
        return (None if effort is None else Reasoning(effort=effort)), response_format
    kind = _THINKING.get(str(thinking.get("type")))
    if kind is None:
        raise invalid("thinking.type", "must be `enabled`, `adaptive` or `disabled`.")
    budget = opt_int(thinking, "budget_tokens", "thinking.budget_tokens", minimum=1)
    if kind == "enabled" and budget is None:
        raise invalid("thinking.budget_tokens", "is required when thinking is enabled.")
    reasoning = Reasoning(
        thinking=kind,
        budget_tokens=budget if kind == "enabled" else None,
        display=opt_str(thinking, "display", "thinking.display"),
        effort=effort,
    )
    return reasoning, response_format
