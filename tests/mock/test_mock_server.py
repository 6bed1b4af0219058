"""The mock upstream over real sockets (httpx and the official SDKs) and in memory."""

from __future__ import annotations

import gc
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import anthropic
import h11
import httpx
import openai
import pytest
import trio
import trio.testing
from openai.types.chat import ChatCompletionMessageParam

from tests.mock._sse_checks import check_anthropic, check_chat, check_responses, dig, parse_sse
from trio_gateway._mock import (
    CANARY_KEY,
    REDIRECT_LOCATION,
    MockRequest,
    MockUpstream,
    open_memory_connector,
)

PATHS: Final = {
    "anthropic": "/v1/messages",
    "openai-chat": "/v1/chat/completions",
    "openai-responses": "/v1/responses",
}
MESSAGES: Final = [{"role": "user", "content": "Hi"}]
ANTHROPIC_MESSAGES: Final[list[anthropic.types.MessageParam]] = [{"role": "user", "content": "Hi"}]
OPENAI_MESSAGES: Final[list[ChatCompletionMessageParam]] = [{"role": "user", "content": "Hi"}]


@dataclass(frozen=True, slots=True)
class Served:
    mock: MockUpstream
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, *, timeout: float = 5.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=timeout)


@pytest.fixture
async def served(nursery: trio.Nursery) -> Served:
    mock = MockUpstream()
    port: int = await nursery.start(mock.serve)
    return Served(mock, port)


def request_body(model: str, *, stream: bool = True) -> dict[str, object]:
    return {"model": model, "max_tokens": 64, "messages": MESSAGES, "stream": stream}


async def wait_for_outcome(record: MockRequest, outcome: str) -> None:
    with trio.fail_after(3):
        while record.outcome != outcome:
            await trio.sleep(0.01)


# --- httpx over a real socket ------------------------------------------------------------


@pytest.mark.parametrize("dialect", list(PATHS))
async def test_stream_each_protocol(served: Served, dialect: str) -> None:
    body = request_body("mock-thinking+tools")
    body["stream_options"] = {"include_usage": True}
    async with served.client() as client:
        response = await client.post(PATHS[dialect], json=body, headers={"X-Trace": "t1"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["transfer-encoding"] == "chunked"
    events = parse_sse(response.content)
    if dialect == "anthropic":
        out = check_anthropic(events)
    elif dialect == "openai-chat":
        out = check_chat(events, include_usage=True)
    else:
        out = check_responses(events)
    assert json.loads(out.tool_arguments) == {"city": "Paris"}
    (record,) = served.mock.requests
    assert (record.method, record.path, record.scenario) == (
        "POST",
        PATHS[dialect],
        "thinking+tools",
    )
    assert ("x-trace", "t1") in record.headers
    assert record.body == body
    assert record.events_sent == len(events)
    assert record.outcome == "completed"


@pytest.mark.parametrize("dialect", list(PATHS))
async def test_non_stream_and_keep_alive(served: Served, dialect: str) -> None:
    addresses = []
    async with served.client() as client:
        for _ in range(2):
            response = await client.post(PATHS[dialect], json=request_body("demo", stream=False))
            assert response.status_code == 200
            assert int(response.headers["content-length"]) == len(response.content)
            addresses.append(response.extensions["network_stream"].get_extra_info("client_addr"))
    assert addresses[0] == addresses[1]  # the same connection served both
    assert "usage" in response.json()
    assert [r.outcome for r in served.mock.requests] == ["completed", "completed"]
    assert served.mock.requests[0].events_sent == 0


async def drain(client: httpx.AsyncClient, path: str, body: object, into: bytearray) -> None:
    async with client.stream("POST", path, json=body) as response:
        async for chunk in response.aiter_raw():
            into += chunk  # keep what arrived before the failure


async def test_cut_mid_stream(served: Served) -> None:
    seen = bytearray()
    async with served.client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await drain(client, "/v1/messages", request_body("mock-cut:after=3"), seen)
    assert len(parse_sse(bytes(seen))) == 3
    (record,) = served.mock.requests
    assert (record.outcome, record.events_sent) == ("cut", 3)


async def test_reset_mid_stream(served: Served) -> None:
    async with served.client() as client:
        body = request_body("mock-reset:after=2")
        with pytest.raises(httpx.TransportError):
            await drain(client, "/v1/chat/completions", body, bytearray())
    (record,) = served.mock.requests
    assert (record.outcome, record.events_sent) == ("reset", 2)


async def test_status_with_retry_after(served: Served) -> None:
    async with served.client() as client:
        response = await client.post(
            "/v1/messages",
            json=request_body("demo"),
            headers={"x-mock-scenario": "status:code=429,retry_after=2"},
        )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert served.mock.requests[0].outcome == "error_status"


async def test_redirect_and_canary(served: Served) -> None:
    async with served.client() as client:
        redirect = await client.post("/v1/responses", json=request_body("mock-redirect"))
        canary = await client.post("/v1/responses", json=request_body("mock-canary:code=403"))
    assert redirect.status_code == 307
    assert redirect.headers["location"] == REDIRECT_LOCATION
    assert canary.status_code == 403
    assert CANARY_KEY in canary.text


async def test_crlf_and_huge(served: Served) -> None:
    body = request_body("mock-crlf+huge:bytes=1000000")
    async with served.client() as client:
        response = await client.post("/v1/chat/completions", json=body)
    raw = response.content
    assert b"\r\n\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) > 1_000_000
    out = check_chat(parse_sse(raw), include_usage=False)
    assert len(out.text) > 1_000_000


async def test_stall_headers_then_client_gives_up(served: Served) -> None:
    async with served.client(timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/v1/messages", json=request_body("mock-stall_headers:secs=30"))
    (record,) = served.mock.requests
    await wait_for_outcome(record, "client_closed")
    assert record.events_sent == 0


async def test_client_closes_mid_stream(served: Served) -> None:
    body = json.dumps(request_body("mock-text:tokens=500,interval=0.01")).encode()
    head = f"POST /v1/responses HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n"
    stream = await trio.open_tcp_stream("127.0.0.1", served.port)
    async with stream:
        await stream.send_all(head.encode() + body)
        received = b""
        while b"\n\n" not in received:
            received += await stream.receive_some(65536)
    (record,) = served.mock.requests
    await wait_for_outcome(record, "client_closed")
    assert 0 < record.events_sent < 500


async def test_request_log_endpoints_and_errors(served: Served) -> None:
    async with served.client() as client:
        assert (await client.post("/v1/nowhere", json={})).status_code == 404
        assert (await client.get("/v1/messages")).status_code == 405
        bad = await client.post("/v1/messages", content=b"{not json")
        assert bad.status_code == 400
        assert bad.json()["type"] == "error"
        typo = await client.post("/v1/chat/completions", json=request_body("mock-tool"))
        assert typo.status_code == 400
        assert "unknown mock scenario" in typo.json()["error"]["message"]
        models = (await client.get("/v1/models")).json()
        assert "mock-tools" in [m["id"] for m in models["data"]]
        log = (await client.get("/_mock/requests")).json()
        assert [entry["outcome"] for entry in log] == ["rejected"] * 4 + ["completed"]
        assert log[3]["scenario"] == "tool"
        assert (await client.post("/_mock/reset")).json() == {"ok": True}
    assert served.mock.requests == []


async def test_bad_connection_does_not_kill_server(served: Served) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", served.port)
    async with stream:
        await stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
        reply = await stream.receive_some(65536)
    assert reply.startswith(b"HTTP/1.1 400 ")
    async with served.client() as client:
        assert (await client.post("/v1/messages", json=request_body("mock"))).status_code == 200


async def test_require_key(nursery: trio.Nursery) -> None:
    mock = MockUpstream(require_key="k-123")
    port = await nursery.start(mock.serve)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        anon = await client.post("/v1/messages", json=request_body("mock"))
        by_header = await client.post(
            "/v1/messages", json=request_body("mock"), headers={"x-api-key": "k-123"}
        )
        by_bearer = await client.post(
            "/v1/responses", json=request_body("mock"), headers={"authorization": "Bearer k-123"}
        )
    assert anon.status_code == 401
    assert anon.json()["error"]["type"] == "authentication_error"
    assert (by_header.status_code, by_bearer.status_code) == (200, 200)


# --- the official SDKs -----------------------------------------------------------------------

ANTHROPIC_INPUT: Final = {
    "input_tokens": 25,
    "cache_read_input_tokens": 100,
    "cache_creation_input_tokens": 30,
}


@pytest.mark.parametrize(
    ("model", "output"), [("demo", 8), ("mock-tools", 7), ("mock-thinking", 20)]
)
async def test_anthropic_sdk(served: Served, model: str, output: int) -> None:
    client = anthropic.AsyncAnthropic(base_url=served.url, api_key="x", max_retries=0)
    async with client.messages.stream(
        model=model, max_tokens=64, messages=ANTHROPIC_MESSAGES
    ) as stream:
        message = await stream.get_final_message()
    created = await client.messages.create(model=model, max_tokens=64, messages=ANTHROPIC_MESSAGES)
    for result in (message, created):
        usage = result.usage
        assert usage.output_tokens == output
        assert {key: getattr(usage, key) for key in ANTHROPIC_INPUT} == ANTHROPIC_INPUT
        assert usage.cache_creation is not None
        assert usage.cache_creation.ephemeral_5m_input_tokens == 20
        assert usage.cache_creation.ephemeral_1h_input_tokens == 10
        kinds = [block.type for block in result.content]
        if model == "mock-tools":
            assert result.stop_reason == "tool_use"
            tool = result.content[-1]
            assert tool.type == "tool_use"
            assert tool.input == {"city": "Paris"}
        elif model == "mock-thinking":
            assert kinds == ["thinking", "text"]
        else:
            assert kinds == ["text"]
    await client.close()


# openai's AsyncStream stops at `data: [DONE]` with `break` and never closes its inner
# async generators (openai/_streaming.py, __stream__); under trio their finalizer warns.
# Real OpenAI streams end the same way, so this is the SDK's wart, not the mock's.
@pytest.mark.filterwarnings("ignore:Exception ignored in:pytest.PytestUnraisableExceptionWarning")
async def test_openai_sdk_chat(served: Served) -> None:
    client = openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key="x", max_retries=0)
    async with client.chat.completions.stream(
        model="mock-tools", messages=OPENAI_MESSAGES, stream_options={"include_usage": True}
    ) as stream:
        completion = await stream.get_final_completion()
    created = await client.chat.completions.create(model="mock-thinking", messages=OPENAI_MESSAGES)
    await client.close()
    gc.collect()  # finalise the SDK's abandoned generators inside this test
    call = dig(completion.model_dump(), "choices", 0, "message", "tool_calls", 0, "function")
    assert dig(call, "arguments") == '{"city": "Paris"}'
    assert completion.choices[0].finish_reason == "tool_calls"
    for result, output, reasoning in ((completion, 7, 0), (created, 20, 12)):
        usage = result.usage
        assert usage is not None
        assert (usage.prompt_tokens, usage.completion_tokens) == (125, output)
        assert usage.total_tokens == 125 + output
        assert usage.prompt_tokens_details is not None
        assert usage.prompt_tokens_details.cached_tokens == 100
        assert usage.completion_tokens_details is not None
        assert usage.completion_tokens_details.reasoning_tokens == reasoning


async def test_openai_sdk_responses(served: Served) -> None:
    client = openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key="x", max_retries=0)
    async with client.responses.stream(model="mock-thinking+tools", input="Hi") as stream:
        response = await stream.get_final_response()
    created = await client.responses.create(model="demo", input="Hi")
    await client.close()
    assert [item.type for item in response.output] == ["reasoning", "message", "function_call"]
    assert created.output_text == "Hello from the mock upstream. Streaming works"
    for result, output, reasoning in ((response, 19, 12), (created, 8, 0)):
        usage = result.usage
        assert usage is not None
        assert (usage.input_tokens, usage.output_tokens) == (125, output)
        assert usage.total_tokens == 125 + output
        assert usage.input_tokens_details.cached_tokens == 100
        assert usage.output_tokens_details.reasoning_tokens == reasoning


# --- in memory, virtual time -------------------------------------------------------------------


@dataclass(slots=True)
class RawReply:
    status: int
    body: bytes
    complete: bool


async def h11_exchange(
    stream: trio.abc.Stream,
    body: dict[str, object],
    *,
    path: str = "/v1/messages",
    connection: h11.Connection | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> RawReply:
    client = connection or h11.Connection(h11.CLIENT)
    data = json.dumps(body).encode()
    head = [("host", "mock"), ("content-type", "application/json"), *headers]
    head.append(("content-length", str(len(data))))
    request = h11.Request(method="POST", target=path, headers=head)
    for outgoing in (request, h11.Data(data=data), h11.EndOfMessage()):
        await stream.send_all(client.send(outgoing) or b"")
    reply = RawReply(0, b"", complete=False)
    while True:
        try:
            event = client.next_event()
        except h11.RemoteProtocolError:
            return reply  # the server closed before the end of the message
        if event is h11.NEED_DATA:
            client.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Response):
            reply.status = event.status_code
        elif isinstance(event, h11.Data):
            reply.body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            reply.complete = True
            return reply
        else:
            return reply


async def test_memory_slow_first_is_virtual(autojump_clock: trio.testing.MockClock) -> None:
    mock = MockUpstream()
    async with open_memory_connector(mock) as connect:
        stream = await connect("upstream.invalid", 443, True)
        start = trio.current_time()
        reply = await h11_exchange(stream, request_body("mock-slow_first:secs=100"))
        assert trio.current_time() - start >= 100
        connection = h11.Connection(h11.CLIENT)
        again = await h11_exchange(
            stream, request_body("demo", stream=False), connection=connection
        )
    assert reply.status == 200
    assert reply.complete
    check_anthropic(parse_sse(reply.body))
    assert again.complete
    assert [r.outcome for r in mock.requests] == ["completed", "completed"]


async def test_memory_stall_then_client_leaves(autojump_clock: trio.testing.MockClock) -> None:
    mock = MockUpstream(interval=0.5)
    async with open_memory_connector(mock) as connect:
        stream = await connect("upstream.invalid", 443, True)
        with trio.move_on_after(60):
            await h11_exchange(stream, request_body("mock-stall:after=2,secs=3600"))
        (record,) = mock.requests
        assert (record.outcome, record.events_sent) == ("stalled", 2)
        await stream.aclose()
        await wait_for_outcome(record, "client_closed")
        assert trio.current_time() < 3600


async def test_memory_cut(autojump_clock: trio.testing.MockClock) -> None:
    mock = MockUpstream()
    async with open_memory_connector(mock) as connect:
        stream = await connect("upstream.invalid", 443, True)
        reply = await h11_exchange(
            stream,
            request_body("demo"),
            path="/v1/responses",
            headers=[("x-mock-scenario", "cut:after=4")],
        )
    assert reply.status == 200
    assert not reply.complete
    assert len(parse_sse(reply.body)) == 4
    assert mock.requests[0].outcome == "cut"


async def test_declared_body_over_the_cap_is_413(served: Served) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", served.port)
    async with stream:
        head = b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: 100000000\r\n\r\n"
        await stream.send_all(head)
        reply = b""
        while chunk := await stream.receive_some(65536):  # the mock closes after a 413
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b'"request_too_large"' in reply
    assert served.mock.requests[0].outcome == "rejected"
