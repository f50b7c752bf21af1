"""VTEX order routes: get, start handling, cancel."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from mock_orders_api import faults, wire
from mock_orders_api.dates import iso_now
from mock_orders_api.domain.model import CANCELED, HANDLING, INVOICE, INVOICED, READY_FOR_HANDLING, Order
from mock_orders_api.errors import BadRequest, Conflict
from mock_orders_api.state import MockState
from mock_orders_api.routes._shared import (
    HOOK_DELAY_DOC,
    ApiRoute,
    acted,
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
    view = mock(request).order(order_id, now).view()
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
    state, order, now, hook_delay, lose_response = await _status_op(request, "cancel")
    order_id = order.order_id
    if order.status in (INVOICE, INVOICED):
        raise Conflict(f"order {order_id} is {order.status!r}; an invoiced order cannot be canceled",
                       code="OrderAlreadyInvoiced")
    if order.invoiced_total > 0:
        # SPEC `cancel.post` and VTEX's order-canceling guide: a partially invoiced order cannot be
        # canceled, "cancellation attempts will result in a 400".
        raise BadRequest(f"order {order_id} is partially invoiced ({order.invoiced_total} cents); it cannot be "
                         "canceled", code="OrderPartiallyInvoiced")
    if order.status != CANCELED:
        with state.hooks.delay(hook_delay):
            order.set_status(CANCELED, now)
    if lose_response:
        faults.lose(request)
    return json_response({"date": iso_now(), "orderId": order_id, "receipt": f"cancel-{order_id}"})


ROUTES = (
    ApiRoute("GET", wire.ORDER, get_order, auth="vtex", summary="Get order", errors=(404,)),
    ApiRoute("POST", wire.START_HANDLING, start_handling, auth="vtex", summary="Start handling order", status=204,
             errors=(404, 409), headers=(HOOK_DELAY_DOC,)),
    ApiRoute("POST", wire.CANCEL, cancel_order, auth="vtex", summary="Cancel order", errors=(400, 404, 409),
             headers=(HOOK_DELAY_DOC,)),
)
