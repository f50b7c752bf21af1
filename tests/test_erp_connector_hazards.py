"""The reference connector's robust mode against the real mock, one hazard of the catalogue per test.

The mock runs in a thread (ThreadedMock, real uvicorn on loopback); the connector runs in the test's
loop, its hook app on a loopback aiohttp server when the mock must deliver hooks to it. The mock's
knobs provoke each hazard (duplicate hooks, a canceled Change, rate limits, faults, the settle
window); the mock's audit and request journal are the judges. Waits are bounded polls or `drain`.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from harness.connectors.erp_connector import ErpConnector, build_app
from mock_orders_api import child_env, wire
from mock_orders_api.config import MockConfig
from mock_orders_api.faults import FaultRule, FaultSchedule
from mock_orders_api.server import ThreadedMock

ROOT = Path(__file__).resolve().parents[1]
NODE_SERVICE = ROOT / "harness" / "connectors" / "node" / "erp_connector.mjs"
ITEMS = [{"id": "sku-1", "quantity": 2, "price": 5000}, {"id": "sku-2", "quantity": 1, "price": 3000}]
INVOICE_PATH = "/api/orders/pvt/document/{}/invoices"


@dataclass
class Mock:
    """The running mock and a client for its VTEX and admin routes."""

    url: str
    http: aiohttp.ClientSession

    async def _json(self, method: str, path: str, expect: int, **kw: Any) -> Any:
        skip = () if "json" in kw else ("Content-Type",)  # a bodyless POST must not claim octet-stream
        async with self.http.request(method, self.url + path, skip_auto_headers=skip, **kw) as r:
            assert r.status == expect, (method, path, r.status, await r.text())
            return await r.json() if r.content_type == "application/json" else None

    async def configure(self, **patch: Any) -> None:
        await self._json("PATCH", wire.ADMIN_CONFIG, 200, json=patch)

    async def hook_to(self, url: str, *statuses: str) -> None:
        """Point the mock's order hook at `url` (the mock pings it first)."""
        body = {"filter": {"type": "FromWorkflow", "status": list(statuses)}, "hook": {"url": url}}
        await self._json("POST", wire.HOOK_CONFIG, 200, json=body)

    async def order(self, status: str = "handling") -> str:
        created = await self._json("POST", wire.ADMIN_ORDERS, 201, json={"items": ITEMS, "status": status})
        return str(created["orderId"])

    async def change(self, oid: str, *, delay_ms: float, outcome: str = "done", expect: int = 202) -> None:
        """Remove the one sku-2 (3000 cents) in a Change that ends `outcome` after `delay_ms`."""
        headers = {wire.CHANGE_DELAY_HEADER: str(delay_ms), wire.CHANGE_OUTCOME_HEADER: outcome}
        body = {"reason": "partial cancellation", "remove": {"items": [{"id": "sku-2", "quantity": 1}]}}
        await self._json("PATCH", wire.CHANGES.format(changeOrderId=oid), expect, json=body, headers=headers)

    async def cancel(self, oid: str) -> None:
        await self._json("POST", wire.CANCEL.format(orderId=oid), 200)

    async def audit(self, oid: str) -> dict[str, Any]:
        return await self._json("GET", wire.ADMIN_AUDIT.format(orderId=oid), 200)  # type: ignore[no-any-return]

    async def requests(self, oid: str, method: str, path: str) -> list[dict[str, Any]]:
        """The journal's entries of `method path` for this order: every attempt, answered or not (by path:
        a request throttled or faulted before it acted carries no orderId)."""
        page = await self._json("GET", wire.ADMIN_JOURNAL + "?limit=100000", 200)
        return [e for e in page["entries"] if e["method"] == method and e["path"] == path]

    async def delivered(self, oid: str) -> list[dict[str, Any]]:
        page = await self._json("GET", wire.ADMIN_HOOKS + f"?orderId={oid}", 200)
        return [d for d in page["deliveries"] if d["outcome"] == "delivered"]


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 15.0) -> None:
    """A bounded poll: `check` true within `timeout_s`, else fail naming `what`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        assert loop.time() < deadline, f"not within {timeout_s:g} s: {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
async def mock() -> AsyncIterator[Mock]:
    with ThreadedMock(MockConfig()) as m:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            yield Mock(m.url, http)


@pytest.fixture
async def connector(mock: Mock) -> AsyncIterator[Callable[..., ErpConnector]]:
    made: list[ErpConnector] = []

    def _make(mode: str = "robust", **kw: Any) -> ErpConnector:
        kw = {"poll_interval_s": 0.02, "guard_timeout_s": 5.0, "backoff_base_s": 0.02, **kw}
        made.append(ErpConnector(mock.url, mode, **kw))  # type: ignore[arg-type]
        return made[-1]

    yield _make
    for c in made:
        await c.close()


async def serve_hooks(c: ErpConnector) -> TestServer:
    server = TestServer(build_app(c), host="127.0.0.1")
    await server.start_server()
    return server


def hook(oid: str, state: str) -> dict[str, Any]:
    return {"Domain": "Fulfillment", "OrderId": oid, "State": state, "LastState": "ready-for-handling",
            "LastChange": "2026-01-09T00:00:00Z", "CurrentChange": "2026-01-09T00:00:01Z",
            "Origin": {"Account": "mockstore", "Key": "vtexappkey-mockstore"}}


def accepted(audit: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in audit["invoices"] if i["accepted"]]


# --------------------------------------------------------------------------- duplicate-hook
async def test_duplicate_hooks_delivered_at_once_give_one_invoice_per_order(mock: Mock, connector: Any) -> None:
    """At-least-once delivery (VTEX: duplicates by design): every `handling` hook twice, both copies
    in flight together; robust acts once per (orderId, State)."""
    c = connector("robust")
    server = await serve_hooks(c)
    try:
        await mock.hook_to(str(server.make_url("/hook")), "handling")
        await mock.configure(hook_duplicate_rate=1.0)
        oids = [await mock.order() for _ in range(3)]
        for oid in oids:
            await until(lambda oid=oid: _count(mock.delivered(oid), 2), f"both copies of {oid}'s hook delivered")
        assert await c.drain(15)
    finally:
        await server.close()
    for oid in oids:
        audit = await mock.audit(oid)
        assert [i["invoiceValue"] for i in accepted(audit)] == [audit["finalValue"]]
        assert len(await mock.requests(oid, "POST", INVOICE_PATH.format(oid))) == 1  # one request, not a refused 2nd
    # The copies stopped at the door: none reached the invoice flow to be skipped there by the order lock.
    assert c.stats.hooks_duplicate == 3 and c.stats.invoices_accepted == 3 and c.stats.invoices_skipped == 0


async def _count(entries: Awaitable[list[Any]], n: int) -> bool:
    return len(await entries) >= n


# --------------------------------------------------------------------------- failed-change
async def test_a_canceled_change_is_terminal_the_unchanged_value_is_invoiced(mock: Mock, connector: Any) -> None:
    """HC-ADAPT: a canceled Change shows `finished: false` for ever; robust stops waiting and invoices."""
    oid = await mock.order()
    await mock.change(oid, delay_ms=200, outcome="canceled")
    result = await connector("robust").invoice_order(oid)
    audit = await mock.audit(oid)
    assert audit["finalValue"] == audit["initialValue"]  # the Change never applied
    assert result.outcome == "accepted" and result.value == audit["finalValue"]
    assert audit["status"] == "invoiced" and audit["verdict"] == "clean"


async def test_the_guarded_wait_is_bounded_and_reported_as_guard_timeout(mock: Mock, connector: Any) -> None:
    oid = await mock.order()
    await mock.change(oid, delay_ms=20_000)  # outlives the guard
    c = connector("guarded", guard_timeout_s=0.2)
    result = await c.invoice_order(oid)
    assert result.outcome == "guard_timeout" and c.stats.guard_timeouts == 1
    assert not await mock.requests(oid, "POST", INVOICE_PATH.format(oid))


# --------------------------------------------------------------------------- rate-limited
async def test_429_retry_after_is_honoured_on_reads_and_the_invoice(mock: Mock, connector: Any) -> None:
    """The mock's token buckets answer 429 with Retry-After; robust waits it out within its budget."""
    await mock.configure(rate_limits={"get-order": "4/s", "change-history": "4/s", "invoice": "1/s"})
    oids = [await mock.order() for _ in range(3)]
    c = connector("robust", retry_budget_s=30.0)
    results = await asyncio.gather(*(c.invoice_order(oid) for oid in oids))
    assert [r.outcome for r in results] == ["accepted"] * 3, [r.detail for r in results]
    limited = 0
    for oid in oids:
        audit = await mock.audit(oid)
        assert [i["invoiceValue"] for i in accepted(audit)] == [audit["finalValue"]]
        page = await mock.requests(oid, "POST", INVOICE_PATH.format(oid))
        limited += sum(e["status"] == 429 for e in page)
    assert limited >= 1  # one token a second for three invoices at once: some were throttled
    assert c.stats.retries >= limited


async def test_a_retry_after_beyond_the_budget_is_an_error_not_a_silent_wait(mock: Mock, connector: Any) -> None:
    await mock.configure(rate_limits={"get-order": "0.2/s"})  # Retry-After: 5 s once the token is spent
    oid = await mock.order()
    c = connector("naive", retry_budget_s=1.0)
    first, second = await c.invoice_order(oid), await c.invoice_order(oid)
    assert first.outcome == "accepted"
    assert second.outcome == "error" and "exceeds" in second.detail and "retry budget" in second.detail


# --------------------------------------------------------------------------- lost-invoice-response
async def test_a_lost_invoice_response_is_retried_with_the_same_number(mock: Mock, connector: Any) -> None:
    """The invoice applies, its response is dropped; the retry reuses ERP-{orderId}, the PII route
    refuses the reused number (409) and the re-read shows the first attempt landed: one invoice."""
    await mock.configure(faults={"invoice": {"drop": 1.0}})
    oid = await mock.order()
    result = await connector("robust").invoice_order(oid)
    assert result.outcome == "accepted" and "earlier attempt landed" in result.detail
    attempts = await mock.requests(oid, "POST", INVOICE_PATH.format(oid))
    assert [e["outcome"] for e in attempts] == ["response-lost", "refused"] and attempts[1]["status"] == 409
    audit = await mock.audit(oid)
    assert [i["invoiceNumber"] for i in accepted(audit)] == [f"ERP-{oid}"]
    assert audit["invoicedTotal"] == audit["finalValue"]


# --------------------------------------------------------------------------- start-handling-500
def _seed_with_two_500s_first(rule: FaultRule) -> int:
    """A seed whose start-handling draws are 500, 500, then none (the schedule is seeded, faults.py)."""
    for seed in range(1000):
        schedule = FaultSchedule()
        if [schedule.draw("start-handling", rule, seed, None) for _ in range(3)] == ["500", "500", None]:
            return seed
    raise AssertionError("no seed in 0..999 gives 500, 500, ok")


async def test_start_handling_is_retried_through_500s_until_204_then_invoiced(mock: Mock, connector: Any) -> None:
    """SPEC: start-handling "can also respond with status 500" and is retried until 204; the
    `handling` hook it causes then drives the invoice."""
    rule = FaultRule(p500=0.5)
    await mock.configure(seed=_seed_with_two_500s_first(rule), faults={"start-handling": rule.spec()})
    c = connector("robust")
    server = await serve_hooks(c)
    try:
        await mock.hook_to(str(server.make_url("/hook")), "ready-for-handling", "handling")
        oid = await mock.order(status="ready-for-handling")
        await until(lambda: _status(mock, oid, "invoiced"), f"order {oid} invoiced")
        assert await c.drain(10)
    finally:
        await server.close()
    calls = await mock.requests(oid, "POST", wire.START_HANDLING.format(orderId=oid))
    assert [e["status"] for e in calls] == [500, 500, 204]
    assert c.stats.handling_started == 1 and c.stats.invoices_accepted == 1


async def _status(mock: Mock, oid: str, status: str) -> bool:
    return (await mock.audit(oid))["status"] == status


# --------------------------------------------------------------------------- reordered-hooks, cancel-vs-invoice
async def test_a_handling_hook_after_the_cancel_does_not_invoice(mock: Mock, connector: Any) -> None:
    """Hooks come in any order: a stale `handling` reaching robust after the order was canceled is
    checked against a re-read of the order; naive sends the invoice (refused by the platform)."""
    robust, naive = connector("robust"), connector("naive")
    for c in (robust, naive):
        oid = await mock.order()
        await mock.cancel(oid)
        assert await c.handle_hook(hook(oid, "handling")) == "scheduled"
        assert await c.drain(10)
        sent = await mock.requests(oid, "POST", INVOICE_PATH.format(oid))
        assert len(sent) == (0 if c is robust else 1)
    assert robust.stats.invoices_canceled == 1 and naive.stats.invoices_refused == 1


async def test_a_cancel_hook_before_handling_stops_the_invoice_without_a_call(mock: Mock, connector: Any) -> None:
    c = connector("robust")
    oid = await mock.order()
    assert await c.handle_hook(hook(oid, "cancel")) == "noted"
    assert await c.handle_hook(hook(oid, "handling")) == "scheduled"
    assert await c.drain(10)
    assert c.stats.invoices_canceled == 1
    assert not await mock.requests(oid, "GET", wire.ORDER.format(orderId=oid))  # decided before any read


async def test_a_cancel_hook_stops_an_invoice_waiting_for_a_change(mock: Mock, connector: Any) -> None:
    """KI-1400005 (cancel vs invoice): the cancel reaches robust while it waits for a Change; the
    pending invoice stops at its next check instead of racing the cancellation."""
    c = connector("robust")
    server = await serve_hooks(c)
    try:
        await mock.hook_to(str(server.make_url("/hook")), "cancel", "canceled")
        oid = await mock.order()
        await mock.change(oid, delay_ms=20_000)
        assert await c.handle_hook(hook(oid, "handling")) == "scheduled"
        await until(lambda: _count(mock.requests(oid, "GET", wire.CHANGES.format(changeOrderId=oid)), 1),
                    "robust polling the Change history")
        await mock.cancel(oid)
        assert await c.drain(10)  # well before the Change's 20 s
    finally:
        await server.close()
    assert c.stats.invoices_canceled == 1
    assert not await mock.requests(oid, "POST", INVOICE_PATH.format(oid))


# --------------------------------------------------------------------------- change-during-invoice-settle
async def test_an_over_invoice_from_the_invoice_first_window_is_reported_and_corrected(mock: Mock,
                                                                                       connector: Any) -> None:
    """KI-1348894 (b): a Change accepted while the invoice settles lowers the value below the invoice.
    No connector can stop it; robust finds it after the settle and returns the excess (Input invoice)."""
    await mock.configure(settle_ms=3000)  # room to send the Change inside the window on a busy machine
    oid = await mock.order()
    c = connector("robust", correct_over_invoice=True)
    assert await c.handle_hook(hook(oid, "handling")) == "scheduled"
    await until(lambda: _has_accepted(mock, oid), "the robust invoice accepted")
    await mock.change(oid, delay_ms=100)  # the vulnerable platform accepts it while the invoice settles
    assert await c.drain(15)
    audit = await mock.audit(oid)
    kinds = [(i["type"], i["invoiceValue"]) for i in accepted(audit)]
    assert kinds == [("Output", audit["initialValue"]), ("Input", audit["initialValue"] - audit["finalValue"])]
    assert audit["invoicedTotal"] == audit["finalValue"]
    assert c.stats.over_invoices == 1 and c.stats.corrections == 1
    assert "KI-1348894 b" in c.stats.last_errors[-1]


async def _has_accepted(mock: Mock, oid: str) -> bool:
    return bool(accepted(await mock.audit(oid)))


# --------------------------------------------------------------------------- the Node.js reference service
@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
async def test_node_service_invoices_once_per_order_despite_duplicate_hooks(mock: Mock) -> None:
    """The cross-language reference: a Node.js service in a child process, hooks duplicated."""
    proc = await asyncio.create_subprocess_exec(
        shutil.which("node") or "node", str(NODE_SERVICE), "--mode", "robust", "--api-url", mock.url, "--port", "0",
        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert line.startswith("listening on http://127.0.0.1:"), line
        await mock.hook_to(line.split()[-1] + "/hook", "handling")
        await mock.configure(hook_duplicate_rate=1.0)
        oids = [await mock.order() for _ in range(3)]
        for oid in oids:
            await until(lambda oid=oid: _has_accepted(mock, oid), f"order {oid} invoiced by the Node service")
            await until(lambda oid=oid: _count(mock.delivered(oid), 2), f"both copies of {oid}'s hook delivered")
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    for oid in oids:
        audit = await mock.audit(oid)
        assert [i["invoiceValue"] for i in accepted(audit)] == [audit["finalValue"]]
        assert len(await mock.requests(oid, "POST", INVOICE_PATH.format(oid))) == 1
        # One read of the order: the duplicate was dropped at the door, not re-read and skipped.
        assert len(await mock.requests(oid, "GET", wire.ORDER.format(orderId=oid))) == 1
