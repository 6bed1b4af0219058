"""The relay's reader-to-writer queue (``_relay._Mailbox``): order, waking, cancel-safety."""

from __future__ import annotations

import trio
import trio.testing

from trio_gateway._relay import _END, _Mailbox


async def test_messages_come_out_in_order_and_a_waiting_writer_is_woken() -> None:
    box = _Mailbox()
    got: list[object] = []

    async def writer() -> None:
        while (message := await box.get()) is not _END:
            got.append(message)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()  # the writer waits on an empty box
        box.put(b"a")
        box.put(b"b")
        await trio.testing.wait_all_tasks_blocked()
        box.put(b"c")
        box.put(_END)
    assert got == [b"a", b"b", b"c"]
    assert box.get_nowait() is None


async def test_a_cancelled_get_takes_nothing(autojump_clock: trio.testing.MockClock) -> None:
    box = _Mailbox()
    with trio.move_on_after(1) as scope:
        await box.get()
    assert scope.cancelled_caught
    box.put(b"x")  # no stale waiter to wake: the cancelled wait left none
    with trio.CancelScope() as scope:
        scope.cancel()
        await box.get()  # cancelled at its checkpoint, before taking the message
    assert box.get_nowait() == b"x"
    assert box.get_nowait() is None
