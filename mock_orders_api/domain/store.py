"""All orders of one mock instance, by id; order creation from the admin API's body."""

from __future__ import annotations

import itertools
import random
from typing import Any

from mock_orders_api.dates import iso_now
from mock_orders_api.domain.model import INITIAL_STATUSES, READY_FOR_HANDLING, Item, Order, StatusListener, cents
from mock_orders_api.errors import BadRequest, Conflict, NotFound


class OrderStore:
    """All orders of one mock instance, by id."""

    def __init__(self, first_id: int | None = None) -> None:
        self._orders: dict[str, Order] = {}
        # A random base per mock: a service pointed at the wrong mock asks for ids this one never
        # made (404), instead of finding another mock's order of the same number.
        self._ids = itertools.count(first_id if first_id is not None else random.SystemRandom().randrange(
            1_000_001, 90_000_000))
        self.listeners: list[StatusListener] = []  # shared with every order (status changes)

    def __len__(self) -> int:
        return len(self._orders)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._orders.values())

    def clear(self) -> None:
        self._orders.clear()

    def oldest(self) -> Order | None:
        """The order created first among those held (dicts keep insertion order)."""
        return next(iter(self._orders.values()), None)

    def remove(self, order_id: str) -> None:
        self._orders.pop(order_id, None)

    def find(self, order_id: str) -> Order | None:
        return self._orders.get(order_id)

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
        elif (not isinstance(order_id, str) or not order_id or len(order_id) > 128 or order_id in (".", "..")
              or not order_id.isprintable() or any(c in order_id for c in "/?#%\\")):
            # The id must round-trip through a URL path: '.'/'..' are normalised away by clients,
            # '/?#%\' and control characters change the path.
            raise BadRequest(f"order.orderId: expected 1..128 printable characters, not '.' or '..', "
                             f"without / ? # % or \\; got {order_id!r:.100}")
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
