"""VTEX invoice routes, each with its documented body (see domain/invoices.py): the ticket's path is
the PII version's (PII-SPEC InvoiceNotification2), the other the OMS one (SPEC InvoiceNotification)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mock_orders_api import faults, wire
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
_TEXT = {"type": "string", "nullable": True}
INVOICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "issuanceDate", "invoiceNumber", "invoiceValue", "items"],
    "properties": {
        "type": {"type": "string", "enum": ["Output", "Input"]},
        "issuanceDate": {"type": "string", "format": "date-time"},
        "invoiceNumber": {"type": "string"},
        "invoiceValue": {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^[0-9]+$"}],
                         "description": "cents"},
        "invoiceKey": _TEXT, "invoiceUrl": _TEXT, "courier": _TEXT, "trackingNumber": _TEXT, "trackingUrl": _TEXT,
        "dispatchedDate": _TEXT, "items": {"type": "array", "minItems": 1, "items": ITEM_SCHEMA},
    },
    "example": {"type": "Output", "issuanceDate": "2026-01-09T00:00:00Z", "invoiceNumber": "NFe-1",
                "invoiceValue": "10000", "items": [{"id": "1", "price": 5000, "quantity": 2}]},
}
PII_INVOICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "issuedDate", "invoiceNumber", "invoiceValue", "items"],
    "properties": {
        "type": {"type": "string", "enum": ["Output", "Input"]},
        "issuedDate": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
        "invoiceNumber": {"type": "string", "description": "never reused on this route"},
        "invoiceValue": {"type": "integer", "minimum": 1, "description": "cents"},
        "extraValue": {"type": "integer", "minimum": 0, "description": "cents"},
        "invoiceKey": _TEXT, "invoiceUrl": _TEXT, "courier": _TEXT, "trackingNumber": _TEXT, "trackingUrl": _TEXT,
        "items": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["itemIndex", "price", "quantity"],
            "properties": {"itemIndex": {"type": "integer", "minimum": 0},
                           "price": {"type": "integer", "minimum": 0, "description": "line total, cents"},
                           "quantity": {"type": "integer", "minimum": 1}}}},
    },
    "example": {"type": "Output", "issuedDate": "2026-01-09", "invoiceNumber": "NFe-1", "invoiceValue": 10000,
                "items": [{"itemIndex": 0, "price": 10000, "quantity": 2}]},
}


async def _post_invoice(request: Request, route: str) -> Response:
    vtex_auth(request)
    lose_response = await faults.inject(request, "invoice")
    order_id = request.path_params["orderId"]
    body = await json_body(request, "invoice")
    hook_delay = pinned_ms(request, wire.HOOK_DELAY_HEADER)
    state = mock(request)
    arrival, now = acted(request, order_id)
    order = state.order(order_id, now)  # unknown order: 404 before the body is judged
    spec = invoices.parse_body(body, route, n_items=len(order.items))
    try:
        with state.hooks.delay(hook_delay):  # the status change the invoice makes now (not a later settle)
            record = invoices.post_invoice(
                order, spec, policy=state.config.policy, settle_ms=state.config.settle_ms, arrival_ns=arrival,
                now_ns=now, new_id=state.new_ids(order, "invoice"), route=route,
            )
    except ApiError:
        request.state.outcome = "refused"
        raise
    request.state.outcome = "accepted"
    if order.settle_due_ns is not None:
        state.schedule(order)
    if lose_response:
        faults.lose(request)
    return json_response(record.response(order_id))


async def post_invoice_pii(request: Request) -> Response:
    return await _post_invoice(request, "pii")


async def post_invoice_oms(request: Request) -> Response:
    return await _post_invoice(request, "oms")


ROUTES = (
    ApiRoute("POST", wire.INVOICE_DOCUMENT, post_invoice_pii, auth="vtex",
             summary="Order invoice notification (PII version; the ticket's path)", errors=(404, 409),
             body=PII_INVOICE_SCHEMA, headers=(HOOK_DELAY_DOC,)),
    ApiRoute("POST", wire.INVOICE_OMS, post_invoice_oms, auth="vtex", summary="Order invoice notification",
             errors=(404, 409), body=INVOICE_SCHEMA, headers=(HOOK_DELAY_DOC,)),
)
