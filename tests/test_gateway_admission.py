"""Admission, in memory: everything ``Gateway`` decides before the first upstream call.

The order under test is ``_gateway``'s: route → header limit → authenticate → read the body →
parse → model → protocol → relay. Every refusal must come in the caller's shape (Anthropic on
``/v1/messages``, OpenAI on the two OpenAI routes; on routes of no protocol, Anthropic when
``anthropic-version`` or ``x-api-key`` is sent) and must not reach the upstream: those tests
end by checking that the mock saw no request, and the positive controls check that the same
request, made valid, does reach it.

The gateway runs against the mock over memory streams (``make_gateway``); tests that reach the
upstream use ``autojump_clock`` so that any timer in the relay runs on virtual time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Final, Literal

import pytest
import trio.testing

from tests.conftest import GatewayFactory
from tests.support import CLIENT_KEY, gateway_config
from trio_gateway._gateway import Gateway, open_gateway
from trio_gateway._protocol._names import Protocol
from trio_gateway.testing import AsgiClient, AsgiResponse, MockUpstream, open_memory_connector

PATHS: Final[Mapping[Protocol, str]] = {
    "anthropic": "/v1/messages",
    "openai-chat": "/v1/chat/completions",
    "openai-responses": "/v1/responses",
}
PROTOCOLS: Final[tuple[Protocol, ...]] = tuple(PATHS)
KeyHeader = Literal["x-api-key", "bearer"]


def valid_body(protocol: Protocol, model: str = "demo") -> dict[str, object]:
    """A minimal valid non-streaming request for ``protocol``."""
    if protocol == "openai-responses":
        return {"model": model, "input": "Hi"}
    return {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]}


def auth(key: str = CLIENT_KEY, *, via: KeyHeader = "bearer") -> dict[str, str]:
    if via == "x-api-key":
        return {"x-api-key": key}
    return {"authorization": f"Bearer {key}"}


def as_dict(value: object) -> dict[str, object]:
    assert isinstance(value, dict), value
    return value


def anthropic_error(response: AsgiResponse) -> dict[str, object]:
    """Check the Anthropic error shape (protocols.md §1.8) and return its ``error`` object."""
    assert response.headers["content-type"] == "application/json"
    assert "x-request-id" not in response.headers
    body = as_dict(response.json())
    assert set(body) == {"type", "error", "request_id"}
    assert body["type"] == "error"
    assert body["request_id"] == response.headers["request-id"]
    error = as_dict(body["error"])
    assert set(error) == {"type", "message"}
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


def openai_error(response: AsgiResponse) -> dict[str, object]:
    """Check the OpenAI error shape (protocols.md §2.6) and return its ``error`` object."""
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    assert "request-id" not in response.headers
    body = as_dict(response.json())
    assert set(body) == {"error"}
    error = as_dict(body["error"])
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


def error_in_shape(response: AsgiResponse, protocol: Protocol) -> dict[str, object]:
    if protocol == "anthropic":
        return anthropic_error(response)
    return openai_error(response)


@pytest.fixture
async def client(make_gateway: GatewayFactory) -> AsgiClient:
    return (await make_gateway())[1]


@pytest.fixture
async def gateway_and_client(make_gateway: GatewayFactory) -> tuple[Gateway, AsgiClient]:
    return await make_gateway()


# --- authentication ----------------------------------------------------------------------


async def test_unknown_key_is_401_in_anthropic_shape(
    client: AsgiClient, mock: MockUpstream
) -> None:
    response = await client.request(
        "POST", "/v1/messages", json=valid_body("anthropic"), headers=auth("sk-nobody")
    )
    assert response.status == 401
    assert anthropic_error(response)["type"] == "authentication_error"
    assert mock.requests == []


@pytest.mark.parametrize("protocol", ["openai-chat", "openai-responses"])
async def test_unknown_key_is_401_in_openai_shape(
    client: AsgiClient, mock: MockUpstream, protocol: Protocol
) -> None:
    response = await client.request(
        "POST", PATHS[protocol], json=valid_body(protocol), headers=auth("sk-nobody")
    )
    assert response.status == 401
    error = openai_error(response)
    assert error["type"] == "authentication_error"
    assert error["code"] == "invalid_api_key"
    assert mock.requests == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer "},
        {"authorization": "Basic c2stdGVzdA=="},
        {"authorization": CLIENT_KEY},
        {"x-api-key": ""},
    ],
    ids=["none", "empty-bearer", "basic", "no-scheme", "empty-x-api-key"],
)
async def test_missing_key_is_401(
    client: AsgiClient, mock: MockUpstream, protocol: Protocol, headers: dict[str, str]
) -> None:
    response = await client.request(
        "POST", PATHS[protocol], json=valid_body(protocol), headers=headers
    )
    assert response.status == 401
    assert error_in_shape(response, protocol)["type"] == "authentication_error"
    assert mock.requests == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "headers",
    [
        {"x-api-key": CLIENT_KEY},
        {"authorization": f"Bearer {CLIENT_KEY}"},
        {"authorization": f"bearer {CLIENT_KEY}"},  # RFC 9110 §11.1: the scheme is caseless
    ],
    ids=["x-api-key", "bearer", "lowercase-bearer"],
)
async def test_valid_key_is_accepted_either_way(
    client: AsgiClient,
    mock: MockUpstream,
    protocol: Protocol,
    headers: dict[str, str],
    autojump_clock: trio.testing.MockClock,
) -> None:
    response = await client.request(
        "POST", PATHS[protocol], json=valid_body(protocol), headers=headers
    )
    assert response.status == 200, response.body
    assert len(mock.requests) == 1
    # The caller's key never goes upstream: the gateway sends its own.
    assert CLIENT_KEY not in repr(mock.requests[0].headers)


async def test_authentication_comes_before_the_body_is_parsed(
    client: AsgiClient, mock: MockUpstream
) -> None:
    response = await client.request(
        "POST", "/v1/messages", content=b"{not json", headers=auth("sk-nobody")
    )
    assert response.status == 401
    assert mock.requests == []


# --- the request body --------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("content", [b"{not json", b"", b"[1, 2]", b'"text"', b"\xff\xfe"])
async def test_bad_json_is_400(
    client: AsgiClient, mock: MockUpstream, protocol: Protocol, content: bytes
) -> None:
    response = await client.request("POST", PATHS[protocol], content=content, headers=auth())
    assert response.status == 400
    assert error_in_shape(response, protocol)["type"] == "invalid_request_error"
    assert mock.requests == []


#: Invalid ``max_tokens`` values; absent is marked by ``MISSING``.
MISSING: Final = object()
BAD_MAX_TOKENS: Final = [-1, 0, 1.5, "10", None, MISSING, True]


@pytest.mark.parametrize("value", BAD_MAX_TOKENS, ids=repr)
async def test_anthropic_max_tokens_must_be_a_positive_integer(
    client: AsgiClient, mock: MockUpstream, value: object
) -> None:
    body = valid_body("anthropic")
    if value is MISSING:
        del body["max_tokens"]
    else:
        body["max_tokens"] = value
    response = await client.request("POST", "/v1/messages", json=body, headers=auth())
    assert response.status == 400
    error = anthropic_error(response)
    assert error["type"] == "invalid_request_error"
    # The Anthropic shape has no `param`: the message names the field.
    assert "max_tokens" in str(error["message"])
    assert mock.requests == []


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", [-1, 0, 1.5, "10", True], ids=repr)
async def test_chat_output_cap_must_be_a_positive_integer(
    client: AsgiClient, mock: MockUpstream, key: str, value: object
) -> None:
    body = valid_body("openai-chat")
    body[key] = value
    response = await client.request("POST", "/v1/chat/completions", json=body, headers=auth())
    assert response.status == 400
    error = openai_error(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == key
    assert mock.requests == []


@pytest.mark.parametrize("value", [None, MISSING], ids=["null", "missing"])
async def test_chat_max_tokens_may_be_null_or_absent(
    client: AsgiClient,
    mock: MockUpstream,
    value: object,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # OpenAI declares the output caps nullable and optional; Anthropic does not.
    body = valid_body("openai-chat")
    if value is MISSING:
        del body["max_tokens"]
    else:
        body["max_tokens"] = value
    response = await client.request("POST", "/v1/chat/completions", json=body, headers=auth())
    assert response.status == 200, response.body
    assert len(mock.requests) == 1


@pytest.mark.parametrize("value", [-1, 0, 1.5, "10", True], ids=repr)
async def test_responses_max_output_tokens_must_be_a_positive_integer(
    client: AsgiClient, mock: MockUpstream, value: object
) -> None:
    body = valid_body("openai-responses")
    body["max_output_tokens"] = value
    response = await client.request("POST", "/v1/responses", json=body, headers=auth())
    assert response.status == 400
    assert openai_error(response)["param"] == "max_output_tokens"
    assert mock.requests == []


# --- models ------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_unknown_model_is_404_in_the_callers_shape(
    client: AsgiClient, mock: MockUpstream, protocol: Protocol
) -> None:
    response = await client.request(
        "POST", PATHS[protocol], json=valid_body(protocol, "no-such-model"), headers=auth()
    )
    assert response.status == 404
    error = error_in_shape(response, protocol)
    assert error["type"] == "not_found_error"
    if protocol != "anthropic":
        assert error["code"] == "model_not_found"
    assert mock.requests == []


@pytest.fixture
async def only_chat(mock: MockUpstream) -> AsyncIterator[AsgiClient]:
    """A gateway whose model ``only-chat`` is served by the Chat upstream alone."""
    config = gateway_config(
        models=[{"name": "only-chat", "upstreams": ["chat"], "routing": "same-protocol-only"}]
    )
    async with (
        open_memory_connector(mock) as connector,
        open_gateway(config, connector=connector) as gateway,
    ):
        yield AsgiClient(gateway)


@pytest.mark.parametrize("protocol", ["anthropic", "openai-responses"])
async def test_model_without_an_upstream_of_the_callers_protocol_is_400(
    only_chat: AsgiClient, mock: MockUpstream, protocol: Protocol
) -> None:
    response = await only_chat.request(
        "POST", PATHS[protocol], json=valid_body(protocol, "only-chat"), headers=auth()
    )
    assert response.status == 400
    error = error_in_shape(response, protocol)
    assert error["type"] == "invalid_request_error"
    if protocol == "anthropic":
        assert "model" in str(error["message"])
    else:
        assert error["param"] == "model"
    assert mock.requests == []


async def test_model_is_served_on_its_own_protocol(
    only_chat: AsgiClient, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    response = await only_chat.request(
        "POST", "/v1/chat/completions", json=valid_body("openai-chat", "only-chat"), headers=auth()
    )
    assert response.status == 200, response.body
    assert [request.path for request in mock.requests] == ["/v1/chat/completions"]


async def test_models_list_is_openai_shaped_by_default(client: AsgiClient) -> None:
    response = await client.request("GET", "/v1/models", headers=auth())
    assert response.status == 200
    assert response.headers["x-request-id"].startswith("req_")
    body = as_dict(response.json())
    assert body["object"] == "list"
    data = body["data"]
    assert isinstance(data, list)
    # Only exact names: the `failover-*` and `mock-*` globs are not models one can list.
    assert [as_dict(entry)["id"] for entry in data] == ["demo"]
    entry = as_dict(data[0])
    assert set(entry) == {"id", "object", "created", "owned_by"}
    assert entry["object"] == "model"
    assert isinstance(entry["created"], int)


@pytest.mark.parametrize(
    "headers",
    [{"anthropic-version": "2023-06-01", **auth()}, auth(via="x-api-key")],
    ids=["anthropic-version", "x-api-key"],
)
async def test_models_list_is_anthropic_shaped_for_anthropic_callers(
    client: AsgiClient, headers: dict[str, str]
) -> None:
    response = await client.request("GET", "/v1/models", headers=headers)
    assert response.status == 200
    assert response.headers["request-id"].startswith("req_")
    body = as_dict(response.json())
    assert set(body) == {"data", "has_more", "first_id", "last_id"}
    data = body["data"]
    assert isinstance(data, list)
    assert [as_dict(entry)["id"] for entry in data] == ["demo"]
    assert as_dict(data[0])["type"] == "model"
    assert body["has_more"] is False
    assert body["first_id"] == body["last_id"] == "demo"


async def test_models_list_lists_every_exact_name_in_config_order(mock: MockUpstream) -> None:
    config = gateway_config(
        models=[
            {"name": "only-chat", "upstreams": ["chat"]},
            {"name": "claude-?", "upstreams": ["anthropic"]},
            {"name": "gpt-[45]", "upstreams": ["chat"]},
        ]
    )
    async with (
        open_memory_connector(mock) as connector,
        open_gateway(config, connector=connector) as gw,
    ):
        response = await AsgiClient(gw).request("GET", "/v1/models", headers=auth())
    data = as_dict(response.json())["data"]
    assert isinstance(data, list)
    assert [as_dict(entry)["id"] for entry in data] == ["only-chat", "demo"]


@pytest.mark.parametrize(
    ("headers", "protocol"),
    [({}, "openai-chat"), ({"anthropic-version": "2023-06-01"}, "anthropic")],
)
async def test_models_list_needs_a_key(
    client: AsgiClient, headers: dict[str, str], protocol: Protocol
) -> None:
    response = await client.request("GET", "/v1/models", headers=headers)
    assert response.status == 401
    assert error_in_shape(response, protocol)["type"] == "authentication_error"


# --- request ids -------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_responses_carry_the_request_id_header_of_the_route(
    client: AsgiClient, protocol: Protocol, autojump_clock: trio.testing.MockClock
) -> None:
    ok = await client.request("POST", PATHS[protocol], json=valid_body(protocol), headers=auth())
    refused = await client.request("POST", PATHS[protocol], content=b"{", headers=auth())
    assert (ok.status, refused.status) == (200, 400)
    name, other = ("request-id", "x-request-id")
    if protocol != "anthropic":
        name, other = other, name
    ids = [ok.headers[name], refused.headers[name]]
    assert all(rid.startswith("req_") for rid in ids)
    assert ids[0] != ids[1]
    assert other not in ok.headers
    assert other not in refused.headers


# --- limits ------------------------------------------------------------------------------


async def test_headers_over_the_limit_are_431(client: AsgiClient, mock: MockUpstream) -> None:
    headers = {**auth(), "x-padding": "a" * 70_000}
    response = await client.request(
        "POST", "/v1/messages", json=valid_body("anthropic"), headers=headers
    )
    assert response.status == 431
    assert anthropic_error(response)["type"] == "invalid_request_error"
    assert mock.requests == []


async def test_headers_under_the_limit_pass(
    client: AsgiClient, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    headers = {**auth(), "x-padding": "a" * 60_000}
    response = await client.request(
        "POST", "/v1/messages", json=valid_body("anthropic"), headers=headers
    )
    assert response.status == 200, response.body
    assert len(mock.requests) == 1


# --- routes ------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_api_routes_accept_post_only(
    client: AsgiClient, mock: MockUpstream, protocol: Protocol, method: str
) -> None:
    response = await client.request(method, PATHS[protocol], headers=auth())
    assert response.status == 405
    error_in_shape(response, protocol)
    assert mock.requests == []


async def test_405_names_the_allowed_method(client: AsgiClient) -> None:
    # RFC 9110 §15.5.6: "The origin server MUST generate an Allow header field in a 405
    # response containing a list of the target resource's currently supported methods."
    response = await client.request("GET", "/v1/messages", headers=auth())
    assert response.status == 405
    assert response.headers.get("allow") == "POST"


async def test_unknown_path_is_404(client: AsgiClient, mock: MockUpstream) -> None:
    response = await client.request("POST", "/v1/completions", json={}, headers=auth())
    assert response.status == 404
    assert openai_error(response)["type"] == "not_found_error"
    assert mock.requests == []


async def test_healthz_and_readyz(gateway_and_client: tuple[Gateway, AsgiClient]) -> None:
    gateway, client = gateway_and_client
    health = await client.request("GET", "/healthz")
    ready = await client.request("GET", "/readyz")
    assert (health.status, ready.status) == (200, 200)
    assert as_dict(ready.json())["status"] == "ready"

    gateway.shutting_down = True
    health = await client.request("GET", "/healthz")
    ready = await client.request("GET", "/readyz")
    # Liveness stays up while draining; readiness goes down so no new work is routed here.
    assert health.status == 200
    assert ready.status == 503


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_api_requests_while_shutting_down_are_503(
    gateway_and_client: tuple[Gateway, AsgiClient], mock: MockUpstream, protocol: Protocol
) -> None:
    gateway, client = gateway_and_client
    gateway.shutting_down = True
    response = await client.request(
        "POST", PATHS[protocol], json=valid_body(protocol), headers=auth()
    )
    assert response.status == 503
    error_in_shape(response, protocol)
    assert mock.requests == []
