"""Read an OpenAI Chat Completions request body into a :class:`Conversation` (protocols.md §2.2).

Theory of operation: ``system``/``developer`` messages are hoisted into the system texts in
order; each other message becomes a turn, except that consecutive ``tool`` messages become one
user turn of tool results (Anthropic's shape, protocols.md §5.1 "Reverse direction" rule 3).
Top-level fields are understood, advisory (dropped and listed), or refused with a 400 naming
them. Options only Chat can carry (``logprobs``, ``top_logprobs``, ``logit_bias``, penalties)
are kept when set to a non-default value, for a Chat upstream; other renderers refuse them.

Invariants:

- Raises nothing but :class:`~trio_gateway._errors.InvalidRequest`, whose ``param`` is the
  JSON path of the offending field.
- Tool-call ``arguments`` are JSON object text (or empty, read as ``{}``), else a 400 naming
  ``messages[i].tool_calls[j].function.arguments``.
"""

from __future__ import annotations

from typing import Final

from trio_gateway._translate._request_model import (
    ChatOnly,
    Conversation,
    Document,
    Image,
    Part,
    Reasoning,
    ResponseFormat,
    Setting,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    Turn,
)
from trio_gateway._translate._request_read import (
    Notes,
    as_list,
    as_object,
    as_str,
    check_fields,
    data_url,
    invalid,
    json_object,
    json_object_text,
    opt_bool,
    opt_effort,
    opt_int,
    opt_number,
    opt_object,
    opt_str,
    url_source,
)

__all__ = ["parse_chat", "parse_json_schema", "parse_openai_tool_choice"]

_UNDERSTOOD: Final = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_completion_tokens",
        "max_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning_effort",
        "response_format",
        "user",
        "safety_identifier",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "presence_penalty",
        "frequency_penalty",
        "modalities",
    }
)
_ADVISORY: Final = frozenset(
    {
        "store",
        "metadata",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "seed",
        "verbosity",
    }
)
# Fields whose every non-null value needs something no translation offers.
_REFUSED: Final = ("audio", "prediction", "web_search_options", "functions", "function_call")
_EMPTY_SCHEMA: Final = {"type": "object", "properties": {}}


def parse_chat(body: dict[str, object]) -> Conversation:
    """Read a Chat Completions request (see the module docstring).

    Raises:
        InvalidRequest: a field is malformed or cannot be translated; ``param`` names it.
    """
    notes = Notes()
    check_fields(body, _UNDERSTOOD | frozenset(_REFUSED), _ADVISORY, notes)
    for key in _REFUSED:
        if body.get(key) is not None:
            raise invalid(key, "cannot be translated to another protocol.")
    options = opt_object(body, "stream_options", "stream_options")
    if options is not None and "include_obfuscation" in options:
        notes.add("stream_options.include_obfuscation")
    n = opt_int(body, "n", "n", minimum=1)
    if n is not None and n > 1:
        raise invalid("n", "only one choice (`n` = 1) can be translated.")
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise invalid("modalities", 'only `["text"]` can be translated.')
    system, turns = _messages(body, notes)
    temperature = opt_number(body, "temperature", "temperature", maximum=2)
    effort = opt_effort(body, "reasoning_effort", "reasoning_effort")
    choice = parse_openai_tool_choice(body.get("tool_choice"), chat=True)
    return Conversation(
        client="openai-chat",
        system=system,
        turns=turns,
        tools=_tools(body),
        tool_choice=choice,
        parallel_tool_calls=opt_bool(body, "parallel_tool_calls", "parallel_tool_calls"),
        max_tokens=opt_int(body, "max_completion_tokens", "max_completion_tokens", minimum=1)
        or opt_int(body, "max_tokens", "max_tokens", minimum=1),
        stop=_stop(body.get("stop")),
        temperature=None if temperature is None else Setting(temperature, "temperature"),
        top_p=opt_number(body, "top_p", "top_p", maximum=1),
        reasoning=None if effort is None else Reasoning(effort=effort),
        response_format=_response_format(body),
        user=opt_str(body, "safety_identifier", "safety_identifier")
        or opt_str(body, "user", "user"),
        chat_only=_chat_only(body),
        ignored=notes.result(),
    )


def _messages(body: dict[str, object], notes: Notes) -> tuple[tuple[str, ...], tuple[Turn, ...]]:
    system: list[str] = []
    turns: list[Turn] = []
    results: list[ToolResult] = []
    for i, raw in enumerate(as_list(body.get("messages"), "messages")):
        param = f"messages[{i}]"
        message = as_object(raw, param)
        if "name" in message:
            notes.add("messages[].name")
        role = message.get("role")
        if role != "tool" and results:
            turns.append(Turn("user", tuple(results)))
            results = []
        match role:
            case "system" | "developer":
                system.extend(_texts(message.get("content"), f"{param}.content"))
            case "user":
                turns.append(Turn("user", _user_content(message.get("content"), param)))
            case "assistant":
                turns.append(Turn("assistant", _assistant(message, param)))
            case "tool":
                content = _texts(message.get("content"), f"{param}.content")
                call_id = as_str(message.get("tool_call_id"), f"{param}.tool_call_id")
                results.append(ToolResult(call_id, tuple(Text(text) for text in content)))
            case "function":
                raise invalid(f"{param}.role", "legacy `function` messages cannot be translated.")
            case _:
                raise invalid(
                    f"{param}.role", "must be system, developer, user, assistant or tool."
                )
    if results:
        turns.append(Turn("user", tuple(results)))
    return tuple(system), tuple(turns)


def _texts(content: object, param: str) -> tuple[str, ...]:
    """A string or an array of text parts (system, developer and tool messages)."""
    if isinstance(content, str):
        return (content,)
    texts: list[str] = []
    for j, raw in enumerate(as_list(content, param)):
        part = as_object(raw, f"{param}[{j}]")
        if part.get("type") != "text":
            raise invalid(f"{param}[{j}].type", "only `text` parts are allowed here.")
        texts.append(as_str(part.get("text"), f"{param}[{j}].text"))
    return tuple(texts)


def _user_content(content: object, param: str) -> tuple[Part, ...]:
    if isinstance(content, str):
        return (Text(content),)
    parts: list[Part] = []
    for j, raw in enumerate(as_list(content, f"{param}.content")):
        path = f"{param}.content[{j}]"
        part = as_object(raw, path)
        match part.get("type"):
            case "text":
                parts.append(Text(as_str(part.get("text"), f"{path}.text")))
            case "image_url":
                image = as_object(part.get("image_url"), f"{path}.image_url")
                url = f"{path}.image_url.url"
                parts.append(Image(url_source(image.get("url"), url), url))
            case "file":
                parts.append(_file(as_object(part.get("file"), f"{path}.file"), f"{path}.file"))
            case other:
                raise invalid(f"{path}.type", f"a `{other}` part cannot be translated.")
    return tuple(parts)


def _file(file: dict[str, object], path: str) -> Document:
    if file.get("file_id") is not None:
        raise invalid(f"{path}.file_id", "uploaded files cannot be translated; send `file_data`.")
    source = data_url(as_str(file.get("file_data"), f"{path}.file_data"))
    if source is None:
        raise invalid(f"{path}.file_data", "must be a base64 `data:` URL.")
    filename = opt_str(file, "filename", f"{path}.filename")
    return Document(source, f"{path}.file_data", filename)


def _assistant(message: dict[str, object], param: str) -> tuple[Part, ...]:
    parts: list[Part] = []
    content = message.get("content")
    if isinstance(content, str):
        parts.append(Text(content))
    elif content is not None:
        for j, raw in enumerate(as_list(content, f"{param}.content")):
            path = f"{param}.content[{j}]"
            part = as_object(raw, path)
            match part.get("type"):
                case "text":
                    parts.append(Text(as_str(part.get("text"), f"{path}.text")))
                case "refusal":
                    parts.append(Text(as_str(part.get("refusal"), f"{path}.refusal")))
                case other:
                    raise invalid(
                        f"{path}.type", f"a `{other}` part is not allowed in an assistant turn."
                    )
    refusal = opt_str(message, "refusal", f"{param}.refusal")
    if refusal:
        parts.append(Text(refusal))
    if message.get("function_call") is not None:
        raise invalid(f"{param}.function_call", "legacy function calls cannot be translated.")
    calls = message.get("tool_calls")
    for j, raw in enumerate(() if calls is None else as_list(calls, f"{param}.tool_calls")):
        path = f"{param}.tool_calls[{j}]"
        call = as_object(raw, path)
        if call.get("type", "function") != "function":
            raise invalid(f"{path}.type", "only `function` tool calls can be translated.")
        function = as_object(call.get("function"), f"{path}.function")
        call_id = as_str(call.get("id"), f"{path}.id")
        if not call_id:
            raise invalid(f"{path}.id", "must not be empty.")
        parts.append(
            ToolCall(
                id=call_id,
                name=as_str(function.get("name"), f"{path}.function.name"),
                arguments=json_object_text(function.get("arguments"), f"{path}.function.arguments"),
            )
        )
    return tuple(parts)


def _tools(body: dict[str, object]) -> tuple[Tool, ...]:
    if body.get("tools") is None:
        return ()
    tools: list[Tool] = []
    for i, raw in enumerate(as_list(body["tools"], "tools")):
        path = f"tools[{i}]"
        tool = as_object(raw, path)
        if tool.get("type") != "function":
            raise invalid(f"{path}.type", f"a `{tool.get('type')}` tool cannot be translated.")
        function = as_object(tool.get("function"), f"{path}.function")
        parameters = function.get("parameters")
        schema = (
            None if parameters is None else json_object(parameters, f"{path}.function.parameters")
        )
        tools.append(
            Tool(
                name=as_str(function.get("name"), f"{path}.function.name"),
                description=opt_str(function, "description", f"{path}.function.description"),
                schema=_EMPTY_SCHEMA if schema is None else schema,
                strict=opt_bool(function, "strict", f"{path}.function.strict"),
            )
        )
    return tuple(tools)


def parse_openai_tool_choice(value: object, *, chat: bool) -> ToolChoice | None:
    """Chat's or Responses' ``tool_choice``: a mode string or a named function."""
    match value:
        case None:
            return None
        case "none" | "auto":
            return ToolChoice(value)
        case "required":
            return ToolChoice("any")
        case str():
            raise invalid("tool_choice", "must be `none`, `auto`, `required` or a function.")
        case _:
            pass
    choice = as_object(value, "tool_choice")
    if choice.get("type") != "function":
        raise invalid(
            "tool_choice.type", f"a `{choice.get('type')}` tool choice cannot be translated."
        )
    if chat:
        function = as_object(choice.get("function"), "tool_choice.function")
        return ToolChoice("tool", as_str(function.get("name"), "tool_choice.function.name"))
    return ToolChoice("tool", as_str(choice.get("name"), "tool_choice.name"))


def _stop(value: object) -> Setting[tuple[str, ...]] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return Setting((value,), "stop")
    stop = tuple(as_str(item, f"stop[{i}]") for i, item in enumerate(as_list(value, "stop")))
    return Setting(stop, "stop") if stop else None


def _response_format(body: dict[str, object]) -> ResponseFormat | None:
    raw = opt_object(body, "response_format", "response_format")
    if raw is None:
        return None
    match raw.get("type"):
        case "text":
            return None
        case "json_object":
            return ResponseFormat("json_object", "response_format")
        case "json_schema":
            schema = as_object(raw.get("json_schema"), "response_format.json_schema")
            return parse_json_schema(schema, "response_format", "response_format.json_schema")
        case _:
            raise invalid("response_format.type", "must be `text`, `json_object` or `json_schema`.")


def parse_json_schema(obj: dict[str, object], param: str, path: str) -> ResponseFormat:
    """The ``name``/``schema``/``strict``/``description`` of a JSON-schema format; ``param``
    is the client field a renderer names, ``path`` where these keys sit."""
    return ResponseFormat(
        "json_schema",
        param,
        name=opt_str(obj, "name", f"{path}.name"),
        schema=json_object(obj.get("schema"), f"{path}.schema"),
        strict=opt_bool(obj, "strict", f"{path}.strict"),
        description=opt_str(obj, "description", f"{path}.description"),
    )


def _chat_only(body: dict[str, object]) -> tuple[ChatOnly, ...]:
    """The Chat-only options set to something other than their default."""
    found: list[ChatOnly] = []
    logprobs = opt_bool(body, "logprobs", "logprobs")
    if logprobs:
        found.append(ChatOnly("logprobs", logprobs, "logprobs"))
    top_logprobs = opt_int(body, "top_logprobs", "top_logprobs")
    if top_logprobs:
        found.append(ChatOnly("top_logprobs", top_logprobs, "top_logprobs"))
    raw_bias = body.get("logit_bias")
    logit_bias = None if raw_bias is None else json_object(raw_bias, "logit_bias")
    if logit_bias:
        found.append(ChatOnly("logit_bias", logit_bias, "logit_bias"))
    for key in ("presence_penalty", "frequency_penalty"):
        penalty = opt_number(body, key, key, minimum=-2, maximum=2)
        if penalty:
            found.append(ChatOnly(key, penalty, key))
    return tuple(found)
