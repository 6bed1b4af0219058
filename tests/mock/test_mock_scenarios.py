"""Sans-IO tests of the mock upstream: scenario parsing, scripts and wire output."""

from __future__ import annotations

import json
from typing import Final

import pytest

from tests.mock._sse_checks import (
    Reassembled,
    check_anthropic,
    check_chat,
    check_responses,
    dig,
    parse_sse,
)
from trio_gateway._mock import CANARY_KEY, CANARY_URL, REDIRECT_LOCATION, ScenarioError
from trio_gateway._mock._render import Dialect
from trio_gateway._mock._routes import route
from trio_gateway._mock._scenario import parse_scenario, select_spec
from trio_gateway._mock._script import Script, answer_script

DIALECTS: Final[tuple[Dialect, ...]] = ("anthropic", "openai-chat", "openai-responses")
TEXT8: Final = "Hello from the mock upstream. Streaming works"
TOOL_ARGS: Final = '{"city": "Paris"}'
THINKING: Final = "Let me think about this step by step."


def script_for(
    spec: str,
    dialect: Dialect,
    *,
    stream: bool = True,
    include_usage: bool = True,
    interval: float = 0.0,
) -> Script:
    body: dict[str, object] = {"model": f"mock-{spec}", "stream": stream}
    if include_usage and dialect == "openai-chat" and stream:
        body["stream_options"] = {"include_usage": True}
    plan = parse_scenario(spec)
    return answer_script(
        plan, dialect=dialect, number=7, body=body, headers=[], default_interval=interval
    )


def wire(script: Script) -> bytes:
    return b"".join(write.data for write in script.writes)


def reassemble(dialect: Dialect, raw: bytes, *, include_usage: bool = True) -> Reassembled:
    events = parse_sse(raw)
    if dialect == "anthropic":
        return check_anthropic(events)
    if dialect == "openai-chat":
        return check_chat(events, include_usage=include_usage)
    return check_responses(events)


def body_of(script: Script) -> dict[str, object]:
    value = json.loads(wire(script))
    assert isinstance(value, dict)
    return value


# --- selection and parsing -------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "spec"),
    [
        ("mock-cut:after=5", "cut:after=5"),
        ("mock-tools", "tools"),
        ("mock-crlf+huge:bytes=1000000", "crlf+huge:bytes=1000000"),
        ("demo", "text"),
        ("mock", "text"),
        ("mock-", "text"),
        ("gpt-4o", "text"),
    ],
)
def test_spec_from_model(model: str, spec: str) -> None:
    assert select_spec([("content-type", "application/json")], {"model": model}) == spec


def test_header_wins_over_model() -> None:
    headers = [("x-mock-scenario", "status:code=429")]
    assert select_spec(headers, {"model": "mock-tools"}) == "status:code=429"
    assert select_spec([], None) == "text"


def test_parse_parameters_and_combination() -> None:
    plan = parse_scenario("tools+stall:after=2,secs=1.5+cut:after=6+crlf+huge:bytes=100,tokens=4")
    assert plan.has("tools")
    assert plan.has("crlf")
    assert not plan.has("thinking")
    assert (plan.stall_after, plan.stall_secs) == (2, 1.5)
    assert (plan.end_after, plan.ending) == (6, "cut")
    assert plan.huge_bytes == 100
    assert plan.text_deltas == 4  # common parameters apply whichever part carries them


def test_parse_defaults() -> None:
    assert parse_scenario("text").text_deltas == 8
    assert parse_scenario("tools").text_deltas == 3
    assert parse_scenario("stall_headers").head_delay == 3600
    assert parse_scenario("slow_first").first_delay == 30
    assert parse_scenario("status").status == 500
    assert parse_scenario("canary").status == 401
    assert parse_scenario("huge").huge_bytes == 10_000_000
    thinking = parse_scenario("thinking:interval=0.25")
    assert thinking.usage.reasoning == 12
    assert thinking.interval == pytest.approx(0.25)
    usage = parse_scenario("text:in=1,cr=2,cw5=3,cw1=4,reasoning=5").usage
    assert (usage.uncached, usage.cache_read, usage.cache_write_5m) == (1, 2, 3)
    assert (usage.cache_write_1h, usage.reasoning) == (4, 5)


@pytest.mark.parametrize(
    "spec",
    ["nope", "text+", "cut:after=x", "cut:secs=1", "text:tokens=-1", "cut+reset", "status:code=99"],
)
def test_parse_errors_are_loud(spec: str) -> None:
    with pytest.raises(ScenarioError):
        parse_scenario(spec)


# --- the three main scenarios, every protocol, stream and not -----------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("scenario", ["text", "tools", "thinking"])
def test_stream_invariants(dialect: Dialect, scenario: str) -> None:
    script = script_for(scenario, dialect)
    assert script.is_stream
    assert script.ending == "complete"
    assert ("content-type", "text/event-stream; charset=utf-8") in script.headers
    assert all(write.data.count(b"\n\n") == 1 for write in script.writes)  # one event per write
    out = reassemble(dialect, wire(script))
    assert out.text == (TEXT8 if scenario != "tools" else "Hello from the")
    assert out.tool_arguments == (TOOL_ARGS if scenario == "tools" else "")
    if scenario == "tools":
        assert json.loads(out.tool_arguments) == {"city": "Paris"}
    expected_thinking = THINKING if scenario == "thinking" and dialect != "openai-chat" else ""
    assert out.thinking == expected_thinking
    check_usage(dialect, out.usage, output={"text": 8, "tools": 7, "thinking": 20}[scenario])
    if scenario == "thinking":
        check_reasoning(dialect, out.usage, 12)


def check_usage(dialect: Dialect, usage: dict[str, object], *, output: int) -> None:
    if dialect == "anthropic":
        assert usage["input_tokens"] == 25
        assert usage["cache_read_input_tokens"] == 100
        assert usage["cache_creation_input_tokens"] == 30
        assert usage["cache_creation"] == {
            "ephemeral_5m_input_tokens": 20,
            "ephemeral_1h_input_tokens": 10,
        }
        assert usage["output_tokens"] == output
    elif dialect == "openai-chat":
        assert usage["prompt_tokens"] == 125
        assert usage["prompt_tokens_details"] == {"cached_tokens": 100, "audio_tokens": 0}
        assert usage["completion_tokens"] == output
        assert usage["total_tokens"] == 125 + output
    else:
        assert usage["input_tokens"] == 125
        assert usage["input_tokens_details"] == {"cached_tokens": 100}
        assert usage["output_tokens"] == output
        assert usage["total_tokens"] == 125 + output


def check_reasoning(dialect: Dialect, usage: dict[str, object], reasoning: int) -> None:
    if dialect == "openai-chat":
        details = usage["completion_tokens_details"]
        assert isinstance(details, dict)
        assert details["reasoning_tokens"] == reasoning
    elif dialect == "openai-responses":
        assert usage["output_tokens_details"] == {"reasoning_tokens": reasoning}


def test_anthropic_message_start_usage_and_ping() -> None:
    events = [event.json() for event in parse_sse(wire(script_for("text", "anthropic")))]
    start = events[0]["message"]
    assert isinstance(start, dict)
    assert start["usage"] == {
        "input_tokens": 25,
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 100,
        "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 10},
        "output_tokens": 1,
        "service_tier": "standard",
    }
    assert [e["type"] for e in events[:3]] == ["message_start", "content_block_start", "ping"]
    assert events[-2] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 8},
    }


def test_anthropic_thinking_block_comes_first_with_signature() -> None:
    events = [event.json() for event in parse_sse(wire(script_for("thinking", "anthropic")))]
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert starts == [
        {"type": "thinking", "thinking": "", "signature": ""},
        {"type": "text", "text": ""},
    ]
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    kinds = [d["type"] for d in deltas if isinstance(d, dict)]
    assert kinds[:5] == ["thinking_delta"] * 4 + ["signature_delta"]


def test_chat_tool_call_deltas() -> None:
    script = script_for("tools", "openai-chat", include_usage=False)
    chunks = [e.json() for e in parse_sse(wire(script))[:-1]]
    calls: list[object] = []
    for chunk in chunks:
        delta = dig(chunk, "choices", 0, "delta")
        assert isinstance(delta, dict)
        calls += delta.get("tool_calls", [])
    assert calls[0] == {
        "index": 0,
        "id": "call_mock00000007",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert len(calls) >= 4
    assert all(isinstance(c, dict) and set(c) == {"index", "function"} for c in calls[1:])


def test_chat_without_include_usage_has_no_usage_chunk() -> None:
    script = script_for("text", "openai-chat", include_usage=False)
    raw = wire(script)
    out = reassemble("openai-chat", raw, include_usage=False)
    assert out.usage == {}
    assert b'"usage"' not in raw


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("scenario", ["text", "tools", "thinking"])
def test_non_stream_bodies(dialect: Dialect, scenario: str) -> None:
    script = script_for(scenario, dialect, stream=False)
    assert not script.is_stream
    assert ("content-length", str(len(wire(script)))) in script.headers
    body = body_of(script)
    usage = body["usage"]
    assert isinstance(usage, dict)
    check_usage(dialect, usage, output={"text": 8, "tools": 7, "thinking": 20}[scenario])
    stop = {
        "anthropic": lambda: body["stop_reason"],
        "openai-chat": lambda: dig(body, "choices", 0, "finish_reason"),
        "openai-responses": lambda: body["status"],
    }[dialect]()
    expected = {
        "anthropic": "tool_use" if scenario == "tools" else "end_turn",
        "openai-chat": "tool_calls" if scenario == "tools" else "stop",
        "openai-responses": "completed",
    }[dialect]
    assert stop == expected


def test_non_stream_anthropic_tools_content() -> None:
    body = body_of(script_for("thinking+tools", "anthropic", stream=False))
    content = body["content"]
    assert isinstance(content, list)
    assert [dig(block, "type") for block in content] == ["thinking", "text", "tool_use"]
    assert dig(content, 2, "input") == {"city": "Paris"}
    assert dig(content, 2, "id") == "toolu_mock00000007"


# --- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_cut_and_reset_stop_after_k_events(dialect: Dialect) -> None:
    cut = script_for("cut:after=5", dialect)
    assert (len(cut.writes), cut.ending) == (5, "cut")
    reset = script_for("reset:after=2", dialect)
    assert (len(reset.writes), reset.ending) == (2, "reset")
    half = script_for("cut:after=1", dialect, stream=False)
    assert len(half.writes) == 1
    assert len(half.writes[0].data) < int(dict(half.headers)["content-length"])


def test_timing_of_stalls() -> None:
    script = script_for(
        "slow_first:secs=30+stall:after=3,secs=7+stall_headers:secs=2", "anthropic", interval=0.5
    )
    assert script.head_delay == 2
    delays = [write.delay for write in script.writes]
    assert delays[:4] == pytest.approx([30, 0.5, 0.5, 7.5])
    assert [w.stall for w in script.writes[:4]] == [False, False, False, True]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("scenario", ["text:tokens=5", "thinking:tokens=2", "tools"])
def test_token_pace_waits_only_before_content_deltas(dialect: Dialect, scenario: str) -> None:
    paced = script_for(f"{scenario}+token_pace", dialect, interval=0.05)
    plain = script_for(scenario, dialect, interval=0.05)
    # The same bytes (the model name echoes the spec), only the timing differs.
    assert wire(paced).replace(b"+token_pace", b"") == wire(plain)
    waits = [write.delay > 0 for write in paced.writes]
    content = [_is_content(dialect, write.data) for write in paced.writes]
    assert waits == content
    assert sum(content) >= 2  # deltas exist and framing events (False) surround them
    assert not waits[0]
    assert not waits[-1]


def _is_content(dialect: Dialect, data: bytes) -> bool:
    (event,) = parse_sse(data)
    if dialect == "anthropic":
        return event.event == "content_block_delta"
    if dialect == "openai-responses":
        return event.event in {
            "response.output_text.delta",
            "response.reasoning_summary_text.delta",
            "response.function_call_arguments.delta",
        }
    if event.data == "[DONE]":
        return False
    choices = json.loads(event.data)["choices"]
    delta = choices[0]["delta"] if choices else {}
    return bool(delta.get("content") or delta.get("reasoning_content") or delta.get("tool_calls"))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_status_with_retry_after(dialect: Dialect) -> None:
    script = script_for("status:code=429,retry_after=2", dialect)
    assert script.status == 429
    assert ("retry-after", "2") in script.headers
    assert script.outcome == "error_status"
    body = body_of(script)
    if dialect == "anthropic":
        assert body["type"] == "error"
        assert body["error"] == {"type": "rate_limit_error", "message": "Rate limit reached."}
        assert str(body["request_id"]).startswith("req_")
    else:
        error = body["error"]
        assert isinstance(error, dict)
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize(
    ("code", "kind"), [(529, "overloaded_error"), (500, "api_error"), (503, "api_error")]
)
def test_status_error_types(code: int, kind: str) -> None:
    body = body_of(script_for(f"status:code={code}", "anthropic"))
    assert dig(body, "error", "type") == kind


@pytest.mark.parametrize("dialect", DIALECTS)
def test_canary_and_redirect(dialect: Dialect) -> None:
    canary = script_for("canary", dialect)
    assert canary.status == 401
    raw = wire(canary).decode()
    assert CANARY_KEY in raw
    assert CANARY_URL in raw
    redirect = script_for("redirect", dialect)
    assert redirect.status == 307
    assert ("location", REDIRECT_LOCATION) in redirect.headers


@pytest.mark.parametrize("dialect", DIALECTS)
def test_malformed_keeps_event_line(dialect: Dialect) -> None:
    events = parse_sse(wire(script_for("malformed:at=3", dialect)))
    with pytest.raises(ValueError):
        json.loads(events[3].data)
    assert events[3].data.endswith(", oops")
    if dialect != "openai-chat":
        assert events[3].event is not None
    json.loads(events[4].data)


@pytest.mark.parametrize(
    ("dialect", "last"),
    [
        ("anthropic", '"type":"message_delta"'),
        ("openai-chat", '"choices":[]'),
        ("openai-responses", '"type":"response.output_item.done"'),
    ],
)
def test_no_terminator(dialect: Dialect, last: str) -> None:
    events = parse_sse(wire(script_for("no_terminator", dialect)))
    assert last in events[-1].data


@pytest.mark.parametrize("dialect", DIALECTS)
def test_huge_and_crlf(dialect: Dialect) -> None:
    raw = wire(script_for("crlf+huge:bytes=100000", dialect))
    assert b"\r\n\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    out = reassemble(dialect, raw)
    assert 100_000 < len(out.text) < 100_100


def test_anthropic_no_event_lines_and_done() -> None:
    events = parse_sse(wire(script_for("no_event_lines+done", "anthropic")))
    assert all(event.event is None for event in events)
    assert events[-1].data == "[DONE]"
    assert '"message_stop"' in events[-2].data


def test_anthropic_cumulative_usage() -> None:
    events = [e.json() for e in parse_sse(wire(script_for("cumulative", "anthropic")))]
    deltas = [e["usage"] for e in events if e["type"] == "message_delta"]
    assert deltas == [{"output_tokens": 10}, {"output_tokens": 25}, {"output_tokens": 40}]
    out = check_anthropic(parse_sse(wire(script_for("cumulative", "anthropic"))))
    assert out.usage["output_tokens"] == 40
    body = body_of(script_for("cumulative", "anthropic", stream=False))
    assert dig(body, "usage", "output_tokens") == 40


def test_anthropic_usage_in_delta() -> None:
    events = [e.json() for e in parse_sse(wire(script_for("usage_in_delta", "anthropic")))]
    start_usage = dig(events[0], "message", "usage")
    assert isinstance(start_usage, dict)
    assert start_usage["input_tokens"] == 0
    assert start_usage["cache_read_input_tokens"] == 0
    assert start_usage["output_tokens"] == 1
    final = events[-2]["usage"]
    assert final == {
        "input_tokens": 25,
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 100,
        "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 10},
        "output_tokens": 8,
    }


def test_chat_usage_with_choices() -> None:
    events = parse_sse(wire(script_for("usage_with_choices", "openai-chat")))
    last = events[-2].json()
    assert last["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]
    assert dig(last, "usage", "completion_tokens") == 8
    assert all(e.json()["choices"] for e in events[:-1])


@pytest.mark.parametrize("dialect", DIALECTS)
def test_zero_usage(dialect: Dialect) -> None:
    out = reassemble(dialect, wire(script_for("zero_usage", dialect)))
    numbers = [v for v in out.usage.values() if isinstance(v, int)]
    assert numbers
    assert not any(numbers)


@pytest.mark.parametrize(
    ("dialect", "stop"),
    [("anthropic", "max_tokens"), ("openai-chat", "length"), ("openai-responses", "incomplete")],
)
def test_incomplete(dialect: Dialect, stop: str) -> None:
    raw = wire(script_for("incomplete", dialect))
    out = reassemble(dialect, raw)
    assert out.stop == stop
    assert out.usage
    if dialect == "openai-responses":
        final = parse_sse(raw)[-1].json()
        assert final["type"] == "response.incomplete"
        reason = dig(final, "response", "incomplete_details", "reason")
        assert reason == "max_output_tokens"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_error_event(dialect: Dialect) -> None:
    script = script_for("error_event:after=4", dialect)
    assert script.outcome == "error_event"
    events = parse_sse(wire(script))
    if dialect == "anthropic":
        assert len(events) == 5
        assert events[-1].event == "error"
        assert events[-1].json() == {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "Overloaded"},
        }
    elif dialect == "openai-chat":
        assert len(events) == 5
        assert "error" in events[-1].json()
    else:
        assert [e.event for e in events[-2:]] == ["error", "response.failed"]
        error = events[-2].json()
        assert error["sequence_number"] == 4
        assert error["code"] == "server_error"
        assert isinstance(error["error"], dict)
        check_responses(events)


def test_echo_reflects_request_without_credentials() -> None:
    headers = [("x-api-key", "secret"), ("x-trace", "abc")]
    body = {"model": "mock-echo", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}]}
    plan = parse_scenario("echo")
    script = answer_script(
        plan, dialect="anthropic", number=1, body=body, headers=headers, default_interval=0
    )
    text = dig(body_of(script), "content", 0, "text")
    assert isinstance(text, str)
    seen = json.loads(text)
    assert seen["headers"] == [["x-trace", "abc"]]
    assert seen["body"] == {"model": "mock-echo", "max_tokens": 9}
    assert seen["body_keys"] == ["max_tokens", "messages", "model"]


# --- routing --------------------------------------------------------------------------------


def test_routing_errors() -> None:
    def go(method: str, path: str, raw: bytes, **kw: str | None) -> Script:
        headers = [("anthropic-version", "2023-06-01")] if "messages" in path else []
        key = kw.get("key")
        if key:
            headers.append(("authorization", f"Bearer {key}"))
        routed = route(
            method, path, headers, raw, number=1, default_interval=0, require_key=kw.get("need")
        )
        return routed.script

    assert go("POST", "/v1/nope", b"{}").status == 404
    assert go("GET", "/v1/messages", b"").status == 405
    assert go("POST", "/v1/messages", b"{bad").status == 400
    assert go("POST", "/v1/messages", b'{"model":"mock-nope"}').status == 400
    minimal = b'{"model": "mock", "input": "Hi"}'  # the real API needs a model
    assert go("POST", "/v1/responses", minimal, need="k").status == 401
    assert go("POST", "/v1/responses", minimal, need="k", key="k").status == 200
    models = go("GET", "/v1/models?limit=5", b"")
    assert body_of(models)["object"] == "list"
    unknown = body_of(go("POST", "/v1/messages", b'{"model":"mock-nope"}'))
    assert dig(unknown, "error", "type") == "invalid_request_error"


# --- reasoning as non-Anthropic upstreams carry it ------------------------------------------


def test_chat_stream_carries_reasoning_content_before_the_text() -> None:
    script = script_for("thinking", "openai-chat")
    chunks = [e.json() for e in parse_sse(wire(script))[:-1]]
    deltas = [dig(chunk, "choices", 0, "delta") for chunk in chunks if chunk["choices"]]
    kinds = [next(iter(d)) if isinstance(d, dict) and d else "" for d in deltas]
    first_text = kinds.index("content", 1)
    assert kinds[0] == "role"
    assert kinds[1:first_text] == ["reasoning_content"] * 4
    assert "reasoning_content" not in kinds[first_text:]
    pieces = [dig(delta, "reasoning_content") for delta in deltas[1:first_text]]
    assert "".join(str(piece) for piece in pieces) == THINKING
    assert reassemble("openai-chat", wire(script)).text == TEXT8  # invariants still hold


def test_chat_body_carries_reasoning_content() -> None:
    message = dig(body_of(script_for("thinking", "openai-chat", stream=False)), "choices", 0)
    assert dig(message, "message", "reasoning_content") == THINKING
    assert dig(message, "message", "content") == TEXT8
    plain = dig(body_of(script_for("text", "openai-chat", stream=False)), "choices", 0, "message")
    assert isinstance(plain, dict)
    assert "reasoning_content" not in plain
    raw = wire(script_for("tools", "openai-chat"))
    assert b"reasoning_content" not in raw


def responses_script(*, stream: bool, include: list[str] | None) -> Script:
    body: dict[str, object] = {"model": "mock-thinking", "input": "Hi", "stream": stream}
    if include is not None:
        body["include"] = include
    plan = parse_scenario("thinking")
    return answer_script(
        plan, dialect="openai-responses", number=7, body=body, headers=[], default_interval=0
    )


@pytest.mark.parametrize(
    ("include", "expected"),
    [
        (["reasoning.encrypted_content"], "enc_rs_mock00000007"),
        (["message.output_text.logprobs", "reasoning.encrypted_content"], "enc_rs_mock00000007"),
        (["message.output_text.logprobs"], None),
        (None, None),
    ],
)
def test_responses_encrypted_content_only_when_included(
    include: list[str] | None, expected: str | None
) -> None:
    events = parse_sse(wire(responses_script(stream=True, include=include)))
    check_responses(events)
    payloads = [event.json() for event in events]
    items = {
        str(p["type"]): dig(p, "item")
        for p in payloads
        if str(p["type"]).startswith("response.output_item.")
        and dig(p, "item", "type") == "reasoning"
    }
    final = dig(payloads[-1], "response", "output", 0)
    body = dig(body_of(responses_script(stream=False, include=include)), "output", 0)
    for done in (items["response.output_item.done"], final, body):
        assert isinstance(done, dict)
        assert done.get("encrypted_content") == expected
        assert done["summary"] == [{"type": "summary_text", "text": THINKING}]
    added = items["response.output_item.added"]
    assert isinstance(added, dict)
    assert "encrypted_content" not in added
