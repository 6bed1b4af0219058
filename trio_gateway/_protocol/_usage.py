"""Token usage in one shape, read from each upstream dialect's own usage object.

Theory of operation: the ledger stores usage with Anthropic semantics (DESIGN.md §8), so
the readers here convert on the way in:

- ``input_tokens`` is the *uncached* input. Total input is ``input_tokens +
  cache_read_tokens + cache_write_5m_tokens + cache_write_1h_tokens``. Anthropic reports it
  that way already (protocols.md §1.6); OpenAI's ``prompt_tokens`` / ``input_tokens``
  include the cached subset, which is subtracted here (protocols.md §2.5, §3.5, §5.4).
- ``output_tokens`` includes reasoning; ``reasoning_tokens`` is a part of it, never added.

Invariants:

- No count is ever negative.
- Upstream garbage (a string, a float, a bool, a negative number) is treated as an absent
  field and never raises; an explicit ``0`` is a zero, not "missing" (RELIABILITY.md I6).
- ``cache_write_5m_tokens + cache_write_1h_tokens`` equals Anthropic's
  ``cache_creation_input_tokens`` whenever that field is known (PEER-BUGS 32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Usage",
    "UsageSource",
    "anthropic_usage",
    "openai_chat_usage",
    "openai_responses_usage",
]

UsageSource = Literal["reported", "partial", "none"]
"""Where a ledger row's usage came from: the upstream's final numbers, some of them, or none."""


@dataclass(slots=True)
class Usage:
    """Token counts of one upstream attempt, in the ledger's semantics (DESIGN.md §8).

    Attributes:
        input_tokens: uncached input tokens (Anthropic semantics).
        output_tokens: all generated tokens, reasoning included.
        cache_read_tokens: input tokens served from the prompt cache.
        cache_write_5m_tokens: input tokens written to the cache with the 5-minute TTL.
        cache_write_1h_tokens: input tokens written to the cache with the 1-hour TTL.
        reasoning_tokens: the part of ``output_tokens`` spent on reasoning / thinking.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0


def _count(obj: dict[str, object], key: str) -> int | None:
    """Return ``obj[key]`` if it is a non-negative int (bool excluded), else ``None``."""
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _child(obj: dict[str, object], key: str) -> dict[str, object] | None:
    """Return ``obj[key]`` if it is a JSON object, else ``None``."""
    value = obj.get(key)
    return value if isinstance(value, dict) else None


def anthropic_usage(obj: object, *, into: Usage | None = None) -> Usage:
    """Read an Anthropic ``usage`` object (protocols.md §1.6).

    Streaming usage is cumulative, never summed (RELIABILITY.md U15): pass the running
    :class:`Usage` as ``into`` and every field *present* in ``obj`` replaces the value held,
    while absent fields keep theirs. So ``message_delta`` counts override ``message_start``
    per field, including input and cache counts that some compatible upstreams report only
    on ``message_delta`` (PEER-BUGS 29).

    Cache writes are split by TTL (PEER-BUGS 32): ``cache_creation.ephemeral_1h_input_tokens``
    is the 1-hour tier and everything else in ``cache_creation_input_tokens`` (the 5-minute
    breakdown plus any unattributed remainder) is the 5-minute tier, Anthropic's default TTL,
    so the two always sum to ``cache_creation_input_tokens``. When the total comes without a
    breakdown, the 1-hour count already held (from ``message_start``) is kept, capped at the
    new total.

    Args:
        obj: the ``usage`` value from a message, ``message_start`` or ``message_delta``.
            Anything but a JSON object leaves the result unchanged.
        into: the usage to update in place; a fresh zero :class:`Usage` when ``None``.

    Returns:
        ``into`` (updated) or the new :class:`Usage`.
    """
    usage = Usage() if into is None else into
    if not isinstance(obj, dict):
        return usage
    if (value := _count(obj, "input_tokens")) is not None:
        usage.input_tokens = value
    if (value := _count(obj, "output_tokens")) is not None:
        usage.output_tokens = value
    if (value := _count(obj, "cache_read_input_tokens")) is not None:
        usage.cache_read_tokens = value
    _read_cache_creation(obj, usage)
    details = _child(obj, "output_tokens_details")
    if details is not None and (value := _count(details, "thinking_tokens")) is not None:
        usage.reasoning_tokens = value
    return usage


def _read_cache_creation(obj: dict[str, object], usage: Usage) -> None:
    """Split Anthropic cache writes into the 5 m and 1 h tiers (PEER-BUGS 32)."""
    total = _count(obj, "cache_creation_input_tokens")
    breakdown = _child(obj, "cache_creation")
    one_hour = None if breakdown is None else _count(breakdown, "ephemeral_1h_input_tokens")
    if total is None:
        # No total: trust whatever breakdown fields are present, per field.
        five_min = None if breakdown is None else _count(breakdown, "ephemeral_5m_input_tokens")
        if five_min is not None:
            usage.cache_write_5m_tokens = five_min
        if one_hour is not None:
            usage.cache_write_1h_tokens = one_hour
        return
    if one_hour is None:
        one_hour = usage.cache_write_1h_tokens
    # The total is authoritative: 1 h can never exceed it and the remainder is 5 m.
    usage.cache_write_1h_tokens = min(one_hour, total)
    usage.cache_write_5m_tokens = total - usage.cache_write_1h_tokens


def _openai_usage(
    obj: object, *, input_key: str, output_key: str, input_details: str, output_details: str
) -> Usage:
    """Read an OpenAI usage object, where the cached tokens are a subset of the input."""
    usage = Usage()
    if not isinstance(obj, dict):
        return usage
    prompt = _count(obj, input_key) or 0
    details = _child(obj, input_details)
    cached = 0 if details is None else _count(details, "cached_tokens") or 0
    written = 0 if details is None else _count(details, "cache_write_tokens") or 0
    # protocols.md §5.4: cached (and cache-write) tokens are a subset of the prompt count,
    # so they are capped by it and the uncached remainder is what is left (never negative).
    usage.cache_read_tokens = min(cached, prompt)
    usage.cache_write_5m_tokens = min(written, prompt - usage.cache_read_tokens)
    usage.input_tokens = prompt - usage.cache_read_tokens - usage.cache_write_5m_tokens
    usage.output_tokens = _count(obj, output_key) or 0
    out_details = _child(obj, output_details)
    if out_details is not None:
        usage.reasoning_tokens = _count(out_details, "reasoning_tokens") or 0
    return usage


def openai_chat_usage(obj: object) -> Usage:
    """Read an OpenAI Chat Completions ``usage`` object (protocols.md §2.5, §5.4).

    ``prompt_tokens`` includes the cached tokens, so ``input_tokens`` is ``prompt_tokens``
    minus ``prompt_tokens_details.cached_tokens`` (the cache reads) minus
    ``prompt_tokens_details.cache_write_tokens`` (the newer field, counted as 5-minute cache
    writes), never below zero (PEER-BUGS 31). ``completion_tokens`` is the output and
    ``completion_tokens_details.reasoning_tokens`` the reasoning part of it.

    Args:
        obj: the ``usage`` value of a response or of the final stream chunk.

    Returns:
        A new :class:`Usage`; all zeros when ``obj`` is not a JSON object.
    """
    return _openai_usage(
        obj,
        input_key="prompt_tokens",
        output_key="completion_tokens",
        input_details="prompt_tokens_details",
        output_details="completion_tokens_details",
    )


def openai_responses_usage(obj: object) -> Usage:
    """Read an OpenAI Responses ``usage`` object (protocols.md §3.5, §5.4).

    ``input_tokens`` includes ``input_tokens_details.cached_tokens`` (and the newer
    ``cache_write_tokens``), which are subtracted as for Chat; ``output_tokens`` includes
    ``output_tokens_details.reasoning_tokens``.

    Args:
        obj: the ``response.usage`` value of a response or of a terminal stream event.

    Returns:
        A new :class:`Usage`; all zeros when ``obj`` is not a JSON object.
    """
    return _openai_usage(
        obj,
        input_key="input_tokens",
        output_key="output_tokens",
        input_details="input_tokens_details",
        output_details="output_tokens_details",
    )
