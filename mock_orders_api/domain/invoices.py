"""Invoice notifications and the policy that validates them.

`vulnerable` validates an invoice against the order's *committed* value, so an
unfinished value-reducing Change is ignored: ticket 1348894. `strict` refuses
the invoice while such a Change is unfinished. An accepted invoice that brings
the invoiced total to the order value moves the order to `invoice` for the
settle time S, then to `invoiced` (immediately when S = 0).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

from mock_orders_api.dates import iso_now
from mock_orders_api.domain import cancellation
from mock_orders_api.domain.model import (
    CANCEL,
    CANCELED,
    HANDLING,
    INVOICE,
    INVOICED,
    PAYMENT_APPROVED,
    READY_FOR_HANDLING,
    WAITING_FOR_FULFILLMENT,
    InvoiceRecord,
    InvoiceSpec,
    Order,
    cents,
)
from mock_orders_api.errors import ApiError, BadRequest, Conflict

_TYPES = ("Output", "Input")
_OPTIONAL_TEXT = (
    "invoiceKey",
    "invoiceUrl",
    "courier",
    "trackingNumber",
    "trackingUrl",
    "dispatchedDate",
    "embeddedInvoice",
    "cfop",
    "volumes",
)


# The two invoice routes and their documented bodies:
# "oms": `POST /api/oms/pvt/orders/{orderId}/invoice` (SPEC InvoiceNotification): `issuanceDate`,
#   `invoiceValue` in cents (string or integer), `items[]` of {id, price (unit), quantity} required;
#   re-sending an `invoiceNumber` gets a new receipt that overrides the previous one, and cannot
#   change its other fields.
# "pii": `POST /api/orders/pvt/document/{orderId}/invoices` (PII-SPEC InvoiceNotification2):
#   `issuedDate` (YYYY-MM-DD), integer `invoiceValue`, `items[]` of {itemIndex, price (line total),
#   quantity} required, optional integer `extraValue`; "it is not allowed to use the same
#   `invoiceNumber` in more than one request".
ROUTES: tuple[str, ...] = ("oms", "pii")
_ISSUED_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_body(body: Any, route: str = "oms", n_items: int | None = None) -> InvoiceSpec:
    """The invoice `route` ("oms" | "pii") documents; `n_items` bounds a PII `itemIndex`."""
    if not isinstance(body, dict):
        raise BadRequest(f"invoice: expected a JSON object; got {type(body).__name__}")
    kind = body.get("type")
    if kind not in _TYPES:
        raise BadRequest(f"invoice.type: required, one of {list(_TYPES)} (Output = sale, Input = return); got {kind!r}")
    number = body.get("invoiceNumber")
    if not isinstance(number, (str, int)) or isinstance(number, bool) or str(number).strip() == "":
        raise BadRequest(f"invoice.invoiceNumber: required, a non-empty string; got {number!r}")
    raw_value = body.get("invoiceValue")
    if route == "pii" and isinstance(raw_value, str):
        raise BadRequest(f"invoice.invoiceValue: expected an integer number of cents (PII route); got {raw_value!r}")
    value = cents(raw_value, "invoice.invoiceValue", minimum=1)
    if route == "pii":
        issued = body.get("issuedDate")
        if not isinstance(issued, str) or not _ISSUED_DATE.fullmatch(issued.strip()):
            raise BadRequest(f"invoice.issuedDate: required, a YYYY-MM-DD date; got {issued!r}")
        if body.get("extraValue") is not None:
            cents(body["extraValue"], "invoice.extraValue")
    else:
        issuance = body.get("issuanceDate")
        if not isinstance(issuance, str) or not issuance.strip():
            raise BadRequest(f"invoice.issuanceDate: required, an ISO 8601 date string; got {issuance!r}")
    for name in _OPTIONAL_TEXT:
        if name in body and body[name] is not None and not isinstance(body[name], (str, int)):
            raise BadRequest(f"invoice.{name}: expected a string; got {body[name]!r}")
    _items(body.get("items"), route, n_items)
    return InvoiceSpec(kind, str(number), value, dict(body))


def _items(items: Any, route: str, n_items: int | None) -> None:
    shape = "{itemIndex, price, quantity}" if route == "pii" else "{id, price, quantity}"
    if not isinstance(items, list) or not items:
        got = type(items).__name__ if items is not None else "nothing"
        raise BadRequest(f"invoice.items: required, a non-empty list of {shape}; got {got}")
    for n, raw in enumerate(items):
        at = f"invoice.items[{n}]"
        if not isinstance(raw, dict):
            raise BadRequest(f"{at}: expected an object {shape}")
        if route == "pii":
            index = cents(raw.get("itemIndex"), f"{at}.itemIndex", what="an integer item index")
            if n_items is not None and index >= n_items:
                raise BadRequest(f"{at}.itemIndex: the order has {n_items} item(s); got {index}")
        elif not isinstance(raw.get("id"), str) or not raw.get("id"):
            raise BadRequest(f"{at}.id: expected a non-empty string; got {raw.get('id')!r}")
        cents(raw.get("price"), f"{at}.price")
        cents(raw.get("quantity"), f"{at}.quantity", minimum=1, what="an integer quantity")


def post_invoice(
    order: Order,
    spec: InvoiceSpec,
    *,
    policy: str,
    settle_ms: float,
    arrival_ns: int,
    now_ns: int,
    new_id: Callable[[], str] | None = None,
    route: str = "oms",
    cancel_policy: str = "vulnerable",
) -> InvoiceRecord:
    """Validate and record an invoice. A refusal is recorded in the audit, then raised.

    `new_id` makes the receipt (default: a random uuid4 hex)."""
    prior = order.accepted_invoice(spec.invoice_number)
    if prior is not None:
        if route == "pii":  # PII-SPEC: "not allowed to use the same invoiceNumber in more than one request"
            raise Conflict(f"invoice number {spec.invoice_number!r} was already used on order {order.order_id}",
                           code="InvoiceAlreadyExists")
        # SPEC (OMS invoice notification): a re-send gets a new receipt that overrides the previous
        # one; its other fields cannot change, so the invoice keeps its value and type.
        prior.receipt = new_id() if new_id is not None else uuid.uuid4().hex
        prior.date = iso_now()
        return prior
    record = InvoiceRecord(
        invoice_number=spec.invoice_number,
        type=spec.type,
        invoice_value=spec.invoice_value,
        body=spec.body,
        arrival_ns=arrival_ns,
        acted_ns=now_ns,
        accepted=False,
        status=0,
        validated_against=None,
        date=iso_now(),
    )
    try:
        record.validated_against = _validate(order, spec, policy, cancel_policy)
    except ApiError as err:
        record.status = err.status
        record.reason = err.message
        record.body = _kept_body(spec.body)
        order.add_invoice(record)
        raise
    record.accepted = True
    record.status = 200
    record.receipt = new_id() if new_id is not None else uuid.uuid4().hex
    order.add_invoice(record)
    if order.status == CANCEL:
        cancellation.invoice_accepted(order)  # KI-1400005: the order stays `cancel`, in error
        return record
    if spec.type == "Output" and order.invoiced_total >= order.value and order.status != INVOICED:
        if settle_ms > 0:
            order.set_status(INVOICE, now_ns)
            order.settle_due_ns = now_ns + round(settle_ms * 1e6)
        else:
            order.set_status(INVOICED, now_ns)
    return record


def _validate(order: Order, spec: InvoiceSpec, policy: str, cancel_policy: str = "vulnerable") -> int:
    """Return the order value the invoice was validated against, or raise the refusal."""
    oid = order.order_id
    if order.status == CANCELED:
        raise Conflict(f"order {oid} is canceled; it cannot be invoiced", code="OrderCanceled")
    cancellation.check_invoice(order, cancel_policy)
    if spec.type == "Input":
        if spec.invoice_value > order.invoiced_total:
            raise BadRequest(
                f"return invoice value {spec.invoice_value} exceeds the {order.invoiced_total} cents invoiced",
                code="InvalidInvoiceValue",
            )
        return order.value
    if order.status == READY_FOR_HANDLING:
        raise Conflict(f"order {oid} is ready-for-handling; start handling before invoicing", code="InvalidStatus")
    if order.status == CANCEL and order.cancel_from in (HANDLING, WAITING_FOR_FULFILLMENT):
        pass  # vulnerable cancel policy: the invoice races the cancellation (KI-1400005)
    elif order.status not in (HANDLING, WAITING_FOR_FULFILLMENT, INVOICE, INVOICED):
        raise Conflict(f"order {oid} is {order.status!r}; it cannot be invoiced", code="InvalidStatus")
    if policy == "strict":
        pending = [c for c in order.unfinished_changes() if c.change_value < 0]
        if pending:
            raise Conflict(
                f"order {oid} has {len(pending)} unfinished Change(s) that reduce its value "
                f"(request {pending[0].request_id}); wait until finished is true, then invoice the updated value",
                code="ChangeInProgress",
            )
    # vulnerable: unfinished Changes are ignored, which is the bug being reproduced.
    value = order.value
    remaining = value - order.invoiced_total
    if spec.invoice_value > remaining:
        raise BadRequest(
            f"invoice value {spec.invoice_value} exceeds the order's remaining value {remaining} "
            f"(order value {value}, already invoiced {order.invoiced_total})",
            code="InvalidInvoiceValue",
        )
    return value


def settle(order: Order, now_ns: int, invoice_first: str = "over-invoice") -> bool:
    """Finish the settle window if it is over; True when the order left `invoice`.

    `invoice_first` is what the invoice-first window (a Change accepted while the invoice settles)
    ends in: "over-invoice", `invoiced` above the final value (KI-1348894, first symptom), or
    "stuck", `payment-approved` with the valid invoice, never `invoiced` (KI-1348894, second symptom).
    """
    if order.settle_due_ns is None or now_ns < order.settle_due_ns:
        return False
    due = order.settle_due_ns
    order.settle_due_ns = None
    if order.status == INVOICE:
        stuck = invoice_first == "stuck" and order.change_while_settling
        order.set_status(PAYMENT_APPROVED if stuck else INVOICED, due)
        return True
    return False


_KEPT_BODY_BYTES = 4096


def _kept_body(body: dict[str, Any]) -> dict[str, Any]:
    """A refused invoice's body as the audit keeps it: whole up to 4 KiB, else its short scalar
    fields and the size it had (refusals are unbounded in number; their bodies must not be)."""
    size = len(json.dumps(body))
    if size <= _KEPT_BODY_BYTES:
        return body
    kept = {k: v for k, v in body.items()
            if isinstance(v, (int, float, bool)) or (isinstance(v, str) and len(v) <= 256)}
    return {**kept, "truncatedFromBytes": size}
