"""Asynchronous cancellation (HC-FLOW; KI-1242813) and the cancel-vs-invoice policy (KI-1400005),
on the in-process app with a hand-driven clock: `cancel` ends exactly at its due time, whatever
the event loop does."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from mock_orders_api import create_app, wire
from mock_orders_api.__main__ import add_serve_arguments, config_from_args
from mock_orders_api.config import MockConfig

ITEMS = [{"id": "sku-1", "quantity": 2, "price": 5000}]
VALUE = 10_000
MS = 1_000_000


class Clocked:
    """The mock app on a clock the test moves (`at(ms)`), with a client."""

    def __init__(self, client: httpx.AsyncClient, now: list[int]) -> None:
        self.c = client
        self._now = now

    def at(self, ms: float) -> None:
        self._now[0] = round(ms * MS)

    async def handling_order(self) -> str:
        oid: str = (await self.c.post("/_mock/orders", json={"items": ITEMS, "status": "handling"})).json()["orderId"]
        return oid

    async def order(self, oid: str) -> dict[str, Any]:
        r = await self.c.get(f"/api/oms/pvt/orders/{oid}")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def cancel(self, oid: str, **headers: str) -> httpx.Response:
        return await self.c.post(f"/api/oms/pvt/orders/{oid}/cancel", json={"reason": "out of stock"},
                                 headers=headers)

    async def invoice(self, oid: str, value: int = VALUE) -> httpx.Response:
        return await self.c.post(f"/api/orders/pvt/document/{oid}/invoices", json={
            "type": "Output", "issuedDate": "2026-01-09", "invoiceNumber": "NFe-9", "invoiceValue": value,
            "items": [{"itemIndex": 0, "price": value, "quantity": 2}]})


@pytest.fixture
async def clocked() -> AsyncIterator[Any]:
    clients: list[httpx.AsyncClient] = []

    def _make(**cfg: Any) -> Clocked:
        now = [0]
        app = create_app(MockConfig(**cfg), clock=lambda: now[0])
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mock.test")
        clients.append(client)
        return Clocked(client, now)

    yield _make
    for c in clients:
        await c.aclose()


async def test_cancel_passes_through_cancel_and_ends_canceled_at_its_delay(clocked) -> None:
    m = clocked(cancel_delay_ms=5000.0)
    oid = await m.handling_order()
    r = await m.cancel(oid)
    assert r.status_code == 200 and set(r.json()) == {"date", "orderId", "receipt"}  # SPEC cancel.post
    view = await m.order(oid)
    assert view["status"] == "cancel" and view["statusDescription"]
    assert view["cancellationData"]["Reason"] == "out of stock"
    assert view["cancellationData"]["CancellationDate"] is None
    m.at(4999)
    assert (await m.order(oid))["status"] == "cancel"
    assert (await m.cancel(oid)).status_code == 200  # a repeat changes nothing
    m.at(5000)
    view = await m.order(oid)
    assert view["status"] == "canceled" and view["cancellationData"]["CancellationDate"]
    audit = (await m.c.get(f"/_mock/orders/{oid}/audit")).json()
    assert [(h["status"], h["ns"] // MS) for h in audit["statusHistory"]][-2:] == [("cancel", 0), ("canceled", 5000)]


async def test_the_delay_header_pins_one_cancellation_and_a_bad_one_is_refused(clocked) -> None:
    m = clocked(cancel_delay_ms=60_000.0)
    oid = await m.handling_order()
    bad = await m.cancel(oid, **{wire.CANCEL_DELAY_HEADER: "soon"})
    assert bad.status_code == 400 and "x-mock-cancel-delay-ms" in bad.json()["error"]["message"]
    assert (await m.order(oid))["status"] == "handling"
    assert (await m.cancel(oid, **{wire.CANCEL_DELAY_HEADER: "10"})).status_code == 200
    m.at(10)
    assert (await m.order(oid))["status"] == "canceled"


async def test_default_delay_still_passes_through_cancel(clocked) -> None:
    m = clocked()
    oid = await m.handling_order()
    assert (await m.cancel(oid)).status_code == 200
    audit = (await m.c.get(f"/_mock/orders/{oid}/audit")).json()
    assert [h["status"] for h in audit["statusHistory"]] == ["handling", "cancel", "canceled"]


async def test_seller_deny_returns_the_order_to_its_status(clocked) -> None:
    """CANCEL-GUIDE: outside the grace window the seller may deny the cancellation."""
    m = clocked(cancel_delay_ms=100.0)
    oid = await m.handling_order()
    assert (await m.cancel(oid, **{wire.CANCEL_OUTCOME_HEADER: "denied"})).status_code == 200
    assert (await m.order(oid))["status"] == "cancel"
    m.at(100)
    view = await m.order(oid)
    assert view["status"] == "handling" and view["cancellationData"] is None
    assert (await m.cancel(oid, **{wire.CANCEL_OUTCOME_HEADER: "maybe"})).status_code == 400


async def test_vulnerable_invoice_during_cancel_leaves_the_cancellation_stuck_in_error(clocked) -> None:
    """KI-1400005: the invoice is accepted, the order never reaches `canceled`, workflowIsInError."""
    m = clocked(cancel_delay_ms=500.0)
    oid = await m.handling_order()
    assert (await m.cancel(oid)).status_code == 200
    m.at(200)
    r = await m.invoice(oid)
    assert r.status_code == 200, r.text
    m.at(3_600_000)  # an hour later: still stuck
    view = await m.order(oid)
    assert view["status"] == "cancel" and view["workflowIsInError"] is True
    [pkg] = view["packageAttachment"]["packages"]
    assert pkg["invoiceNumber"] == "NFe-9" and pkg["invoiceValue"] == VALUE  # the invoice is kept
    audit = (await m.c.get(f"/_mock/orders/{oid}/audit")).json()
    assert audit["workflowIsInError"] is True and audit["invoicedTotal"] == VALUE
    assert "canceled" not in [h["status"] for h in audit["statusHistory"]]


async def test_strict_refuses_the_invoice_and_the_cancellation_completes(clocked) -> None:
    m = clocked(cancel_delay_ms=500.0, cancel_policy="strict")
    oid = await m.handling_order()
    assert (await m.cancel(oid)).status_code == 200
    m.at(200)
    r = await m.invoice(oid)
    assert r.status_code == 409 and r.json()["error"]["code"] == "OrderBeingCanceled"
    assert "being canceled" in r.json()["error"]["message"]
    m.at(500)
    view = await m.order(oid)
    assert view["status"] == "canceled" and view["workflowIsInError"] is False
    assert view["packageAttachment"]["packages"] == []


async def test_no_change_while_canceling_chk0124(clocked) -> None:
    m = clocked(cancel_delay_ms=500.0)
    oid = await m.handling_order()
    assert (await m.cancel(oid)).status_code == 200
    r = await m.c.patch(f"/api/order-system/orders/{oid}/changes",
                        json={"reason": "x", "remove": {"items": [{"id": "sku-1", "quantity": 1}]}})
    assert r.status_code == 409 and r.json()["error"]["code"] == "CHK0124"


async def test_cancel_settings_from_config_env_and_flags(clocked) -> None:
    m = clocked()
    r = await m.c.patch("/_mock/config", json={"cancel_delay_ms": 250, "cancel_policy": "strict"})
    assert r.status_code == 200 and (r.json()["cancel_delay_ms"], r.json()["cancel_policy"]) == (250.0, "strict")
    for bad in ({"cancel_delay_ms": -1}, {"cancel_policy": "lenient"}, {"list_lag_ms": "x"}):
        assert (await m.c.patch("/_mock/config", json=bad)).status_code == 400
    cfg = MockConfig.from_env({"MOCK_CANCEL_DELAY_MS": "75", "MOCK_CANCEL_POLICY": "strict"})
    assert (cfg.cancel_delay_ms, cfg.cancel_policy) == (75.0, "strict")
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(["--cancel-delay-ms", "1500", "--cancel-policy", "strict",
                                      "--list-lag-ms", "240000"])
    cfg = config_from_args(args)
    assert (cfg.cancel_delay_ms, cfg.cancel_policy, cfg.list_lag_ms) == (1500.0, "strict", 240000.0)
