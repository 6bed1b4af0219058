"""Golden comparison: the writers' frames against the mock upstream's NATIVE frames.

For each protocol and scenario, the neutral events a reader would produce for the mock's
answer (thinking, text and tool call exactly as the mock renders them) are fed to the writer
of that same protocol, and its frames are compared with the mock's native frames FIELD BY
FIELD. The writer is made with the mock's request number as request id, its ``created`` and
its model, so ids, ``created`` and ``model`` are compared too wherever the formats agree.

Ignored, and nothing else (each has a reason the writer cannot match it):

- Anthropic: the mock's ``ping`` event (keepalives are the relay's job, not the writer's).
  ``message_delta.usage``: the writer adds ``input_tokens``, ``cache_creation_input_tokens``
  and ``cache_read_input_tokens`` beside ``output_tokens`` (PEER-BUGS 6, 7); those extra
  fields are checked against the numbers of ``message_start`` and then left out.
- Chat: the mock's ``delta.reasoning_content`` chunks (its ``thinking`` scenario streams
  reasoning as DeepSeek-style upstreams do; Chat has no field for it, so the writer drops
  thinking: protocols.md §5.7, docs/translation.md), ``system_fingerprint`` and
  ``service_tier`` (upstream facts), and the usage detail
  fields the mock adds: ``prompt_tokens_details.audio_tokens``,
  ``completion_tokens_details.audio_tokens`` / ``accepted_prediction_tokens`` /
  ``rejected_prediction_tokens``.
- Responses: output item ids (``item.id``, ``item_id``, ``output[].id``): the writer's are
  ``<prefix>_<token>_<output_index>``, the mock's have no index. In the ``response`` object,
  the fields that echo the request, which the writer never sees: ``reasoning``,
  ``service_tier``, ``store``, ``temperature``, ``text``, ``top_p``, ``truncation``,
  ``metadata``. In the ``incomplete`` scenario, the ``status`` of the message item in its
  ``output_item.done`` (the mock knows in advance that the answer will be cut; the writer
  learns it only at ``Finish``, and marks the item in the final ``output``, which IS
  compared).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Final

import pytest

from tests.translate.test_write import Frame, dicts, dig, judge, parse
from trio_gateway._mock._render import (
    CREATED,
    SIGNATURE,
    TOOL_NAME,
    Answer,
    build_answer,
)
from trio_gateway._mock._render_anthropic import anthropic_frames
from trio_gateway._mock._render_chat import chat_frames
from trio_gateway._mock._render_responses import responses_frames
from trio_gateway._mock._scenario import parse_scenario
from trio_gateway._protocol._names import PROTOCOLS, Protocol
from trio_gateway._protocol._usage import (
    Usage,
    anthropic_usage,
    openai_chat_usage,
    openai_responses_usage,
)
from trio_gateway._translate._events import (
    BlockStart,
    BlockStop,
    Delta,
    Finish,
    NeutralEvent,
    Start,
    StopReason,
)
from trio_gateway._translate._write import make_writer

SCENARIOS: Final = ("text", "tools", "thinking", "thinking+tools", "incomplete")
MODEL: Final = "client-model"
NUMBER: Final = 7
IGNORED: Final = "<ignored>"

_STOP: Final[dict[str, StopReason]] = {
    "end": "end_turn",
    "tool": "tool_use",
    "length": "max_tokens",
}
_CHAT_MOCK_ONLY: Final = frozenset(
    {
        "system_fingerprint",
        "service_tier",
        "audio_tokens",
        "accepted_prediction_tokens",
        "rejected_prediction_tokens",
    }
)
_RESPONSES_ECHOES: Final = frozenset(
    {"reasoning", "service_tier", "store", "temperature", "text", "top_p", "truncation", "metadata"}
)


def mock_answer(protocol: Protocol, spec: str) -> Answer:
    body: dict[str, object] = {"model": MODEL, "stream": True}
    body["stream_options"] = {"include_usage": True}
    return build_answer(
        parse_scenario(spec), dialect=protocol, number=NUMBER, body=body, headers=[]
    )


def native(protocol: Protocol, answer: Answer) -> list[Frame]:
    match protocol:
        case "anthropic":
            frames = anthropic_frames(answer)
        case "openai-chat":
            frames = chat_frames(answer)
        case "openai-responses":
            frames = responses_frames(answer)
    out: list[Frame] = []
    for frame in frames:
        value: object = frame.data if frame.data == "[DONE]" else json.loads(frame.data)
        assert isinstance(value, (dict, str))
        out.append((frame.event, value))
    return out


def usages(protocol: Protocol, frames: list[Frame]) -> tuple[Usage | None, Usage]:
    """What a reader of the native stream knows: the start usage and the final usage."""
    objects = dicts(frames)
    match protocol:
        case "anthropic":
            start = anthropic_usage(objects[0]["message"]["usage"])  # type: ignore[index]
            final = dataclasses.replace(start)
            for obj in objects:
                if obj["type"] == "message_delta":
                    anthropic_usage(obj["usage"], into=final)
            return start, final
        case "openai-chat":
            return None, openai_chat_usage(objects[-1]["usage"])
        case "openai-responses":
            return None, openai_responses_usage(objects[-1]["response"]["usage"])  # type: ignore[index]


def neutral(protocol: Protocol, answer: Answer, frames: list[Frame]) -> list[NeutralEvent]:
    """The neutral events equivalent to the mock's answer, as this protocol's reader sees it."""
    start_usage, final_usage = usages(protocol, frames)
    events: list[NeutralEvent] = [Start(upstream_id="up", model="upstream", usage=start_usage)]
    if answer.thinking:  # Chat renders none: its writer must drop the block
        events.append(BlockStart("thinking"))
        events += [Delta("thinking", piece) for piece in answer.thinking]
        if protocol == "anthropic":  # only Anthropic's mock signs its thinking
            events.append(Delta("signature", SIGNATURE))
        events.append(BlockStop())
    if answer.has_text_part:
        events += [BlockStart("text"), *(Delta("text", piece) for piece in answer.text)]
        events.append(BlockStop())
    if answer.tool_args:
        tool_id = answer.ident("toolu_" if protocol == "anthropic" else "call_")
        events.append(BlockStart("tool_use", tool_id=tool_id, tool_name=TOOL_NAME))
        if protocol == "anthropic":  # Anthropic opens its arguments with an empty fragment
            events.append(Delta("tool_args", ""))
        events += [Delta("tool_args", piece) for piece in answer.tool_args]
        events.append(BlockStop())
    events.append(Finish(_STOP[answer.stop], usage=final_usage))
    return events


def scrub(value: object, *, drop: frozenset[str], blank: frozenset[str]) -> object:
    """A copy of ``value`` without the keys in ``drop`` and with ``blank`` keys' values
    replaced by a marker, at every depth."""
    if isinstance(value, dict):
        return {
            key: IGNORED if key in blank else scrub(item, drop=drop, blank=blank)
            for key, item in value.items()
            if key not in drop
        }
    if isinstance(value, list):
        return [scrub(item, drop=drop, blank=blank) for item in value]
    return value


def anthropic_pairs(mine: list[Frame], theirs: list[Frame]) -> tuple[list[Frame], list[Frame]]:
    theirs = [frame for frame in theirs if frame[0] != "ping"]
    start_usage = dicts(mine)[0]["message"]["usage"]  # type: ignore[index]
    assert isinstance(start_usage, dict)
    for _, data in mine:
        if isinstance(data, dict) and data["type"] == "message_delta":
            usage = data["usage"]
            assert isinstance(usage, dict)
            for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
                assert usage.pop(key) == start_usage[key]
    return mine, theirs


def chat_native(theirs: list[Frame]) -> list[Frame]:
    out: list[Frame] = []
    for name, data in theirs:
        delta = dig(data, "choices", 0, "delta")
        if isinstance(delta, dict) and set(delta) == {"reasoning_content"}:
            continue
        value = scrub(data, drop=_CHAT_MOCK_ONLY, blank=frozenset())
        assert isinstance(value, (dict, str))
        out.append((name, value))
    return out


def responses_pairs(
    mine: list[Frame], theirs: list[Frame], *, spec: str
) -> tuple[list[Frame], list[Frame]]:
    def clean(frames: list[Frame]) -> list[Frame]:
        out: list[Frame] = []
        for name, data in frames:
            value = scrub(data, drop=frozenset(), blank=_RESPONSES_ECHOES | {"item_id"})
            assert isinstance(value, dict)
            item = value.get("item")
            if isinstance(item, dict):
                item["id"] = IGNORED
                if spec == "incomplete" and name == "response.output_item.done":
                    item["status"] = IGNORED
            response = value.get("response")
            if isinstance(response, dict) and isinstance(response.get("output"), list):
                for entry in response["output"]:
                    entry["id"] = IGNORED
            out.append((name, value))
        return out

    return clean(mine), clean(theirs)


@pytest.mark.parametrize("spec", SCENARIOS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_writer_frames_equal_the_native_frames(protocol: Protocol, spec: str) -> None:
    answer = mock_answer(protocol, spec)
    theirs = native(protocol, answer)
    writer = make_writer(protocol, request_id=f"req_mock{NUMBER:08d}", model=MODEL, created=CREATED)
    raw = b"".join(writer.feed(event) for event in neutral(protocol, answer, theirs))
    mine = parse(raw)
    assert judge(protocol, mine, include_usage=True)
    match protocol:
        case "anthropic":
            mine, theirs = anthropic_pairs(mine, theirs)
        case "openai-chat":
            theirs = chat_native(theirs)
        case "openai-responses":
            mine, theirs = responses_pairs(mine, theirs, spec=spec)
    assert len(mine) == len(theirs)
    for index, (got, expected) in enumerate(zip(mine, theirs, strict=True)):
        assert got == expected, f"frame {index}"
