"""Order hook delivery (`HookDispatcher`): the mock POSTs every order status change to the hook URL.

* One hook config per mock (VTEX: one per account), set with
  `POST /api/orders/hook/config` (pinged first: the URL must answer
  `{"hookConfig": "ping"}` with 200) or at startup (`--hook-url`,
  `MOCK_HOOK_URL`; not pinged, the receiver may start later).
* Filters (domain/filters.py): `FromWorkflow` delivers the listed statuses; `FromOrders`
  evaluates its JSONata `expression` over the order JSON at each status change and
  delivers once per order unless `disableSingleFire` (the dispatcher's `FilterGate`).
* Delivery never blocks the mock: a status change (always a synchronous
  section on the event loop) only schedules a task. Without a delivery plan the
  tasks of one order are chained, so its notifications arrive in status order.
  Success is HTTP 200 within `hook_timeout_s` (default 5 s; VTEX: "200 within
  5000 ms", Orders Feed guide); anything else is retried on a geometric schedule
  (RETRY_BASE_MS x 2^(n-1); VTEX: "an internal geometric progression") while
  the retry stays within `hook_retry_horizon_s` of the status change and at
  most `hook_retries` times. Every attempt is journaled (`GET /_mock/hooks`,
  and the order's audit under `hooks`).
* The delivery plan (`delivery_plan`, shared with the feed in domain/feed.py; VTEX hooks
  and feed are at-least-once, duplicates by design, no ordering guarantee: ERP integration
  guide and FAQ) is seeded by the mock's seed, the order id and the status, so a trial replays:
  `hook_duplicate_rate` sends a second copy, `hook_extra_delay_ms` adds an
  extra delay in [0, max] to each copy; with either set an order's
  notifications are not chained (they may arrive out of status order). Each
  journal entry carries `copy` (0 = original, 1 = duplicate) and `extraDelayMs`.
* A pinned delay (`hook_delay_ms`, or the `X-Mock-Hook-Delay-Ms` header on the
  request that changes the status) makes the first attempt go out that long
  after the status change, so a harness knows when the hook will arrive (the
  feed uses the same pinned delay for when the event becomes visible).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mock_orders_api.config import MockConfig
from mock_orders_api.domain.filters import FilterGate
from mock_orders_api.domain.hooks import (
    ACCOUNT,
    ORIGIN_KEY,
    HookConfig,
    domain_of,
    previous_notification,
    startup_hook,
)
from mock_orders_api.domain.model import Order
from mock_orders_api.errors import BadRequest
from mock_orders_api.journal import Journal

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

RETRY_BASE_MS = 100.0  # retry n (1-based) goes RETRY_BASE_MS * 2**(n-1) after the failed attempt
MAX_PENDING = 10_000  # scheduled deliveries not yet finished; beyond that a notification is dropped


def delivery_plan(settings: MockConfig, order: Order) -> tuple[float, ...]:
    """The seeded plan of the notification of `order`'s current status: the extra delay (ms) of
    each copy (one copy, or two when the plan duplicates it). Same seed, order, status and
    history length: same plan, for the hook and the feed alike."""
    if settings.hook_duplicate_rate <= 0 and settings.hook_extra_delay_ms <= 0:
        return (0.0,)
    rng = random.Random(f"{settings.seed}:{order.order_id}:{order.status}:{len(order.status_history)}")
    copies = 2 if rng.random() < settings.hook_duplicate_rate else 1
    return tuple(round(rng.uniform(0.0, settings.hook_extra_delay_ms), 3) if settings.hook_extra_delay_ms > 0
                 else 0.0 for _ in range(copies))


@dataclass
class _Delivery:
    order: Order
    state: str
    last_state: str
    body: bytes
    url: str
    headers: dict[str, str]
    change_ns: int
    due_ns: int
    copy: int = 0  # 0: the notification; 1: the duplicate the delivery plan adds
    extra_delay_ms: float = 0.0


class HookDispatcher:
    """Schedules, sends, retries and journals hook notifications (`MockState.hooks`).

    `on_status` is an order status listener (see domain.model.StatusListener): it runs in the
    mock's synchronous section and only schedules a task.
    """

    def __init__(self, settings: Callable[[], MockConfig], journal_size: int,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._settings = settings
        self._clock = clock
        self.config: HookConfig | None = startup_hook(settings())
        self.journal = Journal(journal_size)
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._tails: dict[str, asyncio.Task[None]] = {}  # last scheduled delivery of each order
        self._delay_override: float | None = None
        self.gate = FilterGate()  # FromOrders single fire: orders already notified

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def view(self) -> dict[str, Any] | None:
        return None if self.config is None else self.config.view()

    @contextmanager
    def delay(self, ms: float | None) -> Iterator[None]:
        """Pin the delivery delay of the status changes made inside (a synchronous section)."""
        saved, self._delay_override = self._delay_override, ms
        try:
            yield
        finally:
            self._delay_override = saved

    def delay_ms(self) -> float:
        """The delay of a notification made now: pinned by `delay()`, else `hook_delay_ms`."""
        return self._settings().hook_delay_ms if self._delay_override is None else self._delay_override

    # --- scheduling (synchronous, on the event loop) ---------------------------------
    def on_status(self, order: Order, previous: str | None, ns: int) -> None:
        hook = self.config
        if hook is None or not self.gate.admits(hook.filter, order):
            return
        settings = self._settings()
        delay_ms = self.delay_ms()
        history = order.status_history
        last_state, last_change = previous_notification(order, previous)
        payload = {"Domain": domain_of(order.status), "OrderId": order.order_id, "State": order.status,
                   "LastState": last_state, "LastChange": last_change, "CurrentChange": history[-1]["date"],
                   "Origin": {"Account": ACCOUNT, "Key": ORIGIN_KEY}}
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"content-type": "application/json", **hook.headers}
        planned = settings.hook_duplicate_rate > 0 or settings.hook_extra_delay_ms > 0
        for copy, extra in enumerate(delivery_plan(settings, order)):
            delivery = _Delivery(order=order, state=order.status, last_state=last_state, body=body, url=hook.url,
                                 headers=headers, change_ns=ns, due_ns=ns + round((delay_ms + extra) * 1e6),
                                 copy=copy, extra_delay_ms=extra)
            self._schedule(delivery, chained=not planned)

    def _schedule(self, delivery: _Delivery, chained: bool) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._record(delivery, 0, None, None, 0, "not scheduled: no running event loop", "dropped")
            return
        if len(self._tasks) >= MAX_PENDING:
            self._record(delivery, 0, None, None, 0, f"not scheduled: {MAX_PENDING} deliveries pending", "dropped")
            return
        oid = delivery.order.order_id
        previous = self._tails.get(oid) if chained else None
        task = loop.create_task(self._deliver(delivery, previous), name=f"hook {oid} {delivery.state}")
        self._tasks.add(task)
        if chained:
            self._tails[oid] = task
        task.add_done_callback(lambda t: self._finished(oid, t))

    def _finished(self, order_id: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._tails.get(order_id) is task:
            del self._tails[order_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("hook delivery failed unexpectedly", exc_info=task.exception())

    # --- delivery -----------------------------------------------------------------------
    async def _deliver(self, d: _Delivery, previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait([previous])  # this order's earlier notifications go first
        settings = self._settings()
        due = d.due_ns
        horizon_ns = d.change_ns + round(settings.hook_retry_horizon_s * 1e9)
        attempt = 0
        while True:
            attempt += 1
            while (wait_ns := due - self._clock()) > 0:  # a loop (uvloop: ms timers) may wake early
                await asyncio.sleep(wait_ns / 1e9)
            status, error, sent, done = await self._send(d.url, d.body, d.headers, self._settings().hook_timeout_s)
            scheduled, due = due, self._clock() + round(RETRY_BASE_MS * 2 ** (attempt - 1) * 1e6)
            again = error is not None and attempt <= settings.hook_retries and due <= horizon_ns
            outcome = "delivered" if error is None else ("retrying" if again else "gave-up")
            self._record(d, attempt, scheduled, sent, status, error, outcome, done)
            if not again:
                return

    async def _send(self, url: str, body: bytes, headers: dict[str, str],
                    timeout_s: float) -> tuple[int, str | None, int, int]:
        """One POST: (HTTP status or 0, error or None, sent ns, done ns)."""
        import httpx

        client = self._get_client()
        sent = self._clock()
        try:
            async with asyncio.timeout(timeout_s):
                r = await client.post(url, content=body, headers=headers, timeout=timeout_s)
        except TimeoutError:
            return 0, f"timeout after {timeout_s:g} s", sent, self._clock()
        except httpx.TimeoutException as err:
            return 0, f"timeout after {timeout_s:g} s ({type(err).__name__})", sent, self._clock()
        except httpx.HTTPError as err:
            return 0, f"{type(err).__name__}: {err}" if str(err) else type(err).__name__, sent, self._clock()
        done = self._clock()
        if r.status_code == 200:  # VTEX: "must always respond with HTTP status 200" (Orders Feed guide)
            return r.status_code, None, sent, done
        return r.status_code, f"HTTP {r.status_code}", sent, done

    def _record(self, d: _Delivery, attempt: int, due: int | None, sent: int | None, status: int,
                error: str | None, outcome: str, done: int | None = None) -> None:
        entry = {"orderId": d.order.order_id, "state": d.state, "lastState": d.last_state, "attempt": attempt,
                 "changeNs": d.change_ns, "scheduledNs": due, "sentNs": sent, "doneNs": done, "status": status,
                 "error": error, "outcome": outcome,
                 "latencyMs": None if sent is None or done is None else round((done - sent) / 1e6, 3),
                 "url": d.url, "copy": d.copy, "extraDelayMs": d.extra_delay_ms}
        self.journal.add(entry)
        d.order.hooks.append(entry)

    def _get_client(self) -> httpx.AsyncClient:
        """One shared client per event loop, created lazily (ASGITransport runs no lifespan)."""
        import httpx

        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            # trust_env=False: a hook receiver on loopback must not go through an HTTP(S)_PROXY.
            self._client = httpx.AsyncClient(trust_env=False, follow_redirects=False,
                                             limits=httpx.Limits(max_connections=100, max_keepalive_connections=100))
            self._client_loop = loop
        return self._client

    # --- configuration --------------------------------------------------------------------
    async def ping(self, hook: HookConfig) -> None:
        """POST `{"hookConfig": "ping"}`; BadRequest unless the URL answers 200 within the timeout."""
        timeout = self._settings().hook_timeout_s
        status, error, _, _ = await self._send(hook.url, b'{"hookConfig":"ping"}',
                                               {"content-type": "application/json", **hook.headers}, timeout)
        if status != 200:
            why = error if status == 0 else f"answered HTTP {status}"
            raise BadRequest(f"hook.url: the ping to {hook.url} failed ({why}); it must answer "
                             f'{{"hookConfig": "ping"}} with 200 within {timeout:g} s. The hook config is unchanged',
                             code="HookPingFailed")

    # --- lifecycle --------------------------------------------------------------------------
    def reset(self) -> None:
        """Cancel pending deliveries and forget the journal; the hook config stays."""
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self._tails.clear()
        self.journal.clear()
        self.gate.clear()

    async def aclose(self) -> None:
        """Cancel pending deliveries and close the client (app shutdown)."""
        tasks = list(self._tasks)
        self.reset()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self._client is not None:
            client, self._client = self._client, None
            if self._client_loop is asyncio.get_running_loop():
                await client.aclose()
