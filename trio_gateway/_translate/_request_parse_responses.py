"""Read an OpenAI Responses request body into a :class:`Conversation` (protocols.md §3.1–§3.3).

Theory of operation: ``instructions`` and every ``system``/``developer`` message are hoisted
into the system texts, in order. Input items are grouped into turns the way the Responses API
emits them: a ``reasoning`` item, the assistant ``message`` and its ``function_call`` items
form one assistant turn; consecutive ``function_call_output`` items form one user turn.

``reasoning`` items round-trip statelessly (protocols.md §5.7): one whose
``encrypted_content`` the gateway made from an Anthropic thinking block
(``unpack_anthropic_thinking``) becomes that block again. Any other is listed as ignored
(``input[i]``): only a Responses upstream could use it, so it is kept as a
:class:`Thinking` whose signature packs the item (``pack_openai_reasoning``), which the
Anthropic and Chat renderers drop.

Invariants:

- Raises nothing but :class:`~trio_gateway._errors.InvalidRequest`, whose ``param`` is the
  JSON path of the offending field.
- Server-side state (``previous_response_id``, ``conversation``, ``item_reference``,
  ``prompt``) is refused: the gateway is stateless.
"""

from __future__ import annotations

from typing import Final

from trio_gateway._translate._request_model import (
    Conversation,
    Document,
    Image,
    Part,
    Reasoning,
    RedactedThinking,
    ResponseFormat,
    Role,
    Setting,
    Text,
    Thinking,
    Tool,
    ToolCall,
    ToolResult,
    Turn,
)
from trio_gateway._translate._request_parse_chat import (
    parse_json_schema,
    parse_openai_tool_choice,
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
from trio_gateway._translate._signature import pack_openai_reasoning, unpack_anthropic_thinking

__all__ = ["parse_responses"]

_UNDERSTOOD: Final = frozenset(
    {
        "model",
        "input",
        "instructions",
        "stream",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "temperature",
        "top_p",
        "reasoning",
        "text",
        "user",
        "safety_identifier",
        "background",
        "top_logprobs",
    }
)
_ADVISORY: Final = frozenset(
    {
        "store",
        "metadata",
        "include",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "truncation",
        "stream_options",
    }
)
# Server-side state or features the gateway cannot offer, refused when set.
_REFUSED: Final = ("previous_response_id", "conversation", "prompt", "max_tool_calls")
_TEXT_PARTS: Final = frozenset({"input_text", "output_text"})
_SUMMARIES: Final = frozenset({"auto", "concise", "detailed"})
_EMPTY_SCHEMA: Final = {"type": "object", "properties": {}}


class _Turns:
    """Turns under construction: items join the current turn or start a new one."""

    __slots__ = ("parts", "roles")

    def __init__(self) -> None:
        self.roles: list[Role] = []
        self.parts: list[list[Part]] = []

    def last(self, role: Role) -> list[Part] | None:
        if self.roles and self.roles[-1] == role:
            return self.parts[-1]
        return None

    def start(self, role: Role, parts: list[Part]) -> None:
        self.roles.append(role)
        self.parts.append(parts)

    def add(self, role: Role, part: Part, *, join: bool) -> None:
        current = self.last(role)
        if join and current is not None:
            current.append(part)
        else:
            self.start(role, [part])

    def result(self) -> tuple[Turn, ...]:
        return tuple(Turn(r, tuple(p)) for r, p in zip(self.roles, self.parts, strict=True))


def parse_responses(body: dict[str, object]) -> Conversation:
    """Read a Responses request (see the module docstring).

    Raises:
        InvalidRequest: a field is malformed or cannot be translated; ``param`` names it.
    """
    notes = Notes()
    check_fields(body, _UNDERSTOOD | frozenset(_REFUSED), _ADVISORY, notes)
    for key in _REFUSED:
        if body.get(key) is not None:
            raise invalid(key, "needs server-side state or features the gateway does not offer.")
    if opt_bool(body, "background", "background"):
        raise invalid("background", "background responses cannot be translated.")
    if opt_int(body, "top_logprobs", "top_logprobs"):
        raise invalid("top_logprobs", "log probabilities cannot be translated.")
    system: list[str] = []
    instructions = opt_str(body, "instructions", "instructions")
    if instructions is not None:
        system.append(instructions)
    turns = _input(body.get("input"), system, notes)
    text = opt_object(body, "text", "text") or {}
    if "verbosity" in text:
        notes.add("text.verbosity")
    temperature = opt_number(body, "temperature", "temperature", maximum=2)
    return Conversation(
        client="openai-responses",
        system=tuple(system),
        turns=turns,
        tools=_tools(body),
        tool_choice=parse_openai_tool_choice(body.get("tool_choice"), chat=False),
        parallel_tool_calls=opt_bool(body, "parallel_tool_calls", "parallel_tool_calls"),
        max_tokens=opt_int(body, "max_output_tokens", "max_output_tokens", minimum=1),
        temperature=None if temperature is None else Setting(temperature, "temperature"),
        top_p=opt_number(body, "top_p", "top_p", maximum=1),
        reasoning=_reasoning(body),
        response_format=_format(text),
        user=opt_str(body, "safety_identifier", "safety_identifier")
        or opt_str(body, "user", "user"),
        ignored=notes.result(),
    )


def _input(value: object, system: list[str], notes: Notes) -> tuple[Turn, ...]:
    if isinstance(value, str):
        return (Turn("user", (Text(value),)),)
    turns = _Turns()
    for i, raw in enumerate(as_list(value, "input")):
        path = f"input[{i}]"
        item = as_object(raw, path)
        kind = item.get("type", "message" if "role" in item else None)
        match kind:
            case "message":
                _message(item, path, turns, system)
            case "function_call":
                call_id = _nonempty(item.get("call_id"), f"{path}.call_id")
                call = ToolCall(
                    id=call_id,
                    name=as_str(item.get("name"), f"{path}.name"),
                    arguments=json_object_text(item.get("arguments"), f"{path}.arguments"),
                )
                turns.add("assistant", call, join=True)
            case "function_call_output":
                result = ToolResult(
                    call_id=_nonempty(item.get("call_id"), f"{path}.call_id"),
                    parts=_output(item.get("output"), f"{path}.output"),
                )
                current = turns.last("user")
                join = current is not None and all(isinstance(p, ToolResult) for p in current)
                turns.add("user", result, join=join)
            case "reasoning":
                part = _reasoning_item(item, path, notes)
                if part is not None:
                    turns.add("assistant", part, join=True)
            case "item_reference":
                raise invalid(f"{path}.type", "item references need server-side state.")
            case _:
                raise invalid(f"{path}.type", f"a `{kind}` item cannot be translated.")
    return turns.result()


def _nonempty(value: object, param: str) -> str:
    text = as_str(value, param)
    if not text:
        raise invalid(param, "must not be empty.")
    return text


def _message(item: dict[str, object], path: str, turns: _Turns, system: list[str]) -> None:
    role = item.get("role")
    content = item.get("content")
    match role:
        case "system" | "developer":
            texts = _parts(content, path, allow_media=False)
            system.extend(p.text for p in texts if isinstance(p, Text))
        case "user":
            turns.start("user", _parts(content, path, allow_media=True))
        case "assistant":
            parts = _parts(content, path, allow_media=False)
            current = turns.last("assistant")
            # A reasoning item and the message that follows it are one answer.
            if current is not None and not any(isinstance(p, Text | ToolCall) for p in current):
                current.extend(parts)
            else:
                turns.start("assistant", parts)
        case _:
            raise invalid(f"{path}.role", "must be user, assistant, system or developer.")


def _parts(content: object, path: str, *, allow_media: bool) -> list[Part]:
    if isinstance(content, str):
        return [Text(content)]
    parts: list[Part] = []
    for j, raw in enumerate(as_list(content, f"{path}.content")):
        part_path = f"{path}.content[{j}]"
        part = as_object(raw, part_path)
        kind = as_str(part.get("type"), f"{part_path}.type")
        if kind in _TEXT_PARTS:
            parts.append(Text(as_str(part.get("text"), f"{part_path}.text")))
        elif kind == "refusal":
            parts.append(Text(as_str(part.get("refusal"), f"{part_path}.refusal")))
        elif kind == "input_image" and allow_media:
            parts.append(_image(part, part_path))
        elif kind == "input_file" and allow_media:
            parts.append(_file(part, part_path))
        else:
            raise invalid(f"{part_path}.type", f"a `{kind}` part cannot be translated here.")
    return parts


def _image(part: dict[str, object], path: str) -> Image:
    if part.get("file_id") is not None:
        raise invalid(f"{path}.file_id", "uploaded files cannot be translated; send `image_url`.")
    url = f"{path}.image_url"
    return Image(url_source(part.get("image_url"), url), url)


def _file(part: dict[str, object], path: str) -> Document:
    for key in ("file_id", "file_url"):
        if part.get(key) is not None:
            raise invalid(f"{path}.{key}", "only inline `file_data` can be translated.")
    source = data_url(as_str(part.get("file_data"), f"{path}.file_data"))
    if source is None:
        raise invalid(f"{path}.file_data", "must be a base64 `data:` URL.")
    return Document(source, f"{path}.file_data", opt_str(part, "filename", f"{path}.filename"))


def _output(value: object, path: str) -> tuple[Text | Image, ...]:
    """A ``function_call_output.output``: a string or input_text / input_image parts."""
    if isinstance(value, str):
        return (Text(value),)
    parts: list[Text | Image] = []
    for k, raw in enumerate(as_list(value, path)):
        part_path = f"{path}[{k}]"
        part = as_object(raw, part_path)
        match part.get("type"):
            case "input_text" | "output_text":
                parts.append(Text(as_str(part.get("text"), f"{part_path}.text")))
            case "input_image":
                parts.append(_image(part, part_path))
            case other:
                raise invalid(
                    f"{part_path}.type", f"a `{other}` part cannot be translated in an output."
                )
    return tuple(parts)


def _reasoning_item(
    item: dict[str, object], path: str, notes: Notes
) -> Thinking | RedactedThinking | None:
    summary: list[str] = []
    raw_summary = item.get("summary")
    for k, raw in enumerate(() if raw_summary is None else as_list(raw_summary, f"{path}.summary")):
        entry = as_object(raw, f"{path}.summary[{k}]")
        summary.append(as_str(entry.get("text"), f"{path}.summary[{k}].text"))
    encrypted = opt_str(item, "encrypted_content", f"{path}.encrypted_content")
    match unpack_anthropic_thinking(encrypted):
        case ("thinking", signature):
            return Thinking("\n\n".join(summary), signature)
        case ("redacted_thinking", data):
            return RedactedThinking(data)
        case _:
            pass
    notes.add(path)
    item_id = item.get("id")
    if not isinstance(item_id, str) or not item_id:
        return None
    return Thinking("\n\n".join(summary), pack_openai_reasoning(item_id, encrypted))


def _tools(body: dict[str, object]) -> tuple[Tool, ...]:
    if body.get("tools") is None:
        return ()
    tools: list[Tool] = []
    for i, raw in enumerate(as_list(body["tools"], "tools")):
        path = f"tools[{i}]"
        tool = as_object(raw, path)
        if tool.get("type") != "function":
            raise invalid(
                f"{path}.type", f"the built-in tool `{tool.get('type')}` cannot be translated."
            )
        parameters = tool.get("parameters")
        schema = None if parameters is None else json_object(parameters, f"{path}.parameters")
        tools.append(
            Tool(
                name=as_str(tool.get("name"), f"{path}.name"),
                description=opt_str(tool, "description", f"{path}.description"),
                schema=_EMPTY_SCHEMA if schema is None else schema,
                strict=opt_bool(tool, "strict", f"{path}.strict"),
            )
        )
    return tuple(tools)


def _reasoning(body: dict[str, object]) -> Reasoning | None:
    raw = opt_object(body, "reasoning", "reasoning")
    if raw is None:
        return None
    effort = opt_effort(raw, "effort", "reasoning.effort")
    summary = opt_str(raw, "summary", "reasoning.summary") or opt_str(
        raw, "generate_summary", "reasoning.generate_summary"
    )
    if summary is not None and summary not in _SUMMARIES:
        raise invalid("reasoning.summary", "must be `auto`, `concise` or `detailed`.")
    if effort is None and summary is None:
        return None
    return Reasoning(effort=effort, summary=summary)


def _format(text: dict[str, object]) -> ResponseFormat | None:
    raw = opt_object(text, "format", "text.format")
    if raw is None:
        return None
    match raw.get("type"):
        case "text":
            return None
        case "json_object":
            return ResponseFormat("json_object", "text.format")
        case "json_schema":
            return parse_json_schema(raw, "text.format", "text.format")
        case _:
            raise invalid("text.format.type", "must be `text`, `json_object` or `json_schema`.")
