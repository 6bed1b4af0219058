"""Error rendering: every GatewayError class x every protocol, checked against literal values.

Expected values are written out here (STYLE.md §9 "table tests for error rendering"), never
recomputed with the code under test. The SDK tests at the end feed the bytes to the real
anthropic / openai clients through a mock transport (protocols.md §1.8, §2.6, §3.6).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import anthropic
import httpx2
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.responses import ResponseErrorEvent, ResponseFailedEvent

from trio_gateway import _errors
from trio_gateway._errors import (
    ClientError,
    Forbidden,
    GatewayError,
    HeadersTooLarge,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    ShuttingDown,
    Unauthorized,
    UnknownModel,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from trio_gateway._protocol._error_bodies import (
    anthropic_error_type,
    error_event,
    error_response,
    openai_error_type,
    ping_frame,
)
from trio_gateway._protocol._names import PROTOCOLS, Protocol

REQUEST_ID = "req_0123456789"


@dataclass(frozen=True)
class Case:
    """One row of docs/errors.md: an error and what every protocol must see."""

    id: str
    make: Callable[[], GatewayError]
    status: int
    anthropic_type: str
    openai_type: str
    code: str | None
    message: str
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    failed_code: str = "server_error"  # response.failed error.code (a closed set in the SDK)


def _upstream(
    status: int,
    message: str,
    *,
    retry_after: str | None = None,
    retry_after_ms: str | None = None,
    should_retry: str | None = None,
) -> Callable[[], GatewayError]:
    return lambda: UpstreamStatusError(
        message,
        status=status,
        retry_after=retry_after,
        retry_after_ms=retry_after_ms,
        should_retry=should_retry,
    )


CASES: tuple[Case, ...] = (
    Case(
        "GatewayError",
        lambda: GatewayError("internal failure"),
        500,
        "api_error",
        "server_error",
        None,
        "internal failure",
    ),
    Case(
        "ClientError",
        lambda: ClientError("bad request"),
        400,
        "invalid_request_error",
        "invalid_request_error",
        None,
        "bad request",
        failed_code="invalid_prompt",
    ),
    Case(
        "InvalidRequest",
        lambda: InvalidRequest("messages: field required", param="messages"),
        400,
        "invalid_request_error",
        "invalid_request_error",
        None,
        "messages: field required",
        param="messages",
        failed_code="invalid_prompt",
    ),
    Case(
        "InvalidRequest-no-param",
        lambda: InvalidRequest("body is not JSON"),
        400,
        "invalid_request_error",
        "invalid_request_error",
        None,
        "body is not JSON",
        failed_code="invalid_prompt",
    ),
    Case(
        "Unauthorized",
        lambda: Unauthorized("invalid API key"),
        401,
        "authentication_error",
        "authentication_error",
        "invalid_api_key",
        "invalid API key",
        failed_code="invalid_prompt",
    ),
    Case(
        "Forbidden",
        lambda: Forbidden("key 'alice' may not use model 'gpt-5'"),
        403,
        "permission_error",
        "permission_error",
        "permission_denied",
        "key 'alice' may not use model 'gpt-5'",
        failed_code="invalid_prompt",
    ),
    Case(
        "UnknownModel",
        lambda: UnknownModel("model 'nope' is not configured"),
        404,
        "not_found_error",
        "not_found_error",
        "model_not_found",
        "model 'nope' is not configured",
        failed_code="invalid_prompt",
    ),
    Case(
        "NotFound",
        lambda: NotFound("no route for POST /v1/nope"),
        404,
        "not_found_error",
        "not_found_error",
        "not_found",
        "no route for POST /v1/nope",
        failed_code="invalid_prompt",
    ),
    Case(
        "MethodNotAllowed",
        lambda: MethodNotAllowed("GET is not allowed on /v1/messages", allow=("POST",)),
        405,
        "invalid_request_error",
        "invalid_request_error",
        "method_not_allowed",
        "GET is not allowed on /v1/messages",
        failed_code="invalid_prompt",
        headers={"allow": "POST"},
    ),
    Case(
        "HeadersTooLarge",
        lambda: HeadersTooLarge("request headers exceed 65536 bytes"),
        431,
        "invalid_request_error",
        "invalid_request_error",
        "headers_too_large",
        "request headers exceed 65536 bytes",
        failed_code="invalid_prompt",
    ),
    Case(
        "PayloadTooLarge",
        lambda: PayloadTooLarge("request body exceeds 33554432 bytes"),
        413,
        "request_too_large",
        "invalid_request_error",
        "request_too_large",
        "request body exceeds 33554432 bytes",
        failed_code="invalid_prompt",
    ),
    Case(
        "RateLimited",
        lambda: RateLimited("key 'alice' is at its concurrency limit", retry_after=2.4),
        429,
        "rate_limit_error",
        "rate_limit_error",
        "rate_limit_exceeded",
        "key 'alice' is at its concurrency limit",
        headers={"retry-after": "2"},
        failed_code="rate_limit_exceeded",
    ),
    Case(
        "RateLimited-budget",
        lambda: RateLimited("key 'alice' is over its monthly budget"),
        429,
        "rate_limit_error",
        "rate_limit_error",
        "rate_limit_exceeded",
        "key 'alice' is over its monthly budget",
        failed_code="rate_limit_exceeded",
    ),
    Case(
        "ServiceUnavailable",
        lambda: ServiceUnavailable("the gateway is shutting down"),
        503,
        "overloaded_error",
        "server_error",
        "service_unavailable",
        "the gateway is shutting down",
    ),
    Case(
        "ShuttingDown",
        lambda: ShuttingDown("the gateway is shutting down; the request was ended early"),
        503,
        "overloaded_error",
        "server_error",
        "service_unavailable",
        "the gateway is shutting down; the request was ended early",
    ),
    Case(
        "UpstreamError",
        lambda: UpstreamError("upstream failed"),
        502,
        "api_error",
        "server_error",
        None,
        "upstream failed",
    ),
    Case(
        "UpstreamUnavailable",
        lambda: UpstreamUnavailable("could not connect to upstream 'primary'"),
        502,
        "api_error",
        "server_error",
        "upstream_unavailable",
        "could not connect to upstream 'primary'",
    ),
    Case(
        "UpstreamProtocolError",
        lambda: UpstreamProtocolError("upstream 'primary' ended the stream early"),
        502,
        "api_error",
        "server_error",
        "upstream_protocol_error",
        "upstream 'primary' ended the stream early",
    ),
    Case(
        "UpstreamTimeout",
        lambda: UpstreamTimeout("no response headers within 300 s", phase="first_byte"),
        504,
        "timeout_error",
        "timeout",
        "upstream_timeout",
        "no response headers within 300 s",
    ),
    Case(
        "UpstreamStatusError-400",
        _upstream(400, "upstream 'o' returned HTTP 400 (context_length_exceeded): too long"),
        400,
        "invalid_request_error",
        "invalid_request_error",
        None,
        "upstream 'o' returned HTTP 400 (context_length_exceeded): too long",
        failed_code="invalid_prompt",
    ),
    Case(
        "UpstreamStatusError-402",
        _upstream(402, "upstream 'a' returned HTTP 402"),
        402,
        "billing_error",
        "invalid_request_error",
        None,
        "upstream 'a' returned HTTP 402",
        failed_code="invalid_prompt",
    ),
    Case(
        "UpstreamStatusError-404",
        _upstream(404, "upstream 'a' returned HTTP 404: model: x"),
        404,
        "not_found_error",
        "not_found_error",
        None,
        "upstream 'a' returned HTTP 404: model: x",
        failed_code="invalid_prompt",
    ),
    Case(
        "UpstreamStatusError-429",
        _upstream(
            429,
            "upstream 'a' returned HTTP 429",
            retry_after="7",
            retry_after_ms="7000",
            should_retry="true",
        ),
        429,
        "rate_limit_error",
        "rate_limit_error",
        "rate_limit_exceeded",
        "upstream 'a' returned HTTP 429",
        headers={"retry-after": "7", "retry-after-ms": "7000", "x-should-retry": "true"},
        failed_code="rate_limit_exceeded",
    ),
    Case(
        "UpstreamStatusError-500",
        _upstream(500, "upstream 'a' returned HTTP 500", should_retry="false"),
        500,
        "api_error",
        "server_error",
        None,
        "upstream 'a' returned HTTP 500",
        headers={"x-should-retry": "false"},
    ),
    Case(
        "UpstreamStatusError-502-credentials",
        _upstream(502, "upstream 'a' rejected the gateway's credentials (HTTP 401)"),
        502,
        "api_error",
        "server_error",
        None,
        "upstream 'a' rejected the gateway's credentials (HTTP 401)",
    ),
    Case(
        "UpstreamStatusError-503",
        _upstream(503, "upstream 'a' returned HTTP 503"),
        503,
        "overloaded_error",
        "server_error",
        None,
        "upstream 'a' returned HTTP 503",
    ),
    Case(
        "UpstreamStatusError-504",
        _upstream(504, "upstream 'a' returned HTTP 504"),
        504,
        "timeout_error",
        "server_error",
        None,
        "upstream 'a' returned HTTP 504",
    ),
    Case(
        "UpstreamStatusError-529",
        _upstream(
            529,
            "upstream 'a' returned HTTP 529: Overloaded",
            retry_after="Wed, 21 Oct 2026 07:28:00 GMT",
        ),
        529,
        "overloaded_error",
        "server_error",
        None,
        "upstream 'a' returned HTTP 529: Overloaded",
        headers={"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"},
    ),
)

CASE_PARAMS = [pytest.param(case, id=case.id) for case in CASES]
CASE_PROTOCOL_PARAMS = [
    pytest.param(case, protocol, id=f"{case.id}-{protocol}")
    for case in CASES
    for protocol in PROTOCOLS
]


def _concrete_error_classes() -> set[type[GatewayError]]:
    found: set[type[GatewayError]] = {GatewayError}
    pending = [GatewayError]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub.__module__ == _errors.__name__ and sub not in found:
                found.add(sub)
                pending.append(sub)
    return found


def test_table_covers_every_error_class() -> None:
    # A new class in _errors.py must get a row here and in docs/errors.md.
    assert {type(case.make()) for case in CASES} == _concrete_error_classes()


def test_class_error_type_agrees_with_the_status_table() -> None:
    # _errors.py documents error_type as the protocol-neutral name; the renderer derives it
    # from the status. They must not drift apart.
    for cls in _concrete_error_classes() - {UpstreamStatusError}:
        assert anthropic_error_type(cls.status_hint) == cls.error_type, cls


# -- before commit: status, headers, body ----------------------------------------------------


def expected_body(case: Case, protocol: Protocol) -> dict[str, object]:
    if protocol == "anthropic":
        return {
            "type": "error",
            "error": {"type": case.anthropic_type, "message": case.message},
            "request_id": REQUEST_ID,
        }
    return {
        "error": {
            "message": case.message,
            "type": case.openai_type,
            "param": case.param,
            "code": case.code,
        }
    }


@pytest.mark.parametrize(("case", "protocol"), CASE_PROTOCOL_PARAMS)
def test_error_response(case: Case, protocol: Protocol) -> None:
    status, headers, body = error_response(case.make(), protocol, request_id=REQUEST_ID)
    assert status == case.status
    id_header = "request-id" if protocol == "anthropic" else "x-request-id"
    expected_headers = [
        ("content-type", "application/json"),
        (id_header, REQUEST_ID),
        *case.headers.items(),
    ]
    assert [(n.decode(), v.decode()) for n, v in headers] == expected_headers
    assert json.loads(body) == expected_body(case, protocol)
    # Compact JSON, one line (protocols.md §4.6).
    assert b"\n" not in body
    assert b'": ' not in body
    assert b'", "' not in body


def test_error_response_exact_bytes() -> None:
    error = InvalidRequest("messages: field required", param="messages")
    assert error_response(error, "anthropic", request_id="req_1") == (
        400,
        [(b"content-type", b"application/json"), (b"request-id", b"req_1")],
        b'{"type":"error","error":{"type":"invalid_request_error",'
        b'"message":"messages: field required"},"request_id":"req_1"}',
    )
    assert error_response(error, "openai-chat", request_id="req_1") == (
        400,
        [(b"content-type", b"application/json"), (b"x-request-id", b"req_1")],
        b'{"error":{"message":"messages: field required","type":"invalid_request_error",'
        b'"param":"messages","code":null}}',
    )


def test_non_ascii_message_is_utf8_not_escaped() -> None:
    _, _, body = error_response(GatewayError("modèle «x» 模型"), "openai-chat", request_id="r")
    assert "modèle «x» 模型".encode() in body


def test_unicode_line_separators_are_escaped() -> None:
    # str.splitlines() treats these as line breaks (RELIABILITY.md finding 8).
    error = GatewayError("a\u2028b\u2029c\x85d\ne")
    frame = error_event(error, "openai-chat", request_id="r")
    assert frame.count(b"\n") == 2
    assert "\u2028".encode() not in frame
    assert (
        json.loads(frame.removeprefix(b"data: "))["error"]["message"] == "a\u2028b\u2029c\x85d\ne"
    )


def test_lone_surrogate_still_renders_valid_json() -> None:
    _, _, body = error_response(GatewayError("bad \ud800 text"), "anthropic", request_id="r")
    assert json.loads(body)["error"]["message"] == "bad \ud800 text"


def test_request_id_cannot_inject_headers() -> None:
    _, headers, body = error_response(
        GatewayError("x"), "anthropic", request_id="req_1\r\nset-cookie: a=b"
    )
    assert headers[1] == (b"request-id", b"req_1set-cookie:a=b")
    assert json.loads(body)["request_id"] == "req_1set-cookie:a=b"


def test_unsafe_header_values_are_dropped() -> None:
    error = UpstreamStatusError(
        "x", status=429, retry_after="1\r\nx-evil: 1", retry_after_ms="é", should_retry=" true "
    )
    _, headers, _ = error_response(error, "openai-chat", request_id="r")
    assert headers[2:] == [(b"x-should-retry", b"true")]


def test_non_error_status_is_never_sent() -> None:
    status, _, body = error_response(
        UpstreamStatusError("odd", status=200), "openai-chat", request_id="r"
    )
    assert status == 502
    assert json.loads(body)["error"]["type"] == "server_error"


def test_empty_message_gets_a_fallback() -> None:
    _, _, body = error_response(UpstreamTimeout("", phase="drain"), "anthropic", request_id="r")
    assert json.loads(body)["error"]["message"] == "HTTP 504"


@pytest.mark.parametrize(
    ("status", "anthropic", "openai_"),
    [
        (400, "invalid_request_error", "invalid_request_error"),
        (401, "authentication_error", "authentication_error"),
        (402, "billing_error", "invalid_request_error"),
        (403, "permission_error", "permission_error"),
        (404, "not_found_error", "not_found_error"),
        (408, "invalid_request_error", "invalid_request_error"),
        (409, "invalid_request_error", "invalid_request_error"),
        (413, "request_too_large", "invalid_request_error"),
        (422, "invalid_request_error", "invalid_request_error"),
        (429, "rate_limit_error", "rate_limit_error"),
        (500, "api_error", "server_error"),
        (501, "api_error", "server_error"),
        (502, "api_error", "server_error"),
        (503, "overloaded_error", "server_error"),
        (504, "timeout_error", "server_error"),
        (529, "overloaded_error", "server_error"),
        (599, "api_error", "server_error"),
    ],
)
def test_type_tables(status: int, anthropic: str, openai_: str) -> None:
    assert anthropic_error_type(status) == anthropic
    assert openai_error_type(status) == openai_


# -- after commit: in-band SSE frames --------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    event: str | None
    data: object


def parse_sse(raw: bytes) -> list[Frame]:
    """A strict reader for the gateway's own output rules (protocols.md §4.5, §4.6)."""
    assert raw.endswith(b"\n\n")
    assert b"\r" not in raw
    assert not raw.startswith(b"\xef\xbb\xbf")
    frames: list[Frame] = []
    for block in raw[:-2].split(b"\n\n"):
        event: str | None = None
        data: list[bytes] = []
        for line in block.split(b"\n"):
            name, sep, value = line.partition(b": ")
            assert sep, line
            assert name in (b"event", b"data"), line  # never id:, retry: or comments here
            if name == b"event":
                assert event is None
                event = value.decode()
            else:
                data.append(value)
        assert len(data) == 1  # one single-line data field per event
        frames.append(Frame(event, json.loads(data[0])))
    return frames


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_anthropic_error_event(case: Case) -> None:
    raw = error_event(case.make(), "anthropic", request_id=REQUEST_ID)
    assert parse_sse(raw) == [Frame("error", expected_body(case, "anthropic"))]


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_chat_error_event(case: Case) -> None:
    raw = error_event(case.make(), "openai-chat", request_id=REQUEST_ID)
    # No event: line (protocols.md §4.3) and no [DONE]: the stream failed.
    assert parse_sse(raw) == [Frame(None, expected_body(case, "openai-chat"))]
    assert b"[DONE]" not in raw


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_responses_error_events(case: Case) -> None:
    raw = error_event(
        case.make(),
        "openai-responses",
        request_id=REQUEST_ID,
        response_id="resp_abc",
        sequence_number=7,
        model="gpt-5",
        created_at=1751642570,
    )
    code = case.code or case.openai_type
    assert parse_sse(raw) == [
        Frame(
            "error",
            {
                "type": "error",
                "sequence_number": 7,
                "code": code,
                "message": case.message,
                "param": case.param,
                "error": {
                    "type": case.openai_type,
                    "code": code,
                    "message": case.message,
                    "param": case.param,
                },
            },
        ),
        Frame(
            "response.failed",
            {
                "type": "response.failed",
                "sequence_number": 8,
                "response": {
                    "id": "resp_abc",
                    "object": "response",
                    "created_at": 1751642570,
                    "status": "failed",
                    "error": {"code": case.failed_code, "message": case.message},
                    "incomplete_details": None,
                    "model": "gpt-5",
                    "output": [],
                    "parallel_tool_calls": True,
                    "tool_choice": "auto",
                    "tools": [],
                    "usage": None,
                },
            },
        ),
    ]


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_responses_events_validate_against_the_sdk_types(case: Case) -> None:
    raw = error_event(case.make(), "openai-responses", request_id=REQUEST_ID)
    error_frame, failed_frame = parse_sse(raw)
    error_model = ResponseErrorEvent.model_validate(error_frame.data, strict=True)
    assert error_model.message == case.message
    failed_model = ResponseFailedEvent.model_validate(failed_frame.data, strict=True)
    assert failed_model.response.id == f"resp_{REQUEST_ID}"
    assert failed_model.response.status == "failed"
    assert failed_model.sequence_number == 1


def test_responses_defaults() -> None:
    raw = error_event(GatewayError("x"), "openai-responses", request_id="req_9")
    error_frame, failed_frame = parse_sse(raw)
    assert isinstance(error_frame.data, dict)
    assert isinstance(failed_frame.data, dict)
    assert error_frame.data["sequence_number"] == 0
    assert failed_frame.data["sequence_number"] == 1
    response = failed_frame.data["response"]
    assert isinstance(response, dict)
    assert (response["id"], response["model"], response["created_at"]) == ("resp_req_9", "", 0)


def test_exact_in_band_bytes() -> None:
    error = UpstreamStatusError("Overloaded", status=529)
    assert error_event(error, "anthropic", request_id="req_1") == (
        b"event: error\n"
        b'data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},'
        b'"request_id":"req_1"}\n\n'
    )
    assert error_event(error, "openai-chat", request_id="req_1") == (
        b'data: {"error":{"message":"Overloaded","type":"server_error","param":null,'
        b'"code":null}}\n\n'
    )


@given(
    message=st.text(max_size=200),
    protocol=st.sampled_from(PROTOCOLS),
    sequence_number=st.integers(0, 10**6),
)
def test_any_message_makes_well_formed_frames(
    message: str, protocol: Protocol, sequence_number: int
) -> None:
    raw = error_event(
        GatewayError(message), protocol, request_id="r", sequence_number=sequence_number
    )
    frames = parse_sse(raw)
    assert len(frames) == (2 if protocol == "openai-responses" else 1)


# -- keepalives ------------------------------------------------------------------------------


def test_ping_frames() -> None:
    assert ping_frame("anthropic") == b'event: ping\ndata: {"type": "ping"}\n\n'
    assert ping_frame("openai-chat") == b": keepalive\n\n"
    assert ping_frame("openai-responses") == b": keepalive\n\n"


# -- the real SDKs ---------------------------------------------------------------------------


def _transport(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> httpx2.Client:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, headers=headers, content=body)

    return httpx2.Client(transport=httpx2.MockTransport(handler))


def _sse(raw: bytes) -> httpx2.Client:
    return _transport(200, [(b"content-type", b"text/event-stream")], raw)


def _anthropic(http_client: httpx2.Client) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key="k", base_url="http://gateway.test", http_client=http_client, max_retries=0
    )


def _openai(http_client: httpx2.Client) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="k", base_url="http://gateway.test/v1", http_client=http_client, max_retries=0
    )


# The exception class is chosen by the status (protocols.md §1.8); anthropic 2.12 has more.
ANTHROPIC_CLASSES: dict[int, type[anthropic.APIStatusError]] = {
    400: anthropic.BadRequestError,
    401: anthropic.AuthenticationError,
    402: anthropic.PaymentRequiredError,
    403: anthropic.PermissionDeniedError,
    404: anthropic.NotFoundError,
    413: anthropic.RequestTooLargeError,
    429: anthropic.RateLimitError,
    431: anthropic.RequestHeaderFieldsTooLargeError,
    503: anthropic.ServiceUnavailableError,
    504: anthropic.GatewayTimeoutError,
    529: anthropic.OverloadedError,
}
OPENAI_CLASSES: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    429: openai.RateLimitError,
}


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_anthropic_sdk_reads_the_error_response(case: Case) -> None:
    client = _anthropic(_transport(*error_response(case.make(), "anthropic", request_id="req_7")))
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(
            model="m", max_tokens=1, messages=[{"role": "user", "content": "hi"}]
        )
    expected = ANTHROPIC_CLASSES.get(
        case.status,
        anthropic.InternalServerError if case.status >= 500 else anthropic.APIStatusError,
    )
    assert type(info.value) is expected
    assert info.value.status_code == case.status
    assert info.value.request_id == "req_7"
    assert info.value.body == expected_body(case, "anthropic") | {"request_id": "req_7"}


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_openai_sdk_reads_the_error_response(case: Case) -> None:
    client = _openai(_transport(*error_response(case.make(), "openai-chat", request_id="req_7")))
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    expected = OPENAI_CLASSES.get(
        case.status,
        openai.InternalServerError if case.status >= 500 else openai.APIStatusError,
    )
    assert type(info.value) is expected
    assert info.value.request_id == "req_7"
    assert (info.value.code, info.value.type, info.value.param) == (
        case.code,
        case.openai_type,
        case.param,
    )


def test_anthropic_sdk_raises_on_the_in_band_error() -> None:
    frame = error_event(
        UpstreamTimeout("stalled", phase="data_interval"), "anthropic", request_id="r"
    )
    client = _anthropic(_sse(frame))
    with pytest.raises(anthropic.APIStatusError) as info:
        for _ in client.messages.create(
            model="m", max_tokens=1, messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            pass
    assert info.value.status_code == 200  # protocols.md §1.8: mid-stream errors carry the 200
    assert "stalled" in str(info.value)


def test_openai_chat_sdk_raises_on_the_in_band_error() -> None:
    frame = error_event(
        UpstreamTimeout("stalled", phase="data_interval"), "openai-chat", request_id="r"
    )
    client = _openai(_sse(frame))
    with pytest.raises(openai.APIError) as info:
        for _ in client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            pass
    assert info.value.message == "stalled"


def test_openai_responses_sdk_raises_on_the_in_band_error() -> None:
    frames = error_event(
        UpstreamProtocolError("cut"), "openai-responses", request_id="r", sequence_number=3
    )
    client = _openai(_sse(frames))
    with pytest.raises(openai.APIError) as info:
        for _ in client.responses.create(model="m", input="hi", stream=True):
            pass
    assert info.value.message == "cut"


def test_anthropic_sdk_skips_the_ping() -> None:
    client = _anthropic(_sse(ping_frame("anthropic")))
    stream = client.messages.create(
        model="m", max_tokens=1, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert list(stream) == []


def test_openai_sdk_ignores_the_keepalive() -> None:
    client = _openai(_sse(ping_frame("openai-chat") + b"data: [DONE]\n\n"))
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert list(stream) == []
