"""Budget admission by reservation (RELIABILITY I7, B4)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import trio
import trio.testing

from trio_gateway._budgets import Budgets, Reservation, estimate_cost, window_start
from trio_gateway._config import KeyConfig, ModelConfig, Price
from trio_gateway._errors import RateLimited


def _key(budget: str | None, period: str = "month") -> KeyConfig:
    return KeyConfig(
        name="alice",
        sha256="0" * 64,
        budget_usd=None if budget is None else Decimal(budget),
        budget_period=period,  # type: ignore[arg-type]  # the three literals, from a parameter
    )


class _Loader:
    def __init__(self, spent: Decimal = Decimal(0)) -> None:
        self.calls: list[tuple[str, str]] = []
        self.spent = spent

    async def __call__(self, key: str, since: str) -> Decimal:
        self.calls.append((key, since))
        await trio.sleep(0.01)  # the real loader runs in a thread: admissions overlap it
        return self.spent


async def _race(budgets: Budgets, key: KeyConfig, estimate: Decimal, n: int) -> list[Reservation]:
    admitted: list[Reservation] = []

    async def one() -> None:
        try:
            reservation = await budgets.admit(key, estimate)
        except RateLimited as error:
            refusals.append(error.message)
            return
        assert reservation is not None
        admitted.append(reservation)

    refusals: list[str] = []

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
    assert all("budget" in message for message in refusals)
    return admitted


async def test_hundred_concurrent_requests_against_a_budget_for_ten(
    autojump_clock: trio.testing.MockClock,
) -> None:
    loader = _Loader()
    budgets = Budgets(load_spent=loader)
    key = _key("1.00")
    admitted = await _race(budgets, key, Decimal("0.10"), 100)
    assert len(admitted) == 10
    assert len(loader.calls) == 1  # the window was loaded once, whatever the concurrency
    assert budgets.remaining(key) == Decimal("0.00")


@pytest.mark.parametrize("seed", range(20))
async def test_overshoot_is_bounded_by_one_request(
    seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    """Repeated waves of concurrent requests with random real costs up to the reservation
    (output is capped by max_tokens; the input estimate over-counts): the spend never passes
    the budget, and the remaining budget never goes negative."""
    rng = random.Random(seed)
    budgets = Budgets(load_spent=_Loader())
    key = _key("5.00")
    estimate = Decimal("0.25")
    spent = Decimal(0)
    for _ in range(8):
        admitted = await _race(budgets, key, estimate, 30)
        for reservation in admitted:
            cost = (estimate * Decimal(rng.randint(0, 100)) / 100).quantize(Decimal("0.0001"))
            budgets.add_spent(reservation.key, reservation.window, cost)
            budgets.release(reservation)
            spent += cost
    assert key.budget_usd is not None
    assert spent <= key.budget_usd
    remaining = budgets.remaining(key)
    assert remaining is not None
    assert remaining >= 0


async def test_spent_loaded_from_the_ledger_counts(autojump_clock: trio.testing.MockClock) -> None:
    budgets = Budgets(load_spent=_Loader(spent=Decimal("0.85")))
    key = _key("1.00")
    first = await budgets.admit(key, Decimal("0.10"))
    assert first is not None
    with pytest.raises(RateLimited, match=r"monthly budget of \$1 "):
        await budgets.admit(key, Decimal("0.10"))
    budgets.release(first)
    budgets.release(first)  # twice is harmless
    assert budgets.remaining(key) == Decimal("0.15")


async def test_a_reservation_larger_than_what_is_left_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One request with a huge output limit cannot take the window past its budget."""
    budgets = Budgets(load_spent=_Loader())
    key = _key("1.00")
    with pytest.raises(RateLimited, match=r"up to \$1000\)"):
        await budgets.admit(key, Decimal("1000"))
    assert await budgets.admit(key, Decimal("1.00")) is not None  # exactly fits


async def test_key_without_budget_is_not_limited() -> None:
    loader = _Loader()
    budgets = Budgets(load_spent=loader)
    assert await budgets.admit(_key(None), Decimal("1000")) is None
    assert loader.calls == []


async def test_windows_are_per_period(autojump_clock: trio.testing.MockClock) -> None:
    loader = _Loader()
    budgets = Budgets(load_spent=loader)
    key = _key("1.00", period="day")
    monday = datetime(2026, 11, 23, 23, 59, tzinfo=UTC)
    tuesday = datetime(2026, 11, 24, 0, 1, tzinfo=UTC)
    assert await budgets.admit(key, Decimal("1.00"), now=monday) is not None
    with pytest.raises(RateLimited, match="daily budget"):
        await budgets.admit(key, Decimal("0.01"), now=monday)
    assert await budgets.admit(key, Decimal("0.01"), now=tuesday) is not None
    assert [since for _, since in loader.calls] == [
        "2026-11-23T00:00:00.000+00:00",
        "2026-11-24T00:00:00.000+00:00",
    ]


def test_window_start() -> None:
    now = datetime(2026, 2, 28, 13, 45, 12, 345678, tzinfo=UTC)
    assert window_start("day", now) == "2026-02-28T00:00:00.000+00:00"
    assert window_start("month", now) == "2026-02-01T00:00:00.000+00:00"
    assert window_start("total", now) == "0001-01-01T00:00:00.000+00:00"


def test_estimate_prices_input_and_the_output_limit() -> None:
    price = Price(input=Decimal(3), output=Decimal(15))
    model = ModelConfig(name="m", upstreams=("u",), price=price)
    # 4000 body bytes ~ at most 2000 input tokens at $3/M + 100 output tokens at $15/M
    assert estimate_cost(model, body_bytes=4000, max_output_tokens=100) == Decimal("0.0075")
    # no output limit: the default reservation of 4096 tokens
    assert estimate_cost(model, body_bytes=0, max_output_tokens=None) == Decimal("0.06144")
    unpriced = ModelConfig(name="m", upstreams=("u",))
    assert estimate_cost(unpriced, body_bytes=4000, max_output_tokens=100) == Decimal(0)
