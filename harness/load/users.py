"""Load mode (Locust): the user classes, and the gevent driver of the guards' sides.

Each iteration of a trial user's task is one trial on a fresh order, as in the
asyncio core: create the order (admin API), start handling, read its value
(the `handling` trigger), then drive the guard's two sides
(`harness.core.guards`) in two greenlets: the partial-cancel Change at t0 and
the invoice side at t0 + offset (offset drawn from the scenario's offsets with
the user's seeded RNG; the Change's delay drawn too and pinned per request).
The actual send times are recorded (gevent timers drift under load), and the
finished trial is delivered as a record (`harness.load.records`): to the
master as a Locust message on a worker, to the process's collector otherwise.
`ReaderUser` only reads orders, to add load.

Every user reads the process's `LoadState` from its class attribute `state`,
set once by `bind()` (Locust builds users as `cls(environment)`: a class
attribute is the one way in).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from typing import Any, ClassVar

import gevent
from gevent.lock import Semaphore
from locust import FastHttpUser, between, tag, task
from locust.runners import WorkerRunner

from harness.core import history as h
from harness.core.guards import GuardTimeout, TrialContext, get_guard
from harness.core.steps import (
    CHANGES_ROUTE,
    INVOICES_ROUTE,
    LOCK,
    NOW,
    ORDER_ROUTE,
    START_HANDLING_ROUTE,
    UNLOCK,
    Pause,
    Send,
    Side,
    Wait,
    decode_body,
)
from harness.core.history import RequestEvent
from harness.load import records
from harness.load.state import LoadState

log = logging.getLogger("race-harness")

LEAD_MS = 20.0  # setup is done; the first timed request goes out this long after it
SPIN_NS = 1_000_000  # the last ms before a deadline: cooperative spin (gevent timers have ms resolution)
CLOCK_SAMPLES = 5

# What a guard's requests are in Locust's stats (one row per route, not per order), and which
# statuses are business answers rather than failures.
_GUARD_REQUESTS: dict[str, tuple[str, tuple[int, ...]]] = {
    h.CHANGE: (f"PATCH {CHANGES_ROUTE}", (202, 409)),
    h.INVOICE: (f"POST {INVOICES_ROUTE}", (200, 400, 409)),
    h.GET_CHANGES: (f"GET {CHANGES_ROUTE}", (200,)),
    h.GET_ORDER: (f"GET {ORDER_ROUTE}", (200,)),
}


def now() -> int:
    return time.monotonic_ns()


def sleep_until(deadline_ns: int) -> None:
    while True:
        left = deadline_ns - now()
        if left <= 0:
            return
        gevent.sleep((left - SPIN_NS) / 1e9 if left > SPIN_NS else 0)


def worker_id(environment: Any) -> str:
    runner = environment.runner
    return str(runner.client_id) if isinstance(runner, WorkerRunner) else "local"


class _Requests:
    """Recorded HTTP calls through a FastHttpUser's client (greenlet-safe: a pool of connections)."""

    def __init__(self, user: FastHttpUser, state: LoadState) -> None:
        self.user = user
        self.state = state

    def call(self, events_: list[RequestEvent] | None, kind: str, method: str, path: str, name: str, *,
             ok: tuple[int, ...], json_body: Any = None, headers: dict[str, str] | None = None,
             deadline_ns: int | None = None, admin: bool = False) -> RequestEvent:
        """One request (at `deadline_ns` if given), recorded with its actual send time; a transport
        error, a 5xx or a status outside `ok` is a Locust failure (business refusals are in `ok`)."""
        if deadline_ns is not None:
            sleep_until(deadline_ns)
        hdrs = dict(self.state.headers.admin if admin else self.state.headers.vtex)
        if headers:
            hdrs.update(headers)
        event = RequestEvent(kind, method, path, deadline_ns, now(), request_body=json_body)
        with self.user.client.request(method, path, name=name, json=json_body, headers=hdrs,
                                      catch_response=True) as resp:
            status = int(resp.status_code or 0)
            if status:
                event.response_ns = now()
                event.status = status
                event.response_body = _body(resp)
            else:
                err = getattr(resp, "error", None)
                event.error = f"{type(err).__name__}: {err}" if err is not None else "no response"
            if status == 0 or status >= 500 or status not in ok:
                resp.failure(event.error or f"HTTP {status}: {str(event.response_body)[:200]}")
            else:
                resp.success()
        if events_ is not None:
            events_.append(event)
        return event


def _body(resp: Any) -> Any:
    try:
        raw = resp.content
    except Exception:  # noqa: BLE001 - a body that cannot be read is recorded as none
        return None
    return decode_body(raw or b"")


def drive(side: Side, http: _Requests, hist: h.TrialHistory, lock: Semaphore) -> None:
    """Run one guard side (harness.core.steps) in this greenlet; its GuardTimeout propagates."""
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
                name, ok = _GUARD_REQUESTS[step.kind]
                reply = http.call(hist.events, step.kind, step.method, step.path, name, ok=ok, json_body=step.body,
                                  headers=dict(step.headers) if step.headers else None, deadline_ns=step.at_ns)
            elif isinstance(step, Wait):
                sleep_until(step.until_ns)
            elif isinstance(step, Pause):
                gevent.sleep(step.seconds)
            elif step == NOW:
                reply = now()
            elif step == LOCK:
                lock.acquire()
                held = True
            elif step == UNLOCK:
                lock.release()
                held = False
            else:
                raise TypeError(f"unknown guard step {step!r}")
    finally:
        if held:
            lock.release()


def _side(side: Side, http: _Requests, ctx: TrialContext, lock: Semaphore) -> None:
    try:
        drive(side, http, ctx.hist, lock)
    except GuardTimeout as err:
        ctx.guard_error = str(err)


def _measure_clock(user: FastHttpUser, state: LoadState) -> None:
    """Once per process: the mock's monotonic clock against ours (0 on one host)."""
    with state.clock_lock:
        if state.server_offset_ns is not None:
            return
        samples = []
        for _ in range(CLOCK_SAMPLES):
            sent = now()
            with user.client.get("/_mock/health", name="GET /_mock/health", headers=state.headers.admin,
                                 catch_response=True) as resp:
                received = now()
                body = _body(resp) if resp.status_code == 200 else None
                if isinstance(body, dict) and isinstance(body.get("monotonicNs"), int):
                    samples.append((sent, body["monotonicNs"], received))
                    resp.success()
                else:
                    resp.failure(f"HTTP {resp.status_code}")
        state.server_offset_ns = records.clock_offset_ns(samples)
        if state.server_offset_ns:
            log.info("mock clock offset %.3f ms (another host): server times are mapped to ours",
                     state.server_offset_ns / 1e6)


class TrialUser(FastHttpUser):
    """Runs trials back to back; subclasses name the guard."""

    abstract = True
    state: ClassVar[LoadState]  # set by bind()
    guard = "none"
    wait_time = between(0.0, 0.1)
    concurrency = 4  # connections per user: the Change and the invoice side overlap
    network_timeout = 10.0
    connection_timeout = 5.0

    def on_start(self) -> None:
        state = self.state
        self.http = _Requests(self, state)
        s = state.scenario
        seed = s.seed if s is not None else 0
        self.rng = random.Random(records.user_seed(seed, worker_id(self.environment), self.guard,
                                                   next(state.user_serial)))
        _measure_clock(self, state)
        # Two connections open before the first timed pair, so neither pays a connect.
        warm = [gevent.spawn(self.client.get, "/_mock/health", name="GET /_mock/health",
                             headers=state.headers.admin) for _ in range(2)]
        gevent.joinall(warm)

    def run_trial(self) -> None:
        state = self.state
        if state.draining or state.scenario is None:
            gevent.sleep(0.1)
            return
        state.begin()
        try:
            record = self._trial()
            self._deliver(record)
        finally:
            state.end()

    def _trial(self) -> dict[str, Any]:
        state = self.state
        s = state.scenario
        assert s is not None
        guard = self.guard
        offset = float(self.rng.choice(s.sweep.offsets_ms))
        delay = s.mock.change_delay.sample(self.rng) if s.mock.pin_delays else None
        local_seq = next(state.seq)
        began = now()
        setup: list[RequestEvent] = []
        base = {"worker": worker_id(self.environment), "local_seq": local_seq, "guard": guard, "offset_ms": offset,
                "planned_delay_ms": delay, "server_offset_ns": state.server_offset_ns or 0}

        created = self.http.call(setup, h.CREATE_ORDER, "POST", "/_mock/orders", "POST /_mock/orders", ok=(201,),
                                 json_body=state.order_spec, admin=True)
        if not created.ok or not isinstance(created.response_body, dict):
            return records.make_record(**base, events=setup, t0_ns=began, began_ns=began, ended_ns=now(),
                                       setup_error=f"create order: {created.error or created.status}")
        order_id = str(created.response_body["orderId"])
        initial = int(created.response_body["value"])
        state.created += 1
        state.recent_orders.append(order_id)
        handled = self.http.call(setup, h.START_HANDLING, "POST", START_HANDLING_ROUTE.format(orderId=order_id),
                                 f"POST {START_HANDLING_ROUTE}", ok=(204,))
        trigger = self.http.call(setup, h.GET_ORDER, "GET", ORDER_ROUTE.format(orderId=order_id),
                                 f"GET {ORDER_ROUTE}", ok=(200,)) if handled.ok else handled
        if not trigger.ok or not isinstance(trigger.response_body, dict):
            return records.make_record(**base, order_id=order_id, events=setup, t0_ns=began, began_ns=began,
                                       ended_ns=now(), setup_error=f"{trigger.kind}: {trigger.error or trigger.status}")

        first = now() + round(LEAD_MS * 1e6)
        t0 = first + round(max(0.0, -offset) * 1e6)  # the Change's deadline
        ctx = TrialContext(
            hist=h.TrialHistory(events=setup), order_id=order_id, naive_value=int(trigger.response_body["value"]),
            change_body=state.change_body, change_deadline_ns=t0, invoice_deadline_ns=t0 + round(offset * 1e6),
            pinned_delay_ms=delay, poll_interval_ms=s.guards.poll_interval_ms, timeout_ms=s.guards.timeout_ms,
            invoice_number=f"NF-LOAD-{order_id}",
        )
        sides = get_guard(guard)
        lock = Semaphore()  # the integration's per-order lock (serialized)
        gevent.joinall([gevent.spawn(_side, sides.change(ctx), self.http, ctx, lock),
                        gevent.spawn(_side, sides.invoice(ctx), self.http, ctx, lock)], raise_error=True)
        return records.make_record(
            **base, order_id=order_id, initial_value=initial, invoice_value=ctx.invoice_value,
            invoice_number=ctx.invoice_number, events=ctx.hist.events, change=ctx.change_event,
            invoice=ctx.invoice_event, guard_error=ctx.guard_error, t0_ns=t0, began_ns=began, ended_ns=now(),
        )

    def _deliver(self, record: dict[str, Any]) -> None:
        outcome, _ = records.record_outcome(record)
        duration_ms = (record["ended_ns"] - record["began_ns"]) / 1e6
        # Live: one stats row per guard and outcome ("none race", "finished-check clean", ...).
        self.environment.events.request.fire(request_type=records.TRIAL_REQUEST_TYPE,
                                             name=f"{self.guard} {outcome}", response_time=duration_ms,
                                             response_length=0, exception=None, context={})
        runner = self.environment.runner
        if isinstance(runner, WorkerRunner):
            runner.send_message("trial", record)
        else:
            self.state.collector.add(record)
        self.state.recorded += 1


class NoGuardUser(TrialUser):
    """Guard `none`: invoices the value read at the handling trigger, at the planned time."""

    guard = "none"

    @tag("trial", "none")
    @task
    def trial(self) -> None:
        self.run_trial()


class FinishedCheckUser(TrialUser):
    """Guard `finished-check`: waits until every Change is finished, re-reads, invoices the current value."""

    guard = "finished-check"

    @tag("trial", "finished-check")
    @task
    def trial(self) -> None:
        self.run_trial()


class SerializedUser(TrialUser):
    """Guard `serialized`: the Change and the invoice are serialised per order (weight 0 unless asked)."""

    guard = "serialized"

    @tag("trial", "serialized")
    @task
    def trial(self) -> None:
        self.run_trial()


class ReaderUser(FastHttpUser):
    """Background load: reads recent trial orders of its process and their Change history."""

    state: ClassVar[LoadState]  # set by bind()
    wait_time = between(0.05, 0.2)
    network_timeout = 10.0
    connection_timeout = 5.0

    def on_start(self) -> None:
        self.own: str | None = None
        self.started = time.monotonic()

    def _pick(self) -> str | None:
        state = self.state
        if state.recent_orders:
            return random.choice(state.recent_orders)
        if self.own is None and time.monotonic() - self.started > 2.0:
            # No trial user in this process: read an order of our own (id prefix "reader-").
            oid = f"reader-{uuid.uuid4().hex[:12]}"
            with self.client.post("/_mock/orders", name="POST /_mock/orders (reader)",
                                  json={**state.order_spec, "orderId": oid, "status": "handling"},
                                  headers=state.headers.admin, catch_response=True) as resp:
                if resp.status_code == 201:
                    self.own = oid
        return self.own

    @tag("reader")
    @task(3)
    def read_order(self) -> None:
        oid = None if self.state.draining else self._pick()
        if oid is None:
            gevent.sleep(0.2)
            return
        self.client.get(ORDER_ROUTE.format(orderId=oid), name=f"GET {ORDER_ROUTE}", headers=self.state.headers.vtex)

    @tag("reader")
    @task(1)
    def read_changes(self) -> None:
        oid = None if self.state.draining else self._pick()
        if oid is None:
            gevent.sleep(0.2)
            return
        self.client.get(CHANGES_ROUTE.format(orderId=oid), name=f"GET {CHANGES_ROUTE}",
                        headers=self.state.headers.vtex)


# The classes the command line weights (--weight-*), by class name.
USER_CLASSES: tuple[type[FastHttpUser], ...] = (NoGuardUser, FinishedCheckUser, SerializedUser, ReaderUser)


def bind(state: LoadState) -> None:
    """Hand the process's state to every user class (before Locust spawns any user)."""
    TrialUser.state = state
    ReaderUser.state = state
