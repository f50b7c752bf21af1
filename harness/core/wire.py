"""The VTEX JSON a trial sends, and the reads a guard makes of the JSON it gets back.

No I/O, no clock, no event loop: the guards (`harness.core.guards`, driven on
asyncio by `harness.live.runner` and on gevent by `harness.load.users`) and the
load mode's judge (`harness.load.judge`) build the same bodies and make the same guard decisions by
calling these functions, so the two modes cannot drift apart. Keep this module
free of asyncio, httpx and gevent imports.
"""

from __future__ import annotations

from typing import Any, Mapping

from harness.core.scenario import Scenario
from mock_orders_api.dates import iso_now

# Order statuses after which an invoice has settled (the `serialized` guard waits for one).
SETTLED_STATUSES: tuple[str, ...] = ("invoiced", "canceled")


# --------------------------------------------------------------------------- request bodies


def order_spec(scenario: Scenario) -> dict[str, Any]:
    """The admin API body (`POST /_mock/orders`) of a trial's fresh order."""
    o = scenario.order
    return {
        "items": [{"id": i.id, "name": i.name or f"Item {i.id}", "quantity": i.quantity, "price": i.price}
                  for i in o.items],
        "shipping": o.shipping,
        "tax": o.tax,
    }


def change_body(scenario: Scenario) -> dict[str, Any]:
    """The partial-cancel Change (`PATCH .../changes`) the scenario describes."""
    c = scenario.change
    body: dict[str, Any] = {"reason": c.reason}
    if c.items_removed:
        body["remove"] = {"items": [{"id": r.id, "quantity": r.quantity} for r in c.items_removed]}
    if c.discount_value:
        body["manualDiscountValue"] = c.discount_value
    return body


def mock_settings(scenario: Scenario) -> dict[str, Any]:
    """The mock configuration (`PATCH /_mock/config`) a run applies before its first trial."""
    m = scenario.mock
    settings = {"policy": m.policy, "delay": m.change_delay.spec(), "settle_ms": m.settle_ms, "seed": scenario.seed,
                **m.extra_settings()}
    integ = scenario.target.integration
    if integ is not None:  # integration mode: the hook delivery plan (seeded by `seed`)
        settings.update(hook_duplicate_rate=integ.duplicate_rate, hook_extra_delay_ms=integ.extra_delay_ms)
    return settings


def invoice_body(invoice_number: str, value: int) -> dict[str, Any]:
    """An invoice notification for the ticket's route, the PII one (PII-SPEC `POST
    /api/orders/pvt/document/{orderId}/invoices`): `issuedDate` YYYY-MM-DD, an integer `invoiceValue`
    in cents, `items[]` of {itemIndex, price (line total), quantity} (required). A trial invoices its
    whole value as one line on the order's first item: the mock checks the value, not the split."""
    return {
        "type": "Output",
        "issuedDate": iso_now()[:10],  # the wall clock; a simulated run's virtual one (reproducible)
        "invoiceNumber": invoice_number,
        "invoiceValue": value,
        "invoiceKey": None,
        "invoiceUrl": None,
        "courier": "",
        "trackingNumber": "",
        "trackingUrl": "",
        "items": [{"itemIndex": 0, "price": value, "quantity": 1}],
    }


# --------------------------------------------------------------------------- guard decisions


def all_changes_terminal(history: Any) -> bool:
    """True when every Change in a `GET .../changes` body (`{"requests": [...]}`) is over: `finished`
    (done), or `canceled`.

    A canceled Change reports `finished: false` for ever (HC-ADAPT, VTEX's "adapting your integration
    for order modifications"), so waiting for `finished: true` alone would wait until the guard's
    bound and fail the trial (`guard_timeout`). A body that is not such an object cannot show that
    they are over: False (the guard keeps polling)."""
    if not isinstance(history, Mapping):
        return False
    return all(isinstance(r, Mapping) and (r.get("finished") is True or r.get("status") == "canceled")
               for r in history.get("requests") or [])


def remaining_value(order: Mapping[str, Any]) -> int:
    """Cents still to invoice on an order (`GET` body): its value minus the accepted Output invoices."""
    invoiced = sum(int(p.get("invoiceValue", 0)) for p in order["packageAttachment"]["packages"]
                   if p.get("type", "Output") == "Output")
    return int(order["value"]) - invoiced


def invoice_settled(order: Any) -> bool:
    """True when an order (`GET` body) no longer settles an invoice: `invoiced` (or `canceled`)."""
    return isinstance(order, Mapping) and order.get("status") in SETTLED_STATUSES


__all__ = [
    "SETTLED_STATUSES",
    "all_changes_terminal",
    "change_body",
    "invoice_body",
    "invoice_settled",
    "mock_settings",
    "order_spec",
    "remaining_value",
]
