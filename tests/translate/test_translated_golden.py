"""Golden comparison of whole translated streams with NATIVE streams of the client protocol.

For every translated (upstream, client) pair and scenario, the mock's answer is rendered
natively in the upstream protocol, decoded, and run through the :class:`Translator` exactly as
the relay does; the result is compared FIELD BY FIELD with the mock's native rendering of the
same answer in the client protocol (PEER-BUGS 6: golden-file comparison with native frames).

Compared: the sequence of frames (event names, ``type`` and every key present, recursively)
and every value, except:

- values that are per-request or per-upstream facts, compared for presence only: ids
  (``id``, ``item_id``, ``call_id``), ``created``/``created_at``, ``model``, and ``usage``
  (its numbers are the upstream's, so they differ by upstream protocol; they are checked
  against protocols.md §5.4 in ``test_translated_usage_is_the_upstreams_mapped``);
- the status of a Responses item in its ``output_item.done`` (native streams know in advance
  that an answer will be cut; a translation learns it at the end and marks the item in the
  final ``output``, which is compared);
- in a Responses ``response`` object, the fields that echo the request (the translator never
  sees it): ``reasoning``, ``service_tier``, ``store``, ``temperature``, ``text``, ``top_p``,
  ``truncation``, ``metadata``;
- opaque reasoning state, dropped from both sides: Anthropic ``signature_delta`` frames and
  Responses ``encrypted_content`` (a Chat upstream's reasoning has no signature; the others'
  are gateway tokens, tested in ``test_signature_round_trip``);
- native-only frames the translation deliberately does not produce: Anthropic ``ping`` (the
  relay's job), the empty first ``input_json_delta`` Anthropic sends (fragments are only
  ever concatenated), Chat ``delta.reasoning_content`` chunks (Chat clients get no
  reasoning, docs/translation.md), and Chat fields only OpenAI knows
  (``system_fingerprint``, ``service_tier``, ``audio_tokens``,
  ``accepted_prediction_tokens``, ``rejected_prediction_tokens``).
"""

from __future__ import annotations

import json
from typing import Final

import pytest

from tests.support import sse_events
from trio_gateway._mock._render import CREATED, Answer, build_answer, encode_frames
from trio_gateway._mock._render_anthropic import anthropic_frames
from trio_gateway._mock._render_chat import chat_frames
from trio_gateway._mock._render_responses import responses_frames
from trio_gateway._mock._scenario import parse_scenario
from trio_gateway._protocol._names import PROTOCOLS, Protocol
from trio_gateway._protocol._sse import SSEDecoder
from trio_gateway._protocol._usage import (
    Usage,
    anthropic_usage,
    openai_chat_usage,
    openai_responses_usage,
)
from trio_gateway._translate._check import (
    AnthropicStreamCheck,
    ChatStreamCheck,
    ResponsesStreamCheck,
    StreamCheck,
)
from trio_gateway._translate._stream import Translator

PAIRS: Final = [(u, c) for u in PROTOCOLS for c in PROTOCOLS if u != c]
SCENARIOS: Final = ["text", "tools", "thinking", "thinking+tools", "incomplete"]
_FRAMES: Final = {
    "anthropic": anthropic_frames,
    "openai-chat": chat_frames,
    "openai-responses": responses_frames,
}
_PRESENCE_ONLY: Final = frozenset(
    {"id", "item_id", "call_id", "created", "created_at", "model", "usage"}
)
_REQUEST_ECHO: Final = frozenset(
    {"reasoning", "service_tier", "store", "temperature", "text", "top_p", "truncation"}
    | {"metadata"}
)
_DROPPED_KEYS: Final = frozenset(
    {"encrypted_content", "audio_tokens", "accepted_prediction_tokens"}
    | {"rejected_prediction_tokens", "system_fingerprint", "service_tier"}
)
Frame = tuple[str | None, object]


def answer(protocol: Protocol, spec: str) -> Answer:
    body = {"model": "m", "stream_options": {"include_usage": True}}
    plan = parse_scenario(spec)
    return build_answer(plan, dialect=protocol, number=7, body=body, headers=())


def native(protocol: Protocol, spec: str) -> list[Frame]:
    raw = b"".join(encode_frames(_FRAMES[protocol](answer(protocol, spec))))
    return parsed(raw)


def parsed(raw: bytes) -> list[Frame]:
    frames: list[Frame] = []
    for name, data in sse_events(raw):
        frames.append((name, data if data == "[DONE]" else json.loads(data)))
    return frames


def translated(upstream: Protocol, client: Protocol, spec: str) -> tuple[list[Frame], Usage]:
    translator = Translator(
        upstream,
        client,
        request_id="req_0123456789abcdef",
        model="m",
        created=CREATED,
        include_usage=True,
        stream=True,
        secrets=(),
    )
    raw = b"".join(encode_frames(_FRAMES[upstream](answer(upstream, spec))))
    decoder = SSEDecoder()
    out = b""
    for i in range(0, len(raw), 7):  # odd chunking, as a socket would deliver it
        chunk, events = decoder.feed(raw[i : i + 7])
        out += translator.forward(chunk, events)
    out += translator.end_of_stream()
    assert translator.finished
    assert translator.error is None
    return parsed(out), translator.usage


def normalise(frames: list[Frame], client: Protocol) -> list[Frame]:
    result: list[Frame] = []
    for name, data in frames:
        if client == "anthropic" and name in {"ping"}:
            continue
        if isinstance(data, dict):
            delta = data.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "signature_delta":
                continue
            if isinstance(delta, dict) and delta.get("partial_json") == "":
                continue
            if name == "response.output_item.done":
                item = data.get("item")
                assert isinstance(item, dict)
                data = {**data, "item": {**item, "status": "<present>"}}
            choices = data.get("choices")
            if (
                isinstance(choices, list)
                and choices
                and isinstance(choices[0], dict)
                and "reasoning_content" in (choices[0].get("delta") or {})
            ):
                continue
        result.append((name, scrub(data, parent="")))
    return result


def scrub(value: object, *, parent: str) -> object:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            if key in _DROPPED_KEYS:
                continue
            if key in _PRESENCE_ONLY or (parent == "response" and key in _REQUEST_ECHO):
                out[key] = "<present>"
            else:
                out[key] = scrub(item, parent=key)
        return out
    if isinstance(value, list):
        return [scrub(item, parent=parent) for item in value]
    return value


def check(client: Protocol, frames: list[Frame]) -> None:
    checker: StreamCheck
    match client:
        case "anthropic":
            checker = AnthropicStreamCheck()
        case "openai-chat":
            checker = ChatStreamCheck(include_usage=True)
        case "openai-responses":
            checker = ResponsesStreamCheck()
    for name, data in frames:
        assert isinstance(data, dict | str)
        checker.observe(name, data)
    assert checker.ended


@pytest.mark.parametrize("spec", SCENARIOS)
@pytest.mark.parametrize(("upstream", "client"), PAIRS, ids=[f"{c}<-{u}" for u, c in PAIRS])
def test_translated_stream_equals_the_native_stream(
    upstream: Protocol, client: Protocol, spec: str
) -> None:
    mine, _ = translated(upstream, client, spec)
    check(client, mine)
    theirs = native(client, spec)
    check(client, theirs)
    assert normalise(mine, client) == normalise(theirs, client)


def _client_usage(client: Protocol, frames: list[Frame]) -> Usage:
    """The usage the client reads, back in ledger semantics."""
    for name, data in reversed(frames):
        if not isinstance(data, dict):
            continue
        if client == "anthropic" and name == "message_delta":
            return anthropic_usage(data["usage"])
        if client == "openai-chat" and data.get("usage"):
            return openai_chat_usage(data["usage"])
        if client == "openai-responses" and name in {"response.completed", "response.incomplete"}:
            response = data["response"]
            assert isinstance(response, dict)
            return openai_responses_usage(response["usage"])
    raise AssertionError("no usage in the stream")


@pytest.mark.parametrize("spec", ["text", "thinking+tools"])
@pytest.mark.parametrize(("upstream", "client"), PAIRS, ids=[f"{c}<-{u}" for u, c in PAIRS])
def test_translated_usage_is_the_upstreams_mapped(
    upstream: Protocol, client: Protocol, spec: str
) -> None:
    frames, billed = translated(upstream, client, spec)
    seen = _client_usage(client, frames)
    # OpenAI clients cannot tell cache writes from uncached input (protocols.md §5.4):
    # they are folded into the input there, so compare totals and the parts both carry.
    writes = billed.cache_write_5m_tokens + billed.cache_write_1h_tokens
    assert seen.input_tokens + seen.cache_write_5m_tokens + seen.cache_write_1h_tokens == (
        billed.input_tokens + writes
    )
    assert seen.cache_read_tokens == billed.cache_read_tokens == 100
    assert seen.output_tokens == billed.output_tokens
    if client != "anthropic":
        assert seen.reasoning_tokens == billed.reasoning_tokens
    if client == "anthropic" and upstream != "anthropic":
        assert (seen.cache_write_5m_tokens, seen.cache_write_1h_tokens) == (0, 0)
