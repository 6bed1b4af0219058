"""Per-key budgets: admission by reservation, settlement to the real cost.

Theory of operation (RELIABILITY I7). A key's budget applies to a window: the current UTC
day, the current UTC month, or all time (``budget_period``). Each window keeps two exact
amounts: ``spent`` (settled costs: loaded from the ledger the first time the window is used,
then increased by every settle in this process) and ``reserved`` (the estimates of requests
admitted but not finished). A request is admitted only if ``spent + reserved + estimate <=
budget``, and its estimate is reserved at once, before any await; so concurrent admissions
can never all see the same remaining budget. When the request ends, its reservation is released; the
real cost of each of its attempts was already added to ``spent`` as the attempt settled.

Bound: while every reservation is at least its request's real cost (see
``_BYTES_PER_TOKEN``), spend never passes the budget; a real cost above its reservation (an
OpenAI request with no output limit that writes more than the default reservation) can pass
it by that difference, once per such request.

All arithmetic is on ``Decimal``; nothing here touches the database: the caller passes a
loader (run off the trio thread) for a window's spend so far.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

import trio

from ._config import KeyConfig, ModelConfig
from ._errors import RateLimited
from ._protocol._pricing import cost_usd
from ._protocol._usage import Usage

#: Output tokens reserved when the caller sets no output limit (OpenAI protocols make it
#: optional); one-api PR #1312: a reservation that ignores output under-reserves.
DEFAULT_RESERVED_OUTPUT_TOKENS: Final = 4096
#: Bytes per input token assumed by the reservation. The bound above needs each reservation
#: to be an upper bound of the real cost: output is capped by the request's own limit, and
#: 2 bytes per token over-counts English (~4), code and most CJK text (~3), so the input
#: side is over-reserved rather than under. The real cost replaces it at settle.
_BYTES_PER_TOKEN: Final = 2

SpentLoader = Callable[[str, str], Awaitable[Decimal]]


def window_start(period: str, now: datetime) -> str:
    """The ISO start of the budget window containing ``now`` (UTC)."""
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    elif period == "month":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    else:
        return "0001-01-01T00:00:00.000+00:00"
    return start.astimezone(UTC).isoformat(timespec="milliseconds")


def estimate_cost(model: ModelConfig, *, body_bytes: int, max_output_tokens: int | None) -> Decimal:
    """A reservation for one request: its input (estimated from the body size) at the
    input price plus its output limit at the output price."""
    if model.price is None:
        return Decimal(0)
    usage = Usage(
        input_tokens=body_bytes // _BYTES_PER_TOKEN,
        output_tokens=max_output_tokens or DEFAULT_RESERVED_OUTPUT_TOKENS,
    )
    return cost_usd(usage, model.price)


def _usd(amount: Decimal) -> str:
    """An amount in plain notation (``Decimal.normalize`` alone gives ``1E+3``)."""
    return format(amount.normalize(), "f")


@dataclass(slots=True)
class _Window:
    spent: Decimal
    reserved: Decimal = Decimal(0)


@dataclass(slots=True)
class Reservation:
    """One admitted request's hold on its key's budget window."""

    key: str
    window: str
    amount: Decimal
    released: bool = False


class Budgets:
    """Budget windows of every key, in this process."""

    def __init__(self, *, load_spent: SpentLoader) -> None:
        self._load_spent = load_spent
        self._windows: dict[tuple[str, str], _Window] = {}
        self._loading: dict[tuple[str, str], trio.Event] = {}

    async def _window(self, key: str, start: str) -> _Window:
        ident = (key, start)
        while ident not in self._windows:
            loading = self._loading.get(ident)
            if loading is not None:
                await loading.wait()
                continue
            self._loading[ident] = event = trio.Event()
            try:
                spent = await self._load_spent(key, start)
                self._windows.setdefault(ident, _Window(spent=spent))
            finally:
                del self._loading[ident]
                event.set()
        return self._windows[ident]

    async def admit(
        self, key: KeyConfig, estimate: Decimal, *, now: datetime | None = None
    ) -> Reservation | None:
        """Reserve ``estimate`` on the key's current window, or refuse.

        Returns None for a key without a budget.

        Raises:
            RateLimited: the window's budget is used up (the message says "budget").
        """
        if key.budget_usd is None:
            return None
        start = window_start(key.budget_period, now or datetime.now(UTC))
        window = await self._window(key.name, start)
        # No await between the check and the reservation: admission is atomic. The request's
        # own reservation must fit, so one request with a huge output limit cannot take the
        # window past its budget.
        if window.spent + window.reserved + estimate > key.budget_usd:
            period = {"day": "daily", "month": "monthly", "total": "total"}[key.budget_period]
            raise RateLimited(
                f"key '{key.name}': this request (up to ${_usd(estimate)}) does not fit in "
                f"its {period} budget of ${_usd(key.budget_usd)} (spent ${_usd(window.spent)}, "
                f"${_usd(window.reserved)} reserved by requests in flight)"
            )
        window.reserved += estimate
        return Reservation(key=key.name, window=start, amount=estimate)

    def add_spent(self, key: str, window: str, cost: Decimal) -> None:
        """Add a settled attempt's real cost to its window (if that window is loaded)."""
        state = self._windows.get((key, window))
        if state is not None:
            state.spent += cost

    def release(self, reservation: Reservation) -> None:
        """Release a reservation (once) when its request ends."""
        if reservation.released:
            return
        reservation.released = True
        state = self._windows.get((reservation.key, reservation.window))
        if state is not None:
            state.reserved -= reservation.amount

    def remaining(self, key: KeyConfig, *, now: datetime | None = None) -> Decimal | None:
        """Budget left in the key's current window (spent and reserved deducted), if loaded."""
        if key.budget_usd is None:
            return None
        start = window_start(key.budget_period, now or datetime.now(UTC))
        state = self._windows.get((key.name, start))
        if state is None:
            return None
        return key.budget_usd - state.spent - state.reserved
