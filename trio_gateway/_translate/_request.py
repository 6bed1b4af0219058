"""Request translation between Anthropic Messages, OpenAI Chat Completions and OpenAI Responses.

Theory of operation: a translated request goes ``client body → parse_conversation →
Conversation → render_request → upstream body``. The neutral :class:`Conversation`
(``_request_model``) holds what the three protocols share, plus what only some can say, kept
with the client's field path so that an upstream protocol that cannot express it refuses it
by the name the client knows. Parsers live in ``_request_parse_*``, renderers in
``_request_render_*``; this module only dispatches on the protocol.

Policy (protocols.md §5.1 and its "Reverse direction" list):

- Anything malformed, or that no translation can carry (server tools, server-side state,
  ``n`` > 1, audio…), is a 400 at parse time naming the field. Advisory fields
  (``cache_control``, ``service_tier``, ``store``, ``metadata``…) are dropped and listed by
  :func:`ignored_fields`. Unknown top-level fields are refused.
- What only some upstreams can express (``top_k``, stop sequences, penalties, ``json_object``
  output…) is refused at render time, naming the client's field.
- The upstream request is always streamed; usage reporting is always on.

Invariants:

- Both entry points raise nothing but :class:`~trio_gateway._errors.InvalidRequest`,
  whatever the body holds.
- Pure functions: no I/O, no state between calls.
"""

from __future__ import annotations

from typing import assert_never

from trio_gateway._protocol._names import Protocol
from trio_gateway._translate._request_model import Conversation
from trio_gateway._translate._request_parse_anthropic import parse_anthropic
from trio_gateway._translate._request_parse_chat import parse_chat
from trio_gateway._translate._request_parse_responses import parse_responses
from trio_gateway._translate._request_render_anthropic import render_anthropic
from trio_gateway._translate._request_render_openai import render_chat, render_responses

__all__ = ["Conversation", "ignored_fields", "parse_conversation", "render_request"]


def parse_conversation(client: Protocol, body: dict[str, object]) -> Conversation:
    """Read a client's request body into the neutral model.

    Args:
        client: the protocol of the endpoint the request arrived on.
        body: the JSON-decoded body; the gateway already checked ``model``, ``stream``, the
            output cap and ``stream_options`` (``_protocol._requests.parse_request``).

    Returns:
        The :class:`Conversation`.

    Raises:
        InvalidRequest: a field is malformed or no translation can carry it; ``param`` is the
            field's JSON path (``messages[2].content[0].type``).
    """
    match client:
        case "anthropic":
            return parse_anthropic(body)
        case "openai-chat":
            return parse_chat(body)
        case "openai-responses":
            return parse_responses(body)
        case _:
            assert_never(client)


def render_request(
    upstream: Protocol, conversation: Conversation, *, model: str, default_max_tokens: int = 4096
) -> dict[str, object]:
    """The upstream request body, always streamed.

    Chat bodies also ask for ``stream_options.include_usage``; Responses bodies set
    ``store: false``.

    Args:
        upstream: the upstream's protocol.
        conversation: the parsed request.
        model: the upstream's model name.
        default_max_tokens: Anthropic's required ``max_tokens`` when the client gave no cap.

    Returns:
        A JSON-ready dict.

    Raises:
        InvalidRequest: the client asked for something ``upstream`` cannot express; ``param``
            is the CLIENT's field path.
    """
    match upstream:
        case "anthropic":
            return render_anthropic(
                conversation, model=model, default_max_tokens=default_max_tokens
            )
        case "openai-chat":
            return render_chat(conversation, model=model)
        case "openai-responses":
            return render_responses(conversation, model=model)
        case _:
            assert_never(upstream)


def ignored_fields(conversation: Conversation) -> tuple[str, ...]:
    """The advisory client fields that were dropped, for the ``x-trio-gateway-ignored``
    response header.

    Top-level fields come first, in body order, then nested ones as they were met
    (``cache_control`` once, ``messages[].name``, ``text.verbosity``, ``input[i]`` for a
    Responses reasoning item only a Responses upstream could replay).
    """
    return conversation.ignored
