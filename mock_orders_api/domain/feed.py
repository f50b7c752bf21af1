"""Orders Feed v3: one queue of order events per mock, read and committed by the integration.

VTEX behaviour imitated, each with its source:

* One feed config per mock (VTEX: per appKey, SPEC "Feed v3"), `POST /api/orders/feed/config`
  `{filter, queue{visibilityTimeoutInSeconds, MessageRetentionPeriodInSeconds}}` (SPEC
  `FeedConfiguration`, both required); the filter is the hook's (domain/filters.py).
  Retention 345600..1209600 s (Orders Feed guide; SPEC: "maximum ... 1209600").
  Visibility timeout 0..43200 s (Feed v3 runs on SQS Standard queues, ERP FAQ; SQS's bounds).
* Every status change the filter admits enqueues an item `{eventId, handle, domain, state,
  lastState, orderId, lastChange, currentChange}` (SPEC `Getfeedorderstatus`); `domain`
  per flow as the hook's (`hooks.domain_of`).
* `GET /api/orders/feed?maxlot=N` returns at most N (1..10, required: SPEC "Maximum accepted
  value is 10") visible items and hides each for the visibility timeout; an item not
  committed by then is visible again with a new handle (SQS at-least-once; SPEC
  `visibilityTimeoutInSeconds`: "an item becomes invisible after it has been retrieved").
* `POST /api/orders/feed {handles}` deletes the items whose latest handle is listed (SPEC
  `Commititemfeedorderstatus`); an unknown or superseded handle is ignored (200 all the same).
* No ordering guarantee (Orders Feed guide: "no guarantee of ordination") and duplicates by
  design (ERP guide: "does not ensure all events are unique"): the hook's seeded delivery
  plan (`delivery.delivery_plan`) makes the same event a second copy (same `eventId`,
  its own handle) and delays each copy's visibility by its extra delay.
* When an event becomes visible: the change time plus the notification delay the hook uses
  (`hook_delay_ms`, or the `X-Mock-Hook-Delay-Ms` header pinned on the request that changed
  the status) plus the plan's extra delay: a harness knows it ahead (mock only).

Bounded: at most MAX_ITEMS items are held (the oldest is dropped and counted in `dropped`);
items older than the retention period expire; each order's feed record (its audit's `feed`
key: enqueued, read, committed, dropped events with their mock-clock ns) keeps at most
MAX_ORDER_RECORDS entries. Everything runs synchronously on the event loop, on the mock's
clock (reads compute visibility lazily: no timers).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mock_orders_api.config import HOOK_STATUSES, MockConfig
from mock_orders_api.domain.filters import FilterGate, OrderFilter, config_object, parse_filter
from mock_orders_api.domain.hooks import domain_of, previous_notification
from mock_orders_api.domain.model import Order
from mock_orders_api.errors import BadRequest

MAX_ITEMS = 10_000
MAX_ORDER_RECORDS = 200
MAXLOT = 10
MAX_COMMIT_HANDLES = 1000
VISIBILITY_RANGE_S = (0, 43_200)
RETENTION_RANGE_S = (345_600, 1_209_600)

# The delivery plan shared with the hook (`delivery.delivery_plan`), passed in by MockState: the
# domain does not import the delivery layer.
PlanFn = Callable[[MockConfig, Order], tuple[float, ...]]


@dataclass(frozen=True)
class FeedConfig:
    filter: OrderFilter
    visibility_timeout_s: int
    retention_s: int

    def view(self) -> dict[str, Any]:
        """The config in the shape `POST /api/orders/feed/config` takes."""
        return {"filter": self.filter.view(HOOK_STATUSES),
                "queue": {"visibilityTimeoutInSeconds": self.visibility_timeout_s,
                          "MessageRetentionPeriodInSeconds": self.retention_s}}


def parse_feed_config(body: Any) -> FeedConfig:
    """Validate a `POST /api/orders/feed/config` body; BadRequest names the field."""
    body = config_object(body, "feed config", ("filter", "queue"))
    flt = parse_filter(body.get("filter"))
    queue = body.get("queue")
    if not isinstance(queue, dict):
        raise BadRequest("queue: required, an object {visibilityTimeoutInSeconds, MessageRetentionPeriodInSeconds}; "
                         f"got {queue!r:.200}")
    extra = set(queue) - {"visibilityTimeoutInSeconds", "MessageRetentionPeriodInSeconds"}
    if extra:
        raise BadRequest(f"queue: unknown field(s) {sorted(extra)}; expected visibilityTimeoutInSeconds and "
                         "MessageRetentionPeriodInSeconds")
    values = [_seconds(queue, name, bounds) for name, bounds in (("visibilityTimeoutInSeconds", VISIBILITY_RANGE_S),
                                                                 ("MessageRetentionPeriodInSeconds", RETENTION_RANGE_S))]
    return FeedConfig(flt, values[0], values[1])


def _seconds(queue: dict[str, Any], name: str, bounds: tuple[int, int]) -> int:
    value = queue.get(name)
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"queue.{name}: required, an integer number of seconds in {low}..{high}; got {value!r:.100}")
    return value


@dataclass
class _Item:
    event_id: str
    copy: int
    order: Order
    fields: dict[str, Any]  # the item as GET returns it, without its eventId and handle
    enqueued_ns: int
    visible_ns: int
    receives: int = 0
    handle: str | None = None
    key: tuple[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.key = (self.event_id, self.copy)


class FeedQueue:
    """The mock's Feed v3 queue (`MockState.feed`); `on_status` is an order status listener."""

    def __init__(self, settings: Callable[[], MockConfig], delay_ms: Callable[[], float], plan: PlanFn) -> None:
        self._settings = settings
        self._delay_ms = delay_ms
        self._plan = plan
        self.config: FeedConfig | None = None
        self.gate = FilterGate()
        self._items: dict[tuple[str, int], _Item] = {}  # enqueue order: the first is the oldest
        self._handles: dict[str, tuple[str, int]] = {}
        self._handle_seq = itertools.count(1)
        self.dropped = 0  # items dropped because the queue was full
        self.expired = 0  # items older than the retention period
        self.reads = 0  # GET requests answered
        self.redeliveries = 0  # items handed out again after their visibility timeout
        self.committed = 0

    def __len__(self) -> int:
        return len(self._items)

    # --- enqueue (an order status listener: synchronous, on the event loop) --------------------
    def on_status(self, order: Order, previous: str | None, ns: int) -> None:
        cfg = self.config
        if cfg is None or not self.gate.admits(cfg.filter, order):
            return
        settings = self._settings()
        history = order.status_history
        last_state, last_change = previous_notification(order, previous)
        event_id = hashlib.sha256(f"{settings.seed}:{order.order_id}:{order.status}:{len(history)}".encode()
                                  ).hexdigest()[:32].upper()
        fields = {"domain": domain_of(order.status), "state": order.status,
                  "lastState": last_state, "orderId": order.order_id, "lastChange": last_change,
                  "currentChange": history[-1]["date"]}
        delay_ms = self._delay_ms()
        for copy, extra in enumerate(self._plan(settings, order)):
            if len(self._items) >= MAX_ITEMS:
                oldest = self._items.pop(next(iter(self._items)))
                self._forget_handle(oldest)
                self.dropped += 1
                _record(oldest.order, {"event": "dropped", "eventId": oldest.event_id, "copy": oldest.copy,
                                       "state": oldest.fields["state"], "ns": ns, "why": f"queue full ({MAX_ITEMS})"})
            item = _Item(event_id, copy, order, fields, ns, ns + round((delay_ms + extra) * 1e6))
            self._items[item.key] = item
            _record(order, {"event": "enqueued", "eventId": event_id, "copy": copy, "state": order.status,
                            "lastState": last_state, "changeNs": ns, "visibleNs": item.visible_ns,
                            "extraDelayMs": extra})

    # --- the integration's calls -------------------------------------------------------------
    def receive(self, maxlot: int, now_ns: int) -> list[dict[str, Any]]:
        """Up to `maxlot` visible items, each hidden for the visibility timeout under a new handle."""
        cfg = self.config
        assert cfg is not None
        self._expire(now_ns, cfg.retention_s)
        self.reads += 1
        visible = (i for i in self._items.values() if i.visible_ns <= now_ns)
        out: list[dict[str, Any]] = []
        for item in heapq.nsmallest(maxlot, visible, key=lambda i: i.visible_ns):
            self._forget_handle(item)
            item.receives += 1
            if item.receives > 1:
                self.redeliveries += 1
            item.handle = hashlib.sha256(f"{item.event_id}:{item.copy}:{next(self._handle_seq)}".encode()).hexdigest()
            self._handles[item.handle] = item.key
            item.visible_ns = now_ns + cfg.visibility_timeout_s * 1_000_000_000
            _record(item.order, {"event": "read", "eventId": item.event_id, "copy": item.copy,
                                 "state": item.fields["state"], "receive": item.receives, "ns": now_ns})
            out.append({"eventId": item.event_id, "handle": item.handle, **item.fields})
        return out

    def commit(self, handles: list[str], now_ns: int) -> int:
        """Delete the items these (latest) handles name; returns how many were deleted."""
        deleted = 0
        for handle in handles:
            key = self._handles.pop(handle, None)
            item = self._items.pop(key, None) if key is not None else None
            if item is None:
                continue
            deleted += 1
            _record(item.order, {"event": "committed", "eventId": item.event_id, "copy": item.copy,
                                 "state": item.fields["state"], "ns": now_ns})
        self.committed += deleted
        return deleted

    def view(self, now_ns: int) -> dict[str, Any] | None:
        """GET config: the config plus `quantity` and the oldest item's age (SPEC `GetFeedConfiguration`)."""
        if self.config is None:
            return None
        oldest = next(iter(self._items.values()), None)
        age = 0.0 if oldest is None else max(0.0, (now_ns - oldest.enqueued_ns) / 1e9)
        return {**self.config.view(), "quantity": len(self._items), "approximateAgeOfOldestMessageInSeconds": age}

    def configure(self, config: FeedConfig | None) -> None:
        """Set (or, with None, delete: the queue goes with it) the feed config."""
        if config is None:
            self._items.clear()
            self._handles.clear()
            self.gate.clear()
        self.config = config

    def counters(self) -> dict[str, Any]:
        return {"feedConfigured": self.config is not None, "feedQueue": len(self._items),
                "feedDropped": self.dropped, "feedExpired": self.expired, "feedReads": self.reads,
                "feedRedeliveries": self.redeliveries, "feedCommitted": self.committed}

    def reset(self) -> None:
        """Forget every item and counter; the feed config stays (as the hook's does)."""
        self._items.clear()
        self._handles.clear()
        self.gate.clear()
        self.dropped = self.expired = self.reads = self.redeliveries = self.committed = 0

    # --- internals -------------------------------------------------------------------------------
    def _expire(self, now_ns: int, retention_s: int) -> None:
        cutoff = now_ns - retention_s * 1_000_000_000
        while self._items:
            oldest = next(iter(self._items.values()))
            if oldest.enqueued_ns >= cutoff:
                return
            del self._items[oldest.key]
            self._forget_handle(oldest)
            self.expired += 1

    def _forget_handle(self, item: _Item) -> None:
        if item.handle is not None:
            self._handles.pop(item.handle, None)
            item.handle = None


def _record(order: Order, entry: dict[str, Any]) -> None:
    if len(order.feed) < MAX_ORDER_RECORDS:
        order.feed.append(entry)


__all__ = ["FeedConfig", "FeedQueue", "MAXLOT", "parse_feed_config"]
