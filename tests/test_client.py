"""The harness's Orders API client against a real loopback server that rate-limits: a 429 is
retried after the server's Retry-After, on the httpx path and on the last-byte path alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from harness.live.client import OrdersClient
from harness.live.clock import MonotonicClock
from harness.live.sender import Firer, LastByteSender

RETRY_AFTER_S = 0.3  # six times the client's first backoff (0.05 s): only the header explains the wait


class _RateLimited:
    """Answers the first request 429 with Retry-After, every later one 200; records arrival times."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                self.arrivals.append(time.monotonic())
                if len(self.arrivals) == 1:
                    status, extra, body = b"429 Too Many Requests", f"Retry-After: {RETRY_AFTER_S}\r\n".encode(), b"{}"
                else:
                    status, extra, body = b"200 OK", b"", b'{"ok": true}'
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n" + extra
                             + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture()
async def rate_limited() -> AsyncIterator[tuple[str, _RateLimited]]:
    handler = _RateLimited()
    server = await asyncio.start_server(handler.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", handler


@pytest.mark.parametrize("last_byte", [False, True], ids=["httpx", "last-byte"])
async def test_timed_429_is_retried_after_the_servers_retry_after(rate_limited: tuple[str, _RateLimited],
                                                                  last_byte: bool) -> None:
    url, server = rate_limited
    clock = MonotonicClock()
    firer = Firer() if last_byte else None
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5.0) as http:
            timed = LastByteSender(url, firer, 5.0) if firer is not None else None
            client = OrdersClient(http, clock, max_retries=2, timed=timed)
            event = await client.call(None, "invoice", "POST", "/api/orders/pvt/document/o-1/invoices",
                                      json={"invoiceValue": 1}, deadline_ns=clock.now_ns() + 20_000_000)
    finally:
        if firer is not None:
            firer.close()
    assert (event.status, event.attempts, event.response_body) == (200, 2, {"ok": True})
    assert len(server.arrivals) == 2
    assert server.arrivals[1] - server.arrivals[0] >= RETRY_AFTER_S


def test_retry_after_is_honoured_uncapped_and_bounded_by_the_calls_budget() -> None:
    from harness.live.client import DEFAULT_RETRY_BUDGET_S, retry_delay
    assert retry_delay("60", 1) == 60.0  # VTEX's recommended 1-minute back-off is not cut to 5 s
    assert retry_delay(None, 1) == pytest.approx(0.05) and retry_delay("soon", 3) == pytest.approx(0.2)
    assert DEFAULT_RETRY_BUDGET_S >= 60.0


async def test_a_retry_after_beyond_the_budget_returns_the_429(rate_limited: tuple[str, _RateLimited]) -> None:
    url, server = rate_limited
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as http:
        client = OrdersClient(http, MonotonicClock(), max_retries=2, retry_budget_s=RETRY_AFTER_S / 2)
        event = await client.call(None, "get_order", "GET", "/api/oms/pvt/orders/o-1")
    assert (event.status, event.attempts) == (429, 1) and len(server.arrivals) == 1
