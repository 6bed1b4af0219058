"""The neutral request model: one conversation, whichever protocol the client spoke.

Theory of operation: a translated request goes ``client body → parse → Conversation →
render → upstream body`` (``_request``). The model holds what all three protocols can say
(system text, user/assistant turns of typed parts, tools, sampling parameters) plus the few
things only some can say (``top_k``, stop sequences, penalties), kept only so a renderer whose
protocol cannot express them can refuse them by the *client's* field name.

Invariants:

- Every value a renderer may have to refuse carries the client's JSON path (``param``), so a
  render-time :class:`~trio_gateway._errors.InvalidRequest` names the field the client sent,
  never an upstream field.
- :attr:`ToolCall.arguments` is always the text of a JSON object (parsers check it).
- Turns keep the client's grouping; renderers merge or split them as their protocol demands
  (protocols.md §5.1, "Reverse direction").
- Everything is immutable; the model is built once per request and never mutated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from trio_gateway._protocol._names import Protocol

__all__ = [
    "Base64Source",
    "ChatOnly",
    "Conversation",
    "Document",
    "Image",
    "Part",
    "Reasoning",
    "RedactedThinking",
    "ResponseFormat",
    "Role",
    "Setting",
    "Source",
    "Text",
    "Thinking",
    "ThinkingType",
    "Tool",
    "ToolCall",
    "ToolChoice",
    "ToolChoiceMode",
    "ToolResult",
    "Turn",
    "UrlSource",
]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Setting(Generic[_T]):
    """A client value together with the JSON path of the field it came from.

    Attributes:
        value: the value.
        param: the client's field path (``stop_sequences``, ``text.format``), named in errors.
    """

    value: _T
    param: str


@dataclass(frozen=True, slots=True)
class Base64Source:
    """Inline bytes: a media type and their base64 text."""

    media_type: str
    data: str


@dataclass(frozen=True, slots=True)
class UrlSource:
    """Content the upstream fetches from an http(s) URL."""

    url: str


Source = Base64Source | UrlSource


@dataclass(frozen=True, slots=True)
class Text:
    """Plain text (refusals the client replays are text too)."""

    text: str


@dataclass(frozen=True, slots=True)
class Image:
    """An image; ``param`` is the client's path, named if a target cannot carry it."""

    source: Source
    param: str


@dataclass(frozen=True, slots=True)
class Document:
    """A file (a PDF, in practice); ``param`` as for :class:`Image`."""

    source: Source
    param: str
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """An assistant's function call; ``arguments`` is JSON object text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The result of the call ``call_id``, as text and images."""

    call_id: str
    parts: tuple[Text | Image, ...]
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class Thinking:
    """An Anthropic thinking block (or a Responses reasoning item in disguise: its
    ``signature`` then comes from ``_signature.pack_openai_reasoning``)."""

    text: str
    signature: str


@dataclass(frozen=True, slots=True)
class RedactedThinking:
    """An Anthropic ``redacted_thinking`` block."""

    data: str


Part = Text | Image | Document | ToolCall | ToolResult | Thinking | RedactedThinking
Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One message: a role and its parts, in the client's order. Tool results are user
    parts (Anthropic's view); tool calls and thinking are assistant parts."""

    role: Role
    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class Tool:
    """A client-defined function tool; ``strict`` is None when the client did not say."""

    name: str
    description: str | None
    schema: Mapping[str, object]
    strict: bool | None = None


ToolChoiceMode = Literal["auto", "any", "tool", "none"]


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """``auto`` / ``any`` (Chat's ``required``) / ``tool`` (``name`` set) / ``none``."""

    mode: ToolChoiceMode
    name: str | None = None


ThinkingType = Literal["enabled", "adaptive", "disabled"]


@dataclass(frozen=True, slots=True)
class Reasoning:
    """What the client asked of the model's reasoning.

    Attributes:
        thinking: an Anthropic client's ``thinking.type`` (None from OpenAI clients).
        budget_tokens: an Anthropic client's ``thinking.budget_tokens``.
        display: an Anthropic client's ``thinking.display``.
        effort: ``output_config.effort`` / ``reasoning_effort`` / ``reasoning.effort``.
        summary: a Responses client's ``reasoning.summary``.
    """

    thinking: ThinkingType | None = None
    budget_tokens: int | None = None
    display: str | None = None
    effort: str | None = None
    summary: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """Structured output: a JSON schema, or any JSON object (OpenAI only)."""

    kind: Literal["json_schema", "json_object"]
    param: str
    name: str | None = None
    schema: Mapping[str, object] | None = None
    strict: bool | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class ChatOnly:
    """A Chat Completions option no other protocol can carry (``logprobs``, penalties…):
    copied to a Chat upstream, refused by the others."""

    key: str
    value: object
    param: str


@dataclass(frozen=True, slots=True)
class Conversation:
    """A client request in neutral form (see the module docstring).

    Attributes:
        client: the protocol the client spoke.
        system: system / developer / instructions texts, in order.
        turns: the messages.
        tools: the function tools.
        tool_choice: the tool choice, if the client gave one.
        parallel_tool_calls: False when the client forbade parallel calls.
        max_tokens: the client's output cap, if any.
        stop: stop sequences (``stop_sequences`` or ``stop``), if any.
        temperature: the sampling temperature, if given.
        top_p: nucleus sampling, if given.
        top_k: Anthropic's ``top_k``, if given.
        reasoning: thinking / reasoning settings, if given.
        response_format: structured output, if asked for.
        user: an opaque end-user id.
        chat_only: Chat-only options set to non-default values.
        ignored: advisory client fields that were dropped (``x-trio-gateway-ignored``).
    """

    client: Protocol
    system: tuple[str, ...] = ()
    turns: tuple[Turn, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    stop: Setting[tuple[str, ...]] | None = None
    temperature: Setting[float] | None = None
    top_p: float | None = None
    top_k: Setting[int] | None = None
    reasoning: Reasoning | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    chat_only: tuple[ChatOnly, ...] = ()
    ignored: tuple[str, ...] = ()
