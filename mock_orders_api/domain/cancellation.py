"""Asynchronous cancellation: `POST .../cancel` moves the order to `cancel` ("Canceling") and,
`cancel_delay_ms` later, to `canceled` (HC-FLOW; KI-1242813: seconds to minutes), or back to the
status it came from when the seller denies it (CANCEL-GUIDE, the seller-deny path).

Refusals (SPEC `cancel.post`; CANCEL-GUIDE): a partially invoiced order cannot be canceled (400);
an invoiced one neither (409: send a return invoice instead).

What an invoice arriving while the order is `cancel` meets is the cancel policy (KI-1400005, the
cancel-vs-invoice race): `vulnerable` accepts it, and the cancellation is left stuck in `cancel`
for ever with `workflowIsInError: true` while the invoice stands; `strict` refuses it.

Like Changes, the end of `cancel` is evaluated lazily from the clock (`advance`), so every
observer sees it flip exactly at its due time, on the host clock or a simulated one; a timer
also advances the order then, so that its hook fires on time.
"""

from __future__ import annotations

from mock_orders_api.dates import iso_now
from mock_orders_api.domain.model import CANCEL, CANCELED, INVOICE, INVOICED, Order
from mock_orders_api.errors import BadRequest, Conflict

CANCEL_OUTCOMES: tuple[str, ...] = ("canceled", "denied")


def request(order: Order, *, now_ns: int, delay_ms: float, reason: str | None, denied: bool = False) -> None:
    """Start canceling `order` (state untouched when this raises); a repeat while `cancel` or once
    `canceled` changes nothing."""
    oid = order.order_id
    if order.status in (CANCEL, CANCELED):
        return
    if order.status in (INVOICE, INVOICED):
        raise Conflict(f"order {oid} is {order.status!r}; an invoiced order cannot be canceled (send a return "
                       "invoice instead)", code="OrderAlreadyInvoiced")
    if order.invoiced_total > 0:
        # SPEC `cancel.post` and CANCEL-GUIDE: "cancellation attempts will result in a 400".
        raise BadRequest(f"order {oid} is partially invoiced ({order.invoiced_total} cents); it cannot be "
                         "canceled", code="OrderPartiallyInvoiced")
    order.cancel_from = order.status
    order.cancel_denied = denied
    order.cancel_due_ns = now_ns + round(delay_ms * 1e6)
    # SPEC Get order `cancellationData`; its CancellationDate is set when the order is `canceled`.
    order.cancellation = {"RequestedByUser": True, "RequestedBySystem": False,
                          "RequestedBySellerNotification": False, "RequestedByPaymentNotification": False,
                          "Reason": reason, "CancellationDate": None}
    order.set_status(CANCEL, now_ns)


def advance(order: Order, now_ns: int) -> bool:
    """End the cancellation if it is due by `now_ns`; True when the order left `cancel`."""
    due = order.cancel_due_ns
    if due is None or now_ns < due or order.status != CANCEL:
        return False
    order.cancel_due_ns = None
    if order.cancel_denied:
        order.cancellation = None
        order.set_status(order.cancel_from or CANCEL, due)
        return True
    if order.cancellation is not None:
        order.cancellation["CancellationDate"] = iso_now()
    order.set_status(CANCELED, due)
    return True


def check_invoice(order: Order, cancel_policy: str) -> None:
    """Refuse an invoice on an order being canceled under the strict cancel policy."""
    if order.status == CANCEL and cancel_policy == "strict":
        raise Conflict(f"order {order.order_id} is being canceled (status 'cancel'); it cannot be invoiced",
                       code="OrderBeingCanceled")


def invoice_accepted(order: Order) -> None:
    """An invoice got through while the order was `cancel` (vulnerable cancel policy, KI-1400005):
    the cancellation never completes and the workflow is in error."""
    if order.status == CANCEL:
        order.cancel_due_ns = None
        order.workflow_in_error = True
