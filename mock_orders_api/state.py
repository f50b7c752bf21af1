"""Everything one mock instance knows (`MockState`, `app.state.mock`).

State is only mutated synchronously on the event loop; the timers that bring
orders up to date by themselves are armed through timers.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Callable
from typing import Any

from mock_orders_api.delivery import HookDispatcher, delivery_plan
from mock_orders_api.domain import cancellation, changes, invoices
from mock_orders_api.domain.feed import FeedQueue
from mock_orders_api.config import MockConfig
from mock_orders_api.errors import Conflict, NotFound, TooManyRequests
from mock_orders_api.faults import FaultSchedule
from mock_orders_api.ratelimit import RateLimiter
from mock_orders_api.journal import Journal
from mock_orders_api.timers import LoopTimers
from mock_orders_api.domain.model import CHANGE_CANCELED, CHANGE_DONE, Order
from mock_orders_api.domain.store import OrderStore


MAX_FAULTS_PER_ORDER = 100  # an order's audit keeps its first faults only (memory bound)


class MockState:
    """Everything one mock instance knows; `app.state.mock`.

    `clock` is the time source of every stamp and timer (host `time.monotonic_ns`
    by default; a simulated run passes its virtual clock). `deterministic` makes
    what would be random per process reproducible per order: request ids,
    receipts and unpinned Change delays derive from (seed, order id, count).
    """

    def __init__(self, config: MockConfig, clock: Callable[[], int] = time.monotonic_ns,
                 deterministic: bool = False) -> None:
        self.config = config
        self.clock = clock
        self.deterministic = deterministic
        self.store = OrderStore()
        self.journal = Journal(config.journal_size, config.journal_bytes)
        self.rng = random.Random(config.seed)
        self.limiter = RateLimiter()
        self.faults = FaultSchedule()
        self._outcome_rng = random.Random(f"{config.seed}:outcome")
        self.evicted = 0  # orders dropped by evict_orders
        self._timers = LoopTimers(clock)
        self.pool = changes.WorkerPool(config.change_workers) if config.change_workers else None
        # Order hooks: every status change (creation included) goes through store.listeners.
        self.hooks = HookDispatcher(lambda: self.config, config.journal_size, clock=clock)
        self.store.listeners.append(self.hooks.on_status)
        # Feed v3: the same status changes, the hook's pinned delay and seeded delivery plan.
        self.feed = FeedQueue(lambda: self.config, self.hooks.delay_ms, delivery_plan)
        self.store.listeners.append(self.feed.on_status)

    # --- time -------------------------------------------------------------
    def order(self, order_id: str, now_ns: int) -> Order:
        """The order brought up to `now_ns`: due Changes applied, settle window closed."""
        order = self.store.get(order_id)
        self._advance(order, now_ns)
        return order

    def _advance(self, order: Order, now_ns: int) -> None:
        if self.pool is not None:
            # Bounded workers couple all orders: replay every finish up to now, in time order.
            if self.pool.advance(now_ns):
                self._arm_pool()
        elif changes.advance(order, now_ns):
            self.schedule(order)
        invoices.settle(order, now_ns, self.config.invoice_first)
        cancellation.advance(order, now_ns)

    def schedule(self, order: Order) -> None:
        change_due = self.pool.next_due_ns() if self.pool is not None else changes.next_due_ns(order)
        for due in (change_due, order.settle_due_ns, order.cancel_due_ns):
            if due is not None:
                self._arm(order.order_id, due)

    def _arm_pool(self) -> None:
        due = self.pool.next_due_ns() if self.pool is not None else None
        if due is not None:
            self._arm(None, due)

    def set_change_workers(self, workers: int | None) -> None:
        if workers == self.config.change_workers:
            return
        if self.pending_changes():
            raise Conflict("change_workers can only change while no Change is pending", code="ChangesPending")
        self.pool = changes.WorkerPool(workers) if workers else None

    def _arm(self, order_id: str | None, due: int) -> None:
        """A timer at `due` that brings the order (None: the worker pool) up to date."""
        self._timers.arm(due, lambda now: self._on_timer(order_id, now))

    def _on_timer(self, order_id: str | None, now: int) -> None:
        if order_id is None:
            if self.pool is not None and self.pool.advance(now):
                self._arm_pool()
            return
        try:
            order = self.store.get(order_id)
        except NotFound:  # reset since
            return
        self._advance(order, now)

    def evict_orders(self, now_ns: int) -> None:
        """Make room before an order is created: drop orders older than `order_ttl_s`, then the
        oldest ones beyond `max_orders - 1` (both off unless configured); counted in `evicted`."""
        ttl, cap = self.config.order_ttl_s, self.config.max_orders
        cutoff = None if ttl is None else now_ns - int(ttl * 1e9)
        while (oldest := self.store.oldest()) is not None and (
                (cutoff is not None and oldest.created_ns < cutoff) or (cap is not None and len(self.store) >= cap)):
            self.store.remove(oldest.order_id)
            self.evicted += 1

    def reset(self) -> None:
        self._timers.cancel_all()
        self.store.clear()
        self.journal.clear()
        self.evicted = 0
        self.hooks.reset()  # pending deliveries canceled, deliveries forgotten; the hook config stays
        self.feed.reset()  # queued events forgotten; the feed config stays
        self.rng = random.Random(self.config.seed)
        self.limiter.reset()
        self.faults.reset()
        self._outcome_rng = random.Random(f"{self.config.seed}:outcome")
        self.pool = changes.WorkerPool(self.config.change_workers) if self.config.change_workers else None

    def new_ids(self, order: Order, kind: str) -> Callable[[], str] | None:
        """Id maker for a record about to be added to `order` (None: random uuid4 ids)."""
        if not self.deterministic:
            return None
        n = len(order.changes) + len(order.refused_changes) + len(order.invoices)
        counter = iter(range(1 << 30))
        base = f"{self.config.seed}:{order.order_id}:{kind}:{n}"
        return lambda: hashlib.sha256(f"{base}:{next(counter)}".encode()).hexdigest()[:32]

    def delay_rng(self, order: Order) -> random.Random:
        """The RNG an unpinned Change delay is drawn from: shared, or per order and Change if deterministic."""
        if not self.deterministic:
            return self.rng
        seed = f"{self.config.seed}:{order.order_id}:delay:{len(order.changes) + len(order.refused_changes)}"
        return random.Random(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))

    async def sleep_ms(self, ms: float) -> None:
        """Wait `ms` on the event loop (a simulated run's loop runs on its virtual clock)."""
        await asyncio.sleep(ms / 1000)

    def throttle(self, route: str, order_id: str | None = None) -> None:
        """Spend a token of `route`'s bucket, or raise 429 with Retry-After (see ratelimit.py)."""
        now = self.clock()
        wait_s = self.limiter.take(route, self.config.rate_limits.get(route), now)
        if wait_s is not None:
            self.note_fault(order_id, route, "429", now)
            raise TooManyRequests(f"rate limit of {route} exceeded; retry after {wait_s:.3f} s", wait_s)

    def note_fault(self, order_id: str | None, route: str, kind: str, now_ns: int) -> None:
        """Keep an injected fault or 429 in its order's audit (`faults`), if the order exists."""
        order = self.store.find(order_id) if order_id is not None else None
        if order is not None and len(order.faults) < MAX_FAULTS_PER_ORDER:
            order.faults.append({"route": route, "kind": kind, "ns": now_ns})

    def change_outcome(self, order: Order, pinned: str | None) -> str:
        """How a Change about to be accepted ends: pinned, else a draw with `change_cancel_rate`.

        Drawn from its own seeded stream (per order and Change), so enabling cancellations
        leaves every delay draw, and so a reproduction's curve, unchanged."""
        if pinned is not None:
            return pinned
        rate = self.config.change_cancel_rate
        if rate <= 0:
            return CHANGE_DONE
        n = len(order.changes) + len(order.refused_changes)
        key = f"{self.config.seed}:{order.order_id}:outcome:{n}" if self.deterministic else None
        rng = (random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")) if key
               else self._outcome_rng)
        return CHANGE_CANCELED if rng.random() < rate else CHANGE_DONE

    def pending_changes(self) -> int:
        return sum(len(o.unfinished_changes()) for o in self.store)

    def timers_armed(self) -> int:
        """Change applications and settle windows this mock will act on by itself (O(1))."""
        return len(self._timers)

    def verdicts(self) -> dict[str, Any]:
        now = self.clock()
        counts = {"race": 0, "clean": 0, "pending": 0}
        races: list[dict[str, Any]] = []
        for order in self.store:
            self._advance(order, now)
            audit = order.audit()
            counts[audit["verdict"]] += 1
            if audit["verdict"] == "race":
                races.append(
                    {
                        "orderId": order.order_id,
                        "finalValue": audit["finalValue"],
                        "invoicedTotal": audit["invoicedTotal"],
                        "excess": audit["invoicedTotal"] - audit["finalValue"],
                    }
                )
        return {"orders": len(self.store), "counts": counts, "races": races}
