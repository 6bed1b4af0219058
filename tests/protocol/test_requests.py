"""Request inspection and the upstream body for same-protocol routes."""

from __future__ import annotations

import json

import pytest

from trio_gateway._errors import InvalidRequest
from trio_gateway._protocol._names import Protocol
from trio_gateway._protocol._requests import RequestInfo, build_upstream_body, parse_request

ANTHROPIC: dict[str, object] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "messages": [{"role": "user", "content": "Hello"}],
}
CHAT: dict[str, object] = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}
RESPONSES: dict[str, object] = {"model": "gpt-4o", "input": "Hi"}
BASES: dict[Protocol, dict[str, object]] = {
    "anthropic": ANTHROPIC,
    "openai-chat": CHAT,
    "openai-responses": RESPONSES,
}


def encode(obj: object) -> bytes:
    return json.dumps(obj).encode()


def parse(protocol: Protocol, **fields: object) -> tuple[dict[str, object], RequestInfo]:
    return parse_request(protocol, encode({**BASES[protocol], **fields}))


def test_parse_anthropic() -> None:
    body, info = parse("anthropic", stream=True)
    assert body["messages"] == ANTHROPIC["messages"]
    assert info == RequestInfo(
        model="claude-sonnet-4-5", stream=True, wants_usage_chunk=True, max_output_tokens=1024
    )


def test_parse_chat() -> None:
    _, info = parse("openai-chat")
    assert info == RequestInfo(
        model="gpt-4o", stream=False, wants_usage_chunk=False, max_output_tokens=None
    )
    _, info = parse(
        "openai-chat", stream=True, stream_options={"include_usage": True}, max_tokens=50
    )
    assert info == RequestInfo(
        model="gpt-4o", stream=True, wants_usage_chunk=True, max_output_tokens=50
    )


def test_parse_chat_prefers_max_completion_tokens() -> None:
    _, info = parse("openai-chat", max_tokens=50, max_completion_tokens=70)
    assert info.max_output_tokens == 70


def test_parse_chat_null_optional_fields_mean_absent() -> None:
    """OpenAI's schemas declare these nullable (protocols.md §2.2)."""
    _, info = parse(
        "openai-chat", stream=None, stream_options=None, max_tokens=None, max_completion_tokens=None
    )
    assert info == RequestInfo(
        model="gpt-4o", stream=False, wants_usage_chunk=False, max_output_tokens=None
    )


def test_parse_responses() -> None:
    _, info = parse("openai-responses", stream=True, max_output_tokens=300)
    assert info == RequestInfo(
        model="gpt-4o", stream=True, wants_usage_chunk=True, max_output_tokens=300
    )
    _, info = parse("openai-responses", input=[{"role": "user", "content": "Hi"}])
    assert info.max_output_tokens is None


def test_routing_and_credential_fields_are_plain_content() -> None:
    """RELIABILITY.md B3: never interpreted, only carried as body content."""
    hostile = {
        "api_base": "http://canary.invalid",
        "base_url": "http://canary.invalid",
        "api_key": "sk-caller",
        "extra_headers": {"x-api-key": "sk-caller"},
        "metadata": {"url": "http://canary.invalid"},
    }
    for protocol in BASES:
        body, info = parse(protocol, **hostile)
        assert body["api_base"] == "http://canary.invalid"
        assert info.model == BASES[protocol]["model"]


BAD_FIELDS: list[tuple[Protocol, dict[str, object], str]] = [
    # model
    ("anthropic", {"model": ""}, "model"),
    ("openai-chat", {"model": 7}, "model"),
    ("openai-responses", {"model": None}, "model"),
    # stream
    ("anthropic", {"stream": "true"}, "stream"),
    ("openai-chat", {"stream": 1}, "stream"),
    # messages / input
    ("anthropic", {"messages": "Hello"}, "messages"),
    ("openai-chat", {"messages": {"role": "user"}}, "messages"),
    ("openai-responses", {"input": {"role": "user"}}, "input"),
    ("openai-responses", {"input": None}, "input"),
    # stream_options
    ("openai-chat", {"stream_options": True}, "stream_options"),
    ("openai-chat", {"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
    ("openai-responses", {"stream_options": []}, "stream_options"),
    # RELIABILITY.md B1: max_tokens in {-1, 0, 1.5, "10", null, true}
    ("anthropic", {"max_tokens": -1}, "max_tokens"),
    ("anthropic", {"max_tokens": 0}, "max_tokens"),
    ("anthropic", {"max_tokens": 1.5}, "max_tokens"),
    ("anthropic", {"max_tokens": "10"}, "max_tokens"),
    ("anthropic", {"max_tokens": None}, "max_tokens"),
    ("anthropic", {"max_tokens": True}, "max_tokens"),
    ("openai-chat", {"max_tokens": 0}, "max_tokens"),
    ("openai-chat", {"max_tokens": 1.5}, "max_tokens"),
    ("openai-chat", {"max_completion_tokens": -1}, "max_completion_tokens"),
    ("openai-chat", {"max_completion_tokens": "10"}, "max_completion_tokens"),
    ("openai-chat", {"max_completion_tokens": True}, "max_completion_tokens"),
    ("openai-responses", {"max_output_tokens": 0}, "max_output_tokens"),
    ("openai-responses", {"max_output_tokens": False}, "max_output_tokens"),
]


@pytest.mark.parametrize(("protocol", "fields", "param"), BAD_FIELDS)
def test_invalid_field_names_its_param(
    protocol: Protocol, fields: dict[str, object], param: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse(protocol, **fields)
    assert info.value.param == param
    assert info.value.status == 400
    assert param.rsplit(".", 1)[-1] in info.value.message


@pytest.mark.parametrize("param", ["model", "messages", "max_tokens"])
def test_anthropic_missing_required_field(param: str) -> None:
    body = {key: value for key, value in ANTHROPIC.items() if key != param}
    with pytest.raises(InvalidRequest) as info:
        parse_request("anthropic", encode(body))
    assert info.value.param == param


def test_missing_messages_and_input() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_request("openai-chat", b'{"model": "gpt-4o"}')
    assert info.value.param == "messages"
    with pytest.raises(InvalidRequest) as info:
        parse_request("openai-responses", b'{"model": "gpt-4o"}')
    assert info.value.param == "input"


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"[]", b'"model"', b"null", b"\xff\xfe", b"[" * 100_000]
)
def test_body_must_be_a_json_object(raw: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_request("openai-chat", raw)
    assert info.value.param is None


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b'{"model":"cheap","messages":[],"model":"dear"}', "model"),
        (
            b'{"model":"m","messages":[],"stream":true,'
            b'"stream_options":{"include_usage":false,"include_usage":true}}',
            "stream_options.include_usage",
        ),
        (b'{"model":"m","messages":[],"max_tokens":10,"max_tokens":100000}', "max_tokens"),
    ],
)
def test_repeated_relied_on_key_is_rejected(raw: bytes, param: str) -> None:
    """Parsers disagree on which occurrence wins; the upstream must see what we billed."""
    with pytest.raises(InvalidRequest) as info:
        parse_request("openai-chat", raw)
    assert info.value.param == param


def test_other_repeated_keys_pass_through() -> None:
    raw = b'{"model":"m","messages":[],"temperature":1,"temperature":0}'
    body, _ = parse_request("openai-chat", raw)
    assert body["temperature"] == 0


# -- build_upstream_body ---------------------------------------------------------------------


def build(
    protocol: Protocol, raw: bytes, *, upstream_model: str | None = None
) -> tuple[bytes, bytes]:
    body, info = parse_request(protocol, raw)
    return raw, build_upstream_body(protocol, body, raw, info, upstream_model=upstream_model)


@pytest.mark.parametrize(
    ("protocol", "raw"),
    [
        ("anthropic", b'{"model": "claude", "max_tokens": 5, "stream": true, "messages": []}'),
        ("openai-chat", b'{"model": "gpt-4o", "messages": [] }'),
        (
            "openai-chat",
            b'{ "model": "gpt-4o", "stream": true, "messages": [],\n'
            b' "stream_options": {"include_usage": true, "include_obfuscation": false}}',
        ),
        ("openai-responses", b'{"model": "gpt-4o", "input": "Hi", "stream": true}'),
    ],
)
def test_raw_is_returned_when_nothing_changes(protocol: Protocol, raw: bytes) -> None:
    sent, upstream = build(protocol, raw, upstream_model=None)
    assert upstream is sent
    # The upstream name equal to the requested one is no change either.
    model = json.loads(raw)["model"]
    sent, upstream = build(protocol, raw, upstream_model=model)
    assert upstream is sent


@pytest.mark.parametrize(
    "options",
    [
        None,
        {"include_usage": False},
        {"include_obfuscation": False},
        {"include_usage": None, "include_obfuscation": True},
    ],
)
def test_chat_stream_forces_include_usage(options: dict[str, object] | None) -> None:
    """RELIABILITY.md I4, B2: callers can never turn usage reporting off."""
    request: dict[str, object] = {**CHAT, "stream": True}
    if options is not None:
        request["stream_options"] = options
    _, upstream = build("openai-chat", encode(request))
    sent = json.loads(upstream)
    assert sent["stream_options"] == {**(options or {}), "include_usage": True}
    assert sent["messages"] == CHAT["messages"]
    assert b": " not in upstream  # compact


def test_chat_without_stream_is_not_touched() -> None:
    raw = encode({**CHAT, "stream_options": {"include_usage": False}})
    sent, upstream = build("openai-chat", raw)
    assert upstream is sent


def test_model_rename_is_the_only_change() -> None:
    raw = (
        '{"model": "fast", "max_tokens": 5, "messages": '
        '[{"role": "user", "content": "héllo ☃ \\ud83d\\ude00"}], "api_base": "http://x"}'
    ).encode()
    _, upstream = build("anthropic", raw, upstream_model="claude-haiku-4-5")
    assert (
        upstream
        == (
            '{"model":"claude-haiku-4-5","max_tokens":5,"messages":'
            '[{"role":"user","content":"héllo ☃ 😀"}],"api_base":"http://x"}'
        ).encode()
    )


def test_rename_and_include_usage_together() -> None:
    raw = b'{"stream":true,"model":"a","messages":[],"stream_options":{"include_usage":false}}'
    _, upstream = build("openai-chat", raw, upstream_model="b")
    assert upstream == (
        b'{"stream":true,"model":"b","messages":[],"stream_options":{"include_usage":true}}'
    )


def test_lone_surrogate_survives_re_serialisation() -> None:
    raw = b'{"model": "a", "input": "\\ud800 x"}'
    _, upstream = build("openai-responses", raw, upstream_model="b")
    assert upstream == b'{"model":"b","input":"\\ud800 x"}'


def test_build_does_not_modify_the_parsed_body() -> None:
    raw = encode({**CHAT, "stream": True, "stream_options": {"include_usage": False}})
    body, info = parse_request("openai-chat", raw)
    build_upstream_body("openai-chat", body, raw, info, upstream_model="other")
    assert body["model"] == "gpt-4o"
    assert body["stream_options"] == {"include_usage": False}
