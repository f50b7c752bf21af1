"""Order state: items, totals, committed value, invoices and Changes of each order.

State is only ever mutated synchronously on the event loop (no `await` inside a
mutation), so every handler's critical section is atomic without locks; the
moment it runs is the server's "acted" time for that request.
"""

from __future__ import annotations

import contextvars
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from mock_orders_api.errors import BadRequest, Conflict, NotFound

if TYPE_CHECKING:
    from mock_orders_api.changes import ChangeRecord
    from mock_orders_api.invoices import InvoiceRecord

# Status ids of the public Orders API that this mock uses.
READY_FOR_HANDLING = "ready-for-handling"
HANDLING = "handling"
WAITING_FOR_FULFILLMENT = "waiting-for-fulfillment"
INVOICE = "invoice"  # "verifying invoice": the settle window S
INVOICED = "invoiced"
CANCELED = "canceled"
INITIAL_STATUSES = (READY_FOR_HANDLING, HANDLING, WAITING_FOR_FULFILLMENT)


# Called after every status change, synchronously: (order, previous status or None on
# creation, ns of the change). The order hook dispatcher is one (see hooks.py).
StatusListener = Callable[["Order", "str | None", int], None]


# Where dates come from: None = the wall clock; a simulated run sets a function of its virtual clock
# (see `virtual_dates`), so the dates it writes are reproducible too.
DATE_SOURCE: contextvars.ContextVar[Callable[[], str] | None] = contextvars.ContextVar("mock_date_source",
                                                                                      default=None)


def iso_now() -> str:
    source = DATE_SOURCE.get()
    if source is not None:
        return source()
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def virtual_dates(clock_ns: Callable[[], int], epoch: datetime = datetime(2026, 1, 9, tzinfo=timezone.utc),
                  ) -> Callable[[], str]:
    """ISO dates (as `iso_now` formats them) of `epoch` + `clock_ns()` nanoseconds."""
    cache: list[Any] = [None, ""]

    def now() -> str:
        ns = clock_ns()
        sec = ns // 1_000_000_000
        if sec != cache[0]:
            cache[0], cache[1] = sec, (epoch + timedelta(seconds=sec)).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{cache[1]}.{ns // 1000 % 1_000_000:06d}Z"

    return now


@dataclass
class Item:
    id: str
    name: str
    quantity: int
    price: int  # cents, unit list price
    selling_price: int  # cents, unit price actually charged

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "productId": self.id,
            "name": self.name,
            "quantity": self.quantity,
            "price": self.price,
            "listPrice": self.price,
            "sellingPrice": self.selling_price,
            "measurementUnit": "un",
            "unitMultiplier": 1,
        }


@dataclass
class Order:
    order_id: str
    status: str
    items: list[Item]
    shipping: int
    tax: int
    discounts: int  # cents, >= 0; shown negative in totals as VTEX does
    created_ns: int
    created_at: str
    increments: int = 0  # cents added by Changes (manualIncrementValue)
    initial_value: int = 0
    changes: list[ChangeRecord] = field(default_factory=list)  # accepted, in arrival order
    refused_changes: list[dict[str, Any]] = field(default_factory=list)
    invoices: list[InvoiceRecord] = field(default_factory=list)  # accepted and refused
    settle_due_ns: int | None = None
    status_history: list[dict[str, Any]] = field(default_factory=list)
    listeners: list[StatusListener] = field(default_factory=list, repr=False, compare=False)
    hooks: list[dict[str, Any]] = field(default_factory=list, repr=False, compare=False)  # hook delivery attempts

    def __post_init__(self) -> None:
        self.initial_value = self.value
        self.status_history.append({"status": self.status, "ns": self.created_ns, "date": self.created_at})

    # --- derived values -------------------------------------------------
    @property
    def items_total(self) -> int:
        return sum(i.quantity * i.selling_price for i in self.items)

    @property
    def value(self) -> int:
        """The committed order value: only finished Changes are reflected."""
        return self.items_total - self.discounts + self.shipping + self.tax + self.increments

    def totals(self) -> list[dict[str, Any]]:
        rows = [
            {"id": "Items", "name": "Total dos Itens", "value": self.items_total},
            {"id": "Discounts", "name": "Total dos Descontos", "value": -self.discounts},
            {"id": "Shipping", "name": "Total do Frete", "value": self.shipping},
            {"id": "Tax", "name": "Total da Taxa", "value": self.tax},
        ]
        if self.increments:
            rows.append({"id": "Change", "name": "Total das Alterações", "value": self.increments})
        return rows

    @property
    def invoiced_total(self) -> int:
        """Net accepted invoice value: Output invoices minus Input (return) invoices."""
        total = 0
        for inv in self.invoices:
            if inv.accepted:
                total += inv.invoice_value if inv.type == "Output" else -inv.invoice_value
        return total

    def unfinished_changes(self) -> list[ChangeRecord]:
        return [c for c in self.changes if not c.finished]

    def item(self, item_id: str) -> Item | None:
        return next((i for i in self.items if i.id == item_id), None)

    def set_status(self, status: str, ns: int) -> None:
        """The one place an order's status changes; listeners hear of every change."""
        if status != self.status:
            previous = self.status
            self.status = status
            self.status_history.append({"status": status, "ns": ns, "date": iso_now()})
            self.notify(previous, ns)

    def notify(self, previous: str | None, ns: int) -> None:
        for listener in self.listeners:
            listener(self, previous, ns)

    # --- views ------------------------------------------------------------
    def view(self) -> dict[str, Any]:
        """The order as `GET /api/oms/pvt/orders/{orderId}` returns it."""
        packages = [inv.package_view() for inv in self.invoices if inv.accepted]
        finished = [c for c in self.changes if c.finished]
        return {
            "orderId": self.order_id,
            "sequence": self.order_id.split("-")[0],
            "status": self.status,
            "statusDescription": _STATUS_DESCRIPTIONS.get(self.status, self.status),
            "value": self.value,
            "creationDate": self.created_at,
            "lastChange": self.status_history[-1]["date"],
            "totals": self.totals(),
            "items": [i.view() for i in self.items],
            "packageAttachment": {"packages": packages},
            "changesAttachment": (
                {"id": "changeAttachment", "changesData": [c.attachment_view() for c in finished]}
                if finished
                else None
            ),
            "isCompleted": True,
        }

    def audit(self) -> dict[str, Any]:
        """What the mock itself knows about the order: the oracle's second source."""
        unfinished = self.unfinished_changes()
        if unfinished:
            verdict = "pending"
        elif self.invoiced_total > self.value:
            verdict = "race"
        else:
            verdict = "clean"
        return {
            "orderId": self.order_id,
            "status": self.status,
            "initialValue": self.initial_value,
            "finalValue": self.value,
            "invoicedTotal": self.invoiced_total,
            "verdict": verdict,
            "createdNs": self.created_ns,
            "invoices": [inv.audit_view() for inv in self.invoices],
            "changes": [c.audit_view() for c in self.changes] + list(self.refused_changes),
            "statusHistory": list(self.status_history),
            "hooks": list(self.hooks),
        }


_STATUS_DESCRIPTIONS = {
    READY_FOR_HANDLING: "Pronto para o manuseio",
    HANDLING: "Preparando Entrega",
    WAITING_FOR_FULFILLMENT: "Aguardando fulfillment",
    INVOICE: "Verificando Envio",
    INVOICED: "Faturado",
    CANCELED: "Cancelado",
}


class OrderStore:
    """All orders of one mock instance, by id."""

    def __init__(self) -> None:
        self._orders: dict[str, Order] = {}
        self._ids = itertools.count(1_000_001)
        self.listeners: list[StatusListener] = []  # shared with every order (status changes)

    def __len__(self) -> int:
        return len(self._orders)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._orders.values())

    def clear(self) -> None:
        self._orders.clear()

    def get(self, order_id: str) -> Order:
        try:
            return self._orders[order_id]
        except KeyError:
            raise NotFound(f"order {order_id!r} not found", code="OrderNotFound") from None

    def create(self, spec: dict[str, Any], now_ns: int) -> Order:
        """Create an order from the admin API's body (validated here, state untouched on error)."""
        if not isinstance(spec, dict):
            raise BadRequest("order: expected a JSON object with 'items'")
        unknown = set(spec) - {"orderId", "items", "shipping", "tax", "discounts", "status"}
        if unknown:
            raise BadRequest(f"order: unknown field(s) {sorted(unknown)}")
        raw_items = spec.get("items")
        if not isinstance(raw_items, list) or not raw_items:
            raise BadRequest("order.items: expected a non-empty list of {id, quantity, price}")
        items: list[Item] = []
        for n, raw in enumerate(raw_items):
            where = f"order.items[{n}]"
            if not isinstance(raw, dict):
                raise BadRequest(f"{where}: expected an object")
            item_id = raw.get("id")
            if not isinstance(item_id, str) or not item_id:
                raise BadRequest(f"{where}.id: expected a non-empty string; got {item_id!r}")
            if any(i.id == item_id for i in items):
                raise BadRequest(f"{where}.id: duplicate item id {item_id!r}")
            quantity = cents(raw.get("quantity"), f"{where}.quantity", minimum=1, what="an integer quantity")
            price = cents(raw.get("price"), f"{where}.price")
            selling = cents(raw.get("sellingPrice", price), f"{where}.sellingPrice")
            name = raw.get("name", f"Item {item_id}")
            if not isinstance(name, str):
                raise BadRequest(f"{where}.name: expected a string; got {name!r}")
            items.append(Item(item_id, name, quantity, price, selling))
        status = spec.get("status", READY_FOR_HANDLING)
        if status not in INITIAL_STATUSES:
            raise BadRequest(f"order.status: expected one of {list(INITIAL_STATUSES)}; got {status!r}")
        order_id = spec.get("orderId")
        if order_id is None:
            order_id = f"{next(self._ids)}-01"
            while order_id in self._orders:
                order_id = f"{next(self._ids)}-01"
        elif not isinstance(order_id, str) or not order_id or "/" in order_id:
            raise BadRequest(f"order.orderId: expected a non-empty string without '/'; got {order_id!r}")
        elif order_id in self._orders:
            raise Conflict(f"order {order_id!r} already exists", code="OrderAlreadyExists")
        order = Order(
            order_id=order_id,
            status=status,
            items=items,
            shipping=cents(spec.get("shipping", 0), "order.shipping"),
            tax=cents(spec.get("tax", 0), "order.tax"),
            discounts=cents(spec.get("discounts", 0), "order.discounts"),
            created_ns=now_ns,
            created_at=iso_now(),
            listeners=self.listeners,
        )
        if order.value < 0:
            raise BadRequest(f"order: discounts exceed the order total (value would be {order.value})")
        self._orders[order_id] = order
        order.notify(None, now_ns)  # creation is the first status change
        return order


def cents(value: Any, where: str, minimum: int = 0, what: str = "an integer number of cents") -> int:
    """An integer amount (cents, or a count); digit strings are accepted as VTEX examples send them."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{where}: expected {what} >= {minimum}; got {value!r}")
    if value < minimum:
        raise BadRequest(f"{where}: expected an integer >= {minimum}; got {value}")
    return value
