"""VTEX invoice routes: the ticket's path and the OMS one, same behaviour."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mock_orders_api import wire
from mock_orders_api.domain import invoices
from mock_orders_api.errors import ApiError
from mock_orders_api.routes._shared import (
    HOOK_DELAY_DOC,
    ITEM_SCHEMA,
    ApiRoute,
    acted,
    json_body,
    json_response,
    mock,
    pinned_ms,
    vtex_auth,
)

# Validation itself is in invoices.parse_body.
INVOICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "issuanceDate", "invoiceNumber", "invoiceValue"],
    "properties": {
        "type": {"type": "string", "enum": ["Output", "Input"]},
        "issuanceDate": {"type": "string", "format": "date-time"},
        "invoiceNumber": {"type": "string"},
        "invoiceValue": {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^[0-9]+$"}],
                         "description": "cents"},
        "invoiceKey": {"type": "string"}, "invoiceUrl": {"type": "string"}, "courier": {"type": "string"},
        "trackingNumber": {"type": "string"}, "trackingUrl": {"type": "string"},
        "dispatchedDate": {"type": "string"}, "items": {"type": "array", "items": ITEM_SCHEMA},
    },
    "example": {"type": "Output", "issuanceDate": "2026-01-09T00:00:00Z", "invoiceNumber": "NFe-1",
                "invoiceValue": "10000", "items": [{"id": "1", "price": 5000, "quantity": 2}]},
}


async def post_invoice(request: Request) -> Response:
    vtex_auth(request)
    order_id = request.path_params["orderId"]
    body = await json_body(request, "invoice")
    hook_delay = pinned_ms(request, wire.HOOK_DELAY_HEADER)
    state = mock(request)
    arrival, now = acted(request, order_id)
    order = state.order(order_id, now)  # unknown order: 404 before the body is judged
    spec = invoices.parse_body(body)
    try:
        with state.hooks.delay(hook_delay):  # the status change the invoice makes now (not a later settle)
            record = invoices.post_invoice(
                order, spec, policy=state.config.policy, settle_ms=state.config.settle_ms, arrival_ns=arrival,
                now_ns=now, new_id=state.new_ids(order, "invoice"),
            )
    except ApiError:
        request.state.outcome = "refused"
        raise
    request.state.outcome = "accepted"
    if order.settle_due_ns is not None:
        state.schedule(order)
    return json_response(record.response(order_id))


ROUTES = (
    ApiRoute("POST", wire.INVOICE_DOCUMENT, post_invoice, auth="vtex",
             summary="Order invoice notification (ticket path)", errors=(404, 409), body=INVOICE_SCHEMA,
             headers=(HOOK_DELAY_DOC,)),
    ApiRoute("POST", wire.INVOICE_OMS, post_invoice, auth="vtex", summary="Order invoice notification",
             errors=(404, 409), body=INVOICE_SCHEMA, headers=(HOOK_DELAY_DOC,)),
)
