"""Strict request validation for the mock upstream (sans-IO).

Theory of operation: the gateway translates between dialects, so the body the mock receives
is often written by the gateway's translator. The mock rejects what the real APIs reject, so
an end-to-end test sees a translator bug as a 400 instead of a plausible answer to a request
no real upstream would have taken. :func:`validate_request` walks the body of one endpoint
and returns the first :class:`Violation`: the dotted JSON path of the offending field
(``messages.1.content.0``) and a message worded like the real API's (Anthropic's
pydantic-style "Field required", OpenAI's "Missing required parameter: 'tools[0].name'.").
The routes turn it into that dialect's 400 body, with the message ``"<path>: <text>"``.

Rules (protocols.md §1.2-§1.4, §2.2, §3.1-§3.3, §5.1):
    * Anthropic ``/v1/messages`` (and ``count_tokens``, minus ``max_tokens``): required
      ``model``/``max_tokens``/``messages``; known block types, each in its role; no empty
      or whitespace-only text; every ``tool_use`` answered by ``tool_result`` blocks that
      open the next user message; tool names, ids and schemas; ``tool_choice``;
      ``thinking`` budget and the thinking-before-tool_use rule; sampling ranges.
    * Chat ``/v1/chat/completions``: roles and content parts per role; every assistant
      ``tool_calls`` answered by one ``tool`` message per id before the next user or
      assistant message, and no ``tool`` message without its call; string ``arguments``;
      nested function tools; ``stop``/``temperature``/``n``/token limits/``stream_options``.
    * Responses ``/v1/responses``: input items and their content parts per role; every
      ``function_call_output`` after its ``function_call`` and every call answered; flat
      function tools; no ``stop``; ``max_output_tokens`` >= 16; reasoning items with ``id``
      and ``summary``.

Deliberate leniencies (do not "fix" them without reading the tests that rely on them):
    * Unknown top-level fields pass: Anthropic betas must, and the mock's own server tests
      send one body (``messages``, ``max_tokens``, ``stream_options``) to all three
      endpoints. Responses rejects only the Chat/Anthropic names a translator is likely to
      leak (:data:`_RESPONSES_FOREIGN`).
    * A Responses body may omit ``input`` (the real API allows it with
      ``previous_response_id``/``conversation``).
    * ``null`` for an optional field counts as absent.

Size: about 850 lines, over the 600-line mark, because the three dialects' rules live
together as the mock's file plan has it (one ``_validate`` module). The sections below
share only :class:`_Fields`; each could move to a module of its own unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, NoReturn, TypeVar

__all__ = ["Endpoint", "Violation", "validate_request"]

Endpoint = Literal["messages", "count_tokens", "chat", "responses"]
Path = tuple[str | int, ...]
_Style = Literal["anthropic", "openai"]
_T = TypeVar("_T")

# Anthropic tool docs and the OpenAI function-calling guide document the same name rule.
_TOOL_NAME: Final = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# protocols.md §1.3: Anthropic tool_use ids (foreign ids such as "call:1" must be sanitised).
_TOOL_USE_ID: Final = re.compile(r"[a-zA-Z0-9_-]+")
_IMAGE_TYPES: Final = ("image/jpeg", "image/png", "image/gif", "image/webp")
_DOCUMENT_SOURCES: Final = ("base64", "text", "url", "content", "file")
_RESULT_BLOCKS: Final = ("text", "image", "document", "search_result")
_THINKING_MIN_BUDGET: Final = 1024  # Anthropic: budget_tokens >= 1024 and < max_tokens
_CHAT_STOP_MAX: Final = 4  # Chat: "Up to 4 sequences"
_RESPONSES_MIN_OUTPUT: Final = 16  # Responses: "Expected a value >= 16"
# Anthropic server-tool blocks pass through between Anthropic endpoints (§1.3); any other
# ``*_tool_result`` type (web_search_, web_fetch_, code_execution_, ...) is one as well.
_SERVER_BLOCKS: Final = frozenset({
    "server_tool_use", "mcp_tool_use", "mcp_tool_result", "container_upload", "search_result",
})  # fmt: skip
_THINKING_BLOCKS: Final = ("thinking", "redacted_thinking")
_ASSISTANT_ONLY: Final = frozenset({"tool_use", *_THINKING_BLOCKS})
_CHAT_PARTS: Final[Mapping[str, tuple[str, ...]]] = {
    "system": ("text",),
    "developer": ("text",),
    "user": ("text", "image_url", "input_audio", "file"),
    "assistant": ("text", "refusal"),
    "tool": ("text",),
}
_INPUT_PARTS: Final = ("input_text", "input_image", "input_file")
_RESPONSES_PARTS: Final[Mapping[str, tuple[str, ...]]] = {
    "user": _INPUT_PARTS,
    "system": _INPUT_PARTS,
    "developer": _INPUT_PARTS,
    "assistant": ("output_text", "refusal"),
}
# Built-in tool items a Responses input may replay; they are not checked further.
_BUILTIN_ITEMS: Final = frozenset({
    "web_search_call", "file_search_call", "computer_call", "computer_call_output",
    "code_interpreter_call", "image_generation_call", "local_shell_call",
    "local_shell_call_output", "shell_call", "shell_call_output", "apply_patch_call",
    "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request",
    "mcp_approval_response", "mcp_call", "custom_tool_call", "custom_tool_call_output",
    "compaction",
})  # fmt: skip
# Chat/Anthropic parameters that the Responses API rejects and a translator may leak.
_RESPONSES_FOREIGN: Final = ("stop", "stop_sequences", "max_completion_tokens", "system", "n")


@dataclass(frozen=True, slots=True)
class Violation:
    """The first rule a request breaks.

    Attributes:
        path: the dotted JSON path of the offending field, e.g. ``messages.1.content.0``.
        message: what is wrong, worded like the real API.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class _ViolationError(Exception):
    """Carries a :class:`Violation` out of the nested checks; never leaves this module."""

    def __init__(self, violation: Violation) -> None:
        super().__init__(str(violation))
        self.violation = violation


def validate_request(endpoint: Endpoint, body: Mapping[str, object]) -> Violation | None:
    """Check a request body the way the endpoint's real API would.

    Args:
        endpoint: which endpoint received the body.
        body: the parsed JSON object.

    Returns:
        The first violation found, or ``None`` when the real API would accept the body.
    """
    try:
        match endpoint:
            case "messages" | "count_tokens":
                _check_anthropic(body, count_only=endpoint == "count_tokens")
            case "chat":
                _check_chat(body)
            case "responses":
                _check_responses(body)
    except _ViolationError as error:
        return error.violation
    return None


# --- typed field access, worded per API ---------------------------------------------------


def _dotted(path: Path) -> str:
    return ".".join(str(part) for part in path)


def _bracketed(path: Path) -> str:
    """``tools[0].name``: how OpenAI names a parameter in its messages."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else part
    return out


def _json_type(value: object) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int():
            return "an integer"
        case float():
            return "a decimal"
        case str():
            return "a string"
        case list():
            return "an array"
    return "an object"


def _listing(items: Sequence[str], last: str) -> str:
    quoted = [f"'{item}'" for item in items]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} {last} {quoted[-1]}"


# JSON type -> (pydantic's "Input should be ..." wording, OpenAI's "expected ..." wording)
_TYPE_WORDS: Final = {
    "string": ("a valid string", "a string"),
    "integer": ("a valid integer", "an integer"),
    "number": ("a valid number", "a decimal"),
    "boolean": ("a valid boolean", "a boolean"),
    "array": ("a valid list", "an array"),
    "object": ("a valid dictionary", "an object"),
}


@dataclass(frozen=True, slots=True)
class _Fields:
    """Typed access to JSON values that fails with the API's own wording.

    Converters take ``(value, path)`` and return the narrowed value; :meth:`req` and
    :meth:`optional` apply one to a member of an object.
    """

    style: _Style

    def fail(self, path: Path, message: str) -> NoReturn:
        raise _ViolationError(Violation(_dotted(path), message))

    def need(self, obj: Mapping[str, object], key: str, path: Path) -> object:
        value = obj.get(key)
        if value is None:
            missing = f"Missing required parameter: '{_bracketed((*path, key))}'."
            self.fail((*path, key), missing if self.style == "openai" else "Field required")
        return value

    def req(
        self, obj: Mapping[str, object], key: str, path: Path, check: Callable[[object, Path], _T]
    ) -> _T:
        return check(self.need(obj, key, path), (*path, key))

    def optional(
        self,
        obj: Mapping[str, object],
        key: str,
        path: Path,
        check: Callable[[object, Path], object],
    ) -> None:
        if obj.get(key) is not None:
            check(obj[key], (*path, key))

    def wrong_type(self, value: object, path: Path, expected: str) -> NoReturn:
        pydantic, openai = _TYPE_WORDS[expected]
        if self.style == "anthropic":
            self.fail(path, f"Input should be {pydantic}")
        got = _json_type(value)
        self.fail(
            path,
            f"Invalid type for '{_bracketed(path)}': expected {openai}, but got {got} instead.",
        )

    def string(self, value: object, path: Path) -> str:
        if not isinstance(value, str):
            self.wrong_type(value, path, "string")
        return value

    def integer(self, value: object, path: Path, *, minimum: int | None = None) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            self.wrong_type(value, path, "integer")
        if minimum is not None and value < minimum:
            self.out_of_range(path, value, minimum, kind="integer")
        return value

    def number(self, value: object, path: Path, *, low: float, high: float) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.wrong_type(value, path, "number")
        if value < low:
            self.out_of_range(path, value, low, kind="decimal")
        if value > high:
            self.out_of_range(path, value, high, kind="decimal", above=True)
        return value

    def out_of_range(
        self, path: Path, value: float, limit: float, *, kind: str, above: bool = False
    ) -> NoReturn:
        if self.style == "anthropic":
            relation = "less" if above else "greater"
            self.fail(path, f"Input should be {relation} than or equal to {limit}")
        side, bound = ("above maximum", "<=") if above else ("below minimum", ">=")
        self.fail(
            path,
            f"Invalid '{_bracketed(path)}': {kind} {side} value. "
            f"Expected a value {bound} {limit}, but got {value} instead.",
        )

    def boolean(self, value: object, path: Path) -> bool:
        if not isinstance(value, bool):
            self.wrong_type(value, path, "boolean")
        return value

    def array(self, value: object, path: Path) -> list[object]:
        if not isinstance(value, list):
            self.wrong_type(value, path, "array")
        return value

    def mapping(self, value: object, path: Path) -> Mapping[str, object]:
        if not isinstance(value, dict):
            self.wrong_type(value, path, "object")
        return value

    def strings(self, value: object, path: Path) -> list[str]:
        return [self.string(item, (*path, n)) for n, item in enumerate(self.array(value, path))]

    def choice(self, value: object, path: Path, allowed: Sequence[str]) -> str:
        text = self.string(value, path)
        if text not in allowed:
            if self.style == "anthropic":  # pydantic: "Input should be 'a', 'b' or 'c'"
                self.fail(path, f"Input should be {_listing(allowed, 'or')}")
            listed = _listing(allowed, "and")
            self.fail(path, f"Invalid value: '{text}'. Supported values are: {listed}.")
        return text

    def pick(self, obj: Mapping[str, object], key: str, path: Path, allowed: Sequence[str]) -> str:
        return self.choice(self.need(obj, key, path), (*path, key), allowed)

    def matching(self, value: object, path: Path, pattern: re.Pattern[str]) -> str:
        text = self.string(value, path)
        if not pattern.fullmatch(text):
            if self.style == "anthropic":
                self.fail(path, f"String should match pattern '^{pattern.pattern}$'")
            self.fail(
                path,
                f"Invalid '{_bracketed(path)}': string does not match pattern. Expected a "
                f"string that matches the pattern '^{pattern.pattern}$'.",
            )
        return text

    def tool_name(self, value: object, path: Path) -> str:
        return self.matching(value, path, _TOOL_NAME)


_A: Final = _Fields("anthropic")
_O: Final = _Fields("openai")


# --- Anthropic Messages (protocols.md §1.2-1.4) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class _Turn:
    """One validated Anthropic message: its role and blocks (``()`` for string content)."""

    role: str
    blocks: Sequence[Mapping[str, object]]

    @property
    def kinds(self) -> list[object]:
        return [block["type"] for block in self.blocks]

    def ids(self, kind: str, key: str) -> list[str]:
        return [str(block[key]) for block in self.blocks if block["type"] == kind]


def _check_anthropic(body: Mapping[str, object], *, count_only: bool) -> None:
    _A.req(body, "model", (), _A.string)
    max_tokens = None if count_only else _A.req(body, "max_tokens", (), _positive)
    messages = _A.req(body, "messages", (), _A.array)
    if not messages:
        _A.fail(("messages",), "at least one message is required")
    last = len(messages) - 1
    turns = [_anthropic_turn(message, n, is_last=n == last) for n, message in enumerate(messages)]
    _check_tool_pairing(turns)
    _A.optional(body, "system", (), _anthropic_system)
    _A.optional(body, "tools", (), _anthropic_tools)
    _A.optional(body, "tool_choice", (), _anthropic_tool_choice)
    thinking = body.get("thinking")
    mode = "disabled" if thinking is None else _anthropic_thinking(thinking, max_tokens)
    _check_thinking_turns(turns, mode=mode)
    _A.optional(body, "temperature", (), _unit_interval)
    _A.optional(body, "top_p", (), _unit_interval)
    _A.optional(body, "top_k", (), lambda value, path: _A.integer(value, path, minimum=0))
    _A.optional(body, "stop_sequences", (), _A.strings)
    _A.optional(body, "stream", (), _A.boolean)
    _A.optional(body, "metadata", (), _A.mapping)


def _positive(value: object, path: Path) -> int:
    return _A.integer(value, path, minimum=1)


def _unit_interval(value: object, path: Path) -> float:
    return _A.number(value, path, low=0, high=1)


def _anthropic_turn(message: object, n: int, *, is_last: bool) -> _Turn:
    path: Path = ("messages", n)
    fields = _A.mapping(message, path)
    role = _A.pick(fields, "role", path, ("user", "assistant"))
    content = _A.need(fields, "content", path)
    may_be_empty = is_last and role == "assistant"  # an empty prefill is allowed
    if isinstance(content, str):
        if not content.strip() and not (may_be_empty and not content):
            _A.fail((*path, "content"), "text content blocks must be non-empty")
        return _Turn(role, ())
    blocks = _A.array(content, (*path, "content"))
    if not blocks and not may_be_empty:
        _A.fail(
            path,
            "all messages must have non-empty content except for the optional final "
            "assistant message",
        )
    return _Turn(
        role, [_anthropic_block(b, (*path, "content", k), role) for k, b in enumerate(blocks)]
    )


def _anthropic_block(value: object, path: Path, role: str) -> Mapping[str, object]:
    block = _A.mapping(value, path)
    kind = _A.req(block, "type", path, _A.string)
    if kind in _ASSISTANT_ONLY and role != "assistant":
        _A.fail(path, f"`{kind}` blocks can only be in `assistant` messages")
    if kind == "tool_result" and role != "user":
        _A.fail(path, "`tool_result` blocks can only be in `user` messages")
    match kind:
        case "text":
            _text_block(block, path)
        case "image":
            _A.req(block, "source", path, _image_source)
        case "document":
            source = _A.req(block, "source", path, _A.mapping)
            _A.pick(source, "type", (*path, "source"), _DOCUMENT_SOURCES)
        case "tool_use":
            _A.req(block, "id", path, lambda v, p: _A.matching(v, p, _TOOL_USE_ID))
            _A.req(block, "name", path, _A.string)
            _A.req(block, "input", path, _A.mapping)
        case "tool_result":
            _tool_result(block, path)
        case "thinking":
            _A.req(block, "thinking", path, _A.string)
            _A.req(block, "signature", path, _A.string)
        case "redacted_thinking":
            _A.req(block, "data", path, _A.string)
        case _ if kind not in _SERVER_BLOCKS and not kind.endswith("_tool_result"):
            message = f"Input tag '{kind}' found using 'type' does not match any expected tag"
            _A.fail((*path, "type"), message)
    return block


def _text_block(block: Mapping[str, object], path: Path) -> None:
    text = _A.req(block, "text", path, _A.string)
    if not text.strip():  # newer API: whitespace-only is rejected too (protocols.md §1.3)
        _A.fail((*path, "text"), "text content blocks must be non-empty")


def _image_source(value: object, path: Path) -> None:
    source = _A.mapping(value, path)
    if _A.pick(source, "type", path, ("base64", "url")) == "base64":
        _A.pick(source, "media_type", path, _IMAGE_TYPES)
        _A.req(source, "data", path, _A.string)
    else:
        _A.req(source, "url", path, _A.string)


def _tool_result(block: Mapping[str, object], path: Path) -> None:
    _A.req(block, "tool_use_id", path, _A.string)
    _A.optional(block, "is_error", path, _A.boolean)
    content = block.get("content")
    if content is None or isinstance(content, str):
        return
    for k, value in enumerate(_A.array(content, (*path, "content"))):
        inner = (*path, "content", k)
        part = _A.mapping(value, inner)
        kind = _A.pick(part, "type", inner, _RESULT_BLOCKS)
        if kind == "text":
            _text_block(part, inner)
        elif kind == "image":
            _A.req(part, "source", inner, _image_source)


def _check_tool_pairing(turns: Sequence[_Turn]) -> None:
    """Every tool_use is answered by tool_result blocks opening the next user message."""
    expected: list[str] = []
    for n, turn in enumerate(turns):
        if turn.role == "user":
            _results_follow(turn, n, expected)
        elif expected:
            _missing_results(n - 1, expected)
        expected = turn.ids("tool_use", "id")
        if len(set(expected)) != len(expected):
            _A.fail(("messages", n), "`tool_use` ids must be unique")
    if expected:
        _missing_results(len(turns) - 1, expected)


def _results_follow(turn: _Turn, n: int, expected: Sequence[str]) -> None:
    kinds = turn.kinds
    first_other = next((k for k, kind in enumerate(kinds) if kind != "tool_result"), len(kinds))
    if "tool_result" in kinds[first_other:]:
        _A.fail(
            ("messages", n, "content", first_other),
            "tool_result blocks must come first in the message, before any other content",
        )
    # tool_result blocks come first (checked above), so the k-th one is content block k.
    for k, tool_id in enumerate(turn.ids("tool_result", "tool_use_id")):
        if tool_id not in expected:
            _A.fail(
                ("messages", n, "content", k),
                f"unexpected `tool_use_id` found in `tool_result` blocks: {tool_id}. Each "
                "`tool_result` block must have a corresponding `tool_use` block in the "
                "previous message.",
            )
    answered = turn.ids("tool_result", "tool_use_id")
    missing = [tool_id for tool_id in expected if tool_id not in answered]
    if missing:
        _missing_results(n - 1, missing)


def _missing_results(n: int, ids: Sequence[str]) -> NoReturn:
    _A.fail(
        ("messages", n),
        f"`tool_use` ids were found without `tool_result` blocks immediately after: "
        f"{', '.join(ids)}. Each `tool_use` block must have a corresponding `tool_result` "
        "block in the next message.",
    )


def _check_thinking_turns(turns: Sequence[_Turn], *, mode: str) -> None:
    """protocols.md §1.3: the final assistant turn with tool_use opens with its thinking.

    Only for ``enabled``: with ``adaptive`` the model may not have thought last turn, so
    there may be no block to send back. Conversely, with thinking off, a final (prefill)
    assistant message may not carry thinking blocks.
    """
    final = next((n for n in reversed(range(len(turns))) if turns[n].role == "assistant"), None)
    if final is None:
        return
    kinds = turns[final].kinds
    path: Path = ("messages", final, "content", 0, "type")
    if mode == "enabled" and "tool_use" in kinds and kinds[0] not in _THINKING_BLOCKS:
        _A.fail(
            path,
            f"Expected `thinking` or `redacted_thinking`, but found `{kinds[0]}`. When "
            "`thinking` is enabled, a final `assistant` message must start with a thinking block.",
        )
    if mode == "disabled" and final == len(turns) - 1 and set(kinds) & set(_THINKING_BLOCKS):
        _A.fail(
            path,
            "When `thinking` is disabled, a final `assistant` message cannot contain "
            "`thinking` or `redacted_thinking` blocks.",
        )


def _anthropic_system(value: object, path: Path) -> None:
    if isinstance(value, str):
        return
    for k, item in enumerate(_A.array(value, path)):
        block = _A.mapping(item, (*path, k))
        _A.pick(block, "type", (*path, k), ("text",))
        _text_block(block, (*path, k))


def _anthropic_tools(value: object, path: Path) -> None:
    names: set[str] = set()
    for k, item in enumerate(_A.array(value, path)):
        tool_path = (*path, k)
        tool = _A.mapping(item, tool_path)
        kind = tool.get("type")
        if kind is None or kind == "custom":  # else a versioned server tool: pass it through
            name = _A.req(tool, "name", tool_path, _A.tool_name)
            schema = _A.req(tool, "input_schema", tool_path, _A.mapping)
            _A.pick(schema, "type", (*tool_path, "input_schema"), ("object",))
        else:
            name = _A.req(tool, "name", tool_path, _A.string)
        if name in names:
            _A.fail(path, f"Tool names must be unique: '{name}'")
        names.add(name)


def _anthropic_tool_choice(value: object, path: Path) -> None:
    choice = _A.mapping(value, path)
    kind = _A.pick(choice, "type", path, ("auto", "any", "tool", "none"))
    if kind == "tool":
        _A.req(choice, "name", path, _A.string)
    if kind != "none":
        _A.optional(choice, "disable_parallel_tool_use", path, _A.boolean)


def _anthropic_thinking(value: object, max_tokens: int | None) -> str:
    """Check ``thinking``; returns its type (``enabled``, ``disabled`` or ``adaptive``)."""
    path: Path = ("thinking",)
    thinking = _A.mapping(value, path)
    kind = _A.pick(thinking, "type", path, ("enabled", "disabled", "adaptive"))
    if kind == "enabled":
        minimum = _THINKING_MIN_BUDGET
        budget = _A.req(
            thinking, "budget_tokens", path, lambda v, p: _A.integer(v, p, minimum=minimum)
        )
        if max_tokens is not None and budget >= max_tokens:
            message = "`max_tokens` must be greater than `thinking.budget_tokens`"
            _A.fail((*path, "budget_tokens"), message)
    return kind


# --- OpenAI Chat Completions (protocols.md §2.2) --------------------------------------------


@dataclass(frozen=True, slots=True)
class _ChatMessage:
    """One validated Chat message: its role, its tool call ids, or the call it answers."""

    role: str
    call_ids: Sequence[str] = ()
    answers: str | None = None


def _check_chat(body: Mapping[str, object]) -> None:
    _O.req(body, "model", (), _O.string)
    messages = _O.req(body, "messages", (), _non_empty)
    _check_call_answers([_chat_message(message, n) for n, message in enumerate(messages)])
    _O.optional(body, "tools", (), _chat_tools)
    _O.optional(body, "tool_choice", (), _chat_tool_choice)
    _O.optional(body, "parallel_tool_calls", (), _O.boolean)
    for key in ("tool_choice", "parallel_tool_calls"):
        if body.get(key) not in (None, "none") and not body.get("tools"):
            message = (
                f"Invalid value for '{key}': '{key}' is only allowed when 'tools' are specified."
            )
            _O.fail((key,), message)
    _O.optional(body, "stop", (), _chat_stop)
    _O.optional(body, "temperature", (), lambda value, path: _O.number(value, path, low=0, high=2))
    _O.optional(body, "top_p", (), lambda value, path: _O.number(value, path, low=0, high=1))
    _check_chat_limits(body)


def _non_empty(value: object, path: Path) -> list[object]:
    items = _O.array(value, path)
    if not items:
        _O.fail(
            path,
            f"Invalid '{_bracketed(path)}': empty array. Expected an array with minimum "
            "length 1, but got an empty array instead.",
        )
    return items


def _check_chat_limits(body: Mapping[str, object]) -> None:
    for key in ("max_tokens", "max_completion_tokens"):
        _O.optional(body, key, (), lambda value, path: _O.integer(value, path, minimum=1))
    if body.get("max_tokens") is not None and body.get("max_completion_tokens") is not None:
        _O.fail(
            ("max_tokens",),
            "Invalid request: 'max_tokens' and 'max_completion_tokens' cannot both be set; "
            "use 'max_completion_tokens'.",
        )
    n = body.get("n")
    if n is not None and _O.integer(n, ("n",)) != 1:
        _O.fail(("n",), f"Invalid 'n': this upstream only supports n=1, got {n}.")
    _O.optional(body, "stream", (), _O.boolean)
    _O.optional(body, "stream_options", (), _O.mapping)
    if body.get("stream_options") is not None and body.get("stream") is not True:
        message = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        _O.fail(("stream_options",), message)


def _chat_message(value: object, n: int) -> _ChatMessage:
    path: Path = ("messages", n)
    message = _O.mapping(value, path)
    role = _O.pick(message, "role", path, tuple(_CHAT_PARTS))
    call_ids: list[str] = []
    if role == "assistant" and message.get("tool_calls") is not None:
        call_ids = _O.req(message, "tool_calls", path, _chat_tool_calls)
    content = message.get("content")
    if content is None and not (call_ids or message.get("function_call")):
        _O.need(message, "content", path)
    if content is not None and not isinstance(content, str):
        for k, part in enumerate(_O.array(content, (*path, "content"))):
            _chat_part(part, (*path, "content", k), _CHAT_PARTS[role])
    if role != "tool":
        return _ChatMessage(role, call_ids)
    return _ChatMessage(role, answers=_O.req(message, "tool_call_id", path, _O.string))


def _chat_part(value: object, path: Path, allowed: Sequence[str]) -> None:
    part = _O.mapping(value, path)
    kind = _O.pick(part, "type", path, allowed)
    if kind in ("text", "refusal"):
        _O.req(part, kind, path, _O.string)
    elif kind == "image_url":
        _O.req(_O.req(part, "image_url", path, _O.mapping), "url", (*path, "image_url"), _O.string)


def _chat_tool_calls(value: object, path: Path) -> list[str]:
    ids: list[str] = []
    for k, item in enumerate(_non_empty(value, path)):
        call_path = (*path, k)
        call = _O.mapping(item, call_path)
        ids.append(_O.req(call, "id", call_path, _O.string))
        _O.pick(call, "type", call_path, ("function",))
        function = _O.req(call, "function", call_path, _O.mapping)
        _O.req(function, "name", (*call_path, "function"), _O.string)
        _O.req(function, "arguments", (*call_path, "function"), _O.string)
    return ids


def _check_call_answers(messages: Sequence[_ChatMessage]) -> None:
    """Each assistant tool call gets one ``tool`` message before the next user/assistant."""
    calls: Sequence[str] = ()
    pending: list[str] = []
    opened_at = 0
    for n, message in enumerate(messages):
        if message.role in ("user", "assistant"):
            if pending:
                _unanswered(opened_at, pending)
            calls, pending, opened_at = message.call_ids, list(message.call_ids), n
        elif message.role == "tool":
            if message.answers not in calls:
                _O.fail(
                    ("messages", n, "role"),
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",  # sic, the API's spelling
                )
            if message.answers in pending:
                pending.remove(message.answers)
    if pending:
        _unanswered(opened_at, pending)


def _unanswered(n: int, ids: Sequence[str]) -> NoReturn:
    _O.fail(
        ("messages", n, "tool_calls"),
        "An assistant message with 'tool_calls' must be followed by tool messages responding "
        "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        f"{', '.join(ids)}",
    )


def _chat_tools(value: object, path: Path) -> None:
    for k, item in enumerate(_O.array(value, path)):
        tool_path = (*path, k)
        tool = _O.mapping(item, tool_path)
        _O.pick(tool, "type", tool_path, ("function",))
        _function_definition(
            _O.req(tool, "function", tool_path, _O.mapping), (*tool_path, "function")
        )


def _function_definition(function: Mapping[str, object], path: Path) -> None:
    """A function tool's fields: nested under ``function`` in Chat, flat in Responses."""
    _O.req(function, "name", path, _O.tool_name)
    _O.optional(function, "parameters", path, _O.mapping)
    _O.optional(function, "description", path, _O.string)
    _O.optional(function, "strict", path, _O.boolean)


def _chat_tool_choice(value: object, path: Path) -> None:
    if isinstance(value, str):
        _O.choice(value, path, ("none", "auto", "required"))
        return
    choice = _O.mapping(value, path)
    if _O.pick(choice, "type", path, ("function", "allowed_tools", "custom")) == "function":
        _O.req(_O.req(choice, "function", path, _O.mapping), "name", (*path, "function"), _O.string)


def _chat_stop(value: object, path: Path) -> None:
    if isinstance(value, str):
        return
    stops = _O.strings(value, path)
    if len(stops) > _CHAT_STOP_MAX:
        _O.fail(
            path,
            f"Invalid 'stop': array too long. Expected an array with maximum length "
            f"{_CHAT_STOP_MAX}, but got an array with length {len(stops)} instead.",
        )


# --- OpenAI Responses (protocols.md §3.1-3.3) -----------------------------------------------


def _check_responses(body: Mapping[str, object]) -> None:
    _O.req(body, "model", (), _O.string)
    for key in _RESPONSES_FOREIGN:
        if key in body:
            message = f"Unsupported parameter: '{key}'. It is not supported with the Responses API."
            _O.fail((key,), message)
    if body.get("input") is not None and not isinstance(body["input"], str):
        _responses_input(_O.array(body["input"], ("input",)))
    _O.optional(body, "instructions", (), _O.string)
    _O.optional(body, "tools", (), _responses_tools)
    _O.optional(body, "tool_choice", (), _responses_tool_choice)
    minimum = _RESPONSES_MIN_OUTPUT
    _O.optional(body, "max_output_tokens", (), lambda v, p: _O.integer(v, p, minimum=minimum))
    _O.optional(body, "temperature", (), lambda value, path: _O.number(value, path, low=0, high=2))
    _O.optional(body, "top_p", (), lambda value, path: _O.number(value, path, low=0, high=1))
    _O.optional(body, "include", (), _O.strings)
    _O.optional(body, "stream", (), _O.boolean)


def _responses_input(items: Sequence[object]) -> None:
    calls: dict[str, int] = {}  # call_id -> index of its function_call
    answered: set[str] = set()
    for n, value in enumerate(items):
        path: Path = ("input", n)
        item = _O.mapping(value, path)
        if item.get("type") is None and "role" in item:
            kind = "message"  # an "easy" message
        else:
            kind = _O.req(item, "type", path, _O.string)
        if kind == "function_call":
            calls.setdefault(_O.req(item, "call_id", path, _O.string), n)
            _O.req(item, "name", path, _O.string)
            _O.req(item, "arguments", path, _O.string)
        elif kind == "function_call_output":
            call_id = _O.req(item, "call_id", path, _O.string)
            if call_id not in calls:
                message = f"No tool call found for function call output with call_id {call_id}."
                _O.fail((*path, "call_id"), message)
            answered.add(call_id)
            output = _O.need(item, "output", path)
            if not isinstance(output, str):
                _input_parts(output, (*path, "output"), _INPUT_PARTS)
        else:
            _responses_item(kind, item, path)
    for call_id, n in calls.items():
        if call_id not in answered:
            _O.fail(("input", n), f"No tool output found for function call {call_id}.")


def _responses_item(kind: str, item: Mapping[str, object], path: Path) -> None:
    match kind:
        case "message":
            role = _O.pick(item, "role", path, tuple(_RESPONSES_PARTS))
            content = _O.need(item, "content", path)
            if not isinstance(content, str):
                _input_parts(content, (*path, "content"), _RESPONSES_PARTS[role])
        case "reasoning":
            _O.req(item, "id", path, _O.string)
            _input_parts(
                _O.req(item, "summary", path, _O.array), (*path, "summary"), ("summary_text",)
            )
            _O.optional(item, "encrypted_content", path, _O.string)
        case "item_reference":
            _O.req(item, "id", path, _O.string)
        case _ if kind not in _BUILTIN_ITEMS:
            _O.fail(
                (*path, "type"),
                f"Invalid value: '{kind}'. Supported values are: 'message', 'function_call', "
                "'function_call_output', 'reasoning', 'item_reference' and built-in tool items.",
            )


def _input_parts(value: object, path: Path, allowed: Sequence[str]) -> None:
    for k, item in enumerate(_O.array(value, path)):
        part_path = (*path, k)
        part = _O.mapping(item, part_path)
        match _O.pick(part, "type", part_path, allowed):
            case "input_text" | "output_text" | "summary_text":
                _O.req(part, "text", part_path, _O.string)
            case "refusal":
                _O.req(part, "refusal", part_path, _O.string)
            case "input_image":
                if part.get("file_id") is None:
                    _O.req(part, "image_url", part_path, _O.string)
                _O.optional(part, "file_id", part_path, _O.string)
            case _:  # input_file: any of file_id, file_data, file_url
                pass


def _responses_tools(value: object, path: Path) -> None:
    for k, item in enumerate(_O.array(value, path)):
        tool = _O.mapping(item, (*path, k))
        if _O.req(tool, "type", (*path, k), _O.string) == "function":
            _function_definition(tool, (*path, k))  # built-in tools pass through


def _responses_tool_choice(value: object, path: Path) -> None:
    if isinstance(value, str):
        _O.choice(value, path, ("none", "auto", "required"))
        return
    choice = _O.mapping(value, path)
    if _O.req(choice, "type", path, _O.string) == "function":
        _O.req(choice, "name", path, _O.string)  # flat, unlike Chat's nested form
