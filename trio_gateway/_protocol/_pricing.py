"""Exact-decimal pricing of one attempt's usage (DESIGN §5: costs are never floats)."""

from __future__ import annotations

from decimal import Decimal
from typing import Final
from typing import Protocol as TypingProtocol

from ._usage import Usage

#: Prices are quoted in USD per million tokens (DESIGN §3 ``[[models]].price``).
_PER_MILLION: Final = Decimal(1_000_000)


class PriceTable(TypingProtocol):
    """The five per-million prices of a model (``trio_gateway._config.Price``)."""

    @property
    def input(self) -> Decimal: ...
    @property
    def output(self) -> Decimal: ...
    @property
    def cache_read(self) -> Decimal: ...
    @property
    def cache_write_5m(self) -> Decimal: ...
    @property
    def cache_write_1h(self) -> Decimal: ...


def cost_usd(usage: Usage, price: PriceTable) -> Decimal:
    """The cost of ``usage`` in USD, exact.

    ``input_tokens`` is the uncached input (DESIGN §8), so every token kind is priced once:
    cache reads and the two cache-write tiers apart, reasoning inside ``output_tokens``.
    """
    total = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * price.cache_read
        + usage.cache_write_5m_tokens * price.cache_write_5m
        + usage.cache_write_1h_tokens * price.cache_write_1h
    )
    return total / _PER_MILLION
