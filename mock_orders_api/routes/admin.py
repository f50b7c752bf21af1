"""The `/_mock` admin API: health, settings, reset, orders, audits, verdicts, journals."""

from __future__ import annotations

import random
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mock_orders_api import wire
from mock_orders_api.errors import BadRequest, ConfigError
from mock_orders_api.routes._shared import ITEM_SCHEMA, ApiRoute, acted, admin_auth, json_body, json_response, mock
from mock_orders_api.state import MockState

ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["items"],
    "properties": {
        "orderId": {"type": "string"},
        "items": {"type": "array", "items": {**ITEM_SCHEMA,
                                             "properties": {**ITEM_SCHEMA["properties"], "name": {"type": "string"},
                                                            "sellingPrice": {"type": "integer"}},
                                             "required": ["id", "quantity", "price"]}},
        "shipping": {"type": "integer", "minimum": 0}, "tax": {"type": "integer", "minimum": 0},
        "discounts": {"type": "integer", "minimum": 0},
        "status": {"type": "string", "enum": ["ready-for-handling", "handling", "waiting-for-fulfillment"]},
    },
    "example": {"items": [{"id": "1", "name": "Shirt", "quantity": 2, "price": 5000}], "shipping": 1000},
}
_CONFIG_PATCH_SCHEMA: dict[str, Any] = {"type": "object", "example": {"policy": "strict", "delay": "uniform:50,1000",
                                                                      "settle_ms": 100, "seed": 7, "hook_delay_ms": 0,
                                                                      "rate_limits": {"get-order": "6000/min"},
                                                                      "change_cancel_rate": 0.1}}
_AUDITS_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"orderIds": {"type": "array"}}}
_PAGE_QUERY = (("since", {"type": "integer", "minimum": 0, "default": 0}, "entries after this sequence number"),
               ("limit", {"type": "integer", "minimum": 1, "maximum": 100_000, "default": 1000}, "at most this many"),
               ("orderId", {"type": "string"}, "only this order's entries"))


def _page(request: Request, where: str) -> tuple[int, int, str | None]:
    """The (since, limit, orderId) query parameters of a journal read."""
    q = request.query_params
    values: list[int] = []
    for name, default in (("since", 0), ("limit", 1000)):
        raw = q.get(name)
        try:
            values.append(default if raw is None else int(raw))
        except ValueError:
            raise BadRequest(f"query.{name}: expected an integer; got {raw!r}") from None
    since, limit = values
    if since < 0 or not 1 <= limit <= 100_000:
        raise BadRequest(f"{where}: expected since >= 0 and 1 <= limit <= 100000")
    return since, limit, q.get("orderId")


async def health(request: Request) -> Response:
    admin_auth(request)
    state = mock(request)
    return json_response({"status": "ok", "orders": len(state.store), "pendingChanges": state.pending_changes(),
                          "journalEntries": len(state.journal), "journalDropped": state.journal.dropped,
                          "journalBytes": state.journal.bytes, "ordersEvicted": state.evicted,
                          "policy": state.config.policy, "monotonicNs": state.clock(), **state.feed.counters()})


def _config_view(state: MockState) -> dict[str, Any]:
    hook = state.hooks.config  # headers are left out: they may carry the receiver's secret
    return {**state.config.public(), "hook_url": hook.url if hook else None,
            "hook_status": list(hook.statuses) if hook and hook.statuses else None}


async def get_config(request: Request) -> Response:
    admin_auth(request)
    return json_response(_config_view(mock(request)))


async def patch_config(request: Request) -> Response:
    admin_auth(request)
    body = await json_body(request, "config")
    if not isinstance(body, dict):
        raise BadRequest("config: expected a JSON object")
    state = mock(request)
    try:
        new = state.config.updated(body)
    except ConfigError as err:
        raise BadRequest(str(err), code="InvalidConfig") from None
    if "change_workers" in body:
        state.set_change_workers(new.change_workers)  # 409 while Changes are pending, config untouched
    if "seed" in body:
        state.rng = random.Random(new.seed)
    state.config = new
    return json_response(_config_view(state))


async def reset(request: Request) -> Response:
    admin_auth(request)
    mock(request).reset()
    return json_response({"reset": True})


async def create_order(request: Request) -> Response:
    admin_auth(request)
    body = await json_body(request, "order")
    _, now = acted(request)
    state = mock(request)
    state.evict_orders(now)
    order = state.store.create(body, now)
    request.state.order_id = order.order_id
    return json_response(order.view_json(), 201)


async def audit(request: Request) -> Response:
    admin_auth(request)
    state = mock(request)
    return json_response(state.order(request.path_params["orderId"], state.clock()).audit())


async def audits(request: Request) -> Response:
    admin_auth(request)
    body = await json_body(request, "audits")
    ids = body.get("orderIds") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadRequest("audits.orderIds: expected a list of order id strings")
    state = mock(request)
    now = state.clock()
    return json_response({"audits": [state.order(i, now).audit() for i in ids]})


async def verdicts(request: Request) -> Response:
    admin_auth(request)
    return json_response(mock(request).verdicts())


async def journal(request: Request) -> Response:
    admin_auth(request)
    since, limit, order_id = _page(request, "journal")
    state = mock(request)
    entries = state.journal.query(since=since, limit=limit, order_id=order_id)
    return json_response({"entries": entries, "dropped": state.journal.dropped})


async def hook_deliveries(request: Request) -> Response:
    admin_auth(request)
    since, limit, order_id = _page(request, "hooks")
    h = mock(request).hooks
    return json_response({"deliveries": h.journal.query(since=since, limit=limit, order_id=order_id),
                          "dropped": h.journal.dropped, "pending": h.pending, "hook": h.view()})


ROUTES = (
    ApiRoute("GET", wire.ADMIN_HEALTH, health, auth="admin", summary="Liveness and counters"),
    ApiRoute("GET", wire.ADMIN_CONFIG, get_config, auth="admin", summary="Current mock settings"),
    ApiRoute("PATCH", wire.ADMIN_CONFIG, patch_config, auth="admin", errors=(409,), body=_CONFIG_PATCH_SCHEMA,
             summary="Change mock settings (policy, delay, settle_ms, seed, hook_timeout_s, hook_retries, "
                     "hook_delay_ms)"),
    ApiRoute("POST", wire.ADMIN_RESET, reset, auth="admin",
             summary="Forget every order, Change, invoice, journal entry, pending hook delivery and feed item "
                     "(the hook config stays)"),
    ApiRoute("POST", wire.ADMIN_ORDERS, create_order, auth="admin", summary="Create an order", status=201,
             errors=(409,), body=ORDER_SCHEMA),
    ApiRoute("GET", wire.ADMIN_AUDIT, audit, auth="admin", summary="The mock's own record of one order",
             errors=(404,)),
    ApiRoute("POST", wire.ADMIN_AUDITS, audits, auth="admin", summary="Audits of many orders: body {\"orderIds\": [...]}",
             errors=(404,), body=_AUDITS_SCHEMA),
    ApiRoute("GET", wire.ADMIN_VERDICTS, verdicts, auth="admin", summary="Run-wide verdicts: every raced order"),
    ApiRoute("GET", wire.ADMIN_JOURNAL, journal, auth="admin", query=_PAGE_QUERY,
             summary="Journaled requests with arrival/acted/done monotonic ns"),
    ApiRoute("GET", wire.ADMIN_HOOKS, hook_deliveries, auth="admin", query=_PAGE_QUERY,
             summary="Journaled order hook delivery attempts (monotonic ns)"),
)
