"""The reference feed reader (harness/connectors/feed.py): against the real mock (commit after the
handler, at-least-once after a failed handler, duplicates handed over as they come) and against a
scripted server (back-off on 429/5xx honouring Retry-After, 404 until the feed is configured)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from aiohttp import web
from aiohttp.test_utils import TestServer

from harness.connectors.feed import FeedReader
from mock_orders_api.config import MockConfig
from mock_orders_api.server import ThreadedMock

BOUND_S = 10.0  # every wait below is bounded by this


async def _until(condition: Callable[[], bool], stop: asyncio.Event) -> None:
    async def _wait() -> None:
        while not condition():
            await asyncio.sleep(0.01)
    try:
        await asyncio.wait_for(_wait(), BOUND_S)
    finally:
        stop.set()


def _setup_mock(url: str, visibility_s: int, orders: int) -> list[str]:
    with httpx.Client(base_url=url, timeout=10) as c:
        r = c.post("/api/orders/feed/config", json={
            "filter": {"type": "FromWorkflow", "status": ["handling"]},
            "queue": {"visibilityTimeoutInSeconds": visibility_s, "MessageRetentionPeriodInSeconds": 345600}})
        assert r.status_code == 200, r.text
        ids = []
        for _ in range(orders):
            oid = c.post("/_mock/orders", json={"items": [{"id": "1", "quantity": 1, "price": 100}]}).json()["orderId"]
            assert c.post(f"/api/oms/pvt/orders/{oid}/start-handling").status_code == 204
            ids.append(oid)
        return ids


async def test_a_failed_handler_leaves_the_item_uncommitted_and_it_comes_back() -> None:
    with ThreadedMock(MockConfig(seed=3, hook_duplicate_rate=1.0)) as mock:
        ids = _setup_mock(mock.url, visibility_s=0, orders=2)  # 0 s: an uncommitted item is visible at once
        calls: list[str] = []

        async def handler(order_id: str, state: str) -> None:
            calls.append(order_id)
            if order_id == ids[0] and calls.count(order_id) == 1:
                raise RuntimeError("ERP down")

        reader = FeedReader(mock.url, handler, poll_interval_s=0.01)
        stop = asyncio.Event()
        task = asyncio.create_task(reader.run(stop))
        await _until(lambda: reader.stats.committed == 4, stop)  # 2 orders x 2 copies (duplicate rate 1)
        await asyncio.wait_for(task, BOUND_S)
        assert reader.stats.handler_errors == 1 and reader.stats.committed == 4
        assert sorted(calls) == sorted([ids[0]] * 3 + [ids[1]] * 2)  # the failed copy was handed over again
        health = mock.app.state.mock.feed.counters()
        assert health["feedQueue"] == 0 and health["feedRedeliveries"] == 1


async def test_backs_off_on_429_and_5xx_and_waits_for_a_feed_config() -> None:
    answers: list[tuple[int, Any, dict[str, str]]] = [
        (404, {"error": "no feed"}, {}),
        (429, {"error": "slow down"}, {"Retry-After": "0.05"}),
        (503, {"error": "busy"}, {}),
        (200, [{"eventId": "E", "handle": "h1", "state": "handling", "orderId": "o-1"},
               {"eventId": "F", "handle": "h2", "state": "invoiced", "orderId": "o-1"}], {}),
    ]
    committed: list[str] = []
    reads: list[float] = []

    async def feed(request: web.Request) -> web.Response:
        reads.append(asyncio.get_running_loop().time())
        status, body, headers = answers.pop(0) if answers else (200, [], {})
        return web.json_response(body, status=status, headers=headers)

    async def commit(request: web.Request) -> web.Response:
        committed.extend((await request.json())["handles"])
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/api/orders/feed", feed)
    app.router.add_post("/api/orders/feed", commit)
    handled: list[tuple[str, str]] = []

    async def handler(order_id: str, state: str) -> None:
        handled.append((order_id, state))

    async with TestServer(app, host="127.0.0.1") as server:
        reader = FeedReader(str(server.make_url("")), handler, poll_interval_s=0.01, backoff_base_s=0.02)
        stop = asyncio.Event()
        task = asyncio.create_task(reader.run(stop))
        await _until(lambda: len(committed) == 2, stop)
        await asyncio.wait_for(task, BOUND_S)
    assert handled == [("o-1", "handling")]  # only the wanted state reaches the handler
    assert sorted(committed) == ["h1", "h2"]  # the other state is committed unread
    assert reader.stats.backoffs == 2
    assert reads[2] - reads[1] >= 0.05  # Retry-After honoured after the 429
