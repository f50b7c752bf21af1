"""The integration's view of the Orders API (and the mock's admin API), over httpx.

Every call is recorded in the trial's history. Untimed calls retry 429/5xx a
bounded number of times honouring `Retry-After` however long it is, within the call's
wait budget `retry_budget_s` (VTEX recommends a 1-minute back-off after a 429, in its
orders-feed guide): a wait that would exceed the budget is not slept, the 429 is the answer; the timed Change and invoice
retry only a 429 (refused before it was applied) because retrying a request
that may have applied would change what the trial measures.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
from asyncio_throttle import Throttler

from harness.core import history as h
from harness.core.steps import DELAY_HEADER, decode_body
from harness.errors import TargetError
from harness.live.clock import Clock
from harness.live.sender import LastByteSender

ADMIN_HEADER = "X-Mock-Admin-Token"
_MAX_BACKOFF_S = 5.0  # exponential back-off when the server sends no Retry-After
DEFAULT_RETRY_BUDGET_S = 90.0  # total waiting per call: VTEX's 1-minute back-off fits, with room
_UNPARSED = object()


@dataclass(frozen=True)
class Credentials:
    app_key: str | None = None
    app_token: str | None = None
    admin_token: str | None = None

    def vtex_headers(self) -> dict[str, str]:
        if self.app_key is None or self.app_token is None:
            return {}
        return {"X-VTEX-API-AppKey": self.app_key, "X-VTEX-API-AppToken": self.app_token}

    def admin_headers(self) -> dict[str, str]:
        return {ADMIN_HEADER: self.admin_token} if self.admin_token else {}


class OrdersClient:
    """One shared client for all trials; `history` names the trial each call belongs to.

    `http` may be several httpx clients ("shards"): httpcore scans its whole
    pool on every request, so one pool of hundreds of connections costs more
    CPU per request than the request itself; a trial sticks to one small pool.
    """

    def __init__(
        self,
        http: httpx.AsyncClient | list[httpx.AsyncClient],
        clock: Clock,
        credentials: Credentials = Credentials(),
        max_retries: int = 2,
        rate_limit_rps: float = 0.0,
        timed: LastByteSender | None = None,
        retry_budget_s: float = DEFAULT_RETRY_BUDGET_S,
    ) -> None:
        self.shards = http if isinstance(http, list) else [http]
        self.clock = clock
        self.credentials = credentials
        self.timed = timed  # None: timed requests go through httpx at the deadline
        self.max_retries = max_retries
        self.retry_budget_s = retry_budget_s
        self._throttler = Throttler(rate_limit=rate_limit_rps, period=1.0) if rate_limit_rps > 0 else None
        self._vtex = credentials.vtex_headers()
        self._admin = credentials.admin_headers()

    async def call(
        self,
        hist: h.TrialHistory | None,
        kind: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        deadline_ns: int | None = None,
        admin: bool = False,
        shard: int | None = None,
    ) -> h.RequestEvent:
        """Send one request (at `deadline_ns` if given) and record it; never raises for HTTP errors."""
        all_headers = self._admin if admin else self._vtex
        if headers:
            all_headers = {**all_headers, **headers}  # a new dict: the credentials' stay as they are
        if shard is None:
            shard = hist.shard if hist is not None else 0
        shards = self.shards
        http = shards[shard % len(shards)] if len(shards) > 1 else shards[0]
        request = http.build_request(method, path, json=json, headers=all_headers)
        timed = deadline_ns is not None
        attempts = 0
        waited_s = 0.0
        while True:
            attempts += 1
            retry_after: str | None = None
            if self._throttler is not None:
                await self._throttler.acquire()  # the rate limit's slot (what `async with throttler` takes)
            if deadline_ns is not None and attempts == 1 and self.timed is not None:
                event, retry_after = await self._timed(kind, method, path, json, all_headers, deadline_ns)
                response = None
            else:
                if deadline_ns is not None and attempts == 1:
                    await self.clock.sleep_until(deadline_ns)
                event = h.RequestEvent(kind, method, path, deadline_ns, self.clock.now_ns(), request_body=json,
                                       attempts=attempts)
                try:
                    response = _unlink(await http.send(request))
                except httpx.HTTPError as err:
                    event.error = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
                    response = None
            event.attempts = attempts
            if response is not None:
                event.response_ns = self.clock.now_ns()
                event.status = response.status_code
                event.response_body = _body(response)
                retry_after = response.headers.get("retry-after")
            retryable = event.status == 429 or (not timed and (event.status >= 500 or event.response_ns is None))
            if not retryable or attempts > self.max_retries:
                break
            delay_s = retry_delay(retry_after, attempts)
            if waited_s + delay_s > self.retry_budget_s:
                break  # the server asks for more than this call may wait: its 429/5xx is the answer
            waited_s += delay_s
            await asyncio.sleep(delay_s)
        if hist is not None:
            hist.events.append(event)
        return event

    async def _timed(self, kind: str, method: str, path: str, json: Any, headers: dict[str, str],
                     deadline_ns: int) -> tuple[h.RequestEvent, str | None]:
        """The request with last-byte sync: its event and the response's Retry-After."""
        assert self.timed is not None
        r = await self.timed.request(method, path, headers, json, deadline_ns, self.clock.now_ns)
        return (h.RequestEvent(kind, method, path, deadline_ns, r.sent_ns, r.response_ns, r.status,
                               request_body=json, response_body=r.body, error=r.error), r.retry_after)

    # --- Orders API (what an integration calls) --------------------------------
    async def get_order(self, hist: h.TrialHistory, order_id: str, deadline_ns: int | None = None) -> h.RequestEvent:
        return await self.call(hist, h.GET_ORDER, "GET", f"/api/oms/pvt/orders/{order_id}", deadline_ns=deadline_ns)

    async def start_handling(self, hist: h.TrialHistory, order_id: str) -> h.RequestEvent:
        return await self.call(hist, h.START_HANDLING, "POST", f"/api/oms/pvt/orders/{order_id}/start-handling")

    async def list_changes(self, hist: h.TrialHistory, order_id: str,
                           deadline_ns: int | None = None) -> h.RequestEvent:
        return await self.call(hist, h.GET_CHANGES, "GET", f"/api/order-system/orders/{order_id}/changes",
                               deadline_ns=deadline_ns)

    async def change(self, hist: h.TrialHistory, order_id: str, body: dict[str, Any], deadline_ns: int | None,
                     pinned_delay_ms: float | None = None) -> h.RequestEvent:
        headers = {DELAY_HEADER: f"{pinned_delay_ms:.3f}"} if pinned_delay_ms is not None else None
        return await self.call(hist, h.CHANGE, "PATCH", f"/api/order-system/orders/{order_id}/changes",
                               json=body, headers=headers, deadline_ns=deadline_ns)

    async def invoice(self, hist: h.TrialHistory, order_id: str, body: dict[str, Any],
                      deadline_ns: int | None = None) -> h.RequestEvent:
        return await self.call(hist, h.INVOICE, "POST", f"/api/orders/pvt/document/{order_id}/invoices",
                               json=body, deadline_ns=deadline_ns)

    # --- mock admin API ------------------------------------------------------------
    async def admin(self, method: str, path: str, json: Any = None) -> Any:
        """An admin call outside any trial; raises TargetError on failure."""
        event = await self.call(None, "admin", method, f"/_mock{path}", json=json, admin=True)
        if not event.ok:
            detail = event.error or f"HTTP {event.status}: {event.response_body}"
            raise TargetError(f"mock admin {method} /_mock{path} failed: {detail}")
        return event.response_body

    async def create_order(self, hist: h.TrialHistory, spec: dict[str, Any]) -> h.RequestEvent:
        return await self.call(hist, h.CREATE_ORDER, "POST", "/_mock/orders", json=spec, admin=True)

    async def audit(self, hist: h.TrialHistory | None, order_id: str) -> h.RequestEvent:
        return await self.call(hist, h.AUDIT, "GET", f"/_mock/orders/{order_id}/audit", admin=True)


def _unlink(response: httpx.Response) -> httpx.Response:
    """Break httpx's response <-> stream reference cycle once the body is read (`send` reads it).

    Otherwise every request leaves ~38 objects only the cyclic GC can free: at ~1,400
    requests/s that was a 40-100 ms collection about every second, stalling the event loop,
    which then released its backlog onto the mock as a burst.
    """
    if isinstance(response, httpx.Response):  # not a simulated run's direct response
        response.stream = httpx.ByteStream(response.content)
    return response


def _body(response: httpx.Response) -> Any:
    parsed = getattr(response, "parsed_json", _UNPARSED)  # an in-process response (simulated mode) carries it
    if parsed is not _UNPARSED:
        return parsed
    return decode_body(response.content)


def retry_delay(retry_after: str | None, attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: the server's Retry-After (seconds, uncapped: the caller's
    budget bounds it), else exponential back-off."""
    backoff = min(0.05 * 2 ** (attempt - 1), _MAX_BACKOFF_S)
    if retry_after is None:
        return backoff
    try:
        return max(float(retry_after), 0.0)
    except ValueError:
        return backoff
