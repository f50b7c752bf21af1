"""The mock process's GC policy (`mock_orders_api.gc_pacer`): no automatic collection while
requests are in flight, a full one once idle or when memory has doubled."""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace

import pytest

from mock_orders_api import gc_pacer
from mock_orders_api.gc_pacer import GcPacer


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture()
def pacer():  # type: ignore[no-untyped-def]
    was_enabled = gc.isenabled()
    p = GcPacer()
    p.server = SimpleNamespace(server_state=SimpleNamespace(tasks=set()))
    p.install()
    try:
        yield p
    finally:
        p.uninstall()
        if not was_enabled:
            gc.disable()


def test_collects_only_after_two_idle_ticks(pacer: GcPacer) -> None:
    assert not gc.isenabled()
    tasks = pacer.server.server_state.tasks
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
    pacer.server.server_state.tasks.add("busy")
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
