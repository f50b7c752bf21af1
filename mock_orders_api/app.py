"""The ASGI app: VTEX-shaped Orders API routes plus the `/_mock` admin API.

Handlers read and validate the whole body first, then act on the order in one
synchronous section (no `await`), stamping `acted_ns`: that section is atomic
on the event loop, which is what "under the order's lock" means here.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from mock_orders_api import changes, hooks, invoices
from mock_orders_api.config import MockConfig, check_ms
from mock_orders_api.errors import ApiError, BadRequest, ConfigError, Conflict, Forbidden, NotFound, Unauthorized
from mock_orders_api.journal import Journal, JournalMiddleware
from mock_orders_api.store import CANCELED, HANDLING, INVOICE, INVOICED, READY_FOR_HANDLING, Order, OrderStore, iso_now

DELAY_HEADER = "x-mock-change-delay-ms"
ADMIN_HEADER = "x-mock-admin-token"
_MAX_BODY = 1 << 20


class MockState:
    """Everything one mock instance knows; `app.state.mock`.

    `clock` is the time source of every stamp and timer (host `time.monotonic_ns`
    by default; a simulated run passes its virtual clock). `deterministic` makes
    what would be random per process reproducible per order: request ids,
    receipts and unpinned Change delays derive from (seed, order id, count).
    """

    def __init__(self, config: MockConfig, clock: Callable[[], int] = time.monotonic_ns,
                 deterministic: bool = False) -> None:
        self.config = config
        self.clock = clock
        self.deterministic = deterministic
        self.store = OrderStore()
        self.journal = Journal(config.journal_size)
        self.rng = random.Random(config.seed)
        self._timers: set[asyncio.TimerHandle] = set()
        self.pool = changes.WorkerPool(config.change_workers) if config.change_workers else None
        # Order hooks: every status change (creation included) goes through store.listeners.
        self.hooks = hooks.HookDispatcher(lambda: self.config, config.journal_size, clock=clock)
        self.store.listeners.append(self.hooks.on_status)

    # --- time -------------------------------------------------------------
    def order(self, order_id: str, now_ns: int) -> Order:
        """The order brought up to `now_ns`: due Changes applied, settle window closed."""
        order = self.store.get(order_id)
        self._advance(order, now_ns)
        return order

    def _advance(self, order: Order, now_ns: int) -> None:
        if self.pool is not None:
            # Bounded workers couple all orders: replay every finish up to now, in time order.
            if self.pool.advance(now_ns):
                self._arm_pool()
        elif changes.advance(order, now_ns):
            self.schedule(order)
        invoices.settle(order, now_ns)

    def schedule(self, order: Order) -> None:
        change_due = self.pool.next_due_ns() if self.pool is not None else changes.next_due_ns(order)
        for due in (change_due, order.settle_due_ns):
            if due is not None:
                self._arm(order.order_id, due)

    def _arm_pool(self) -> None:
        due = self.pool.next_due_ns() if self.pool is not None else None
        if due is not None:
            self._arm(None, due)

    def set_change_workers(self, workers: int | None) -> None:
        if workers == self.config.change_workers:
            return
        if self.pending_changes():
            raise Conflict("change_workers can only change while no Change is pending", code="ChangesPending")
        self.pool = changes.WorkerPool(workers) if workers else None

    def _arm(self, order_id: str | None, due: int) -> None:
        """A timer at `due` that brings the order (None: the worker pool) up to date."""
        # One scope per timer: `_fire` must discard its own handle (a closure shared across
        # loop iterations discarded the last handle twice and leaked the other).
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def _fire() -> None:
            nonlocal handle
            self._timers.discard(handle)  # type: ignore[arg-type]
            handle = None  # break handle -> _fire -> cell -> handle: a fired timer leaves no garbage cycle
            now = self.clock()
            if now < due:  # the loop may fire up to its clock resolution early: re-arm
                self._arm(order_id, due)
                return
            if order_id is None:
                if self.pool is not None and self.pool.advance(now):
                    self._arm_pool()
                return
            try:
                order_ = self.store.get(order_id)
            except NotFound:  # reset since
                return
            self._advance(order_, now)

        if self.clock is time.monotonic_ns:  # the loop's clock (asyncio, uvloop) is this one
            handle = loop.call_at(due / 1e9, _fire)
        else:  # another clock: only the delay is comparable
            handle = loop.call_later(max(0, due - self.clock()) / 1e9, _fire)
        self._timers.add(handle)

    def reset(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self.store.clear()
        self.journal.clear()
        self.hooks.reset()  # pending deliveries canceled, deliveries forgotten; the hook config stays
        self.rng = random.Random(self.config.seed)
        self.pool = changes.WorkerPool(self.config.change_workers) if self.config.change_workers else None

    def new_ids(self, order: Order, kind: str) -> Callable[[], str] | None:
        """Id maker for a record about to be added to `order` (None: random uuid4 ids)."""
        if not self.deterministic:
            return None
        n = len(order.changes) + len(order.refused_changes) + len(order.invoices)
        counter = iter(range(1 << 30))
        base = f"{self.config.seed}:{order.order_id}:{kind}:{n}"
        return lambda: hashlib.sha256(f"{base}:{next(counter)}".encode()).hexdigest()[:32]

    def delay_rng(self, order: Order) -> random.Random:
        """The RNG an unpinned Change delay is drawn from: shared, or per order and Change if deterministic."""
        if not self.deterministic:
            return self.rng
        seed = f"{self.config.seed}:{order.order_id}:delay:{len(order.changes) + len(order.refused_changes)}"
        return random.Random(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))

    def pending_changes(self) -> int:
        return sum(len(o.unfinished_changes()) for o in self.store)

    def timers_armed(self) -> int:
        """Change applications and settle windows this mock will act on by itself (O(1))."""
        return len(self._timers)

    def verdicts(self) -> dict[str, Any]:
        now = self.clock()
        counts = {"race": 0, "clean": 0, "pending": 0}
        races: list[dict[str, Any]] = []
        for order in self.store:
            self._advance(order, now)
            audit = order.audit()
            counts[audit["verdict"]] += 1
            if audit["verdict"] == "race":
                races.append(
                    {
                        "orderId": order.order_id,
                        "finalValue": audit["finalValue"],
                        "invoicedTotal": audit["invoicedTotal"],
                        "excess": audit["invoicedTotal"] - audit["finalValue"],
                    }
                )
        return {"orders": len(self.store), "counts": counts, "races": races}


def _mock(request: Request) -> MockState:
    return request.app.state.mock  # type: ignore[no-any-return]


def _acted(request: Request, order_id: str | None = None) -> tuple[int, int]:
    """Stamp the moment the mock acts; return (arrival_ns, acted_ns)."""
    now = _mock(request).clock()
    request.state.acted_ns = now
    if order_id is not None:
        request.state.order_id = order_id
    return request.state.arrival_ns, now


async def _json_body(request: Request, where: str) -> Any:
    raw = await request.body()
    if len(raw) > _MAX_BODY:
        raise BadRequest(f"{where}: body larger than {_MAX_BODY} bytes")
    if not raw.strip():
        raise BadRequest(f"{where}: a JSON body is required")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadRequest(f"{where}: malformed JSON ({err})", code="MalformedJson") from None


# --- auth -----------------------------------------------------------------------

def _matches(given: str | None, expected: str | None) -> bool:
    return given is not None and expected is not None and hmac.compare_digest(given, expected)


async def _vtex_auth(request: Request) -> None:
    cfg = _mock(request).config
    if cfg.app_key is None:
        return
    key = request.headers.get("x-vtex-api-appkey")
    token = request.headers.get("x-vtex-api-apptoken")
    if key is None or token is None:
        raise Unauthorized("missing X-VTEX-API-AppKey / X-VTEX-API-AppToken headers")
    if _matches(key, cfg.app_key) and _matches(token, cfg.app_token):
        return
    if _matches(key, cfg.readonly_app_key) and _matches(token, cfg.readonly_app_token):
        if request.method in ("GET", "HEAD"):
            return
        raise Forbidden("this app key has no permission to change orders (read-only role)")
    raise Unauthorized("invalid app key or app token")


async def _admin_auth(request: Request) -> None:
    expected = _mock(request).config.admin_token
    if expected is None:
        return
    given = request.headers.get(ADMIN_HEADER)
    auth = request.headers.get("authorization", "")
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:]
    if given is None:
        raise Unauthorized(f"admin API: missing {ADMIN_HEADER} header (or Authorization: Bearer)")
    if not _matches(given, expected):
        raise Forbidden("admin API: wrong admin token")


# --- OpenAPI request bodies (validation itself is in changes/invoices) ---------

_ITEM = {"type": "object", "properties": {"id": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1},
                                           "price": {"type": "integer", "minimum": 0}}, "required": ["id", "quantity"]}
_INVOICE_SCHEMA = {
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
        "dispatchedDate": {"type": "string"}, "items": {"type": "array", "items": _ITEM},
    },
    "example": {"type": "Output", "issuanceDate": "2026-01-09T00:00:00Z", "invoiceNumber": "NFe-1",
                "invoiceValue": "10000", "items": [{"id": "1", "price": 5000, "quantity": 2}]},
}
_CHANGE_SCHEMA = {
    "type": "object",
    "required": ["reason"],
    "properties": {
        "reason": {"type": "string"},
        "add": {"type": "object", "properties": {"items": {"type": "array", "items": _ITEM}}},
        "remove": {"type": "object", "properties": {"items": {"type": "array", "items": _ITEM}}},
        "manualDiscountValue": {"type": "integer", "minimum": 0},
        "manualIncrementValue": {"type": "integer", "minimum": 0},
    },
    "example": {"reason": "partial cancellation", "remove": {"items": [{"id": "1", "quantity": 1}]}},
}
_OMS_CHANGE_SCHEMA = {
    "type": "object",
    "required": ["reason"],
    "properties": {
        "requestId": {"type": "string"}, "reason": {"type": "string"},
        "discountValue": {"type": "integer", "minimum": 0}, "incrementValue": {"type": "integer", "minimum": 0},
        "itemsRemoved": {"type": "array", "items": _ITEM}, "itemsAdded": {"type": "array", "items": _ITEM},
    },
}
_ORDER_SCHEMA = {
    "type": "object",
    "required": ["items"],
    "properties": {
        "orderId": {"type": "string"},
        "items": {"type": "array", "items": {**_ITEM, "properties": {**_ITEM["properties"], "name": {"type": "string"},
                                                                       "sellingPrice": {"type": "integer"}},
                                             "required": ["id", "quantity", "price"]}},
        "shipping": {"type": "integer", "minimum": 0}, "tax": {"type": "integer", "minimum": 0},
        "discounts": {"type": "integer", "minimum": 0},
        "status": {"type": "string", "enum": ["ready-for-handling", "handling", "waiting-for-fulfillment"]},
    },
    "example": {"items": [{"id": "1", "name": "Shirt", "quantity": 2, "price": 5000}], "shipping": 1000},
}


def _body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


# --- VTEX routes ------------------------------------------------------------------

vtex = APIRouter(dependencies=[Depends(_vtex_auth)], tags=["Orders API (VTEX-shaped)"])


@vtex.get("/api/oms/pvt/orders/{orderId}", summary="Get order")
async def get_order(orderId: str, request: Request) -> dict[str, Any]:
    _, now = _acted(request, orderId)
    return _mock(request).order(orderId, now).view()


def _hook_delay_ms(request: Request) -> float | None:
    """The `X-Mock-Hook-Delay-Ms` header: pins the hook delivery delay of this request's status change."""
    pinned = request.headers.get(hooks.HOOK_DELAY_HEADER)
    if pinned is None:
        return None
    try:
        return check_ms(pinned, f"header {hooks.HOOK_DELAY_HEADER}")
    except ConfigError as err:
        raise BadRequest(str(err)) from None


_HOOK_DELAY_DOC = {"parameters": [{
    "name": "X-Mock-Hook-Delay-Ms", "in": "header", "required": False, "schema": {"type": "number", "minimum": 0},
    "description": "Mock only: send the order hook notification of this request's status change this many ms "
                   "after the change (overrides hook_delay_ms)."}]}


@vtex.post("/api/oms/pvt/orders/{orderId}/start-handling", summary="Start handling order",
           openapi_extra=_HOOK_DELAY_DOC)
async def start_handling(orderId: str, request: Request) -> Response:
    hook_delay = _hook_delay_ms(request)
    _, now = _acted(request, orderId)
    mock = _mock(request)
    order = mock.order(orderId, now)
    if order.status != READY_FOR_HANDLING:
        raise Conflict(
            f"order {orderId} is {order.status!r}; start-handling needs {READY_FOR_HANDLING!r}", code="InvalidStatus"
        )
    with mock.hooks.delay(hook_delay):
        order.set_status(HANDLING, now)
    return Response(status_code=204)


@vtex.post("/api/oms/pvt/orders/{orderId}/cancel", summary="Cancel order", openapi_extra=_HOOK_DELAY_DOC)
async def cancel_order(orderId: str, request: Request) -> dict[str, Any]:
    hook_delay = _hook_delay_ms(request)
    _, now = _acted(request, orderId)
    mock = _mock(request)
    order = mock.order(orderId, now)
    if order.status in (INVOICE, INVOICED):
        raise Conflict(f"order {orderId} is {order.status!r}; an invoiced order cannot be canceled",
                       code="OrderAlreadyInvoiced")
    if order.status != CANCELED:
        with mock.hooks.delay(hook_delay):
            order.set_status(CANCELED, now)
    return {"date": iso_now(), "orderId": orderId, "receipt": f"cancel-{orderId}"}


async def _invoice(orderId: str, request: Request) -> dict[str, Any]:
    body = await _json_body(request, "invoice")
    hook_delay = _hook_delay_ms(request)
    mock = _mock(request)
    arrival, now = _acted(request, orderId)
    order = mock.order(orderId, now)  # unknown order: 404 before the body is judged
    spec = invoices.parse_body(body)
    try:
        with mock.hooks.delay(hook_delay):  # the status change the invoice makes now (not a later settle)
            record = invoices.post_invoice(
                order, spec, policy=mock.config.policy, settle_ms=mock.config.settle_ms, arrival_ns=arrival,
                now_ns=now, new_id=mock.new_ids(order, "invoice"),
            )
    except ApiError:
        request.state.outcome = "refused"
        raise
    request.state.outcome = "accepted"
    if order.settle_due_ns is not None:
        mock.schedule(order)
    return record.response(orderId)


@vtex.post("/api/orders/pvt/document/{orderId}/invoices", summary="Order invoice notification (ticket path)",
           openapi_extra={**_body_doc(_INVOICE_SCHEMA), **_HOOK_DELAY_DOC})
async def invoice_document(orderId: str, request: Request) -> dict[str, Any]:
    return await _invoice(orderId, request)


@vtex.post("/api/oms/pvt/orders/{orderId}/invoice", summary="Order invoice notification",
           openapi_extra={**_body_doc(_INVOICE_SCHEMA), **_HOOK_DELAY_DOC})
async def invoice_oms(orderId: str, request: Request) -> dict[str, Any]:
    return await _invoice(orderId, request)


def _delay_ms(request: Request, mock: MockState, order: Order) -> float:
    pinned = request.headers.get(DELAY_HEADER)
    if pinned is None:
        return mock.config.delay.sample(mock.delay_rng(order))
    try:
        return check_ms(pinned, f"header {DELAY_HEADER}")
    except ConfigError as err:
        raise BadRequest(str(err)) from None


async def _change(orderId: str, request: Request, spec_of: Any, endpoint: str) -> changes.ChangeRecord:
    body = await _json_body(request, "change")
    mock = _mock(request)
    arrival, now = _acted(request, orderId)
    order = mock.order(orderId, now)
    spec = spec_of(body)
    rng_state = None if mock.deterministic else mock.rng.getstate()  # deterministic: a fresh RNG per Change
    delay = _delay_ms(request, mock, order)
    try:
        record = changes.register(
            order, spec, policy=mock.config.policy, delay_ms=delay, arrival_ns=arrival, now_ns=now,
            endpoint=endpoint, account=request.query_params.get("an", "mockstore"),
            autostart=mock.pool is None, new_id=mock.new_ids(order, "change"),
        )
    except ApiError as err:
        if rng_state is not None:
            mock.rng.setstate(rng_state)  # a refused Change consumes no delay draw
        changes.refuse(order, err, arrival_ns=arrival, now_ns=now, endpoint=endpoint)
        request.state.outcome = "refused"
        raise
    request.state.outcome = "accepted"
    if mock.pool is not None:
        mock.pool.submit(order, record, now)
    mock.schedule(order)
    return record


@vtex.patch("/api/order-system/orders/{changeOrderId}/changes", status_code=202, summary="Create order change",
            openapi_extra=_body_doc(_CHANGE_SCHEMA))
async def create_change(changeOrderId: str, request: Request) -> JSONResponse:
    record = await _change(changeOrderId, request, changes.parse_order_system_body, "order-system")
    return JSONResponse(status_code=202, content=record.view())


@vtex.post("/api/oms/pvt/orders/{orderId}/changes", status_code=202, summary="Register change on order",
           openapi_extra=_body_doc(_OMS_CHANGE_SCHEMA))
async def register_change(orderId: str, request: Request) -> JSONResponse:
    record = await _change(orderId, request, changes.parse_oms_body, "oms")
    content = {"date": record.date, "orderId": orderId, "receipt": record.request_id,
               "requestId": record.request_id, "finished": record.finished}
    return JSONResponse(status_code=202, content=content)


@vtex.get("/api/order-system/orders/{changeOrderId}/changes", summary="Get order change history")
async def change_history(changeOrderId: str, request: Request) -> dict[str, Any]:
    _, now = _acted(request, changeOrderId)
    order = _mock(request).order(changeOrderId, now)
    return {"requests": [c.view() for c in order.changes]}


@vtex.get("/api/order-system/orders/{changeOrderId}/changes/{changeRequestId}", summary="Get order change details")
async def change_detail(changeOrderId: str, changeRequestId: str, request: Request) -> dict[str, Any]:
    _, now = _acted(request, changeOrderId)
    order = _mock(request).order(changeOrderId, now)
    for c in order.changes:
        if c.request_id == changeRequestId:
            return c.view()
    raise NotFound(f"change request {changeRequestId!r} not found on order {changeOrderId}", code="ChangeNotFound")


_HOOK_CONFIG_SCHEMA = {
    "type": "object",
    "required": ["filter", "hook"],
    "properties": {
        "filter": {"oneOf": [
            {"type": "object", "required": ["type", "status"], "title": "FromWorkflow",
             "properties": {"type": {"type": "string", "enum": ["FromWorkflow"]},
                            "status": {"type": "array", "minItems": 1, "items": {"type": "string"},
                                       "description": "statuses to notify; the mock emits "
                                                      + ", ".join(hooks.HOOK_STATUSES)}}},
            {"type": "object", "required": ["type", "expression"], "title": "FromOrders",
             "description": "the mock stores the JSONata expression but does not evaluate it: "
                            "every status change is notified",
             "properties": {"type": {"type": "string", "enum": ["FromOrders"]}, "expression": {"type": "string"},
                            "disableSingleFire": {"type": "boolean", "default": False}}},
        ]},
        "hook": {"type": "object", "required": ["url"],
                 "properties": {"url": {"type": "string", "format": "uri", "description": "http(s); must answer "
                                        "the ping {\"hookConfig\": \"ping\"} with 200"},
                                "headers": {"type": "object", "additionalProperties": {"type": "string"}}}},
    },
    "example": {"filter": {"type": "FromWorkflow", "status": ["handling", "invoiced"]},
                "hook": {"url": "http://127.0.0.1:9000/hook", "headers": {"X-Secret": "s3cret"}}},
}


@vtex.post("/api/orders/hook/config", summary="Create or update hook configuration",
           description="One hook per mock. The URL is pinged with {\"hookConfig\": \"ping\"} and must answer 200 "
                       "within hook_timeout_s, else 400 and the config is unchanged. Each notification is "
                       "{Domain, OrderId, State, LastState, LastChange, CurrentChange, Origin}.",
           openapi_extra=_body_doc(_HOOK_CONFIG_SCHEMA))
async def hook_config_set(request: Request) -> dict[str, Any]:
    body = await _json_body(request, "hook config")
    hook = hooks.parse_hook_config(body)
    mock = _mock(request)
    await mock.hooks.ping(hook)
    mock.hooks.config = hook
    return hook.view()


@vtex.get("/api/orders/hook/config", summary="Get hook configuration")
async def hook_config_get(request: Request) -> dict[str, Any]:
    view = _mock(request).hooks.view()
    if view is None:
        raise NotFound("no hook is configured; POST /api/orders/hook/config", code="HookNotConfigured")
    return view


@vtex.delete("/api/orders/hook/config", status_code=204, summary="Delete hook configuration",
             description="Stops new notifications; deliveries already scheduled still go out.")
async def hook_config_delete(request: Request) -> Response:
    _mock(request).hooks.config = None
    return Response(status_code=204)


# --- admin routes ------------------------------------------------------------------

admin = APIRouter(prefix="/_mock", dependencies=[Depends(_admin_auth)], tags=["Mock admin"])


@admin.get("/health", summary="Liveness and counters")
async def health(request: Request) -> dict[str, Any]:
    mock = _mock(request)
    return {"status": "ok", "orders": len(mock.store), "pendingChanges": mock.pending_changes(),
            "journalEntries": len(mock.journal), "journalDropped": mock.journal.dropped,
            "policy": mock.config.policy, "monotonicNs": mock.clock()}


def _config_view(mock: MockState) -> dict[str, Any]:
    hook = mock.hooks.config  # headers are left out: they may carry the receiver's secret
    return {**mock.config.public(), "hook_url": hook.url if hook else None,
            "hook_status": list(hook.statuses) if hook and hook.statuses else None}


@admin.get("/config", summary="Current mock settings")
async def get_config(request: Request) -> dict[str, Any]:
    return _config_view(_mock(request))


@admin.patch("/config", summary="Change mock settings (policy, delay, settle_ms, seed, hook_timeout_s, "
                                 "hook_retries, hook_delay_ms)",
             openapi_extra=_body_doc({"type": "object", "example": {"policy": "strict", "delay": "uniform:50,1000",
                                                                     "settle_ms": 100, "seed": 7,
                                                                     "hook_delay_ms": 0}}))
async def patch_config(request: Request) -> dict[str, Any]:
    body = await _json_body(request, "config")
    if not isinstance(body, dict):
        raise BadRequest("config: expected a JSON object")
    mock = _mock(request)
    try:
        new = mock.config.updated(body)
    except ConfigError as err:
        raise BadRequest(str(err), code="InvalidConfig") from None
    if "change_workers" in body:
        mock.set_change_workers(new.change_workers)  # 409 while Changes are pending, config untouched
    if "seed" in body:
        mock.rng = random.Random(new.seed)
    mock.config = new
    return _config_view(mock)


@admin.post("/reset", summary="Forget every order, Change, invoice, journal entry and pending hook delivery "
                              "(the hook config stays)")
async def reset(request: Request) -> dict[str, Any]:
    _mock(request).reset()
    return {"reset": True}


@admin.post("/orders", status_code=201, summary="Create an order", openapi_extra=_body_doc(_ORDER_SCHEMA))
async def create_order(request: Request) -> JSONResponse:
    body = await _json_body(request, "order")
    _, now = _acted(request)
    order = _mock(request).store.create(body, now)
    request.state.order_id = order.order_id
    return JSONResponse(status_code=201, content=order.view())


@admin.get("/orders/{orderId}/audit", summary="The mock's own record of one order")
async def audit(orderId: str, request: Request) -> dict[str, Any]:
    mock = _mock(request)
    return mock.order(orderId, mock.clock()).audit()


@admin.post("/audits", summary="Audits of many orders: body {\"orderIds\": [...]}",
            openapi_extra=_body_doc({"type": "object", "properties": {"orderIds": {"type": "array"}}}))
async def audits(request: Request) -> dict[str, Any]:
    body = await _json_body(request, "audits")
    ids = body.get("orderIds") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadRequest("audits.orderIds: expected a list of order id strings")
    mock = _mock(request)
    now = mock.clock()
    return {"audits": [mock.order(i, now).audit() for i in ids]}


@admin.get("/verdicts", summary="Run-wide verdicts: every raced order")
async def verdicts(request: Request) -> dict[str, Any]:
    return _mock(request).verdicts()


@admin.get("/journal", summary="Journaled requests with arrival/acted/done monotonic ns")
async def journal(request: Request, since: int = 0, limit: int = 1000, orderId: str | None = None) -> dict[str, Any]:
    if since < 0 or not 1 <= limit <= 100_000:
        raise BadRequest("journal: expected since >= 0 and 1 <= limit <= 100000")
    mock = _mock(request)
    entries = mock.journal.query(since=since, limit=limit, order_id=orderId)
    return {"entries": entries, "dropped": mock.journal.dropped}


@admin.get("/hooks", summary="Journaled order hook delivery attempts (monotonic ns)")
async def hook_deliveries(request: Request, since: int = 0, limit: int = 1000,
                          orderId: str | None = None) -> dict[str, Any]:
    if since < 0 or not 1 <= limit <= 100_000:
        raise BadRequest("hooks: expected since >= 0 and 1 <= limit <= 100000")
    h = _mock(request).hooks
    return {"deliveries": h.journal.query(since=since, limit=limit, order_id=orderId), "dropped": h.journal.dropped,
            "pending": h.pending, "hook": h.view()}


# --- app ------------------------------------------------------------------------------

# Every API route, in routing order (the simulated mode's direct dispatcher reads them too).
API_ROUTERS: tuple[APIRouter, ...] = (vtex, admin)


def _error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(status_code=err.status, content=err.body())


def _status_code_name(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return f"Http{status}"


def create_app(config: MockConfig | None = None, clock: Callable[[], int] = time.monotonic_ns,
               deterministic: bool = False) -> FastAPI:
    """A fresh mock with its own state (each app instance is independent).

    `clock` and `deterministic`: see `MockState` (a simulated run's virtual clock)."""
    config = config or MockConfig()
    config.check_auth()

    @asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.mock.hooks.aclose()  # cancel pending hook deliveries, close their client

    app = FastAPI(
        lifespan=_lifespan,
        title="Mock VTEX Orders API (race harness)",
        version="1.0",
        description="A stateful mock of the VTEX Orders API parts that ticket 1348894 touches: "
        "asynchronous Changes, invoices, a vulnerable and a strict policy, order hooks (status-change "
        "notifications), audit and journal under /_mock.",
    )
    state = MockState(config, clock=clock, deterministic=deterministic)
    app.state.mock = state
    for router in API_ROUTERS:
        app.include_router(router)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return _error_response(err)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, err: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in err.errors()]
        return _error_response(BadRequest("; ".join(parts) or "invalid request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        cls = {401: Unauthorized, 403: Forbidden, 404: NotFound}.get(err.status_code)
        message = f"{request.method} {request.url.path}: {err.detail}"
        # Any other status (405, ...) is named after its reason phrase, e.g. "MethodNotAllowed".
        e = cls(message) if cls is not None else ApiError(message, code=_status_code_name(err.status_code))
        e.status = err.status_code
        return _error_response(e)

    app.add_middleware(JournalMiddleware, journal=state.journal, clock=clock)
    return app
