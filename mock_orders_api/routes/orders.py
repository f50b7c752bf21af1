"""VTEX order routes: get, list, start handling, cancel (asynchronous: domain/cancellation.py)."""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mock_orders_api import faults, wire
from mock_orders_api.dates import iso_now
from mock_orders_api.domain import cancellation
from mock_orders_api.domain.model import HANDLING, READY_FOR_HANDLING, Order, status_description
from mock_orders_api.errors import BadRequest, Conflict
from mock_orders_api.state import MockState
from mock_orders_api.routes._shared import (
    HOOK_DELAY_DOC,
    ApiRoute,
    acted,
    header,
    json_body,
    json_response,
    mock,
    pinned_ms,
    vtex_auth,
)


async def get_order(request: Request) -> Response:
    vtex_auth(request)
    lose_response = await faults.inject(request, "get-order")
    order_id = request.path_params["orderId"]
    _, now = acted(request, order_id)
    view = mock(request).order(order_id, now).view_json()
    if lose_response:
        faults.lose(request)
    return json_response(view)


async def _status_op(request: Request, route: str) -> tuple[MockState, Order, int, float | None, bool]:
    """What a status-changing order route starts with: auth, its fault draw, the pinned hook delay,
    the acted instant and the order (state, order, now, hook delay, whether to lose the response)."""
    vtex_auth(request)
    lose_response = await faults.inject(request, route)
    order_id = request.path_params["orderId"]
    hook_delay = pinned_ms(request, wire.HOOK_DELAY_HEADER)
    _, now = acted(request, order_id)
    state = mock(request)
    return state, state.order(order_id, now), now, hook_delay, lose_response


async def start_handling(request: Request) -> Response:
    state, order, now, hook_delay, lose_response = await _status_op(request, "start-handling")
    order_id = order.order_id
    if order.status != READY_FOR_HANDLING:
        raise Conflict(
            f"order {order_id} is {order.status!r}; start-handling needs {READY_FOR_HANDLING!r}", code="InvalidStatus"
        )
    with state.hooks.delay(hook_delay):
        order.set_status(HANDLING, now)
    if lose_response:
        faults.lose(request)
    return Response(status_code=204)


async def cancel_order(request: Request) -> Response:
    """Start an asynchronous cancellation: `cancel` now, `canceled` after the cancel delay
    (SPEC `cancel.post`: 200 {date, orderId, receipt}; HC-FLOW; KI-1242813)."""
    vtex_auth(request)  # before the body is judged
    reason = await _cancel_reason(request)
    delay = pinned_ms(request, wire.CANCEL_DELAY_HEADER)
    outcome = header(request, wire.CANCEL_OUTCOME_HEADER)
    if outcome is not None and outcome not in cancellation.CANCEL_OUTCOMES:
        raise BadRequest(f"header {wire.CANCEL_OUTCOME_HEADER.lower()}: expected one of "
                         f"{list(cancellation.CANCEL_OUTCOMES)}; got {outcome!r}")
    state, order, now, hook_delay, lose_response = await _status_op(request, "cancel")
    with state.hooks.delay(hook_delay):
        cancellation.request(order, now_ns=now, delay_ms=state.config.cancel_delay_ms if delay is None else delay,
                             reason=reason, denied=outcome == "denied")
    state.schedule(order)
    if lose_response:
        faults.lose(request)
    return json_response({"date": iso_now(), "orderId": order.order_id, "receipt": f"cancel-{order.order_id}"})


async def _cancel_reason(request: Request) -> str | None:
    """The optional body's `reason` (SPEC `cancel.post`: `{"reason": ...}`)."""
    if not (await request.body()).strip():
        return None
    body = await json_body(request, "cancel")
    if not isinstance(body, dict) or not isinstance(body.get("reason", ""), (str, type(None))):
        raise BadRequest(f"cancel: expected an object {{\"reason\": string}}; got {type(body).__name__}")
    return body.get("reason")


# List orders (SPEC `GET /api/oms/pvt/orders`): "the limit of information retrieval is 30 pages, the
# default number of orders per page is 15 and it is possible to configure it up to 100".
MAX_PAGE = 30
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 15


async def list_orders(request: Request) -> Response:
    """Orders as the search index shows them `list_lag_ms` ago (SPEC: indexed in about four minutes;
    KI-577103: the list's status may differ from the order's), newest first."""
    vtex_auth(request)
    lose_response = await faults.inject(request, "list-orders")
    page = _query_int(request, "page", 1, 1, MAX_PAGE)
    per_page = _query_int(request, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
    wanted = {s.strip() for s in request.query_params.get("f_status", "").split(",") if s.strip()}
    _, now = acted(request)
    state = mock(request)
    indexed_at = now - round(state.config.list_lag_ms * 1e6)
    rows: list[dict[str, Any]] = []
    for order in state.store:
        state.order(order.order_id, now)
        status = order.status_at(indexed_at)
        if status is not None and (not wanted or status in wanted):
            rows.append(_list_row(order, status))
    rows.reverse()  # the store keeps creation order; VTEX lists newest first
    total = len(rows)
    shown = rows[(page - 1) * per_page:page * per_page]
    if lose_response:
        faults.lose(request)
    return json_response({"list": shown, "facets": [],
                          "paging": {"total": total, "pages": math.ceil(total / per_page), "currentPage": page,
                                     "perPage": per_page},
                          "stats": {"stats": {"totalValue": _stats([r["totalValue"] for r in rows]),
                                              "totalItems": _stats([r["totalItems"] for r in rows])}}})


def _query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.strip().isdigit() or not low <= int(raw) <= high:
        raise BadRequest(f"query.{name}: expected an integer {low}..{high}; got {raw[:40]!r}")
    return int(raw)


def _list_row(order: Order, status: str) -> dict[str, Any]:
    """One `list[]` entry (SPEC ListOrders example); `items` is null, as since 2018."""
    return {"orderId": order.order_id, "creationDate": order.created_at, "clientName": "Mock Client",
            "items": None, "totalValue": order.value, "paymentNames": "", "status": status,
            "statusDescription": status_description(status), "marketPlaceOrderId": None,
            "sequence": order.order_id.split("-")[0], "salesChannel": "1", "affiliateId": "",
            "origin": "Marketplace", "workflowInErrorState": order.workflow_in_error, "workflowInRetry": False,
            "lastMessageUnread": None, "ShippingEstimatedDate": None, "ShippingEstimatedDateMax": None,
            "ShippingEstimatedDateMin": None, "orderIsComplete": True, "listId": None, "listType": None,
            "authorizedDate": order.created_at, "callCenterOperatorName": None,
            "totalItems": sum(i.quantity for i in order.items), "currencyCode": "BRL"}


def _stats(values: list[int]) -> dict[str, Any]:
    """The SPEC Stats shape of one field (Count, Max, Mean, ...; Facets not computed)."""
    n = len(values)
    mean = sum(values) / n if n else 0.0
    return {"Count": n, "Max": max(values, default=0), "Mean": mean, "Min": min(values, default=0), "Missing": 0,
            "StdDev": math.sqrt(sum((v - mean) ** 2 for v in values) / n) if n else 0.0, "Sum": sum(values),
            "SumOfSquares": sum(v * v for v in values), "Facets": {}}


_CANCEL_DOCS = (
    HOOK_DELAY_DOC,
    (wire.CANCEL_DELAY_HEADER, {"type": "number", "minimum": 0},
     "Mock only: keep this order `cancel` this many ms before `canceled` (overrides cancel_delay_ms)."),
    (wire.CANCEL_OUTCOME_HEADER, {"type": "string", "enum": list(cancellation.CANCEL_OUTCOMES)},
     "Mock only: `denied` makes the seller deny the cancellation: the order goes back to its status."),
)
_CANCEL_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"reason": {"type": "string"}},
                                  "example": {"reason": "Unexpected stock shortage"}}
_LIST_QUERY = (
    ("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1}, "page number (at most 30)"),
    ("per_page", {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": DEFAULT_PER_PAGE},
     "orders per page (at most 100)"),
    ("f_status", {"type": "string"}, "only orders in these statuses (comma list), as indexed"),
)
_LIST_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["list", "facets", "paging", "stats"],
    "properties": {"list": {"type": "array", "items": {"type": "object", "required": ["orderId", "status"]}},
                   "facets": {"type": "array"},
                   "paging": {"type": "object", "required": ["total", "pages", "currentPage", "perPage"]},
                   "stats": {"type": "object"}},
}

ROUTES = (
    ApiRoute("GET", wire.ORDERS, list_orders, auth="vtex", summary="List orders", query=_LIST_QUERY,
             limited="list-orders", response=_LIST_SCHEMA,
             description="As the search index shows the orders `list_lag_ms` ago (VTEX: about four minutes)."),
    ApiRoute("GET", wire.ORDER, get_order, auth="vtex", summary="Get order", errors=(404,), limited="get-order"),
    ApiRoute("POST", wire.START_HANDLING, start_handling, auth="vtex", summary="Start handling order", status=204,
             errors=(404, 409), headers=(HOOK_DELAY_DOC,), limited="start-handling"),
    ApiRoute("POST", wire.CANCEL, cancel_order, auth="vtex", summary="Cancel order", errors=(400, 404, 409),
             headers=_CANCEL_DOCS, body=_CANCEL_SCHEMA, body_required=False, limited="cancel",
             description="Asynchronous: the order is `cancel` now and `canceled` after cancel_delay_ms."),
)
