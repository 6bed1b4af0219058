"""Usage readers: table tests per dialect (protocols.md §1.6, §2.5, §3.5, §5.4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_gateway._protocol._usage import (
    Usage,
    anthropic_usage,
    openai_chat_usage,
    openai_responses_usage,
)


def _total_input(usage: Usage) -> int:
    return (
        usage.input_tokens
        + usage.cache_read_tokens
        + usage.cache_write_5m_tokens
        + usage.cache_write_1h_tokens
    )


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            {
                "input_tokens": 472,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 2,
            },
            Usage(input_tokens=472, output_tokens=2),
            id="protocols-1.7-message-start",
        ),
        pytest.param(
            {
                "input_tokens": 10,
                "cache_read_input_tokens": 300,
                "cache_creation_input_tokens": 1000,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 200,
                    "ephemeral_1h_input_tokens": 800,
                },
                "output_tokens": 50,
            },
            Usage(
                input_tokens=10,
                output_tokens=50,
                cache_read_tokens=300,
                cache_write_5m_tokens=200,
                cache_write_1h_tokens=800,
            ),
            id="peer-32-breakdown",
        ),
        pytest.param(
            {
                "cache_creation_input_tokens": 1000,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 100,
                    "ephemeral_1h_input_tokens": 700,
                },
            },
            Usage(cache_write_5m_tokens=300, cache_write_1h_tokens=700),
            id="peer-32-remainder-goes-to-5m",
        ),
        pytest.param(
            {"cache_creation_input_tokens": 640},
            Usage(cache_write_5m_tokens=640),
            id="peer-32-no-breakdown-is-5m",
        ),
        pytest.param(
            {
                "cache_creation_input_tokens": 100,
                "cache_creation": {"ephemeral_1h_input_tokens": 900},
            },
            Usage(cache_write_1h_tokens=100),
            id="breakdown-over-total-capped",
        ),
        pytest.param(
            {"cache_creation": {"ephemeral_5m_input_tokens": 5, "ephemeral_1h_input_tokens": 7}},
            Usage(cache_write_5m_tokens=5, cache_write_1h_tokens=7),
            id="breakdown-without-total",
        ),
        pytest.param(
            {"output_tokens": 90, "output_tokens_details": {"thinking_tokens": 60}},
            Usage(output_tokens=90, reasoning_tokens=60),
            id="thinking-is-part-of-output",
        ),
        pytest.param(
            {
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": 0,
            },
            Usage(),
            id="u16-explicit-zeros",
        ),
        pytest.param(
            {
                "input_tokens": -5,
                "output_tokens": "12",
                "cache_read_input_tokens": True,
                "cache_creation_input_tokens": 1.5,
                "cache_creation": "nope",
                "output_tokens_details": [],
            },
            Usage(),
            id="garbage-ignored",
        ),
        pytest.param(None, Usage(), id="null"),
        pytest.param([1, 2], Usage(), id="not-an-object"),
    ],
)
def test_anthropic_usage(obj: object, expected: Usage) -> None:
    assert anthropic_usage(obj) == expected


def test_anthropic_cumulative_deltas_override_never_sum() -> None:
    """RELIABILITY.md U15: deltas 10, 25, 40 bill 40 output tokens, not 75."""
    usage = anthropic_usage({"input_tokens": 472, "output_tokens": 2})
    for output in (10, 25, 40):
        anthropic_usage({"output_tokens": output}, into=usage)
    assert usage == Usage(input_tokens=472, output_tokens=40)


def test_anthropic_input_and_cache_only_on_message_delta() -> None:
    """PEER-BUGS 29: later message_delta fields override message_start per field."""
    usage = anthropic_usage({"input_tokens": 0, "output_tokens": 1})
    anthropic_usage(
        {
            "input_tokens": 25,
            "cache_read_input_tokens": 4000,
            "cache_creation_input_tokens": 300,
            "output_tokens": 120,
        },
        into=usage,
    )
    assert usage == Usage(
        input_tokens=25, output_tokens=120, cache_read_tokens=4000, cache_write_5m_tokens=300
    )
    assert _total_input(usage) == 4325


def test_anthropic_absent_fields_keep_their_value() -> None:
    usage = anthropic_usage(
        {
            "input_tokens": 9,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 50,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 50},
            "output_tokens": 1,
        }
    )
    result = anthropic_usage({"output_tokens": 77}, into=usage)
    assert result is usage
    assert usage == Usage(
        input_tokens=9, output_tokens=77, cache_read_tokens=100, cache_write_1h_tokens=50
    )


def test_anthropic_total_without_breakdown_keeps_known_1h_split() -> None:
    """A delta repeating the total alone must not move 1 h writes to the 5 m rate."""
    usage = anthropic_usage(
        {
            "cache_creation_input_tokens": 1000,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1000},
        }
    )
    anthropic_usage({"cache_creation_input_tokens": 1000}, into=usage)
    assert (usage.cache_write_5m_tokens, usage.cache_write_1h_tokens) == (0, 1000)


def test_anthropic_explicit_zero_overrides() -> None:
    usage = anthropic_usage({"input_tokens": 30, "output_tokens": 4})
    anthropic_usage({"input_tokens": 0, "output_tokens": 0}, into=usage)
    assert usage == Usage()


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            {
                "prompt_tokens": 13,
                "completion_tokens": 5,
                "total_tokens": 18,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
            Usage(input_tokens=13, output_tokens=5),
            id="protocols-2.3",
        ),
        pytest.param(
            {
                "prompt_tokens": 2006,
                "completion_tokens": 300,
                "prompt_tokens_details": {"cached_tokens": 1920},
                "completion_tokens_details": {"reasoning_tokens": 192},
            },
            Usage(input_tokens=86, output_tokens=300, cache_read_tokens=1920, reasoning_tokens=192),
            id="peer-31-cached-is-a-subset",
        ),
        pytest.param(
            {
                "prompt_tokens": 1000,
                "completion_tokens": 1,
                "prompt_tokens_details": {"cached_tokens": 600, "cache_write_tokens": 300},
            },
            Usage(
                input_tokens=100, output_tokens=1, cache_read_tokens=600, cache_write_5m_tokens=300
            ),
            id="cache-write-tokens",
        ),
        pytest.param(
            {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 50}},
            Usage(input_tokens=0, cache_read_tokens=10),
            id="cached-over-prompt-capped",
        ),
        pytest.param(
            {
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "total_tokens": 0,
                "prompt_tokens_details": {"cached_tokens": 0},
            },
            Usage(),
            id="u16-explicit-zeros",
        ),
        pytest.param(
            {"prompt_tokens": "7", "completion_tokens": -1, "prompt_tokens_details": None},
            Usage(),
            id="garbage-ignored",
        ),
        pytest.param("usage", Usage(), id="not-an-object"),
    ],
)
def test_openai_chat_usage(obj: object, expected: Usage) -> None:
    assert openai_chat_usage(obj) == expected


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            {
                "input_tokens": 5,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 1,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 6,
            },
            Usage(input_tokens=5, output_tokens=1),
            id="protocols-3.6-completed",
        ),
        pytest.param(
            {
                "input_tokens": 5000,
                "input_tokens_details": {"cached_tokens": 4096},
                "output_tokens": 800,
                "output_tokens_details": {"reasoning_tokens": 640},
            },
            Usage(
                input_tokens=904, output_tokens=800, cache_read_tokens=4096, reasoning_tokens=640
            ),
            id="peer-31-cached-is-a-subset",
        ),
        pytest.param(
            {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
            Usage(),
            id="u16-explicit-zeros",
        ),
        pytest.param({"input_tokens": False, "output_tokens": 2.0}, Usage(), id="garbage"),
    ],
)
def test_openai_responses_usage(obj: object, expected: Usage) -> None:
    assert openai_responses_usage(obj) == expected


_JSON_SCALARS = st.one_of(
    st.integers(min_value=-5, max_value=10**9),
    st.sampled_from([None, True, False, 1.5, -0.0, "7", ""]),
)
_COUNT_KEYS = st.sampled_from(
    [
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "thinking_tokens",
        "ephemeral_5m_input_tokens",
        "ephemeral_1h_input_tokens",
    ]
)
_DETAIL_KEYS = st.sampled_from(
    [
        "cache_creation",
        "output_tokens_details",
        "prompt_tokens_details",
        "completion_tokens_details",
        "input_tokens_details",
    ]
)
_USAGE_OBJECTS = st.dictionaries(
    st.one_of(_COUNT_KEYS, _DETAIL_KEYS),
    st.one_of(_JSON_SCALARS, st.dictionaries(_COUNT_KEYS, _JSON_SCALARS, max_size=3)),
    max_size=6,
)


def _non_negative(usage: Usage) -> bool:
    return (
        min(
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_5m_tokens,
            usage.cache_write_1h_tokens,
            usage.reasoning_tokens,
        )
        >= 0
    )


@given(st.lists(_USAGE_OBJECTS, max_size=4))
def test_anthropic_garbage_never_raises_or_goes_negative(objs: list[dict[str, object]]) -> None:
    usage = Usage()
    for obj in objs:
        anthropic_usage(obj, into=usage)
        assert _non_negative(usage)
        total = obj.get("cache_creation_input_tokens")
        if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
            assert usage.cache_write_5m_tokens + usage.cache_write_1h_tokens == total


@given(_USAGE_OBJECTS)
def test_openai_garbage_never_raises_and_keeps_total_input(obj: dict[str, object]) -> None:
    for reader, prompt_key in (
        (openai_chat_usage, "prompt_tokens"),
        (openai_responses_usage, "input_tokens"),
    ):
        usage = reader(obj)
        assert _non_negative(usage)
        prompt = obj.get(prompt_key)
        if isinstance(prompt, int) and not isinstance(prompt, bool) and prompt >= 0:
            assert _total_input(usage) == prompt
