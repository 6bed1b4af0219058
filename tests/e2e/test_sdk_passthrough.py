"""The official SDKs, pointed at the gateway on real hypercorn, served by the mock upstream.

Each result is compared with the same SDK call made directly against the mock: text, tool
use and usage (cache fields included) must be exactly what the upstream sent.
"""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.conftest import Live
from tests.support import CLIENT_KEY, UPSTREAM_KEY

MESSAGES: list[anthropic.types.MessageParam] = [
    {"role": "user", "content": "What is the weather in Paris?"}
]


def _anthropic(base_url: str, key: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=base_url, api_key=key, max_retries=0)


def _openai(base_url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0)


def _normalised(message: object) -> object:
    """A model_dump with per-request ids blanked (the mock numbers ids per request)."""
    if isinstance(message, dict):
        return {
            k: "<id>" if k in {"id", "call_id", "item_id"} else _normalised(v)
            for k, v in message.items()
        }
    if isinstance(message, list):
        return [_normalised(v) for v in message]
    return message


def _mock_url(live: Live) -> str:
    return f"http://127.0.0.1:{live.mock_port}"


@pytest.mark.parametrize("scenario", ["text", "tools", "thinking"])
async def test_anthropic_stream_matches_upstream(live: Live, scenario: str) -> None:
    model = f"mock-{scenario}"
    results = []
    for url, key in ((live.url, CLIENT_KEY), (_mock_url(live), UPSTREAM_KEY)):
        async with (
            _anthropic(url, key) as client,
            client.messages.stream(model=model, max_tokens=256, messages=MESSAGES) as stream,
        ):
            results.append(await stream.get_final_message())
    via_gateway, direct = results
    assert _normalised(via_gateway.model_dump()) == _normalised(direct.model_dump())
    usage = via_gateway.usage
    assert usage.cache_read_input_tokens == 100
    assert usage.cache_creation is not None
    assert usage.cache_creation.ephemeral_5m_input_tokens == 20
    assert usage.cache_creation.ephemeral_1h_input_tokens == 10
    if scenario == "tools":
        tool = via_gateway.content[-1]
        assert tool.type == "tool_use"
        assert tool.input == {"city": "Paris"}
    record = live.gateway.ledger.records[-1]
    assert record.outcome == "completed"
    assert record.usage_source == "reported"
    assert record.usage.input_tokens == usage.input_tokens
    assert record.usage.output_tokens == usage.output_tokens
    assert record.usage.cache_read_tokens == 100
    assert record.usage.cache_write_5m_tokens == 20
    assert record.usage.cache_write_1h_tokens == 10


async def test_anthropic_non_stream_matches_upstream(live: Live) -> None:
    results = []
    for url, key in ((live.url, CLIENT_KEY), (_mock_url(live), UPSTREAM_KEY)):
        async with _anthropic(url, key) as client:
            results.append(
                await client.messages.create(model="mock-tools", max_tokens=256, messages=MESSAGES)
            )
    assert _normalised(results[0].model_dump()) == _normalised(results[1].model_dump())
    record = live.gateway.ledger.records[-1]
    assert (record.outcome, record.stream, record.usage_source) == ("completed", False, "reported")
    assert record.usage.output_tokens == results[0].usage.output_tokens
