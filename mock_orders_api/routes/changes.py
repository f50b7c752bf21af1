"""VTEX Change routes: create (order-system PATCH, OMS POST), history, detail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mock_orders_api import faults, wire
from mock_orders_api.delays import MAX_DELAY_MS
from mock_orders_api.domain import changes
from mock_orders_api.domain.model import CHANGE_DONE, CHANGE_OUTCOMES, ChangeRecord, ChangeSpec
from mock_orders_api.errors import ApiError, BadRequest, Conflict, NotFound
from mock_orders_api.routes._shared import (
    ITEM_SCHEMA,
    ApiRoute,
    acted,
    header,
    json_body,
    json_response,
    mock,
    pinned_ms,
    vtex_auth,
)

# Validation itself is in changes.parse_*_body.
CHANGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["reason"],
    "properties": {
        "reason": {"type": "string"},
        "add": {"type": "object", "properties": {"items": {"type": "array", "items": ITEM_SCHEMA}}},
        "remove": {"type": "object", "properties": {"items": {"type": "array", "items": ITEM_SCHEMA}}},
        "manualDiscountValue": {"type": "integer", "minimum": 0},
        "manualIncrementValue": {"type": "integer", "minimum": 0},
    },
    "example": {"reason": "partial cancellation", "remove": {"items": [{"id": "1", "quantity": 1}]}},
}
# SPEC `RegisterChange` (POST /api/oms/pvt/orders/{orderId}/changes): requestId, reason, discountValue and
# incrementValue required; items are {id, price, quantity}, all three required.
_PRICED_ITEM = {**ITEM_SCHEMA, "required": ["id", "price", "quantity"]}
OMS_CHANGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["requestId", "reason", "discountValue", "incrementValue"],
    "properties": {
        "requestId": {"type": "string", "minLength": 1}, "reason": {"type": "string"},
        "discountValue": {"type": "integer", "minimum": 0}, "incrementValue": {"type": "integer", "minimum": 0},
        "itemsRemoved": {"type": "array", "items": _PRICED_ITEM}, "itemsAdded": {"type": "array", "items": _PRICED_ITEM},
    },
    "example": {"requestId": "change-request-0123", "reason": "Stock shortage", "discountValue": 0,
                "incrementValue": 0, "itemsRemoved": [{"id": "1", "price": 5000, "quantity": 1}]},
}
_RECEIPT_SCHEMA: dict[str, Any] = {"type": "object", "required": ["date", "orderId", "receipt"],
                                   "properties": {"date": {"type": "string"}, "orderId": {"type": "string"},
                                                  "receipt": {"type": "string"}}}
_CHANGE_DELAY_DOC = (wire.CHANGE_DELAY_HEADER, {"type": "number", "minimum": 0},
                     "Mock only: apply this Change this many ms after it is accepted (overrides the delay "
                     "distribution).")
_CHANGE_OUTCOME_DOC = (wire.CHANGE_OUTCOME_HEADER, {"type": "string", "enum": list(CHANGE_OUTCOMES)},
                       "Mock only: end this Change `done` or `canceled` (overrides change_cancel_rate).")
_ACCOUNT_DOC = ("an", {"type": "string", "default": "mockstore"}, "account name")


def _account(request: Request) -> str:
    """The `an` query parameter (default `mockstore`); most requests carry no query string at all."""
    return request.query_params.get("an", "mockstore") if request.scope.get("query_string") else "mockstore"


async def _change(request: Request, order_id: str, spec_of: Callable[[Any], ChangeSpec],
                  endpoint: str) -> ChangeRecord:
    """Accept (or refuse) a Change. The v2 (order-system) one is asynchronous; the v1 (OMS) one is
    synchronous, as VTEX has it (SPEC `RegisterChange`: "a synchronous API"): applied before the
    answer, so it has no delay, no outcome draw and no race window."""
    synchronous = endpoint == "oms"
    vtex_auth(request)
    lose_response = await faults.inject(request, "change")
    body = await json_body(request, "change")
    state = mock(request)
    arrival, now = acted(request, order_id)
    order = state.order(order_id, now)
    spec = spec_of(body)
    if synchronous and (first := next((c for c in order.changes if c.request_id == spec.request_id), None)):
        # SPEC: "only the first modification made with each requestId will be effective on a given order".
        request.state.outcome = "repeated"
        return first
    if len(order.unfinished_changes()) >= state.config.max_pending_changes:
        raise Conflict(f"order {order_id} already has {state.config.max_pending_changes} pending Changes "
                       f"(max_pending_changes); wait for one to finish", code="TooManyPendingChanges")
    pinned = 0.0 if synchronous else pinned_ms(request, wire.CHANGE_DELAY_HEADER)
    # The shared RNG's state, to undo a delay draw if the Change is refused (none when the delay is
    # pinned; deterministic: a fresh RNG per Change).
    rng_state = None if state.deterministic or pinned is not None else state.rng.getstate()
    pinned_outcome = CHANGE_DONE if synchronous else header(request, wire.CHANGE_OUTCOME_HEADER)
    if pinned_outcome is not None and pinned_outcome not in CHANGE_OUTCOMES:
        raise BadRequest(f"header {wire.CHANGE_OUTCOME_HEADER.lower()}: expected one of {list(CHANGE_OUTCOMES)}; "
                         f"got {pinned_outcome!r}")
    # A drawn delay is capped like a pinned one (a lognormal tail must not pin a Change for ever).
    delay = min(state.config.delay.sample(state.delay_rng(order)), MAX_DELAY_MS) if pinned is None else pinned
    try:
        record = changes.register(
            order, spec, policy=state.config.policy, delay_ms=delay, arrival_ns=arrival, now_ns=now,
            endpoint=endpoint, account=_account(request),
            autostart=state.pool is None or synchronous, new_id=state.new_ids(order, "change"),
            outcome=state.change_outcome(order, pinned_outcome),
        )
    except ApiError as err:
        if rng_state is not None:
            state.rng.setstate(rng_state)  # a refused Change consumes no delay draw
        changes.refuse(order, err, arrival_ns=arrival, now_ns=now, endpoint=endpoint)
        request.state.outcome = "refused"
        raise
    request.state.outcome = "accepted"
    if synchronous:
        changes.advance(order, now)  # due now: applied before the answer
    elif state.pool is not None:
        state.pool.submit(order, record, now)
    state.schedule(order)
    if lose_response:
        faults.lose(request)
    return record


async def create_change(request: Request) -> Response:
    record = await _change(request, request.path_params["changeOrderId"], changes.parse_order_system_body,
                           "order-system")
    return json_response(record.view(mock(request).clock()), 202)


async def register_change(request: Request) -> Response:
    """Change v1 (deprecated; SPEC `RegisterChange`): 200 {date, orderId, receipt}, already applied."""
    order_id = request.path_params["orderId"]
    record = await _change(request, order_id, changes.parse_oms_body, "oms")
    return json_response({"date": record.finished_date or record.date, "orderId": order_id,
                          "receipt": record.request_id})


async def change_history(request: Request) -> Response:
    vtex_auth(request)
    lose_response = await faults.inject(request, "change-history")
    order_id = request.path_params["changeOrderId"]
    _, now = acted(request, order_id)
    order = mock(request).order(order_id, now)
    if lose_response:
        faults.lose(request)
    return json_response({"requests": [c.view(now) for c in order.changes]})


async def change_detail(request: Request) -> Response:
    vtex_auth(request)
    lose_response = await faults.inject(request, "change-detail")
    order_id, request_id = request.path_params["changeOrderId"], request.path_params["changeRequestId"]
    _, now = acted(request, order_id)
    order = mock(request).order(order_id, now)
    for c in order.changes:
        if c.request_id == request_id:
            if lose_response:
                faults.lose(request)
            return json_response(c.view(now))
    # MOD-ERR: CHK0289 "change request not found"
    raise NotFound(f"change request {request_id!r} not found on order {order_id}", code="CHK0289")


ROUTES = (
    ApiRoute("PATCH", wire.CHANGES, create_change, auth="vtex", summary="Create order change", status=202,
             errors=(404, 409), body=CHANGE_SCHEMA, headers=(_CHANGE_DELAY_DOC, _CHANGE_OUTCOME_DOC), query=(_ACCOUNT_DOC,), limited="change"),
    ApiRoute("POST", wire.OMS_CHANGES, register_change, auth="vtex", summary="Register modifications on order (v1)",
             errors=(404, 409), body=OMS_CHANGE_SCHEMA, query=(_ACCOUNT_DOC,), limited="change",
             response=_RECEIPT_SCHEMA, deprecated=True, description=(
                 "Deprecated by VTEX (March 1st, 2026; use Create order modifications). Synchronous: the Change is "
                 "applied before the 200 answer. A repeated requestId answers the first one's receipt and changes "
                 "nothing.")),
    ApiRoute("GET", wire.CHANGES, change_history, auth="vtex", summary="Get order change history", errors=(404,),
             limited="change-history"),
    ApiRoute("GET", wire.CHANGE_DETAIL, change_detail, auth="vtex", summary="Get order change details",
             errors=(404,), limited="change-detail"),
)
