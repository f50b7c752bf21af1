"""The reference ERP connector (harness/connectors/erp_connector.py), Orders API scripted with aioresponses."""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import aioresponses.core as aioresponses_core
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aioresponses import CallbackResult, aioresponses
from yarl import URL

from harness.connectors.erp_connector import ErpConnector, build_app, build_parser, main

API = "http://orders.test"
OID = "1348894-01"
ORDER_URL = f"{API}/api/oms/pvt/orders/{OID}"
CHANGES_URL = f"{API}/api/order-system/orders/{OID}/changes"
INVOICE_URL = f"{API}/api/orders/pvt/document/{OID}/invoices"
ROOT = Path(__file__).resolve().parents[1]


def order(value: int, *, packages: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "orderId": OID,
        "status": "handling",
        "value": value,
        "items": [
            {"id": "sku-1", "quantity": 2, "price": 5000, "sellingPrice": 4500},
            {"id": "sku-2", "quantity": 1, "price": 3000, "sellingPrice": 3000},
        ],
        "packageAttachment": {"packages": packages or []},
    }


def changes(*finished: bool) -> dict[str, Any]:
    return {"requests": [{"requestId": f"r{i}", "finished": f} for i, f in enumerate(finished)]}


# aioresponses <= 0.7.9 builds ClientResponse without `stream_writer`, a required argument since
# aiohttp 3.14 (pnuckowski/aioresponses#289, fix pending in #288). aiohttp 3.14 is a security release,
# so rather than pinning aiohttp below it, hand aioresponses a response class that fills the argument
# in. It is a no-op on aiohttp versions (or a fixed aioresponses) that do not need it.
_NEEDS_STREAM_WRITER = "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters


class _CompatClientResponse(aiohttp.ClientResponse):
    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        if _NEEDS_STREAM_WRITER and "stream_writer" not in kwargs:
            kwargs["stream_writer"] = SimpleNamespace(output_size=0)  # read only when writer is None
        super().__init__(method, url, **kwargs)


@pytest.fixture(autouse=True)
def _aioresponses_aiohttp_compat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioresponses_core, "ClientResponse", _CompatClientResponse)


RECEIPT = {"date": "2026-01-09T00:00:00Z", "orderId": OID, "receipt": "rcpt-1"}


def calls(m: aioresponses, method: str, url: str) -> list[Any]:
    return m.requests.get((method, URL(url)), [])


def sent_invoices(m: aioresponses) -> list[dict[str, Any]]:
    return [c.kwargs["json"] for c in calls(m, "POST", INVOICE_URL)]


def request_log(m: aioresponses) -> list[tuple[str, str]]:
    """(method, path) per distinct endpoint hit; counts are asserted with `calls`."""
    return [(method, url.path) for (method, url) in m.requests]


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays the connector sleeps for (asyncio.sleep spied on, still sleeping)."""
    seen: list[float] = []
    real_sleep = asyncio.sleep

    async def spy_sleep(delay: float, *a: Any) -> Any:
        seen.append(delay)
        return await real_sleep(delay, *a)

    monkeypatch.setattr(asyncio, "sleep", spy_sleep)
    return seen


@pytest.fixture
async def make() -> AsyncIterator[Any]:
    made: list[ErpConnector] = []

    def _make(mode: str = "guarded", **kw: Any) -> ErpConnector:
        kw = {"poll_interval_s": 0.01, "guard_timeout_s": 2.0, "max_retries": 3, "backoff_base_s": 0.01, **kw}
        c = ErpConnector(API, mode, app_key="key", app_token="token", **kw)  # type: ignore[arg-type]
        made.append(c)
        return c

    yield _make
    for c in made:
        await c.close()


async def test_naive_reads_order_then_invoices_its_value(make: Any) -> None:
    c = make("naive")
    with aioresponses() as m:
        m.get(ORDER_URL, payload=order(13000))
        m.post(INVOICE_URL, payload=RECEIPT)
        result = await c.invoice_order(OID)
    assert result.outcome == "accepted" and result.value == 13000 and result.receipt == "rcpt-1"
    assert request_log(m) == [("GET", f"/api/oms/pvt/orders/{OID}"), ("POST", f"/api/orders/pvt/document/{OID}/invoices")]
    assert not calls(m, "GET", CHANGES_URL)
    [body] = sent_invoices(m)
    # the PII route's body (PII-SPEC): integer value, issuedDate YYYY-MM-DD, items by itemIndex with line totals
    assert body["type"] == "Output" and body["invoiceNumber"] == f"ERP-{OID}" and body["invoiceValue"] == 13000
    assert body["items"] == [{"itemIndex": 0, "price": 9000, "quantity": 2}, {"itemIndex": 1, "price": 3000, "quantity": 1}]
    assert body["invoiceKey"] is None and body["courier"] == "" and re.match(r"\d{4}-\d\d-\d\d$", body["issuedDate"])
    # Credentials travel on every call (session default headers).
    assert c._session is not None and c._session.headers["X-VTEX-API-AppKey"] == "key"
    assert c._session.headers["X-VTEX-API-AppToken"] == "token"
    assert (c.stats.invoices_sent, c.stats.invoices_accepted, c.stats.errors) == (1, 1, 0)


async def test_guarded_waits_for_finished_then_invoices_reduced_value(make: Any) -> None:
    c = make("guarded")
    with aioresponses() as m:
        m.get(CHANGES_URL, payload=changes(False))
        m.get(CHANGES_URL, payload=changes(False))
        m.get(CHANGES_URL, payload=changes(True))
        m.get(ORDER_URL, payload=order(8000))  # read only after the Change finished: the reduced value
        m.post(INVOICE_URL, payload=RECEIPT)
        result = await c.invoice_order(OID)
    assert len(calls(m, "GET", CHANGES_URL)) == 3
    assert len(calls(m, "GET", ORDER_URL)) == 1
    assert request_log(m)[0] == ("GET", f"/api/order-system/orders/{OID}/changes")  # history before the order
    assert [b["invoiceValue"] for b in sent_invoices(m)] == [8000]
    assert result.outcome == "accepted" and result.value == 8000


async def test_guarded_treats_a_canceled_change_as_over(make: Any) -> None:
    """HC-ADAPT: a canceled Change reports finished:false for ever; waiting for finished alone would give up."""
    c = make("guarded", guard_timeout_s=5.0)
    with aioresponses() as m:
        m.get(CHANGES_URL, payload={"requests": [{"requestId": "r1", "status": "canceling", "finished": False}]})
        m.get(CHANGES_URL, payload={"requests": [{"requestId": "r1", "status": "canceled", "finished": False}]})
        m.get(ORDER_URL, payload=order(13000))  # the Change never applied
        m.post(INVOICE_URL, payload=RECEIPT)
        result = await c.invoice_order(OID)
    assert len(calls(m, "GET", CHANGES_URL)) == 2
    assert result.outcome == "accepted" and result.value == 13000


async def test_a_409_on_a_number_that_landed_is_an_accepted_invoice(make: Any) -> None:
    """PII-SPEC forbids reusing an invoiceNumber, so a retry after a lost response gets 409: re-read and see."""
    c = make("naive")
    with aioresponses() as m:
        m.get(ORDER_URL, payload=order(13000))
        m.post(INVOICE_URL, status=409, payload={"error": {"code": "InvoiceAlreadyExists", "message": "reused"}})
        m.get(ORDER_URL, payload=order(13000, packages=[{"invoiceNumber": f"ERP-{OID}", "invoiceValue": 13000}]))
        result = await c.invoice_order(OID)
    assert result.outcome == "accepted" and result.value == 13000


async def test_guarded_order_reread_after_change_gives_reduced_value(make: Any) -> None:
    """The order read at the hook (13000) is not what gets invoiced: the post-guard re-read (8000) is."""
    c = make("guarded")
    with aioresponses() as m:
        m.get(ORDER_URL, payload=order(13000))
        m.get(ORDER_URL, payload=order(8000))
        m.get(CHANGES_URL, payload=changes(True, False))
        m.get(CHANGES_URL, payload=changes(True, True))
        m.post(INVOICE_URL, payload=RECEIPT)
        async with aiohttp.ClientSession() as s:  # someone (the hook reader) sees the pre-Change order
            async with s.get(ORDER_URL) as r:
                assert (await r.json())["value"] == 13000
        result = await c.invoice_order(OID)
    assert len(calls(m, "GET", CHANGES_URL)) == 2
    assert [b["invoiceValue"] for b in sent_invoices(m)] == [8000]
    assert result.value == 8000


async def test_guarded_partially_invoiced_order_invoices_remaining(make: Any) -> None:
    c = make("guarded")
    prior = [{"type": "Output", "invoiceNumber": "NF-1", "invoiceValue": "5000"},
             {"type": "Output", "invoiceNumber": "NF-2", "invoiceValue": 1000}]
    with aioresponses() as m:
        m.get(CHANGES_URL, payload=changes(True))
        m.get(ORDER_URL, payload=order(13000, packages=prior))
        m.post(INVOICE_URL, payload=RECEIPT)
        result = await c.invoice_order(OID)
    assert [b["invoiceValue"] for b in sent_invoices(m)] == [7000]
    assert result.value == 7000


async def test_fully_invoiced_or_already_ours_is_skipped(make: Any) -> None:
    c = make("naive")
    with aioresponses() as m:
        m.get(ORDER_URL, payload=order(13000, packages=[{"type": "Output", "invoiceNumber": "NF-1", "invoiceValue": 13000}]))
        m.get(ORDER_URL, payload=order(13000, packages=[{"type": "Output", "invoiceNumber": f"ERP-{OID}", "invoiceValue": 100}]))
        first, second = await c.invoice_order(OID), await c.invoice_order(OID)
    assert (first.outcome, second.outcome) == ("skipped", "skipped")
    assert not sent_invoices(m) and c.stats.invoices_skipped == 2


async def test_429_with_retry_after_is_retried_once(make: Any, sleeps: list[float]) -> None:
    c = make("naive")
    with aioresponses() as m:
        m.get(ORDER_URL, status=429, headers={"Retry-After": "0.05"},
              payload={"error": {"code": "TooManyRequests", "message": "slow down"}})
        m.get(ORDER_URL, payload=order(13000))
        m.post(INVOICE_URL, payload=RECEIPT)
        result = await c.invoice_order(OID)
    assert len(calls(m, "GET", ORDER_URL)) == 2
    assert sleeps == [0.05]  # the server's Retry-After, not our backoff
    assert result.outcome == "accepted" and c.stats.retries == 1


async def test_retry_after_beyond_the_budget_gives_up_at_once(make: Any, sleeps: list[float]) -> None:
    """No silent cap: a Retry-After the budget cannot honour ends the call (retrying early earns a 429)."""
    c = make("naive", retry_budget_s=1.0)
    with aioresponses() as m:
        m.get(ORDER_URL, status=429, headers={"Retry-After": "3600"})
        result = await c.invoice_order(OID)
    assert sleeps == [] and len(calls(m, "GET", ORDER_URL)) == 1
    assert result.outcome == "error" and "Retry-After 3600 s exceeds" in result.detail


async def test_retry_after_as_an_http_date_is_honoured(make: Any, sleeps: list[float]) -> None:
    c = make("naive")
    when = email.utils.format_datetime(datetime.now(timezone.utc) + timedelta(seconds=1), usegmt=True)
    with aioresponses() as m:
        m.get(ORDER_URL, status=429, headers={"Retry-After": when})
        m.get(ORDER_URL, payload=order(13000))
        m.post(INVOICE_URL, payload=RECEIPT)
        result = await c.invoice_order(OID)
    assert result.outcome == "accepted" and len(sleeps) == 1 and 0 < sleeps[0] <= 1.0


async def test_robust_retries_past_max_retries_within_the_budget(make: Any) -> None:
    """Robust retries until the budget is spent, not a count: start-handling is retried until 204 (SPEC)."""
    c = make("robust", max_retries=0)
    url = f"{API}/api/oms/pvt/orders/{OID}/start-handling"
    with aioresponses() as m:
        for _ in range(4):
            m.post(url, status=500, payload={"error": {"code": "InternalServerError", "message": "retry"}})
        m.post(url, status=204)
        assert await c.start_handling_order(OID)
    assert len(calls(m, "POST", url)) == 5 and c.stats.handling_started == 1 and c.stats.retries == 4


async def test_5xx_twice_then_success(make: Any) -> None:
    c = make("naive")
    with aioresponses() as m:
        m.get(ORDER_URL, payload=order(13000))
        m.post(INVOICE_URL, status=502)
        m.post(INVOICE_URL, status=500, payload={"error": {"code": "X", "message": "boom"}})
        m.post(INVOICE_URL, payload=RECEIPT)
        result = await c.invoice_order(OID)
    bodies = sent_invoices(m)
    assert len(bodies) == 3 and all(b == bodies[0] for b in bodies)  # same invoiceNumber/value: idempotent retry
    assert result.outcome == "accepted" and c.stats.retries == 2
    assert (c.stats.invoices_sent, c.stats.invoices_accepted, c.stats.errors) == (1, 1, 0)


async def test_5xx_beyond_max_retries_gives_up_without_invoice(make: Any) -> None:
    c = make("naive", max_retries=2)
    with aioresponses() as m:
        m.get(ORDER_URL, status=503, repeat=True)
        result = await c.invoice_order(OID)
    assert len(calls(m, "GET", ORDER_URL)) == 3  # 1 + 2 retries
    assert not sent_invoices(m)
    assert result.outcome == "error" and "HTTP 503" in result.detail and "3 attempt" in result.detail
    assert c.stats.errors == 1 and c.stats.invoices_sent == 0
    assert c.stats.last_errors[-1].startswith(OID)


async def test_request_timeout_is_retried(make: Any) -> None:
    c = make("naive")
    with aioresponses() as m:
        m.get(ORDER_URL, exception=asyncio.TimeoutError())
        m.get(ORDER_URL, payload=order(13000))
        m.post(INVOICE_URL, exception=aiohttp.ClientConnectionError("reset"))
        m.post(INVOICE_URL, payload=RECEIPT)
        result = await c.invoice_order(OID)
    assert len(calls(m, "GET", ORDER_URL)) == 2 and len(sent_invoices(m)) == 2
    assert result.outcome == "accepted" and c.stats.retries == 2


async def test_4xx_is_a_refusal_not_retried(make: Any) -> None:
    c = make("naive")
    with aioresponses() as m:
        m.get(ORDER_URL, payload=order(13000), repeat=True)  # a 409 makes it re-read: did an earlier attempt land?
        m.post(INVOICE_URL, status=409, payload={"error": {"code": "InvoiceAboveOrderValue", "message": "13000 > 8000"}})
        result = await c.invoice_order(OID)
    assert len(sent_invoices(m)) == 1
    assert result.outcome == "refused" and "409" in result.detail and "InvoiceAboveOrderValue" in result.detail
    assert (c.stats.invoices_refused, c.stats.errors, c.stats.retries) == (1, 0, 0)
    assert "13000 > 8000" in c.stats.last_refusals[-1]


async def test_guard_timeout_means_no_invoice(make: Any) -> None:
    c = make("guarded", guard_timeout_s=0.15, poll_interval_s=0.02)
    with aioresponses() as m:
        m.get(CHANGES_URL, payload=changes(True, False), repeat=True)
        result = await c.invoice_order(OID)
    assert result.outcome == "guard_timeout"
    assert len(calls(m, "GET", CHANGES_URL)) >= 2
    assert not calls(m, "GET", ORDER_URL) and not sent_invoices(m)
    assert c.stats.guard_timeouts == 1 and c.stats.invoices_sent == 0


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--mode", "eager", "--api-url", API], ["--mode", "naive", "--api-url", "orders.test"],
                 ["--mode", "naive", "--api-url", API, "--max-retries", "-1"], ["--mode", "naive"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    assert "--api-url" in capsys.readouterr().err
    with pytest.raises(ValueError, match="mode"):
        ErpConnector(API, "eager")  # type: ignore[arg-type]


def test_start_handling_defaults_per_mode_and_the_flag_overrides() -> None:
    parse = build_parser().parse_args
    for argv, mode, expected in (([], "robust", True), ([], "guarded", False), ([], "naive", False),
                                 (["--start-handling"], "guarded", True), (["--no-start-handling"], "robust", False)):
        args = parse(["--mode", mode, "--api-url", API, *argv])
        assert ErpConnector(API, mode, start_handling=args.start_handling).start_handling is expected, (argv, mode)
    assert parse(["--mode", "robust", "--api-url", API]).retry_budget_s == 60.0  # VTEX: a 1-minute back-off


# --------------------------------------------------------------------------- the web app
async def test_web_app_hooks(make: Any) -> None:
    c = make("naive")
    async with TestClient(TestServer(build_app(c))) as client:
        base = str(client.make_url("/")).rstrip("/")
        with aioresponses(passthrough=[base]) as m:
            m.get(ORDER_URL, payload=order(13000))
            # A slow invoice endpoint: the hook must answer before the invoice is done.
            gate = asyncio.Event()

            async def slow_invoice(url: Any, **kw: Any) -> Any:
                await gate.wait()
                return CallbackResult(payload=RECEIPT)

            m.post(INVOICE_URL, callback=slow_invoice)

            r = await client.post("/hook", json={"hookConfig": "ping"})
            assert r.status == 200

            hook = {"Domain": "Fulfillment", "OrderId": OID, "State": "handling", "LastState": "ready-for-handling",
                    "LastChange": "2026-01-09T00:00:00Z", "CurrentChange": "2026-01-09T00:00:01Z",
                    "Origin": {"Account": "acme", "Key": "vtexappkey-acme"}}
            r = await asyncio.wait_for(client.post("/hook", json=hook), 2)
            assert r.status == 200 and (await r.json())["status"] == "scheduled"
            assert c.pending == 1 and not await c.drain(0.05)  # still invoicing in the background
            gate.set()
            assert await c.drain(2)
            assert [b["invoiceValue"] for b in sent_invoices(m)] == [13000]

            r = await client.post("/hook", json={**hook, "State": "invoiced", "LastState": "handling"})
            assert r.status == 200 and (await r.json())["status"] == "ignored"
            assert await c.drain(1)
            assert len(sent_invoices(m)) == 1 and len(calls(m, "GET", ORDER_URL)) == 1

            r = await client.post("/hook", data="not json")
            assert r.status == 400 and "not JSON" in (await r.json())["error"]
            r = await client.post("/hook", json={"State": "handling"})
            assert r.status == 400 and "OrderId" in (await r.json())["error"]

            assert (await client.get("/health")).status == 200
            stats = await (await client.get("/stats")).json()
    assert stats["pings"] == 1 and stats["hooks_received"] == 2 and stats["hooks_ignored"] == 1
    assert stats["invoices_accepted"] == 1 and stats["last_invoices"][0]["invoiceValue"] == 13000


# --------------------------------------------------------------------------- the process
async def test_process_listens_serves_health_and_stops_on_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "harness.connectors.erp_connector", "--mode", "guarded",
        "--api-url", "http://127.0.0.1:9", "--port", "0", "--poll-interval-ms", "20",
        cwd=ROOT, env={**os.environ, "VTEX_APP_KEY": "k", "VTEX_APP_TOKEN": "t"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()  # type: ignore[union-attr]
        match = re.fullmatch(r"listening on (http://127\.0\.0\.1:(\d+))\n", line)
        assert match and int(match.group(2)) > 0, line
        async with aiohttp.ClientSession() as s:
            async with s.get(match.group(1) + "/health") as r:
                assert r.status == 200 and (await r.json())["mode"] == "guarded"
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 5)
        assert rc == 0, (await proc.stderr.read()).decode()  # type: ignore[union-attr]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
