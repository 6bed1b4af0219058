"""Cost per upstream protocol: a real-shaped usage object → the protocol's usage reader →
``cost_usd`` (DESIGN §5, §8; PEER-BUGS 31, 32; protocols.md §1.6, §2.5, §3.5, §5.4).

Every expected cost is worked out by hand in the comment beside it, in micro-dollars
(tokens × USD per million), and written as a literal: never recomputed with the formula
under test. The comments also give what the classic bug would have charged, so each case
shows which mistake it catches.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Final

import pytest

from trio_gateway._config import Price
from trio_gateway._protocol._pricing import cost_usd
from trio_gateway._protocol._usage import (
    Usage,
    anthropic_usage,
    openai_chat_usage,
    openai_responses_usage,
)

#: USD per million tokens (the DESIGN §3 example); 0.30 as the config loader makes it from
#: the TOML float (``Decimal(str(0.3))``).
PRICE: Final = Price(
    input=Decimal("3"),
    output=Decimal("15"),
    cache_read=Decimal("0.3"),
    cache_write_5m=Decimal("3.75"),
    cache_write_1h=Decimal("6"),
)

Reader = Callable[[object], Usage]


def anthropic_stream(events: object) -> Usage:
    """Anthropic streaming: ``message_start.message.usage`` then each cumulative
    ``message_delta.usage``, merged as the relay merges them."""
    assert isinstance(events, list)
    usage = Usage()
    for obj in events:
        anthropic_usage(obj, into=usage)
    return usage


CASES: Final = [
    # ---------------------------------------------------------------- Anthropic
    pytest.param(
        anthropic_usage,
        {
            "input_tokens": 0,
            "cache_creation_input_tokens": 1000,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 600},
            "output_tokens": 0,
        },
        # 400 × 3.75 = 1500; 600 × 6 = 3600; total 5100 µ$.
        # (1 h billed at the 5 m rate: 1000 × 3.75 = 3750 µ$, PEER-BUGS 32.)
        Decimal("0.0051"),
        id="anthropic-5m-and-1h-priced-apart",
    ),
    pytest.param(
        anthropic_usage,
        {
            "input_tokens": 0,
            "cache_creation_input_tokens": 1200,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 300, "ephemeral_1h_input_tokens": 600},
            "output_tokens": 0,
        },
        # unattributed remainder 1200 − 300 − 600 = 300, priced at 5 m:
        # (300 + 300) × 3.75 = 2250; 600 × 6 = 3600; total 5850 µ$.
        # (remainder dropped: 1125 + 3600 = 4725 µ$.)
        Decimal("0.00585"),
        id="anthropic-unattributed-remainder-at-5m",
    ),
    pytest.param(
        anthropic_usage,
        {
            "input_tokens": 50,
            "cache_creation_input_tokens": 2000,
            "cache_read_input_tokens": 10000,
            "output_tokens": 100,
        },
        # input excludes cache: 50 × 3 = 150; reads 10000 × 0.3 = 3000;
        # writes (no breakdown → 5 m) 2000 × 3.75 = 7500; output 100 × 15 = 1500;
        # total 12150 µ$. (cache also priced as input: + 12000 × 3 = 36000 µ$, PEER-BUGS 31.)
        Decimal("0.01215"),
        id="anthropic-input-excludes-cache",
    ),
    pytest.param(
        anthropic_usage,
        {
            "input_tokens": 2095,
            "cache_creation_input_tokens": 2051,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 2051},
            "output_tokens": 503,
            "service_tier": "standard",
            "server_tool_use": None,
        },
        # 2095 × 3 = 6285; 2051 × 6 = 12306; 503 × 15 = 7545; total 26136 µ$.
        Decimal("0.026136"),
        id="anthropic-message-claude-code-1h",
    ),
    pytest.param(
        anthropic_usage,
        {
            "input_tokens": 20,
            "output_tokens": 800,
            "output_tokens_details": {"thinking_tokens": 600},
        },
        # thinking is inside output: 20 × 3 = 60; 800 × 15 = 12000; total 12060 µ$.
        # (thinking added: + 600 × 15 = 9000 µ$.)
        Decimal("0.01206"),
        id="anthropic-thinking-inside-output",
    ),
    pytest.param(
        anthropic_stream,
        [
            {
                "input_tokens": 10,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 5000,
                "output_tokens": 1,
            },
            {"output_tokens": 120},
            {"output_tokens": 250},
        ],
        # message_delta usage is cumulative: output is 250, not 1 + 120 + 250.
        # 10 × 3 = 30; 5000 × 0.3 = 1500; 250 × 15 = 3750; total 5280 µ$.
        Decimal("0.00528"),
        id="anthropic-stream-cumulative",
    ),
    pytest.param(
        anthropic_stream,
        [
            {"input_tokens": 0, "output_tokens": 0},
            {
                "input_tokens": 40,
                "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": 900,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 100,
                    "ephemeral_1h_input_tokens": 0,
                },
                "output_tokens": 60,
            },
        ],
        # counts only on message_delta (PEER-BUGS 29): 40 × 3 = 120; 100 × 3.75 = 375;
        # 900 × 0.3 = 270; 60 × 15 = 900; total 1665 µ$.
        Decimal("0.001665"),
        id="anthropic-stream-input-on-message-delta",
    ),
    # ---------------------------------------------------------------- OpenAI Chat
    pytest.param(
        openai_chat_usage,
        {
            "prompt_tokens": 2006,
            "completion_tokens": 300,
            "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        # prompt includes cached: (2006 − 1920) × 3 = 258; 1920 × 0.3 = 576;
        # 300 × 15 = 4500; total 5334 µ$. (cached also as input: + 1920 × 3 = 5760 µ$.)
        Decimal("0.005334"),
        id="chat-prompt-includes-cached",
    ),
    pytest.param(
        openai_chat_usage,
        {
            "prompt_tokens": 100,
            "completion_tokens": 2000,
            "total_tokens": 2100,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 1500},
        },
        # reasoning inside completion: 100 × 3 = 300; 2000 × 15 = 30000; total 30300 µ$.
        # (reasoning added: + 1500 × 15 = 22500 µ$.)
        Decimal("0.0303"),
        id="chat-reasoning-inside-output",
    ),
    # ---------------------------------------------------------------- OpenAI Responses
    pytest.param(
        openai_responses_usage,
        {
            "input_tokens": 5000,
            "input_tokens_details": {"cached_tokens": 4096},
            "output_tokens": 1200,
            "output_tokens_details": {"reasoning_tokens": 1024},
            "total_tokens": 6200,
        },
        # (5000 − 4096) × 3 = 2712; 4096 × 0.3 = 1228.8; 1200 × 15 = 18000 (reasoning
        # inside); total 21940.8 µ$. (cached as input too: + 12288; reasoning added: + 15360.)
        Decimal("0.0219408"),
        id="responses-input-includes-cached-reasoning-inside",
    ),
    # ---------------------------------------------------------------- zero
    pytest.param(
        anthropic_usage,
        {"input_tokens": 0, "output_tokens": 0},
        Decimal(0),
        id="anthropic-zero",
    ),
    pytest.param(
        openai_chat_usage,
        {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        Decimal(0),
        id="chat-zero",
    ),
    pytest.param(openai_responses_usage, {}, Decimal(0), id="responses-empty-usage"),
    # ---------------------------------------------------------------- large counts
    pytest.param(
        anthropic_usage,
        {
            "input_tokens": 10**9,
            "cache_creation_input_tokens": 2 * 10**9,
            "cache_read_input_tokens": 10**9,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 10**9,
                "ephemeral_1h_input_tokens": 10**9,
            },
            "output_tokens": 10**9,
            "output_tokens_details": {"thinking_tokens": 10**9},
        },
        # 10^9 of each kind = 1000 × the per-million price:
        # 3000 + 15000 + 300 + 3750 + 6000 = 28050 $.
        Decimal("28050"),
        id="anthropic-1e9-each",
    ),
    pytest.param(
        anthropic_usage,
        {
            "input_tokens": 1_234_567_891,
            "cache_creation_input_tokens": 2_469_135_782,
            "cache_read_input_tokens": 1_234_567_891,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 1_234_567_891,
                "ephemeral_1h_input_tokens": 1_234_567_891,
            },
            "output_tokens": 1_234_567_891,
        },
        # n = 1 234 567 891 of each kind, in µ$: 3n = 3 703 703 673; 15n = 18 518 518 365;
        # 0.3n = 370 370 367.3; 3.75n = 4 629 629 591.25; 6n = 7 407 407 346;
        # total 34 629 629 342.55 µ$.
        Decimal("34629.62934255"),
        id="anthropic-1.2e9-each-every-digit",
    ),
    pytest.param(
        openai_chat_usage,
        {
            "prompt_tokens": 10**9,
            "completion_tokens": 10**9,
            "total_tokens": 2 * 10**9,
            "prompt_tokens_details": {"cached_tokens": 4 * 10**8},
            "completion_tokens_details": {"reasoning_tokens": 9 * 10**8},
        },
        # 6×10^8 × 3 = 1800 $; 4×10^8 × 0.3 = 120 $; 10^9 × 15 = 15000 $; total 16920 $.
        Decimal("16920"),
        id="chat-1e9",
    ),
    pytest.param(
        openai_responses_usage,
        {
            "input_tokens": 10**9,
            "input_tokens_details": {"cached_tokens": 10**9 - 1},
            "output_tokens": 10**9,
            "output_tokens_details": {"reasoning_tokens": 10**9},
            "total_tokens": 2 * 10**9,
        },
        # 1 × 3 = 3 µ$; 999 999 999 × 0.3 = 299 999 999.7 µ$; 10^9 × 15 = 15 000 000 000 µ$;
        # total 15 300 000 002.7 µ$.
        Decimal("15300.0000027"),
        id="responses-1e9-one-uncached",
    ),
]


@pytest.mark.parametrize(("read", "usage", "expected"), CASES)
def test_cost_per_protocol(read: Reader, usage: object, expected: Decimal) -> None:
    cost = cost_usd(read(usage), PRICE)
    assert type(cost) is Decimal
    assert cost == expected


@pytest.mark.parametrize(
    ("read", "usage", "written"),
    [
        pytest.param(
            openai_chat_usage,
            {"prompt_tokens": 333_334, "prompt_tokens_details": {"cached_tokens": 333_333}},
            # 1 × 3 = 3; 333 333 × 0.3 = 99 999.9; total 100 002.9 µ$.
            "0.1000029",
            id="chat",
        ),
        pytest.param(
            anthropic_usage,
            {"input_tokens": 1, "cache_read_input_tokens": 2, "output_tokens": 0},
            # 1 × 3 = 3; 2 × 0.3 = 0.6; total 3.6 µ$.
            "0.0000036",
            id="anthropic",
        ),
    ],
)
def test_cost_has_no_binary_float_artefacts(read: Reader, usage: object, written: str) -> None:
    cost = cost_usd(read(usage), PRICE)
    assert type(cost) is Decimal
    assert format(cost.normalize(), "f") == written


def test_the_artefact_cases_are_ones_floats_get_wrong() -> None:
    """The cases above catch float arithmetic: in binary floats they come out wrong."""
    assert repr(1 * 3.0 / 1e6 + 333_333 * 0.30 / 1e6) == "0.10000289999999999"
    assert repr(1 * 3.0 / 1e6 + 2 * 0.30 / 1e6) == "3.6000000000000003e-06"


def test_zero_price_is_zero() -> None:
    usage = anthropic_usage({"input_tokens": 10**9, "output_tokens": 10**9})
    cost = cost_usd(usage, Price())
    assert type(cost) is Decimal
    assert cost == 0
