"""VTEX invoice routes, each with its documented body (see domain/invoices.py): the ticket's path is
the PII version's (PII-SPEC InvoiceNotification2), the other the OMS one (SPEC InvoiceNotification)."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mock_orders_api import faults, wire
from mock_orders_api.dates import iso_now
from mock_orders_api.domain import invoices
from mock_orders_api.domain.model import InvoiceRecord
from mock_orders_api.errors import ApiError, BadRequest, NotFound
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
                cancel_policy=state.config.cancel_policy,
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


async def _tracking(request: Request, where: str) -> tuple[InvoiceRecord, dict[str, Any], bool]:
    """The invoice a tracking route names, the request's JSON object, whether to lose the response."""
    vtex_auth(request)
    lose = await faults.inject(request, "tracking")
    body = await json_body(request, where)
    if not isinstance(body, dict):
        raise BadRequest(f"{where}: expected a JSON object; got {type(body).__name__}")
    order_id, number = request.path_params["orderId"], request.path_params["invoiceNumber"]
    _, now = acted(request, order_id)
    order = mock(request).order(order_id, now)
    record = order.accepted_invoice(number)
    if record is None:
        raise NotFound(f"invoice {number!r} not found on order {order_id}", code="InvoiceNotFound")
    return record, body, lose


def _receipt(request: Request, lose_response: bool) -> Response:
    if lose_response:
        faults.lose(request)
    return json_response({"date": iso_now(), "orderId": request.path_params["orderId"],
                          "receipt": uuid.uuid4().hex})


async def send_tracking_number(request: Request) -> Response:
    """SPEC `Updatepartialinvoice.SendTrackingNumber`: trackingNumber, trackingUrl, courier and
    dispatchedDate (all required; the last three nullable) set on the invoice's package."""
    record, body, lose = await _tracking(request, "tracking")
    number = body.get("trackingNumber")
    if not isinstance(number, str) or not number.strip():
        raise BadRequest(f"tracking.trackingNumber: required, a non-empty string; got {number!r:.80}")
    for name in ("trackingUrl", "courier", "dispatchedDate"):
        if name not in body or not isinstance(body[name], (str, type(None))):
            raise BadRequest(f"tracking.{name}: required, a string or null")
    record.tracking = {k: body[k] for k in ("trackingNumber", "trackingUrl", "courier", "dispatchedDate")}
    return _receipt(request, lose)


async def update_tracking_status(request: Request) -> Response:
    """SPEC `UpdateTrackingStatus`: tracking events for an invoice that already has a tracking
    number; shown as the package's `courierStatus` {status, finished, deliveredDate, data[]}."""
    record, body, lose = await _tracking(request, "tracking")
    delivered = body.get("isDelivered")
    events = body.get("events")
    if not isinstance(delivered, bool):
        raise BadRequest(f"tracking.isDelivered: required, a boolean; got {delivered!r:.80}")
    if "deliveredDate" not in body or not isinstance(body["deliveredDate"], (str, type(None))):
        raise BadRequest("tracking.deliveredDate: required, a string or null")
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise BadRequest("tracking.events: required, a list of {city, state, description, date}")
    if not (record.tracking.get("trackingNumber") or record.body.get("trackingNumber")):
        # SPEC: "sends a tracking event to an order that already has a tracking number registered".
        raise BadRequest(f"invoice {record.invoice_number!r} has no tracking number; send it first with "
                         "PATCH .../invoice/{invoiceNumber}", code="TrackingNumberMissing")
    record.courier_status = {"status": "ok" if delivered else "in-transit", "finished": delivered,
                             "deliveredDate": body["deliveredDate"],
                             "data": [{k: e.get(k) for k in ("city", "state", "description", "date")}
                                      for e in events[:_MAX_TRACKING_EVENTS]]}
    return _receipt(request, lose)


_MAX_TRACKING_EVENTS = 100  # events kept per invoice (memory bound)
_TRACKING_NUMBER_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["trackingNumber", "trackingUrl", "courier", "dispatchedDate"],
    "properties": {"trackingNumber": {"type": "string", "minLength": 1}, "trackingUrl": _TEXT, "courier": _TEXT,
                   "dispatchedDate": _TEXT},
    "example": {"trackingNumber": "87658", "trackingUrl": "https://www.tracking.com/url", "courier": "carrierOne",
                "dispatchedDate": "2022-02-08T13:16:13.4617653+00:00"},
}
_TRACKING_STATUS_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["isDelivered", "deliveredDate", "events"],
    "properties": {"isDelivered": {"type": "boolean"}, "deliveredDate": _TEXT,
                   "events": {"type": "array", "items": {"type": "object", "properties": {
                       "city": {"type": "string"}, "state": {"type": "string"}, "description": {"type": "string"},
                       "date": {"type": "string"}}}}},
    "example": {"isDelivered": False, "deliveredDate": None,
                "events": [{"city": "Rio de Janeiro", "state": "RJ", "description": "Coletado", "date": "2015-06-23"}]},
}

ROUTES = (
    ApiRoute("POST", wire.INVOICE_DOCUMENT, post_invoice_pii, auth="vtex",
             summary="Order invoice notification (PII version; the ticket's path)", errors=(404, 409),
             body=PII_INVOICE_SCHEMA, headers=(HOOK_DELAY_DOC,), limited="invoice"),
    ApiRoute("POST", wire.INVOICE_OMS, post_invoice_oms, auth="vtex", summary="Order invoice notification",
             errors=(404, 409), body=INVOICE_SCHEMA, headers=(HOOK_DELAY_DOC,), limited="invoice"),
    ApiRoute("PATCH", wire.INVOICE_UPDATE, send_tracking_number, auth="vtex",
             summary="Update order's partial invoice (send tracking number)", errors=(404,),
             body=_TRACKING_NUMBER_SCHEMA, limited="tracking"),
    ApiRoute("PUT", wire.INVOICE_TRACKING, update_tracking_status, auth="vtex", summary="Update order tracking status",
             errors=(404,), body=_TRACKING_STATUS_SCHEMA, limited="tracking"),
)
