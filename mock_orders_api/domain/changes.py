"""Changes (partial cancellation / value reduction), processed asynchronously.

A Change is accepted with 202 (`waiting-acknowledgement`) and stays `finished:
false` for its delay D (`waiting-confirmation`, then `preparing` or `canceling`
for the second half of D); at D it is either `done` (applied to the order's
items and value, `finished: true`) or `canceled` (the order untouched,
`finished: false` for ever, `cancellationData` set), as VTEX's Change requests
do (HC-ADAPT). Which one is decided when the Change is accepted.

VTEX's refusals (MOD-ERR, "order modifications" error tables; their HTTP
statuses are undocumented, the mock answers 409): `SalesOrderSystem014` while
another Change is in progress, `SalesOrderSystem015` when v1 and v2 Changes are
mixed on one order, `SalesOrderSystem046` after an invoice was issued,
`SalesOrderSystem008` on a canceled order, `CHK0124` in a status that allows no
Change. The `vulnerable` policy lets a Change through while the order's invoice
is settling (status `invoice`): that is ticket 1348894's invoice-first window. Within one order Changes apply in
arrival order (the next one starts processing when the previous finishes);
across orders they are independent. Finishing is evaluated lazily from the
clock (`advance`), so every observer sees `finished` flip exactly at
`started + D`, whatever the event loop's timer jitter; a timer also advances the
order at that moment so that side effects (hooks, journal) happen on time.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import uuid
from collections.abc import Callable
from typing import Any

from mock_orders_api.dates import iso_now
from mock_orders_api.domain.model import (
    CANCELED,
    CHANGE_CANCELED,
    CHANGE_DONE,
    CHANGE_WAITING_ACK,
    CHANGE_WAITING_CONFIRMATION,
    HANDLING,
    INVOICE,
    WAITING_FOR_FULFILLMENT,
    ChangeRecord,
    ChangeSpec,
    Item,
    ItemDelta,
    Order,
    RefusedChange,
    cents,
)
from mock_orders_api.errors import BadRequest, Conflict

_CHANGEABLE = (HANDLING, WAITING_FOR_FULFILLMENT)


# --- parsing ---------------------------------------------------------------

def parse_order_system_body(body: Any) -> ChangeSpec:
    """Body of `PATCH /api/order-system/orders/{changeOrderId}/changes`."""
    obj = _object(body, "change")
    # `settings` is accepted and ignored (SPEC `changes.patch` documents it as optional).
    _no_unknown(obj, {"reason", "add", "remove", "replace", "manualDiscountValue", "manualIncrementValue", "settings"},
                "change")
    if obj.get("replace"):
        raise BadRequest("change.replace: item replacement is not simulated by this mock; use add/remove")
    return ChangeSpec(
        reason=_reason(obj.get("reason")),
        removed=_deltas(obj.get("remove"), "change.remove"),
        added=_deltas(obj.get("add"), "change.add"),
        discount=cents(_or_zero(obj.get("manualDiscountValue")), "change.manualDiscountValue"),
        increment=cents(_or_zero(obj.get("manualIncrementValue")), "change.manualIncrementValue"),
    )


def parse_oms_body(body: Any) -> ChangeSpec:
    """Body of the older, deprecated `POST /api/oms/pvt/orders/{orderId}/changes` (SPEC `RegisterChange`):
    `requestId`, `reason`, `discountValue`, `incrementValue` required, items `{id, price, quantity}`.
    The order's own selling price counts for an item it has; the sent `price` for a new one."""
    obj = _object(body, "change")
    _no_unknown(
        obj, {"requestId", "reason", "discountValue", "incrementValue", "itemsRemoved", "itemsAdded"}, "change"
    )
    request_id = obj.get("requestId")
    if not isinstance(request_id, str) or not request_id:
        raise BadRequest(f"change.requestId: required, a non-empty string; got {request_id!r}")
    for name in ("discountValue", "incrementValue"):
        if obj.get(name) is None:
            raise BadRequest(f"change.{name}: required, an integer number of cents (0 for none)")
    removed = _deltas(obj.get("itemsRemoved"), "change.itemsRemoved")
    added = _deltas(obj.get("itemsAdded"), "change.itemsAdded")
    for where, deltas in (("itemsRemoved", removed), ("itemsAdded", added)):
        for n, d in enumerate(deltas):
            if d.price is None:
                raise BadRequest(f"change.{where}[{n}].price: required, the item's price in cents")
    return ChangeSpec(
        reason=_reason(obj.get("reason")),
        removed=removed,
        added=added,
        discount=cents(obj["discountValue"], "change.discountValue"),
        increment=cents(obj["incrementValue"], "change.incrementValue"),
        request_id=request_id,
    )


def _or_zero(value: Any) -> Any:
    """An optional amount: absent or null means 0; anything else is validated as cents."""
    return 0 if value is None else value


def _object(body: Any, where: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest(f"{where}: expected a JSON object; got {type(body).__name__}")
    return body


def _no_unknown(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(obj) - allowed
    if unknown:
        raise BadRequest(f"{where}: unknown field(s) {sorted(unknown)}; expected some of {sorted(allowed)}")


def _reason(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"change.reason: required, a non-empty string; got {value!r}")
    return value


def _deltas(value: Any, where: str) -> tuple[ItemDelta, ...]:
    if value is None:
        return ()
    if isinstance(value, dict):  # order-system shape: {"items": [...]}
        value = value.get("items", [])
        where = f"{where}.items"
    if not isinstance(value, list):
        raise BadRequest(f"{where}: expected a list of {{id, quantity}}; got {type(value).__name__}")
    out: list[ItemDelta] = []
    for n, raw in enumerate(value):
        at = f"{where}[{n}]"
        if not isinstance(raw, dict):
            raise BadRequest(f"{at}: expected an object {{id, quantity}}")
        item_id = raw.get("id")
        if not isinstance(item_id, str) or not item_id:
            raise BadRequest(f"{at}.id: expected a non-empty string; got {item_id!r}")
        quantity = cents(raw.get("quantity"), f"{at}.quantity", minimum=1, what="an integer quantity")
        price = raw.get("price")
        if price is not None:
            price = cents(price, f"{at}.price")
        out.append(ItemDelta(item_id, quantity, price))
    return tuple(out)


# --- state transitions -------------------------------------------------------

def _projected_quantities(order: Order) -> dict[str, int]:
    """Item quantities once every accepted Change has applied."""
    qty = {i.id: i.quantity for i in order.items}
    for c in order.unfinished_changes():
        for d in c.spec.removed:
            qty[d.id] = qty.get(d.id, 0) - d.quantity
        for d in c.spec.added:
            qty[d.id] = qty.get(d.id, 0) + d.quantity
    return qty


def _unit_price(order: Order, delta: ItemDelta, where: str) -> int:
    item = order.item(delta.id)
    if item is not None:
        return item.selling_price
    for c in order.unfinished_changes():
        for d in c.spec.added:
            if d.id == delta.id and d.price is not None:
                return d.price
    if delta.price is None:
        raise BadRequest(f"{where}: item {delta.id!r} is new to the order; its price (cents) is required")
    return delta.price


def change_value(order: Order, spec: ChangeSpec) -> int:
    """Signed effect of `spec` on the order value, validated against the projected items."""
    qty = _projected_quantities(order)
    value = spec.increment - spec.discount
    for n, d in enumerate(spec.removed):
        if d.id not in qty:
            raise BadRequest(f"change.remove[{n}]: item {d.id!r} is not in order {order.order_id}")
        if d.quantity > qty[d.id]:
            raise BadRequest(
                f"change.remove[{n}]: cannot remove {d.quantity} of item {d.id!r}; "
                f"{qty[d.id]} left once pending Changes apply"
            )
        qty[d.id] -= d.quantity
        value -= d.quantity * _unit_price(order, d, f"change.remove[{n}]")
    for n, d in enumerate(spec.added):
        value += d.quantity * _unit_price(order, d, f"change.add[{n}]")
    return value


def check_changeable(order: Order, policy: str, spec_value: int, endpoint: str = "order-system") -> None:
    """Raise the refusal VTEX (and the policy) gives for a Change on this order now (MOD-ERR codes)."""
    oid = order.order_id
    # Validation of the body against the order first, as for its items (change_value).
    projected = order.value + sum(c.change_value for c in order.unfinished_changes()) + spec_value
    if projected < 0:  # MOD-ERR CHK0034 "the value of the modification exceeds the order's price"
        raise BadRequest(f"change would make the order value negative ({projected} cents)", code="CHK0034")
    if order.status == CANCELED:
        raise Conflict(f"order {oid} is canceled and cannot be changed", code="SalesOrderSystem008")
    if order.status == INVOICE and policy == "vulnerable":
        # The ticket's invoice-first window: a vulnerable platform still accepts
        # a Change while the invoice is settling (KI-1348894).
        pass
    elif any(inv.accepted and inv.type == "Output" for inv in order.invoices):
        raise Conflict(f"order {oid} has an invoice issued; Changes are not allowed after the invoice is issued",
                       code="SalesOrderSystem046")
    elif order.status not in _CHANGEABLE:
        raise Conflict(f"order {oid} is {order.status!r}; Changes are allowed in {list(_CHANGEABLE)}",
                       code="CHK0124")
    if order.unfinished_changes():
        raise Conflict(f"order {oid} has a Change in progress ({order.unfinished_changes()[0].request_id}); "
                       "wait until it is done or canceled", code="SalesOrderSystem014")
    if any(c.endpoint != endpoint for c in order.changes if not c.canceled):
        raise Conflict(f"order {oid} already has a Change made with the other Change API; v1 and v2 Changes "
                       "cannot be mixed on one order", code="SalesOrderSystem015")


def register(
    order: Order,
    spec: ChangeSpec,
    *,
    policy: str,
    delay_ms: float,
    arrival_ns: int,
    now_ns: int,
    endpoint: str,
    account: str,
    autostart: bool = True,
    new_id: Callable[[], str] | None = None,
    outcome: str = CHANGE_DONE,
) -> ChangeRecord:
    """Validate and accept a Change (state is untouched when this raises).

    `autostart=False` leaves starting it to a `WorkerPool` (bounded Change workers).
    `new_id` makes the request and workflow ids (default: random uuid4 hex).
    `outcome` is how it ends at its due time: "done" (applied) or "canceled".
    """
    if spec.request_id is not None and any(c.request_id == spec.request_id for c in order.changes):
        raise Conflict(f"change request {spec.request_id!r} already exists", code="ChangeAlreadyExists")
    value = change_value(order, spec)
    check_changeable(order, policy, value, endpoint)
    new_id = new_id or _uuid_hex
    record = ChangeRecord(
        request_id=spec.request_id or new_id(),
        workflow_id=new_id(),
        order_id=order.order_id,
        account=account,
        endpoint=endpoint,
        spec=spec,
        delay_ms=delay_ms,
        arrival_ns=arrival_ns,
        acted_ns=now_ns,
        date=iso_now(),
        value_before=order.value,
        change_value=value,
        outcome=outcome,
    )
    record.log(CHANGE_WAITING_ACK)
    order.changes.append(record)
    if order.status == INVOICE:
        order.change_while_settling = True
    if autostart:
        _start_next(order, now_ns)
    return record


def _uuid_hex() -> str:
    return uuid.uuid4().hex


def refuse(order: Order, error: Exception, *, arrival_ns: int, now_ns: int, endpoint: str) -> None:
    """Keep a refused Change in the order's audit."""
    order.refused_changes.append(RefusedChange(endpoint=endpoint, status=getattr(error, "status", 400),
                                               reason=str(error), arrival_ns=arrival_ns, acted_ns=now_ns,
                                               code=getattr(error, "code", "")))


def _next_unstarted(order: Order) -> ChangeRecord | None:
    """The order's first unfinished Change if it has not started (it is next in the order's chain)."""
    c = next((c for c in order.changes if not c.terminal), None)
    return c if c is not None and c.started_ns is None else None


def _start(c: ChangeRecord, ready_ns: int, start_ns: int) -> None:
    c.ready_ns = ready_ns
    c.started_ns = start_ns
    c.due_ns = start_ns + round(c.delay_ms * 1e6)
    c.log(CHANGE_WAITING_CONFIRMATION)


def _start_next(order: Order, ready_ns: int) -> None:
    c = _next_unstarted(order)
    if c is not None:
        ready = max(c.acted_ns, ready_ns)
        _start(c, ready, ready)


def advance(order: Order, now_ns: int) -> list[ChangeRecord]:
    """Apply every Change whose processing is due by `now_ns`; return those applied."""
    applied: list[ChangeRecord] = []
    for c in order.changes:
        if c.terminal:
            continue
        if c.due_ns is None or c.due_ns > now_ns:
            break
        _apply(order, c, now_ns)
        applied.append(c)
        _start_next(order, c.due_ns)
    return applied


def next_due_ns(order: Order) -> int | None:
    return next((c.due_ns for c in order.changes if not c.terminal), None)


def _apply(order: Order, c: ChangeRecord, now_ns: int) -> None:
    """End a due Change: apply it (done), or leave the order untouched (canceled)."""
    c.applied_ns = now_ns
    c.finished_date = iso_now()
    if c.outcome == CHANGE_CANCELED:
        c.canceled_ns = c.due_ns
        c.value_after = order.value
        c.log(CHANGE_CANCELED)
        return
    for d in c.spec.removed:
        item = order.item(d.id)
        assert item is not None and item.quantity >= d.quantity, "validated at registration"
        item.quantity -= d.quantity
    for d in c.spec.added:
        item = order.item(d.id)
        if item is not None:
            item.quantity += d.quantity
        else:
            price = d.price if d.price is not None else 0
            order.items.append(Item(d.id, f"Item {d.id}", d.quantity, price, price))
    order.discounts += c.spec.discount
    order.increments += c.spec.increment
    c.finished_ns = c.due_ns
    c.value_after = order.value
    c.log(CHANGE_DONE)


class WorkerPool:
    """At most `size` Changes processing at once across all orders; the others queue FIFO.

    A real platform's Change queue backs up under load, which widens the race
    window. Time is simulated exactly: `advance(now)` replays every finish and
    start up to `now` in time order, so a Change's start (and so `finished`)
    does not depend on when the mock happens to look.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._busy = 0
        self._waiting: collections.deque[tuple[Order, ChangeRecord]] = collections.deque()
        self._processing: list[tuple[int, int, Order, ChangeRecord]] = []
        self._seq = itertools.count()

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def idle(self) -> bool:
        return self._busy == 0 and not self._waiting

    def submit(self, order: Order, record: ChangeRecord, now_ns: int) -> None:
        """A Change just registered (with autostart=False): ready now if it heads its order's chain."""
        if _next_unstarted(order) is record and not any(
            c.started_ns is not None and not c.terminal for c in order.changes
        ):
            self._ready(order, record, now_ns)

    def advance(self, now_ns: int) -> list[tuple[Order, ChangeRecord]]:
        applied: list[tuple[Order, ChangeRecord]] = []
        while self._processing and self._processing[0][0] <= now_ns:
            due, _, order, c = heapq.heappop(self._processing)
            _apply(order, c, now_ns)
            applied.append((order, c))
            self._busy -= 1
            nxt = _next_unstarted(order)
            if nxt is not None:
                self._ready(order, nxt, due)
            self._drain(due)
        return applied

    def next_due_ns(self) -> int | None:
        return self._processing[0][0] if self._processing else None

    def _ready(self, order: Order, c: ChangeRecord, ready_ns: int) -> None:
        c.ready_ns = ready_ns
        self._waiting.append((order, c))
        self._drain(ready_ns)

    def _drain(self, at_ns: int) -> None:
        while self._waiting and self._busy < self.size:
            order, c = self._waiting.popleft()
            assert c.ready_ns is not None
            _start(c, c.ready_ns, max(c.ready_ns, at_ns))
            self._busy += 1
            assert c.due_ns is not None
            heapq.heappush(self._processing, (c.due_ns, next(self._seq), order, c))
