"""The mock's records: orders and their items, Changes, refused Changes and invoices.

Every record lives here, beside `Order`, so the modules that act on them
(store, changes, invoices) depend on this one and not on each other. State is
only ever mutated synchronously on the event loop (no `await` inside a
mutation), so every handler's critical section is atomic without locks; the
moment it runs is the server's "acted" time for that request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mock_orders_api.dates import iso_now
from mock_orders_api.errors import BadRequest
from mock_orders_api.rendering import Raw, dumps, dumps_object

# Status ids of the public Orders API that this mock uses.
READY_FOR_HANDLING = "ready-for-handling"
HANDLING = "handling"
WAITING_FOR_FULFILLMENT = "waiting-for-fulfillment"
INVOICE = "invoice"  # "verifying invoice": the settle window S
INVOICED = "invoiced"
CANCEL = "cancel"  # "Canceling": a cancellation in progress (HC-FLOW), `canceled` after cancel_delay_ms
CANCELED = "canceled"
# KI-1348894's second symptom: an order that settles back here, with a valid invoice, instead of `invoiced`.
PAYMENT_APPROVED = "payment-approved"
INITIAL_STATUSES = (READY_FOR_HANDLING, HANDLING, WAITING_FOR_FULFILLMENT)

# A Change request's statuses (HC-ADAPT "adapting your integration for order modifications";
# SPEC `GET /api/order-system/orders/{changeOrderId}/changes/{changeRequestId}`):
# waiting-acknowledgement -> waiting-confirmation -> preparing -> done, or
# waiting-acknowledgement -> waiting-confirmation -> canceling -> canceled.
CHANGE_WAITING_ACK = "waiting-acknowledgement"  # accepted, not processing yet
CHANGE_WAITING_CONFIRMATION = "waiting-confirmation"  # processing, first half of its delay D
CHANGE_PREPARING = "preparing"  # processing, second half of D, will be done
CHANGE_DONE = "done"
CHANGE_CANCELING = "canceling"  # processing, second half of D, will be canceled
CHANGE_CANCELED = "canceled"
CHANGE_OUTCOMES = (CHANGE_DONE, CHANGE_CANCELED)


# Called after every status change, synchronously: (order, previous status or None on
# creation, ns of the change). The order hook dispatcher is one (see delivery.py).
StatusListener = Callable[["Order", "str | None", int], None]


@dataclass(frozen=True)
class ItemDelta:
    id: str
    quantity: int
    price: int | None = None  # cents; needed only for an item new to the order


@dataclass(frozen=True)
class ChangeSpec:
    """A Change request normalised from either public endpoint's body."""

    reason: str
    removed: tuple[ItemDelta, ...] = ()
    added: tuple[ItemDelta, ...] = ()
    discount: int = 0
    increment: int = 0
    request_id: str | None = None


@dataclass
class ChangeRecord:
    request_id: str
    workflow_id: str
    order_id: str
    account: str
    endpoint: str  # "order-system" | "oms"
    spec: ChangeSpec
    delay_ms: float
    arrival_ns: int
    acted_ns: int
    date: str
    value_before: int  # committed value when the Change was accepted
    change_value: int  # signed effect on the order value, cents
    ready_ns: int | None = None  # when it could start: arrival, or its order's previous Change finishing
    started_ns: int | None = None  # processing start (later than ready only when workers are all busy)
    due_ns: int | None = None
    finished_ns: int | None = None  # == due_ns: the moment it applied in mock time
    applied_ns: int | None = None  # when the mock actually ran the apply (timer or lazy)
    value_after: int | None = None
    finished_date: str | None = None
    # Decided at acceptance (seeded draw or the pinned header): "done" applies the Change at its
    # due time; "canceled" ends it there without touching the order (VTEX cancels a Change
    # that fails, HC-ADAPT; MOD-ERR SalesOrderSystem017 "auto-canceled after retries").
    outcome: str = CHANGE_DONE
    canceled_ns: int | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    # `attachment_view()` rendered, with the finished_date it was rendered for (the rest is fixed).
    _attachment: tuple[str | None, bytes] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        """VTEX's `finished`: true once the Change applied; a canceled Change stays false for ever (HC-ADAPT)."""
        return self.finished_ns is not None

    @property
    def canceled(self) -> bool:
        return self.canceled_ns is not None

    @property
    def terminal(self) -> bool:
        """Done or canceled: nothing more will happen to this Change."""
        return self.finished or self.canceled

    def status_at(self, now_ns: int | None = None) -> str:
        """VTEX's Change status at `now_ns` (None: the coarse status, without the half-way step)."""
        if self.finished:
            return CHANGE_DONE
        if self.canceled:
            return CHANGE_CANCELED
        if self.started_ns is None or self.due_ns is None:
            return CHANGE_WAITING_ACK
        if now_ns is not None and now_ns >= (self.started_ns + self.due_ns) // 2:
            return CHANGE_CANCELING if self.outcome == CHANGE_CANCELED else CHANGE_PREPARING
        return CHANGE_WAITING_CONFIRMATION

    @property
    def status(self) -> str:
        return self.status_at()

    def log(self, status: str) -> None:
        self.logs.append({"date": iso_now(), "status": status})

    def view(self, now_ns: int | None = None) -> dict[str, Any]:
        """The change request as the order-system Change API returns it (SPEC create shape + HC-ADAPT fields)."""
        s = self.spec
        return {
            "requestId": self.request_id,
            "workflowId": self.workflow_id,
            "reason": s.reason,
            "manualDiscountValue": s.discount,
            "manualIncrementValue": s.increment,
            "totalChangeValue": self.change_value,
            "totals": [{"id": "Change", "value": self.change_value}],
            "add": {"items": [_delta_view(d) for d in s.added]} if s.added else None,
            "remove": {"items": [_delta_view(d) for d in s.removed]} if s.removed else None,
            "replace": None,
            "date": self.date,
            "origin": {"account": self.account, "orderId": self.order_id, "component": "MockOrdersApi"},
            "settings": None,
            "status": self.status_at(now_ns),
            "inProgress": not self.terminal,
            "finished": self.finished,
            "finishedDate": self.finished_date,
            "logs": list(self.logs),
            "cancellationData": (
                {"reason": "the platform could not apply this Change", "cancellationDate": self.finished_date}
                if self.canceled else None
            ),
            "delayMs": self.delay_ms,
        }

    def attachment_view(self) -> dict[str, Any]:
        """The entry in the order's `changesAttachment.changesData`."""
        s = self.spec
        return {
            "reason": s.reason,
            "discountValue": s.discount,
            "incrementValue": s.increment,
            "itemsAdded": [_delta_view(d) for d in s.added],
            "itemsRemoved": [_delta_view(d) for d in s.removed],
            "receipt": {"date": self.finished_date, "orderId": self.order_id, "receipt": self.request_id},
        }

    def attachment_json(self) -> bytes:
        """`attachment_view()` rendered (`dumps`), once per finished_date: what it shows besides
        that date (spec, ids) never changes."""
        cached = self._attachment
        if cached is None or cached[0] != self.finished_date:
            cached = self._attachment = (self.finished_date, dumps(self.attachment_view()))
        return cached[1]

    def audit_view(self) -> dict[str, Any]:
        return {
            "requestId": self.request_id,
            "endpoint": self.endpoint,
            "accepted": True,
            "status": 202,
            "changeStatus": self.status,
            "finished": self.finished,
            "canceled": self.canceled,
            "delayMs": self.delay_ms,
            "arrivalNs": self.arrival_ns,
            "actedNs": self.acted_ns,
            "readyNs": self.ready_ns,
            "startedNs": self.started_ns,
            "queueWaitMs": (self.started_ns - self.ready_ns) / 1e6
            if self.started_ns is not None and self.ready_ns is not None else None,
            "dueNs": self.due_ns,
            "finishedNs": self.finished_ns,
            "canceledNs": self.canceled_ns,
            "appliedNs": self.applied_ns,
            "valueBefore": self.value_before,
            "valueAfter": self.value_after,
            "changeValue": self.change_value,
        }


def _delta_view(d: ItemDelta) -> dict[str, Any]:
    out: dict[str, Any] = {"id": d.id, "quantity": d.quantity}
    if d.price is not None:
        out["price"] = d.price
    return out


@dataclass(frozen=True)
class RefusedChange:
    """A Change the mock refused, kept for the order's audit."""

    endpoint: str  # "order-system" | "oms"
    status: int
    reason: str
    arrival_ns: int
    acted_ns: int
    code: str = ""

    def audit_view(self) -> dict[str, Any]:
        return {"requestId": None, "endpoint": self.endpoint, "accepted": False, "status": self.status,
                "code": self.code, "reason": self.reason, "finished": False, "arrivalNs": self.arrival_ns, "actedNs": self.acted_ns}


@dataclass
class InvoiceRecord:
    invoice_number: str
    type: str
    invoice_value: int
    body: dict[str, Any]  # the invoice JSON as received
    arrival_ns: int
    acted_ns: int
    accepted: bool
    status: int
    validated_against: int | None  # the order value the policy compared with
    reason: str = ""
    receipt: str | None = None
    date: str = ""
    # `PATCH .../invoice/{invoiceNumber}` (SPEC Updatepartialinvoice.SendTrackingNumber): trackingNumber,
    # trackingUrl, courier, dispatchedDate, shown on the package over the body's (kept as sent).
    tracking: dict[str, Any] = field(default_factory=dict)
    # `PUT .../invoice/{invoiceNumber}/tracking` (SPEC UpdateTrackingStatus): {status, finished,
    # deliveredDate, data[]} as Get order's `courierStatus` shows it; None until tracking is sent.
    courier_status: dict[str, Any] | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        if self.__dict__.get("_filed"):  # filed: an order's invoiced total, index and packages read it
            if name in _FILED_FIELDS:
                raise AttributeError(f"InvoiceRecord.{name} is fixed once the invoice is filed (Order.add_invoice): "
                                     "the order's invoiced total and number index depend on it")
            if name in _PACKAGE_FIELDS:  # replaced, never changed in place: ends every kept packages rendering
                _EPOCH[0] += 1
        object.__setattr__(self, name, value)

    def response(self, order_id: str) -> dict[str, Any]:
        return {"date": self.date, "orderId": order_id, "receipt": self.receipt}

    def package_view(self, item_ids: list[str]) -> dict[str, Any]:
        """The entry in the order's `packageAttachment.packages`: items by `itemIndex`, the position
        in the order's items (SPEC Get order: packages[].items[] are {itemIndex, quantity, price, ...}),
        whichever route's body (`id` on the OMS route, `itemIndex` on the PII one) sent them."""
        view = {k: v for k, v in self.body.items() if k != "invoiceValue"}
        view.update(self.tracking)
        view.update(
            {
                "type": self.type,
                "invoiceNumber": self.invoice_number,
                "invoiceValue": self.invoice_value,
                "items": [_package_item(raw, item_ids) for raw in self.body.get("items", [])],
                "courierStatus": self.courier_status,
            }
        )
        return view

    def audit_view(self) -> dict[str, Any]:
        return {
            "invoiceNumber": self.invoice_number,
            "type": self.type,
            "invoiceValue": self.invoice_value,
            "accepted": self.accepted,
            "status": self.status,
            "validatedAgainst": self.validated_against,
            "reason": self.reason,
            "arrivalNs": self.arrival_ns,
            "actedNs": self.acted_ns,
            "receipt": self.receipt,
            "body": self.body,
        }


_PACKAGE_FIELDS = frozenset({"body", "tracking", "courier_status"})  # what a filed invoice's package may change by
_FILED_FIELDS = frozenset({"accepted", "type", "invoice_number", "invoice_value"})
# Bumped when a filed invoice's package changes: an order's kept packages rendering
# (`Order._packages`) is valid only for the epoch it was made in.
_EPOCH = [0]


def _package_item(raw: Any, item_ids: list[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {"itemIndex": None}
    index = raw.get("itemIndex")
    if index is None and raw.get("id") in item_ids:
        index = item_ids.index(raw["id"])
    return {"itemIndex": index, "quantity": raw.get("quantity"), "price": raw.get("price"),
            "description": raw.get("description"), "unitMultiplier": 1.0}


@dataclass(frozen=True)
class InvoiceSpec:
    type: str
    invoice_number: str
    invoice_value: int
    body: dict[str, Any]


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
    initial_items_total: int = field(default=0, init=False)  # the `Items` total as placed (kept by Changes)
    initial_discounts: int = field(default=0, init=False)
    changes: list[ChangeRecord] = field(default_factory=list)  # accepted, in arrival order
    refused_changes: list[RefusedChange] = field(default_factory=list)
    invoices: list[InvoiceRecord] = field(default_factory=list)  # accepted and refused
    settle_due_ns: int | None = None
    change_while_settling: bool = False  # a Change was accepted in the invoice-first window (status `invoice`)
    # Asynchronous cancellation (domain/cancellation.py): when `cancel` ends, and how.
    cancel_due_ns: int | None = None
    cancel_denied: bool = False  # the seller denies it: back to `cancel_from` instead of `canceled`
    cancel_from: str | None = None  # the status the cancellation started from
    cancellation: dict[str, Any] | None = None  # VTEX's `cancellationData` (SPEC Get order)
    # KI-1400005: an invoice accepted while the order was `cancel` leaves the workflow in error.
    workflow_in_error: bool = False
    # Faults and 429s the mock injected on this order's requests (faults.py), for the audit; bounded.
    faults: list[dict[str, Any]] = field(default_factory=list, repr=False, compare=False)
    status_history: list[dict[str, Any]] = field(default_factory=list)
    listeners: list[StatusListener] = field(default_factory=list, repr=False, compare=False)
    hooks: list[dict[str, Any]] = field(default_factory=list, repr=False, compare=False)  # hook delivery attempts
    feed: list[dict[str, Any]] = field(default_factory=list, repr=False, compare=False)  # Feed v3 events (feed.py)
    # The accepted invoices' packages rendered (`view_json`), for (item ids, the first n invoices,
    # the invoice epoch): `invoices` only grows (`add_invoice`), and a filed invoice's package
    # changes only by a reassigned body, tracking or courier status, which bumps the epoch.
    _packages: tuple[tuple[str, ...], int, int, bytes] | None = field(default=None, init=False, repr=False,
                                                                       compare=False)
    # Kept by `add_invoice` (the one way in): the accepted invoices by number, and their net total.
    _accepted: dict[str, InvoiceRecord] = field(default_factory=dict, init=False, repr=False, compare=False)
    _invoiced: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.initial_value = self.value
        self.initial_items_total = self.items_total
        self.initial_discounts = self.discounts
        self.status_history.append({"status": self.status, "ns": self.created_ns, "date": self.created_at})

    # --- derived values -------------------------------------------------
    @property
    def items_total(self) -> int:
        return sum(i.quantity * i.selling_price for i in self.items)

    @property
    def value(self) -> int:
        """The committed order value: only finished Changes are reflected."""
        return self.items_total - self.discounts + self.shipping + self.tax + self.increments

    @property
    def change_total(self) -> int:
        """Signed sum of the done Changes' effects (items, discounts, increments), cents."""
        return sum(c.change_value for c in self.changes if c.finished)

    def totals(self) -> list[dict[str, Any]]:
        """VTEX keeps the order's `Items`, `Discounts`, `Shipping` and `Tax` totals as placed and adds
        a `Change` total, negative for a reduction, once a Change is done (HC-MODWORKS; SPEC Get order);
        they add up to `value`."""
        rows = [
            {"id": "Items", "name": "Total dos Itens", "value": self.initial_items_total},
            {"id": "Discounts", "name": "Total dos Descontos", "value": -self.initial_discounts},
            {"id": "Shipping", "name": "Total do Frete", "value": self.shipping},
            {"id": "Tax", "name": "Total da Taxa", "value": self.tax},
        ]
        if any(c.finished for c in self.changes):
            rows.append({"id": "Change", "name": "Total das Alterações", "value": self.change_total})
        return rows

    @property
    def invoiced_total(self) -> int:
        """Net accepted invoice value: Output invoices minus Input (return) invoices."""
        return self._invoiced

    def add_invoice(self, record: InvoiceRecord) -> None:
        """File an invoice, accepted or refused (the audit keeps both); what the order's invoiced
        total and number index read of it is fixed from now on (`InvoiceRecord.__setattr__`)."""
        self.invoices.append(record)
        object.__setattr__(record, "_filed", True)
        if record.accepted:
            self._accepted.setdefault(record.invoice_number, record)
            self._invoiced += record.invoice_value if record.type == "Output" else -record.invoice_value

    def accepted_invoice(self, number: str) -> InvoiceRecord | None:
        """The accepted invoice with this number, if any."""
        return self._accepted.get(number)

    def unfinished_changes(self) -> list[ChangeRecord]:
        """Changes still in progress (neither done nor canceled)."""
        return [c for c in self.changes if not c.terminal]

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
    @property
    def invoiced_date(self) -> str | None:
        """When the order became `invoiced` (SPEC Get order `invoicedDate`), None before."""
        return next((h["date"] for h in reversed(self.status_history) if h["status"] == INVOICED), None)

    def status_at(self, ns: int) -> str | None:
        """The order's status at `ns` (None: it did not exist yet)."""
        status = None
        for h in self.status_history:
            if h["ns"] > ns:
                break
            status = h["status"]
        return status

    def view(self) -> dict[str, Any]:
        """The order as `GET /api/oms/pvt/orders/{orderId}` returns it."""
        item_ids = [i.id for i in self.items]
        finished = [c for c in self.changes if c.finished]
        return self._view({"packages": [inv.package_view(item_ids) for inv in self.invoices if inv.accepted]},
                          {"id": "changeAttachment", "changesData": [c.attachment_view() for c in finished]}
                          if finished else None)

    def view_json(self) -> bytes:
        """`dumps(self.view())`, from the packages rendering the order keeps (`_packages_json`) and each
        finished Change's kept on its record: an order's invoices and Changes accumulate, and rendering
        them all again per request made a GET's cost grow with the order."""
        item_ids = tuple(i.id for i in self.items)
        packages = self._packages_json(item_ids)
        finished = [c.attachment_json() for c in self.changes if c.finished]
        changes = (Raw(b'{"id":"changeAttachment","changesData":[' + b",".join(finished) + b"]}")
                   if finished else None)
        return dumps_object(self._view(Raw(b'{"packages":[' + packages + b"]}"), changes))

    def _packages_json(self, item_ids: tuple[str, ...]) -> bytes:
        """The accepted invoices' packages, rendered and joined; the kept rendering is extended
        with the invoices added since, remade whole when the item ids or the epoch changed."""
        n, epoch, kept = len(self.invoices), _EPOCH[0], self._packages
        ids = list(item_ids)
        if kept is not None and kept[0] == item_ids and kept[2] == epoch and kept[1] <= n:
            joined = kept[3]
            new = [dumps(inv.package_view(ids)) for inv in self.invoices[kept[1]:] if inv.accepted]
            if new:
                joined = b",".join([joined, *new]) if joined else b",".join(new)
        else:
            joined = b",".join([dumps(inv.package_view(ids)) for inv in self.invoices if inv.accepted])
        self._packages = (item_ids, n, epoch, joined)
        return joined

    def _view(self, packages: Any, changes: Any) -> dict[str, Any]:
        return {
            "orderId": self.order_id,
            "sequence": self.order_id.split("-")[0],
            "status": self.status,
            "statusDescription": status_description(self.status),
            "value": self.value,
            "creationDate": self.created_at,
            "lastChange": self.status_history[-1]["date"],
            "totals": self.totals(),
            "items": [i.view() for i in self.items],
            "packageAttachment": packages,
            "changesAttachment": changes,
            "isCompleted": True,
            "workflowIsInError": self.workflow_in_error,
            "invoicedDate": self.invoiced_date,
            "cancellationData": dict(self.cancellation) if self.cancellation is not None else None,
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
            "changes": [c.audit_view() for c in self.changes] + [r.audit_view() for r in self.refused_changes],
            "statusHistory": list(self.status_history),
            "workflowIsInError": self.workflow_in_error,
            "faults": list(self.faults),
            "hooks": list(self.hooks),
            "feed": list(self.feed),
        }


_STATUS_DESCRIPTIONS = {
    READY_FOR_HANDLING: "Pronto para o manuseio",
    HANDLING: "Preparando Entrega",
    WAITING_FOR_FULFILLMENT: "Aguardando fulfillment",
    INVOICE: "Verificando Envio",
    INVOICED: "Faturado",
    CANCEL: "Cancelando",
    CANCELED: "Cancelado",
    PAYMENT_APPROVED: "Pagamento Aprovado",
}


def status_description(status: str) -> str:
    return _STATUS_DESCRIPTIONS.get(status, status)


def cents(value: Any, where: str, minimum: int = 0, what: str = "an integer number of cents") -> int:
    """An integer amount (cents, or a count); digit strings are accepted as VTEX examples send them."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        if len(value.strip()) > 18:  # int() past 4300 digits raises; no amount has more than 18
            raise BadRequest(f"{where}: expected {what} below 10**18; got {len(value.strip())} digits")
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{where}: expected {what} >= {minimum}; got {value!r:.100}")
    if value < minimum:
        raise BadRequest(f"{where}: expected an integer >= {minimum}; got {value}")
    if value >= 10**18:
        raise BadRequest(f"{where}: expected {what} below 10**18")
    return value
