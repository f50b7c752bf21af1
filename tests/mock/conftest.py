"""Fixtures of the mock's tests: in-process, threaded and child-process mocks and a thin client."""

from __future__ import annotations

import asyncio as _asyncio
import time as _time
import uuid as _uuid
from collections.abc import AsyncIterator as _AsyncIterator
from collections.abc import Awaitable as _Awaitable
from collections.abc import Callable as _Callable
from collections.abc import Iterator as _Iterator
from typing import Any as _Any

import httpx as _httpx
import pytest as _pytest

from mock_orders_api import create_app as _create_app
from mock_orders_api.delays import Fixed as _Fixed
from mock_orders_api.config import MockConfig as _MockConfig
from mock_orders_api.server import MockProcess as _MockProcess
from mock_orders_api.server import ThreadedMock as _ThreadedMock
from mock_orders_api.wire import ADMIN_TOKEN_HEADER as _ADMIN_TOKEN_HEADER
from mock_orders_api.wire import APP_KEY_HEADER as _APP_KEY_HEADER
from mock_orders_api.wire import APP_TOKEN_HEADER as _APP_TOKEN_HEADER
from mock_orders_api.wire import CHANGE_DELAY_HEADER as _CHANGE_DELAY_HEADER
from mock_orders_api.wire import CHANGE_OUTCOME_HEADER as _CHANGE_OUTCOME_HEADER


# A default order: 2 x 5000 + 1 x 3000 items, 1000 shipping, 500 tax (cents).
MOCK_DEFAULT_ITEMS: list[dict[str, _Any]] = [
    {"id": "sku-1", "name": "Shirt", "quantity": 2, "price": 5000},
    {"id": "sku-2", "name": "Cap", "quantity": 1, "price": 3000},
]


class MockApi:
    """A thin test client for the mock: raw `client` plus helpers that assert the happy path.

    `app` is the Starlette app (in-process and ThreadedMock targets) for white-box checks;
    it is None for a child-process target. `kind` is "asgi", "live" or "process".
    """

    def __init__(self, client: _httpx.AsyncClient, *, kind: str, app: _Any = None,
                 vtex_headers: dict[str, str] | None = None, admin_headers: dict[str, str] | None = None) -> None:
        self.client = client
        self.kind = kind
        self.app = app
        self.vtex_headers = dict(vtex_headers or {})
        self.admin_headers = dict(admin_headers or {})

    @property
    def state(self) -> _Any:
        assert self.app is not None, "white-box state needs an in-process or threaded mock"
        return self.app.state.mock

    # --- admin ---------------------------------------------------------------
    async def create_order(self, items: list[dict[str, _Any]] | None = None, *, expect: int = 201,
                           **fields: _Any) -> dict[str, _Any]:
        body = {"items": items if items is not None else MOCK_DEFAULT_ITEMS, **fields}
        r = await self.client.post("/_mock/orders", json=body, headers=self.admin_headers)
        assert r.status_code == expect, r.text
        return r.json()  # type: ignore[no-any-return]

    async def handling_order(self, items: list[dict[str, _Any]] | None = None, **fields: _Any) -> dict[str, _Any]:
        """Create an order and start handling it; returns the order as GET shows it afterwards."""
        created = await self.create_order(items, **fields)
        assert created["status"] == "ready-for-handling"
        r = await self.start_handling(created["orderId"])
        assert r.status_code == 204, r.text
        view = await self.order(created["orderId"])
        assert view["status"] == "handling"
        return view

    async def audit(self, order_id: str) -> dict[str, _Any]:
        r = await self.client.get(f"/_mock/orders/{order_id}/audit", headers=self.admin_headers)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def audits(self, order_ids: list[str]) -> list[dict[str, _Any]]:
        r = await self.client.post("/_mock/audits", json={"orderIds": order_ids}, headers=self.admin_headers)
        assert r.status_code == 200, r.text
        return r.json()["audits"]  # type: ignore[no-any-return]

    async def set_config(self, **patch: _Any) -> dict[str, _Any]:
        r = await self.client.patch("/_mock/config", json=patch, headers=self.admin_headers)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def reset(self) -> None:
        r = await self.client.post("/_mock/reset", headers=self.admin_headers)
        assert r.status_code == 200, r.text

    async def health(self) -> dict[str, _Any]:
        r = await self.client.get("/_mock/health", headers=self.admin_headers)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    # --- VTEX-shaped API ---------------------------------------------------------
    async def order(self, order_id: str) -> dict[str, _Any]:
        r = await self.client.get(f"/api/oms/pvt/orders/{order_id}", headers=self.vtex_headers)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def start_handling(self, order_id: str) -> _httpx.Response:
        return await self.client.post(f"/api/oms/pvt/orders/{order_id}/start-handling", headers=self.vtex_headers)

    async def cancel(self, order_id: str) -> _httpx.Response:
        return await self.client.post(f"/api/oms/pvt/orders/{order_id}/cancel", headers=self.vtex_headers)

    async def change(self, order_id: str, *, remove: list[dict[str, _Any]] | None = None,
                     add: list[dict[str, _Any]] | None = None, discount: int = 0, increment: int = 0,
                     reason: str = "partial cancellation", delay_ms: float | None = None,
                     endpoint: str = "order-system", request_id: str | None = None,
                     outcome: str | None = None) -> _httpx.Response:
        """Send a Change through either public endpoint; `delay_ms` / `outcome` pin its delay / end via headers."""
        headers = dict(self.vtex_headers)
        if outcome is not None:
            headers[_CHANGE_OUTCOME_HEADER] = outcome
        if delay_ms is not None:
            headers[_CHANGE_DELAY_HEADER] = repr(float(delay_ms))
        if endpoint == "order-system":
            body: dict[str, _Any] = {"reason": reason}
            if remove:
                body["remove"] = {"items": remove}
            if add:
                body["add"] = {"items": add}
            if discount:
                body["manualDiscountValue"] = discount
            if increment:
                body["manualIncrementValue"] = increment
            return await self.client.patch(f"/api/order-system/orders/{order_id}/changes", json=body, headers=headers)
        assert endpoint == "oms", endpoint
        # v1 (SPEC RegisterChange): requestId, discountValue, incrementValue and item prices are required.
        body = {"reason": reason, "discountValue": discount, "incrementValue": increment,
                "requestId": request_id if request_id is not None else f"v1-{_uuid.uuid4().hex}"}
        if remove:
            body["itemsRemoved"] = remove
        if add:
            body["itemsAdded"] = add
        return await self.client.post(f"/api/oms/pvt/orders/{order_id}/changes", json=body, headers=headers)

    async def invoice(self, order_id: str, value: int | str, *, number: str = "NFe-1", type: str = "Output",
                      path: str = "document", **extra: _Any) -> _httpx.Response:
        """Send an invoice notification through the ticket path ("document") or the oms path."""
        # each route's documented body (PII-SPEC InvoiceNotification2 / SPEC InvoiceNotification)
        if path == "document":
            body = {"type": type, "issuedDate": "2026-01-09", "invoiceNumber": number,
                    "invoiceValue": int(value), "items": [{"itemIndex": 0, "price": int(value), "quantity": 1}],
                    **extra}
        else:
            body = {"type": type, "issuanceDate": "2026-01-09T00:00:00Z", "invoiceNumber": number,
                    "invoiceValue": value, "items": [{"id": "any", "price": int(value), "quantity": 1}], **extra}
        url = (f"/api/orders/pvt/document/{order_id}/invoices" if path == "document"
               else f"/api/oms/pvt/orders/{order_id}/invoice")
        assert path in ("document", "oms"), path
        return await self.client.post(url, json=body, headers=self.vtex_headers)

    async def change_history(self, order_id: str) -> list[dict[str, _Any]]:
        r = await self.client.get(f"/api/order-system/orders/{order_id}/changes", headers=self.vtex_headers)
        assert r.status_code == 200, r.text
        return r.json()["requests"]  # type: ignore[no-any-return]

    async def change_detail(self, order_id: str, request_id: str) -> dict[str, _Any]:
        r = await self.client.get(f"/api/order-system/orders/{order_id}/changes/{request_id}",
                                  headers=self.vtex_headers)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def wait_finished(self, order_id: str, request_id: str, *, timeout_s: float,
                            interval_s: float = 0.005) -> dict[str, _Any]:
        """Poll the change detail until `finished` (bounded); fails the test on timeout."""
        async def _done() -> dict[str, _Any] | None:
            view = await self.change_detail(order_id, request_id)
            return view if view["finished"] else None
        return await mock_poll(_done, timeout_s=timeout_s, interval_s=interval_s,
                               what=f"change {request_id} of {order_id} finished")

    async def wait_all_finished(self, order_id: str, *, timeout_s: float) -> list[dict[str, _Any]]:
        async def _done() -> list[dict[str, _Any]] | None:
            hist = await self.change_history(order_id)
            return hist if all(c["finished"] for c in hist) else None
        return await mock_poll(_done, timeout_s=timeout_s, what=f"all changes of {order_id} finished")


async def mock_poll(probe: _Callable[[], _Awaitable[_Any]], *, timeout_s: float, interval_s: float = 0.005,
                    what: str = "condition") -> _Any:
    """Await `probe()` until it returns something truthy; fail after `timeout_s` (never unbounded)."""
    deadline = _time.monotonic() + timeout_s
    while True:
        result = await probe()
        if result:
            return result
        if _time.monotonic() >= deadline:
            _pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await _asyncio.sleep(interval_s)


def mock_assert_error(resp: _httpx.Response, status: int, *, code: str | None = None,
                      mentions: str | None = None) -> dict[str, _Any]:
    """Assert the VTEX-style error body `{"error": {"code", "message", "exception"}}`."""
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text}"
    body = resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"code", "message", "exception"}, err
    assert isinstance(err["code"], str) and err["code"], err
    assert isinstance(err["message"], str) and err["message"], err
    assert err["exception"] is None
    if code is not None:
        assert err["code"] == code, err
    if mentions is not None:
        assert mentions.lower() in err["message"].lower(), err
    return err  # type: ignore[no-any-return]


def mock_config(**kw: _Any) -> _MockConfig:
    """A MockConfig with a fixed 300 ms delay unless told otherwise."""
    kw.setdefault("delay", _Fixed(300.0))
    return _MockConfig(**kw)


def _mock_auth_headers(cfg: _MockConfig) -> tuple[dict[str, str], dict[str, str]]:
    vtex = ({_APP_KEY_HEADER: cfg.app_key, _APP_TOKEN_HEADER: cfg.app_token}
            if cfg.app_key and cfg.app_token else {})
    admin = {_ADMIN_TOKEN_HEADER: cfg.admin_token} if cfg.admin_token else {}
    return vtex, admin


@_pytest.fixture
async def make_client() -> _AsyncIterator[_Callable[..., _httpx.AsyncClient]]:
    """`make_client(config)` -> an httpx.AsyncClient on a fresh in-process app (ASGI transport, no lifespan)."""
    clients: list[_httpx.AsyncClient] = []

    def _make(config: _MockConfig | None = None, **client_kw: _Any) -> _httpx.AsyncClient:
        app = _create_app(config or mock_config())
        client_kw.setdefault("timeout", 10.0)
        client = _httpx.AsyncClient(transport=_httpx.ASGITransport(app=app), base_url="http://mock.test", **client_kw)
        clients.append(client)
        return client

    yield _make
    for c in clients:
        await c.aclose()


def _servers(cls: type) -> _Iterator[_Callable[..., _Any]]:
    """A factory of started servers of `cls` (context managers), stopped at teardown."""
    started: list[_Any] = []

    def _start(config: _MockConfig | None = None) -> _Any:
        m = cls(config or mock_config())
        m.__enter__()
        started.append(m)
        return m

    yield _start
    for m in reversed(started):
        m.__exit__(None, None, None)


@_pytest.fixture
def live_mock() -> _Iterator[_Callable[..., _ThreadedMock]]:
    """`live_mock(config)` -> a started ThreadedMock (real uvicorn on a free 127.0.0.1 port), stopped at teardown."""
    yield from _servers(_ThreadedMock)


@_pytest.fixture
def process_mock() -> _Iterator[_Callable[..., _MockProcess]]:
    """`process_mock(config)` -> a started MockProcess (the mock in a child process), stopped at teardown."""
    yield from _servers(_MockProcess)


@_pytest.fixture
async def make_api(live_mock: _Callable[..., _ThreadedMock], process_mock: _Callable[..., _MockProcess]
                   ) -> _AsyncIterator[_Callable[..., MockApi]]:
    """`make_api(config, kind="asgi"|"live"|"process")` -> a MockApi on a fresh mock.

    Credentials from the config are sent by the helpers (not as client defaults), so raw
    `api.client` calls go out unauthenticated unless the test adds headers.
    """
    clients: list[_httpx.AsyncClient] = []

    def _make(config: _MockConfig | None = None, *, kind: str = "asgi", max_connections: int = 100) -> MockApi:
        cfg = config or mock_config()
        vtex, admin = _mock_auth_headers(cfg)
        limits = _httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        if kind == "asgi":
            app = _create_app(cfg)
            client = _httpx.AsyncClient(transport=_httpx.ASGITransport(app=app), base_url="http://mock.test",
                                        timeout=10.0)
        elif kind == "live":
            m = live_mock(cfg)
            app = m.app
            client = _httpx.AsyncClient(base_url=m.url, timeout=10.0, limits=limits)
        elif kind == "process":
            p = process_mock(cfg)
            app = None
            client = _httpx.AsyncClient(base_url=p.url, timeout=10.0, limits=limits)
        else:
            raise ValueError(kind)
        clients.append(client)
        return MockApi(client, kind=kind, app=app, vtex_headers=vtex, admin_headers=admin)

    yield _make
    for c in clients:
        await c.aclose()


@_pytest.fixture
async def api(make_api: _Callable[..., MockApi]) -> MockApi:
    """An in-process mock: vulnerable policy, fixed 300 ms delay, no auth."""
    return make_api()


@_pytest.fixture
def assert_error() -> _Callable[..., dict[str, _Any]]:
    """`assert_error(resp, status, code=..., mentions=...)`: the VTEX-style error body check."""
    return mock_assert_error


@_pytest.fixture
def poll() -> _Callable[..., _Awaitable[_Any]]:
    """`await poll(probe, timeout_s=..., interval_s=...)`: a bounded poll loop."""
    return mock_poll
