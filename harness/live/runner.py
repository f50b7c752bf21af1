"""Runs a plan's trials concurrently against a target and appends each result to the run folder.

One trial = one fresh order: create it, start handling, read its value (the
`handling` trigger), then fire the Change at t0 and the invoice side at
t0 + offset through the trial's guard, wait until the mock has finished the
Change, fetch the mock's audit and judge the trial (oracle).

The clock and the HTTP transport are parameters: real monotonic time and
sockets by default, an in-process ASGI transport or a virtual clock otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

import httpx

from harness.core import history as h
from harness.core.guards import GuardTimeout, TrialContext, get_guard
from harness.core.plan import Plan, PlannedTrial
from harness.core.results import TrialResult, setup_failed_result, trial_result
from harness.core.scenario import Scenario
from harness.core.steps import LOCK, NOW, UNLOCK, Pause, Send, Side, Wait
from harness.core.timing import ConcurrencyController
from harness.core.wire import change_body, invoice_body, mock_settings, order_spec
from harness.errors import TargetError
from harness.live.client import Credentials, OrdersClient
from harness.live.clock import Clock, MonotonicClock
from harness.live.loopback import LoopbackClient
from harness.live.sender import Firer, LastByteSender
from harness.runfolder import RunWriter

_AUDIT_POLL_S = 0.05
_TRIALS_PER_SHARD = 2
_WARM_LEAD_S = 0.05  # the warm-up order's timed requests: prepared ahead like a trial's, fired this much later
_WARM_CONNECTIONS = 512  # one lean client (no httpcore pool scan): open up to ~2 per trial in flight at once


@dataclass
class RunStats:
    planned: int
    done: int = 0
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)  # guard -> outcome -> count
    interrupted: bool = False
    wall_s: float = 0.0
    late: int = 0  # trials whose timing error exceeded the tolerance
    concurrency: int = 0  # trials allowed in flight when the run ended (the controller's limit)
    lowest_concurrency: int = 0  # the lowest limit the controller set

    def timing(self, tolerance_ms: float, maximum: int) -> dict[str, Any]:
        """run.json's `timing` block: the tolerance, late trials, and the concurrency the run settled at."""
        return {"tolerance_ms": tolerance_ms, "late": self.late,
                "concurrency": {"max": maximum, "settled": self.concurrency, "lowest": self.lowest_concurrency}}

    def add(self, result: TrialResult) -> None:
        self.done += 1
        per = self.outcomes.setdefault(result.guard, {})
        per[result.outcome] = per.get(result.outcome, 0) + 1
        self.late += result.late


ProgressFn = Callable[[TrialResult, RunStats], None]


class Runner:
    def __init__(
        self,
        scenario: Scenario,
        plan: Plan,
        base_url: str,
        writer: RunWriter,
        *,
        credentials: Credentials = Credentials(),
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        progress: ProgressFn | None = None,
        configure_mock: bool = True,
        last_byte_sync: bool = True,
        next_round: Callable[[], Plan | None] | None = None,
    ) -> None:
        self.scenario = scenario
        self.plan = plan
        self.base_url = base_url
        self.writer = writer
        self.credentials = credentials
        self.clock = clock or MonotonicClock()
        self.transport = transport
        self.progress = progress
        self.configure_mock = configure_mock
        # Adaptive rounds (harness.rounds): called after each round's trials are written; the next
        # round runs on the same connections and target, until it returns None.
        self.next_round = next_round
        # Last-byte sync needs real sockets; an in-process transport sends timed requests through httpx.
        self.last_byte_sync = last_byte_sync and transport is None and base_url.startswith("http://")
        self.stats = RunStats(planned=len(plan.trials))
        self._change_body = change_body(scenario)
        self._order_spec = order_spec(scenario)
        self._tolerance_ms = scenario.timing_tolerance_ms  # a property computed from the sweep: once, not per trial

    async def run(self, stop: asyncio.Event | None = None) -> RunStats:
        """Run every planned trial, then each `next_round` (or until `stop` is set); returns the counts."""
        stop = stop or asyncio.Event()
        run = self.scenario.run
        started = time.monotonic()
        async with contextlib.AsyncExitStack() as stack:
            shards = await self._open_http(stack)
            timed = None
            if self.last_byte_sync:
                firer = Firer()
                stack.callback(firer.close)
                timed = LastByteSender(self.base_url, firer, run.request_timeout_s)
            client = OrdersClient(shards, self.clock, self.credentials, run.max_retries, run.rate_limit_rps,
                                  timed=timed)
            if self.configure_mock and self.scenario.target.integration is None:
                await self._warm_paths(client)  # before /config, which reseeds the mock's draws
            if self.configure_mock:
                await client.admin("PATCH", "/config", mock_settings(self.scenario))
            await self._warm(client)
            # A gen-2 collection over thousands of live trial objects stalls the loop for tens of
            # ms; freeze what exists now and collect young generations less often.
            gc.collect()
            gc.freeze()
            old_threshold = gc.get_threshold()
            gc.set_threshold(50_000, 50, 100)
            stack.callback(_restore_gc, old_threshold)
            try:
                await self._execute(client, stop)
                while self.next_round is not None and not stop.is_set():
                    plan = self.next_round()
                    if plan is None:
                        break
                    self.plan = plan
                    self.stats.planned += len(plan.trials)
                    await self._execute(client, stop)
            finally:
                self.stats.wall_s = time.monotonic() - started
                self.stats.interrupted = stop.is_set() or self.stats.done < self.stats.planned
        return self.stats

    async def _open_http(self, stack: contextlib.AsyncExitStack) -> list[Any]:
        """The HTTP client shards (closed by `stack`); a simulated run supplies its own."""
        run = self.scenario.run
        if self.transport is None and _is_loopback(self.base_url):
            # The embedded mock (or a local service): untimed requests on the lean keep-alive client,
            # ~2x less harness CPU per trial than httpx (harness.live.loopback says why).
            return [await stack.enter_async_context(LoopbackClient(self.base_url, run.request_timeout_s))]
        # A trial has at most ~3 requests in flight; small pools keep httpcore's per-request scan cheap.
        n_shards = 1 if self.transport is not None else max(1, math.ceil(run.concurrency / _TRIALS_PER_SHARD))
        per_shard = math.ceil(run.concurrency / n_shards) * 3 + 4
        limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
        timeout = httpx.Timeout(run.request_timeout_s)
        ssl_context = httpx.create_ssl_context()  # one for all shards: each costs ~20 ms to load
        return [await stack.enter_async_context(httpx.AsyncClient(
            base_url=self.base_url, transport=self.transport, timeout=timeout, limits=limits,
            verify=ssl_context)) for _ in range(n_shards)]

    def _order_spec_for(self, p: PlannedTrial) -> dict[str, Any]:
        """The body that creates trial `p`'s fresh order (a simulated run names the order after the trial)."""
        return self._order_spec

    async def _execute(self, client: OrdersClient, stop: asyncio.Event) -> None:
        """Run the plan's trials (integration mode runs them in blocks per service)."""
        await self._schedule(client, stop, self.plan.trials)

    async def _warm_paths(self, client: OrdersClient) -> None:
        """One untracked order through every request a trial makes, timed ones by last-byte sync,
        before the first timed trial: the first run after an install was late by ~1 ms for its first
        seconds (first calls of the mock's routes, of the client, of the firer). Outcomes are not
        checked here: a target that fails these fails the trials, which say why."""
        hist = h.TrialHistory(shard=0)
        created = await client.create_order(hist, self._order_spec)
        if not created.ok or not isinstance(created.response_body, dict):
            return
        order_id = created.response_body["orderId"]
        await client.start_handling(hist, order_id)
        order = await client.get_order(hist, order_id)
        value = order.response_body.get("value", 0) if isinstance(order.response_body, dict) else 0
        at = self.clock.now_ns() + round(_WARM_LEAD_S * 1e9)
        await asyncio.gather(client.change(hist, order_id, self._change_body, at, pinned_delay_ms=1.0),
                             client.invoice(hist, order_id, invoice_body("NF-warm", int(value)), at))
        await client.list_changes(hist, order_id)
        await client.audit(None, order_id)

    async def _warm(self, client: OrdersClient) -> None:
        """Open the keep-alive pool before timing starts, so no timed request pays a connect."""
        per_shard = min(math.ceil(self.scenario.run.concurrency / len(client.shards)) * 2,
                        _WARM_CONNECTIONS if len(client.shards) == 1 else 64)
        results = await asyncio.gather(*(client.call(None, "warm", "GET", "/_mock/health", admin=True, shard=s)
                                         for s in range(len(client.shards)) for _ in range(per_shard)))
        n = len(results)
        bad = [e for e in results if not e.ok]
        if len(bad) == n:
            raise TargetError(f"target {self.base_url} did not answer /_mock/health: "
                              f"{bad[0].error or bad[0].status}")

    async def _schedule(self, client: OrdersClient, stop: asyncio.Event,
                        trials: tuple[PlannedTrial, ...] | list[PlannedTrial]) -> None:
        run = self.scenario.run
        slots = asyncio.Semaphore(run.concurrency)
        # The controller lowers the trials in flight by parking permits of `slots` (held by this
        # loop, never given to a trial) and raises it by releasing them: with nothing late no
        # permit is ever parked, and the schedule is exactly the plain semaphore's.
        pacing = ConcurrencyController(run.concurrency)
        parked = 0
        self.stats.concurrency = self.stats.lowest_concurrency = run.concurrency
        gap_ns = round(run.start_spread_ms * 1e6 / run.concurrency)
        lead_ns = round(run.lead_ms * 1e6)
        next_start = self.clock.now_ns()
        tasks: set[asyncio.Task[None]] = set()

        async def _one(p: PlannedTrial, start_ns: int) -> None:
            try:
                result, events, audit = await self._trial(client, p, start_ns)
                self.writer.add(result, events, audit)
                self.stats.add(result)
                self.stats.concurrency = pacing.observe(result.late)
                self.stats.lowest_concurrency = pacing.lowest
                if self.progress is not None:
                    self.progress(result, self.stats)
            finally:
                slots.release()

        try:
            for p in trials:
                while parked > run.concurrency - pacing.limit:
                    slots.release()
                    parked -= 1
                while parked < run.concurrency - pacing.limit:
                    await slots.acquire()
                    parked += 1
                await slots.acquire()
                if stop.is_set():
                    slots.release()
                    break
                # Evenly spaced starts: setups never bunch up on the timed requests of others.
                next_start = max(next_start + gap_ns, self.clock.now_ns())
                task = asyncio.create_task(_one(p, next_start + lead_ns))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _trial(self, client: OrdersClient, p: PlannedTrial,
                     start_ns: int) -> tuple[TrialResult, list[dict[str, Any]], dict[str, Any] | None]:
        """One trial whose first timed request goes out at `start_ns`."""
        began = self.clock.now_ns()
        t0 = start_ns + round(max(0.0, -p.offset_ms) * 1e6)  # the Change's deadline
        hist = h.TrialHistory(shard=p.seq)
        g = self.scenario.guards
        created = await client.create_order(hist, self._order_spec_for(p))
        if not created.ok:
            return self._failed(p, hist, t0, began, "", f"create order: {created.error or created.status}")
        order_id = created.response_body["orderId"]
        initial = int(created.response_body["value"])
        handled = await client.start_handling(hist, order_id)
        trigger = await client.get_order(hist, order_id) if handled.ok else handled
        if not trigger.ok:
            return self._failed(p, hist, t0, began, order_id, f"{trigger.kind}: {trigger.error or trigger.status}")
        # Setup left less than half the lead before the first timed request (a loaded client): move
        # both timed requests later by the same amount, so their planned offset stays exact, rather
        # than send them late, which skews it (measured at 500 in flight: p99 260-340 ms -> 16 ms).
        late_ns = self.clock.now_ns() + round(self.scenario.run.lead_ms * 1e6 / 2) - start_ns
        if late_ns > 0:
            t0 += late_ns
        ctx = TrialContext(
            hist=hist, order_id=order_id, naive_value=int(trigger.response_body["value"]),
            change_body=self._change_body, change_deadline_ns=t0,
            invoice_deadline_ns=t0 + round(p.offset_ms * 1e6), pinned_delay_ms=p.change_delay_ms,
            poll_interval_ms=g.poll_interval_ms, timeout_ms=g.timeout_ms,
            invoice_number=f"NF-{self.plan.seed}-{p.trial_id}",
        )
        guard = get_guard(p.guard)
        lock = asyncio.Lock()  # the integration's per-order lock
        results = await asyncio.gather(drive(guard.change(ctx), client, hist, lock),
                                       drive(guard.invoice(ctx), client, hist, lock), return_exceptions=True)
        for r in results:
            if isinstance(r, GuardTimeout):
                ctx.guard_error = str(r)
            elif isinstance(r, BaseException):
                raise r
        audit = await self._final_audit(client, hist, ctx)
        return self._judge(p, ctx, t0, began, initial, audit), _events(hist, p, t0), audit

    async def _final_audit(self, client: OrdersClient, hist: h.TrialHistory,
                           ctx: TrialContext) -> dict[str, Any] | None:
        """The mock's audit once the Change has finished (bounded wait); None if the target has none."""
        change = ctx.change_event
        if change is not None and change.ok and isinstance(change.response_body, dict):
            delay = change.response_body.get("delayMs")
            if isinstance(delay, (int, float)):
                await self.clock.sleep_until(change.sent_ns + round(delay * 1e6))
        stop = self.clock.now_ns() + round((ctx.timeout_ms + 1000) * 1e6)
        while True:
            event = await client.audit(None, ctx.order_id)
            if not event.ok:
                return None
            audit: dict[str, Any] = event.response_body
            if audit.get("verdict") != "pending" or self.clock.now_ns() >= stop:
                return audit
            await asyncio.sleep(_AUDIT_POLL_S)

    def _judge(self, p: PlannedTrial, ctx: TrialContext, t0: int, began: int, initial: int,
               audit: dict[str, Any] | None) -> TrialResult:
        return trial_result(
            trial_id=p.trial_id, seq=p.seq, guard=p.guard, offset_ms=p.offset_ms, order_id=ctx.order_id,
            initial_value=initial, change=ctx.change_event, invoice=ctx.invoice_event,
            invoice_value=ctx.invoice_value, invoice_number=ctx.invoice_number, guard_error=ctx.guard_error,
            planned_delay_ms=p.change_delay_ms, t0_ns=t0, audit=audit,
            duration_ms=(self.clock.now_ns() - began) / 1e6, tolerance_ms=self._tolerance_ms,
            events=ctx.hist.events,
        )

    def _failed(self, p: PlannedTrial, hist: h.TrialHistory, t0: int, began: int, order_id: str,
                error: str) -> tuple[TrialResult, list[dict[str, Any]], None]:
        """A trial whose setup failed: indeterminate, with the reason."""
        result = setup_failed_result(trial_id=p.trial_id, seq=p.seq, guard=p.guard, offset_ms=p.offset_ms,
                                     order_id=order_id, duration_ms=(self.clock.now_ns() - began) / 1e6,
                                     error=error)
        return result, _events(hist, p, t0), None


async def drive(side: Side, client: OrdersClient, hist: h.TrialHistory, lock: asyncio.Lock) -> None:
    """Run one guard side (harness.core.steps) on asyncio; its GuardTimeout propagates.

    Timed Sends take the client's timed path (last-byte sync when it has one)."""
    reply: Any = None
    held = False
    try:
        while True:
            try:
                step = side.send(reply)
            except StopIteration:
                return
            reply = None
            if isinstance(step, Send):
                reply = await client.call(hist, step.kind, step.method, step.path, json=step.body,
                                          headers=dict(step.headers) if step.headers else None,
                                          deadline_ns=step.at_ns)
            elif isinstance(step, Wait):
                await client.clock.sleep_until(step.until_ns)
            elif isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
            elif step == NOW:
                reply = client.clock.now_ns()
            elif step == LOCK:
                await lock.acquire()
                held = True
            elif step == UNLOCK:
                lock.release()
                held = False
            else:
                raise TypeError(f"unknown guard step {step!r}")
    finally:
        if held:
            lock.release()


def _restore_gc(threshold: tuple[int, int, int]) -> None:
    """After a run: unfreeze, and give back the collection thresholds. What the run left alive (an
    in-process target's orders and journal, the last trials' data) joins the oldest generation
    unscanned, as the frozen heap does; restoring the thresholds with those survivors still young
    would collect them at once (a 10-25 ms scan per simulation worker that freed nothing)."""
    gc.freeze()  # every generation, the survivors included, into the permanent one (no scan) ...
    gc.unfreeze()  # ... and all of it into the oldest generation
    gc.set_threshold(*threshold)


def _is_loopback(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


def _events(hist: h.TrialHistory, p: PlannedTrial, t0: int) -> list[dict[str, Any]]:
    return [e.to_json(p.trial_id, p.guard, t0) for e in hist.events]
