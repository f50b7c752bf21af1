"""Load mode: the invoice/Change race of ticket 1348894 under Locust load.

    locust -f scenarios/locustfile.py --host http://127.0.0.1:8080 [--scenario scenarios/guard-regression.toml]

Each iteration of a trial user's task is one trial on a fresh order, as in the
asyncio core: create the order (admin API), start handling, read its value
(the `handling` trigger), then fire the partial-cancel Change at t0 and the
invoice side at t0 + offset (offset drawn from the scenario's offsets with the
user's seeded RNG; the Change's delay drawn too and pinned per request) through
the user's guard. The actual send times are recorded (gevent timers drift
under load). `ReaderUser` only reads orders, to add load.

Live: every finished trial is a Locust request entry of type TRIAL named
"<guard> <outcome>" (e.g. "none race"), response time = the trial's duration.
At test stop the master (or the single process) reads the mock's audit of
every trial's order and writes a run folder in the core's format (summary.json,
trials.csv, plots, report.html) under --report-dir, then gates: the scenario's
race thresholds and --max-error-rate on the mock's requests. A failed
threshold sets the exit code to 1, with one line per threshold.

Distributed (--processes N, or --master / --worker): workers send each
trial's record to the master (Locust messages); only the master writes, each
order once. At stop the master asks the workers to drain (finish the trials in
flight, start none) before it writes.

Weights: --weight-none, --weight-finished-check, --weight-serialized,
--weight-reader (0 leaves a class out); or name the user classes on the
command line as usual. The pure trial logic is shared with the core
(harness.core.wire, harness.core.results); no asyncio code runs here.
"""

from __future__ import annotations

import gc
import itertools
import json
import logging
import random
import sys
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Callable

import gevent
from gevent.event import Event
from gevent.lock import Semaphore
from locust import FastHttpUser, between, events, tag, task
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from harness import loadrun  # noqa: E402
from harness.core import history as h  # noqa: E402
from harness.core import wire  # noqa: E402
from harness.core.history import RequestEvent  # noqa: E402
from harness.core.scenario import Scenario, load_scenario  # noqa: E402

log = logging.getLogger("race-harness")

DEFAULT_SCENARIO = "scenarios/guard-regression.toml"
DELAY_HEADER = "X-Mock-Change-Delay-Ms"
LEAD_MS = 20.0  # setup is done; the first timed request goes out this long after it
SPIN_NS = 1_000_000  # the last ms before a deadline: cooperative spin (gevent timers have ms resolution)
CLOCK_SAMPLES = 5

# Route templates as Locust stats names (one row per route, not per order).
ORDER = "/api/oms/pvt/orders/{orderId}"
START_HANDLING = "/api/oms/pvt/orders/{orderId}/start-handling"
CHANGES = "/api/order-system/orders/{orderId}/changes"
INVOICES = "/api/orders/pvt/document/{orderId}/invoices"


def now() -> int:
    return time.monotonic_ns()


class GuardTimeout(Exception):
    """The guard's bounded wait ran out (trial outcome `guard_timeout`)."""


# --------------------------------------------------------------------------- process state


class LoadState:
    """What one Locust process knows about the current test."""

    def __init__(self) -> None:
        self.scenario: Scenario | None = None
        self.scenario_dict: dict[str, Any] = {}
        self.headers = loadrun.Headers()
        self.order_spec: dict[str, Any] = {}
        self.change_body: dict[str, Any] = {}
        self.collector = loadrun.Collector()
        self.draining = False
        self.in_flight = 0
        self.idle = Event()
        self.idle.set()
        self.created = 0  # orders this process created for trials
        self.recorded = 0  # trial records this process delivered
        self.seq = itertools.count()
        self.user_serial = itertools.count()
        self.recent_orders: deque[str] = deque(maxlen=256)
        self.server_offset_ns: int | None = None
        self.clock_lock = Semaphore()
        self.started_mono = time.monotonic()
        self.started_wall = time.time()
        self.users = 0
        self.finished = False
        self.config_error = ""

    def load(self, path: str) -> None:
        scenario = load_scenario(resolve_scenario(path))
        self.scenario = scenario
        self.scenario_dict = scenario.to_dict()
        t = scenario.target
        self.headers = loadrun.Headers.from_env(t.app_key_env, t.app_token_env, t.admin_token_env)
        self.order_spec = wire.order_spec(scenario)
        self.change_body = wire.change_body(scenario)

    def reset(self) -> None:
        self.collector.close()
        self.collector = loadrun.Collector()
        self.draining = False
        self.finished = False
        self.config_error = ""
        self.created = self.recorded = self.users = 0
        self.started_mono, self.started_wall = time.monotonic(), time.time()

    def begin(self) -> None:
        self.in_flight += 1
        self.idle.clear()

    def end(self) -> None:
        self.in_flight -= 1
        if self.in_flight <= 0:
            self.in_flight = 0
            self.idle.set()

    def drain_timeout_s(self) -> float:
        """Bound on a trial in flight: offsets, two guard waits, a few request timeouts."""
        s = self.scenario
        if s is None:
            return 5.0
        return (max(abs(o) for o in s.sweep.offsets_ms) + 2 * s.guards.timeout_ms) / 1000 \
            + 4 * s.run.request_timeout_s + 2

    def drain(self) -> None:
        """Start no new trial; wait (bounded) for those in flight to be delivered."""
        self.draining = True
        if not self.idle.wait(timeout=self.drain_timeout_s()):
            log.warning("drain: %d trial(s) still in flight after %.0f s", self.in_flight, self.drain_timeout_s())


STATE = LoadState()


def resolve_scenario(path: str) -> Path:
    """The scenario as given, else relative to the project root, else by name next to this file
    (workers on other hosts may have the checkout elsewhere)."""
    p = Path(path)
    for candidate in (p, ROOT / p, HERE / p.name):
        if candidate.is_file():
            return candidate
    return p  # load_scenario names the missing file


def worker_id(environment: Any) -> str:
    runner = environment.runner
    return str(runner.client_id) if isinstance(runner, WorkerRunner) else "local"


# --------------------------------------------------------------------------- command line


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    parser.add_argument("--scenario", default=DEFAULT_SCENARIO,
                        help=f"scenario TOML (order, change, offsets, guard settings, thresholds, mock settings); "
                             f"default {DEFAULT_SCENARIO}")
    parser.add_argument("--report-dir", default="reports", help="parent folder of the run folder (default reports)")
    parser.add_argument("--max-error-rate", type=float, default=0.01,
                        help="gate: the mock's failed-request ratio must not exceed this (default 0.01)")
    parser.add_argument("--weight-none", type=int, default=1, help="weight of NoGuardUser (guard none)")
    parser.add_argument("--weight-finished-check", type=int, default=1,
                        help="weight of FinishedCheckUser (guard finished-check)")
    parser.add_argument("--weight-serialized", type=int, default=0,
                        help="weight of SerializedUser (guard serialized); default 0")
    parser.add_argument("--weight-reader", type=int, default=1, help="weight of ReaderUser (reads orders only)")


WEIGHT_OPTIONS = {"NoGuardUser": "weight_none", "FinishedCheckUser": "weight_finished_check",
                  "SerializedUser": "weight_serialized", "ReaderUser": "weight_reader"}


# --------------------------------------------------------------------------- users


class _Requests:
    """Recorded HTTP calls through a FastHttpUser's client (greenlet-safe: a pool of connections)."""

    def __init__(self, user: FastHttpUser) -> None:
        self.user = user

    def call(self, events_: list[RequestEvent] | None, kind: str, method: str, path: str, name: str, *,
             ok: tuple[int, ...], json_body: Any = None, headers: dict[str, str] | None = None,
             deadline_ns: int | None = None, admin: bool = False) -> RequestEvent:
        """One request (at `deadline_ns` if given), recorded with its actual send time; a transport
        error, a 5xx or a status outside `ok` is a Locust failure (business refusals are in `ok`)."""
        if deadline_ns is not None:
            sleep_until(deadline_ns)
        hdrs = dict(STATE.headers.admin if admin else STATE.headers.vtex)
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
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw[:2000].decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)[:2000]


def sleep_until(deadline_ns: int) -> None:
    while True:
        left = deadline_ns - now()
        if left <= 0:
            return
        gevent.sleep((left - SPIN_NS) / 1e9 if left > SPIN_NS else 0)


class _Trial:
    """One trial's shared state: the two sides run in two greenlets."""

    def __init__(self, user: TrialUser, order_id: str, naive_value: int, t0: int, invoice_deadline: int,
                 delay_ms: float | None) -> None:
        s = STATE.scenario
        assert s is not None
        self.http = user.http
        self.events: list[RequestEvent] = []
        self.order_id = order_id
        self.naive_value = naive_value
        self.t0 = t0
        self.invoice_deadline = invoice_deadline
        self.delay_ms = delay_ms
        self.poll_s = s.guards.poll_interval_ms / 1000
        self.timeout_ms = s.guards.timeout_ms
        self.invoice_number = f"NF-LOAD-{order_id}"
        self.invoice_value = -1
        self.change_event: RequestEvent | None = None
        self.invoice_event: RequestEvent | None = None
        self.guard_error = ""
        self.lock = Semaphore()  # the integration's per-order lock (serialized)

    # --- the integration's operations (as harness.guards.TrialContext, in gevent) ---
    def send_change(self) -> RequestEvent:
        headers = {DELAY_HEADER: f"{self.delay_ms:.3f}"} if self.delay_ms is not None else None
        self.change_event = self.http.call(self.events, h.CHANGE, "PATCH", CHANGES.format(orderId=self.order_id),
                                           f"PATCH {CHANGES}", ok=(202, 409), json_body=STATE.change_body,
                                           headers=headers, deadline_ns=self.t0)
        return self.change_event

    def send_invoice(self, value: int, deadline_ns: int | None) -> RequestEvent:
        self.invoice_value = value
        body = wire.invoice_body(self.invoice_number, value)
        self.invoice_event = self.http.call(self.events, h.INVOICE, "POST", INVOICES.format(orderId=self.order_id),
                                            f"POST {INVOICES}", ok=(200, 400, 409), json_body=body,
                                            deadline_ns=deadline_ns)
        return self.invoice_event

    def _stop_ns(self, start_ns: int | None = None) -> int:
        t = now()
        return max(t, start_ns or t) + round(self.timeout_ms * 1e6)

    def wait_changes_finished(self, deadline_ns: int | None = None) -> None:
        stop = self._stop_ns(deadline_ns)
        while True:
            event = self.http.call(self.events, h.GET_CHANGES, "GET", CHANGES.format(orderId=self.order_id),
                                   f"GET {CHANGES}", ok=(200,), deadline_ns=deadline_ns)
            deadline_ns = None
            if not event.ok:
                raise GuardTimeout(f"change history read failed: HTTP {event.status} {event.error}".strip())
            if wire.all_changes_finished(event.response_body):
                return
            if now() >= stop:
                raise GuardTimeout(f"Changes still unfinished after {self.timeout_ms:.0f} ms")
            gevent.sleep(self.poll_s)

    def read_order(self) -> RequestEvent:
        return self.http.call(self.events, h.GET_ORDER, "GET", ORDER.format(orderId=self.order_id),
                              f"GET {ORDER}", ok=(200,))

    def current_value(self) -> int:
        event = self.read_order()
        if not event.ok:
            raise GuardTimeout(f"order read failed: HTTP {event.status} {event.error}".strip())
        return wire.remaining_value(event.response_body)

    def wait_invoiced(self) -> None:
        stop = self._stop_ns()
        while True:
            event = self.read_order()
            if event.ok and wire.invoice_settled(event.response_body):
                return
            if now() >= stop:
                raise GuardTimeout(f"invoice not settled after {self.timeout_ms:.0f} ms")
            gevent.sleep(self.poll_s)


# Guard logic per guard name: (change side, invoice side); mirrors harness/guards.py.
def _change_plain(t: _Trial) -> None:
    t.send_change()


def _invoice_none(t: _Trial) -> None:
    t.send_invoice(t.naive_value, t.invoice_deadline)


def _invoice_finished_check(t: _Trial) -> None:
    t.wait_changes_finished(t.invoice_deadline)
    t.send_invoice(t.current_value(), None)


def _change_serialized(t: _Trial) -> None:
    sleep_until(t.t0)
    with t.lock:
        if t.send_change().status == 202:
            t.wait_changes_finished()


def _invoice_serialized(t: _Trial) -> None:
    sleep_until(t.invoice_deadline)
    with t.lock:
        t.send_invoice(t.current_value(), None)
        if t.invoice_event is not None and t.invoice_event.ok:
            t.wait_invoiced()


GUARD_SIDES: dict[str, tuple[Callable[[_Trial], None], Callable[[_Trial], None]]] = {
    "none": (_change_plain, _invoice_none),
    "finished-check": (_change_plain, _invoice_finished_check),
    "serialized": (_change_serialized, _invoice_serialized),
}


def _side(fn: Callable[[_Trial], None], trial: _Trial) -> None:
    try:
        fn(trial)
    except GuardTimeout as err:
        trial.guard_error = str(err)


def _measure_clock(user: FastHttpUser) -> None:
    """Once per process: the mock's monotonic clock against ours (0 on one host)."""
    with STATE.clock_lock:
        if STATE.server_offset_ns is not None:
            return
        samples = []
        for _ in range(CLOCK_SAMPLES):
            sent = now()
            with user.client.get("/_mock/health", name="GET /_mock/health", headers=STATE.headers.admin,
                                 catch_response=True) as resp:
                received = now()
                body = _body(resp) if resp.status_code == 200 else None
                if isinstance(body, dict) and isinstance(body.get("monotonicNs"), int):
                    samples.append((sent, body["monotonicNs"], received))
                    resp.success()
                else:
                    resp.failure(f"HTTP {resp.status_code}")
        STATE.server_offset_ns = loadrun.clock_offset_ns(samples)
        if STATE.server_offset_ns:
            log.info("mock clock offset %.3f ms (another host): server times are mapped to ours",
                     STATE.server_offset_ns / 1e6)


class TrialUser(FastHttpUser):
    """Runs trials back to back; subclasses name the guard."""

    abstract = True
    guard = "none"
    wait_time = between(0.0, 0.1)
    concurrency = 4  # connections per user: the Change and the invoice side overlap
    network_timeout = 10.0
    connection_timeout = 5.0

    def on_start(self) -> None:
        self.http = _Requests(self)
        s = STATE.scenario
        seed = s.seed if s is not None else 0
        self.rng = random.Random(loadrun.user_seed(seed, worker_id(self.environment), self.guard,
                                                   next(STATE.user_serial)))
        _measure_clock(self)
        # Two connections open before the first timed pair, so neither pays a connect.
        warm = [gevent.spawn(self.client.get, "/_mock/health", name="GET /_mock/health",
                             headers=STATE.headers.admin) for _ in range(2)]
        gevent.joinall(warm)

    def run_trial(self) -> None:
        if STATE.draining or STATE.scenario is None:
            gevent.sleep(0.1)
            return
        STATE.begin()
        try:
            record = self._trial()
            self._deliver(record)
        finally:
            STATE.end()

    def _trial(self) -> dict[str, Any]:
        s = STATE.scenario
        assert s is not None
        guard = self.guard
        offset = float(self.rng.choice(s.sweep.offsets_ms))
        delay = s.mock.change_delay.sample(self.rng) if s.mock.pin_delays else None
        local_seq = next(STATE.seq)
        began = now()
        setup: list[RequestEvent] = []
        base = {"worker": worker_id(self.environment), "local_seq": local_seq, "guard": guard, "offset_ms": offset,
                "planned_delay_ms": delay, "server_offset_ns": STATE.server_offset_ns or 0}

        created = self.http.call(setup, h.CREATE_ORDER, "POST", "/_mock/orders", "POST /_mock/orders", ok=(201,),
                                 json_body=STATE.order_spec, admin=True)
        if not created.ok or not isinstance(created.response_body, dict):
            return loadrun.make_record(**base, events=setup, t0_ns=began, began_ns=began, ended_ns=now(),
                                       setup_error=f"create order: {created.error or created.status}")
        order_id = str(created.response_body["orderId"])
        initial = int(created.response_body["value"])
        STATE.created += 1
        STATE.recent_orders.append(order_id)
        handled = self.http.call(setup, h.START_HANDLING, "POST", START_HANDLING.format(orderId=order_id),
                                 f"POST {START_HANDLING}", ok=(204,))
        trigger = self.http.call(setup, h.GET_ORDER, "GET", ORDER.format(orderId=order_id), f"GET {ORDER}",
                                 ok=(200,)) if handled.ok else handled
        if not trigger.ok or not isinstance(trigger.response_body, dict):
            return loadrun.make_record(**base, order_id=order_id, events=setup, t0_ns=began, began_ns=began,
                                       ended_ns=now(), setup_error=f"{trigger.kind}: {trigger.error or trigger.status}")

        first = now() + round(LEAD_MS * 1e6)
        t0 = first + round(max(0.0, -offset) * 1e6)  # the Change's deadline
        trial = _Trial(self, order_id, int(trigger.response_body["value"]), t0, t0 + round(offset * 1e6), delay)
        trial.events = setup
        change_side, invoice_side = GUARD_SIDES[guard]
        sides = [gevent.spawn(_side, change_side, trial), gevent.spawn(_side, invoice_side, trial)]
        gevent.joinall(sides, raise_error=True)
        return loadrun.make_record(
            **base, order_id=order_id, initial_value=initial, invoice_value=trial.invoice_value,
            invoice_number=trial.invoice_number, events=trial.events, change=trial.change_event,
            invoice=trial.invoice_event, guard_error=trial.guard_error, t0_ns=t0, began_ns=began, ended_ns=now(),
        )

    def _deliver(self, record: dict[str, Any]) -> None:
        outcome, _ = loadrun.record_outcome(record)
        duration_ms = (record["ended_ns"] - record["began_ns"]) / 1e6
        # Live: one stats row per guard and outcome ("none race", "finished-check clean", ...).
        self.environment.events.request.fire(request_type=loadrun.TRIAL_REQUEST_TYPE, name=f"{self.guard} {outcome}",
                                             response_time=duration_ms, response_length=0, exception=None,
                                             context={})
        runner = self.environment.runner
        if isinstance(runner, WorkerRunner):
            runner.send_message("trial", record)
        else:
            STATE.collector.add(record)
        STATE.recorded += 1


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

    wait_time = between(0.05, 0.2)
    network_timeout = 10.0
    connection_timeout = 5.0

    def on_start(self) -> None:
        self.own: str | None = None
        self.started = time.monotonic()

    def _pick(self) -> str | None:
        if STATE.recent_orders:
            return random.choice(STATE.recent_orders)
        if self.own is None and time.monotonic() - self.started > 2.0:
            # No trial user in this process: read an order of our own (id prefix "reader-").
            oid = f"reader-{uuid.uuid4().hex[:12]}"
            with self.client.post("/_mock/orders", name="POST /_mock/orders (reader)",
                                  json={**STATE.order_spec, "orderId": oid, "status": "handling"},
                                  headers=STATE.headers.admin, catch_response=True) as resp:
                if resp.status_code == 201:
                    self.own = oid
        return self.own

    @tag("reader")
    @task(3)
    def read_order(self) -> None:
        oid = None if STATE.draining else self._pick()
        if oid is None:
            gevent.sleep(0.2)
            return
        self.client.get(ORDER.format(orderId=oid), name=f"GET {ORDER}", headers=STATE.headers.vtex)

    @tag("reader")
    @task(1)
    def read_changes(self) -> None:
        oid = None if STATE.draining else self._pick()
        if oid is None:
            gevent.sleep(0.2)
            return
        self.client.get(CHANGES.format(orderId=oid), name=f"GET {CHANGES}", headers=STATE.headers.vtex)


# --------------------------------------------------------------------------- test lifecycle


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    opts = environment.parsed_options
    runner = environment.runner
    if opts is None:
        return
    STATE.load(opts.scenario)  # fail fast on a bad scenario (a worker reloads the master's at test start)
    if isinstance(runner, WorkerRunner):
        runner.register_message("drain", _on_drain, concurrent=True)
        return
    for cls in environment.user_classes:
        option = WEIGHT_OPTIONS.get(cls.__name__)
        if option is not None:
            cls.weight = max(0, int(getattr(opts, option)))
    environment.user_classes[:] = [c for c in environment.user_classes if c.weight > 0 or c.fixed_count > 0]
    if not environment.user_classes:
        raise ValueError("every user class has weight 0 (--weight-none/--weight-finished-check/...)")
    if isinstance(runner, MasterRunner):
        runner.register_message("trial", lambda environment, msg, **kw: STATE.collector.add(msg.data))
        runner.register_message("drained", _on_drained)


def _on_drained(environment: Any, msg: Any, **_: Any) -> None:
    STATE.collector.drained[str(msg.node_id)] = dict(msg.data or {})


def _on_drain(environment: Any, msg: Any, **_: Any) -> None:
    """Worker: finish the trials in flight, then report (after the trial records, on the same channel)."""
    STATE.drain()
    runner = environment.runner
    send_stats = getattr(runner, "_send_stats", None)
    if callable(send_stats):  # the master's stats then hold every request before the drain
        send_stats()
    runner.send_message("drained", {"created": STATE.created, "recorded": STATE.recorded,
                                    "in_flight": STATE.in_flight})


@events.test_start.add_listener
def _on_test_start(environment: Any, **_: Any) -> None:
    opts = environment.parsed_options
    STATE.load(opts.scenario)
    STATE.reset()
    s = STATE.scenario
    assert s is not None
    for cls in (TrialUser, NoGuardUser, FinishedCheckUser, SerializedUser, ReaderUser):
        cls.network_timeout = s.run.request_timeout_s
        cls.connection_timeout = min(5.0, s.run.request_timeout_s)
    # As the asyncio runner does: a gen-2 collection over the imported modules' objects stalls the
    # loop for tens of ms, which would land on timed requests. Freeze what exists, collect less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    if isinstance(environment.runner, WorkerRunner):
        return
    if not environment.host:
        raise ValueError("--host is required: the mock's URL, e.g. http://127.0.0.1:8080")
    try:
        _admin(environment).call("PATCH", "/_mock/config", wire.mock_settings(s))
    except loadrun.LoadRunError as err:
        # No mock there (or not this one): the trials would judge nothing. Stop, exit code 2.
        STATE.config_error = str(err)
        log.error("race-harness: cannot configure the mock at %s (%s); stopping", environment.host, err)
        environment.process_exit_code = 2
        opts = environment.parsed_options
        gevent.spawn(environment.runner.quit if opts is not None and opts.headless else environment.runner.stop)
        return
    log.info("race-harness load mode: scenario %s, mock %s configured (policy %s, delay %s, settle %g ms)",
             s.name, environment.host, s.mock.policy, s.mock.change_delay.spec(), s.mock.settle_ms)


def _admin(environment: Any) -> loadrun.MockAdmin:
    timeout = STATE.scenario.run.request_timeout_s if STATE.scenario else 10.0
    return loadrun.MockAdmin(environment.host, STATE.headers.admin, timeout_s=max(timeout, 10.0))


@events.test_stopping.add_listener
def _on_test_stopping(environment: Any, **_: Any) -> None:
    runner = environment.runner
    STATE.users = max(STATE.users, int(getattr(runner, "user_count", 0) or 0))
    if not isinstance(runner, MasterRunner):
        STATE.drain()  # local: before users are stopped; worker: before it reports "client_stopped"
        return
    workers = [c.id for c in runner.clients.all if c.state != STATE_MISSING]
    runner.send_message("drain", {})
    stop = time.monotonic() + STATE.drain_timeout_s() + 5
    while time.monotonic() < stop and not set(workers) <= set(STATE.collector.drained):
        gevent.sleep(0.05)
    missing = sorted(set(workers) - set(STATE.collector.drained))
    if missing:
        log.warning("drain: no answer from worker(s) %s; their trials in flight are not counted", missing)


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) or STATE.finished or STATE.scenario is None:
        return
    STATE.finished = True
    if STATE.config_error:
        print(f"error: load run not judged: the mock could not be configured: {STATE.config_error}", flush=True)
        environment.process_exit_code = 2
        return
    s = STATE.scenario
    figures = request_figures(environment.stats)
    guards_run = {getattr(c, "guard") for c in environment.user_classes
                  if issubclass(c, TrialUser) and (c.weight > 0 or c.fixed_count > 0)}
    guards_run |= STATE.collector.guards()
    workers = STATE.collector.per_worker()
    worker_info = {w: {"trials": n, **STATE.collector.drained.get(w, {})} for w, n in workers.items()}
    if isinstance(environment.runner, MasterRunner):
        created = sum(int(v.get("created", 0)) for v in STATE.collector.drained.values())
    else:
        created = STATE.created
        worker_info = {"local": {"trials": len(STATE.collector), "created": STATE.created,
                                 "recorded": STATE.recorded}}
    opts = environment.parsed_options
    meta = {
        "seed": s.seed,
        "target": {"kind": "locust", "url": environment.host},
        "mock": {"policy": s.mock.policy, "delay": s.mock.change_delay.spec(), "settle_ms": s.mock.settle_ms},
        "planned_trials": None,
        "concurrency": STATE.users,
        "load": {
            "tool": "locust",
            "runner": type(environment.runner).__name__,
            "users": STATE.users,
            "workers": worker_info,
            "orders_created": created,
            "duplicates": STATE.collector.duplicates,
            "weights": {c.__name__: c.weight for c in environment.user_classes},
            "max_error_rate": opts.max_error_rate,
        },
    }
    try:
        verdict = loadrun.finish(
            admin=_admin(environment), collector=STATE.collector, scenario_dict=STATE.scenario_dict,
            guards_run=guards_run, report_dir=Path(opts.report_dir), meta=meta, figures=figures,
            max_error_rate=opts.max_error_rate, wall_s=time.monotonic() - STATE.started_mono,
            audit_wait_s=max(5.0, s.guards.timeout_ms / 1000 + 1),
        )
    except Exception as err:  # noqa: BLE001 - the exit code must say the run was not judged
        log.exception("race-harness: writing the load run failed")
        print(f"error: load run not judged: {err}", flush=True)
        environment.process_exit_code = 2
        return
    print(f"mock requests: {figures.requests} ({figures.rps or 0:.1f}/s), p50 {figures.p50_ms} ms, "
          f"p99 {figures.p99_ms} ms, {figures.failures} failed", flush=True)
    for line in verdict.lines:
        print(line, flush=True)
    environment.process_exit_code = verdict.exit_code


def request_figures(stats: Any) -> loadrun.RequestFigures:
    """The mock's requests (every stats entry but the TRIAL outcome rows)."""
    from locust.stats import StatsEntry

    total = StatsEntry(stats, "mock", "", use_response_times_cache=False)
    for (name, method), entry in stats.entries.items():
        if method != loadrun.TRIAL_REQUEST_TYPE:
            total.extend(entry)
    if not total.num_requests:
        return loadrun.RequestFigures(0, 0)
    return loadrun.RequestFigures(
        requests=total.num_requests, failures=total.num_failures, rps=float(total.total_rps),
        p50_ms=float(total.get_response_time_percentile(0.5)), p99_ms=float(total.get_response_time_percentile(0.99)),
    )
