"""The mock process's GC policy (`mock_orders_api.gc_pacer`): no automatic collection while
requests are in flight, a full one once idle or when memory has doubled."""

from __future__ import annotations

import asyncio
import gc

import pytest

from mock_orders_api import gc_pacer
from mock_orders_api.config import MockConfig
from mock_orders_api.delays import Fixed
from mock_orders_api.gc_pacer import GcPacer


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture()
def pacer():  # type: ignore[no-untyped-def]
    was_enabled = gc.isenabled()
    p = GcPacer()
    p.work = set()  # what the server would report: requests in flight, timers armed
    p.busy = lambda: bool(p.work)
    p.install()
    try:
        yield p
    finally:
        p.uninstall()
        if not was_enabled:
            gc.disable()


def test_collects_only_after_two_idle_ticks(pacer: GcPacer) -> None:
    assert not gc.isenabled()
    tasks = pacer.work
    tasks.add("a request in flight")
    junk = [_Cycle() for _ in range(5000)]
    del junk
    asyncio.run(pacer.tick())
    asyncio.run(pacer.tick())
    assert pacer.collections == 0  # busy: no collection whatever the garbage
    tasks.clear()
    asyncio.run(pacer.tick())
    assert pacer.collections == 0  # idle for one tick only
    asyncio.run(pacer.tick())
    assert pacer.collections == 1
    assert gc.get_count()[0] < GcPacer._MIN_ALLOCATIONS
    asyncio.run(pacer.tick())
    asyncio.run(pacer.tick())
    assert pacer.collections == 1  # idle, but nothing new to collect


def test_collects_when_memory_doubled_even_if_busy(pacer: GcPacer, monkeypatch: pytest.MonkeyPatch) -> None:
    pacer.work.add("a timer armed")
    base = pacer._rss_at_collect
    monkeypatch.setattr(gc_pacer, "peak_rss", lambda: 2 * base + 1)
    asyncio.run(pacer.tick())
    assert pacer.collections == 1


def test_uninstall_restores_automatic_collection() -> None:
    was_enabled = gc.isenabled()
    p = GcPacer()
    p.install()
    p.uninstall()
    assert gc.isenabled() and gc.get_freeze_count() == 0
    if not was_enabled:
        gc.disable()


async def test_an_armed_change_timer_counts_as_work(make_api, poll) -> None:  # type: ignore[no-untyped-def]
    """What the mock's server tells its pacer besides requests in flight: a Change still to
    apply is work, so no collection stalls its timer (measured: 8-12 ms collections made
    timers that late while 1,000 Changes were pending and the client only polled)."""
    api = make_api(MockConfig(delay=Fixed(50.0)))
    order = await api.handling_order([{"id": "sku-1", "quantity": 2, "price": 5000}])
    assert api.state.timers_armed() == 0
    rc = await api.change(order["orderId"], remove=[{"id": "sku-1", "quantity": 1}])
    assert rc.status_code == 202 and api.state.timers_armed() == 1

    async def _applied() -> bool:
        return api.state.timers_armed() == 0

    await poll(_applied, timeout_s=5)
    assert api.state.pending_changes() == 0
