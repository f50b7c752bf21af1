"""List orders (SPEC `GET /api/oms/pvt/orders`: paging limits, the indexing lag, KI-577103), the
tracking routes (SPEC `Updatepartialinvoice.SendTrackingNumber`, `UpdateTrackingStatus`), Get
order's VTEX fields, and the 429/500/503 contract of the OpenAPI document."""

from __future__ import annotations

import httpx

from mock_orders_api import create_app
from mock_orders_api.config import MockConfig

ITEMS = [{"id": "sku-1", "quantity": 2, "price": 5000}, {"id": "sku-2", "quantity": 1, "price": 3000}]
MS = 1_000_000


def _client(cfg: MockConfig, now: list[int]) -> httpx.AsyncClient:
    app = create_app(cfg, clock=lambda: now[0])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mock.test")


async def _order(c: httpx.AsyncClient, status: str = "ready-for-handling") -> str:
    oid: str = (await c.post("/_mock/orders", json={"items": ITEMS, "status": status})).json()["orderId"]
    return oid


async def test_list_orders_pages_filters_and_has_the_spec_shape() -> None:
    async with _client(MockConfig(), [0]) as c:
        ids = [await _order(c) for _ in range(5)]
        await c.post(f"/api/oms/pvt/orders/{ids[0]}/start-handling")
        r = await c.get("/api/oms/pvt/orders", params={"per_page": 2, "page": 2})
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"list", "facets", "paging", "stats"}
        assert body["paging"] == {"total": 5, "pages": 3, "currentPage": 2, "perPage": 2}
        assert [o["orderId"] for o in body["list"]] == ids[::-1][2:4]  # newest first
        row = body["list"][0]
        assert row["items"] is None and row["totalValue"] == 13000 and row["totalItems"] == 3
        assert row["workflowInErrorState"] is False and row["statusDescription"]
        assert body["stats"]["stats"]["totalValue"]["Count"] == 5
        handling = (await c.get("/api/oms/pvt/orders", params={"f_status": "handling"})).json()
        assert [o["orderId"] for o in handling["list"]] == [ids[0]] and handling["paging"]["perPage"] == 15
        # SPEC: at most 30 pages, at most 100 per page.
        for bad in ({"page": 31}, {"per_page": 101}, {"page": 0}, {"per_page": "many"}):
            r = await c.get("/api/oms/pvt/orders", params=bad)
            assert r.status_code == 400 and next(iter(bad)) in r.json()["error"]["message"]
        assert (await c.get("/api/oms/pvt/orders", params={"per_page": 100, "page": 30})).json()["list"] == []


async def test_list_orders_lags_behind_the_order_ki_577103() -> None:
    now = [0]
    async with _client(MockConfig(list_lag_ms=1000.0), now) as c:
        oid = await _order(c)
        assert (await c.get("/api/oms/pvt/orders")).json()["list"] == []  # not indexed yet
        now[0] = 1000 * MS
        await c.post(f"/api/oms/pvt/orders/{oid}/start-handling")
        [row] = (await c.get("/api/oms/pvt/orders")).json()["list"]
        assert row["status"] == "ready-for-handling"  # the list still shows the old status
        assert (await c.get(f"/api/oms/pvt/orders/{oid}")).json()["status"] == "handling"
        now[0] = 2000 * MS
        [row] = (await c.get("/api/oms/pvt/orders")).json()["list"]
        assert row["status"] == "handling"


async def _invoiced(c: httpx.AsyncClient) -> str:
    oid = await _order(c, "handling")
    r = await c.post(f"/api/oms/pvt/orders/{oid}/invoice", json={
        "type": "Output", "issuanceDate": "2026-01-09T00:00:00Z", "invoiceNumber": "NF-1", "invoiceValue": 13000,
        "items": [{"id": "sku-2", "price": 3000, "quantity": 1}, {"id": "sku-1", "price": 5000, "quantity": 2}]})
    assert r.status_code == 200, r.text
    return oid


async def test_tracking_number_then_tracking_events_show_on_the_package() -> None:
    async with _client(MockConfig(), [0]) as c:
        oid = await _invoiced(c)
        events = {"isDelivered": True, "deliveredDate": "2026-01-12 10:00",
                  "events": [{"city": "Rio", "state": "RJ", "description": "Delivered", "date": "2026-01-12"}]}
        r = await c.put(f"/api/oms/pvt/orders/{oid}/invoice/NF-1/tracking", json=events)
        assert r.status_code == 400 and r.json()["error"]["code"] == "TrackingNumberMissing"  # SPEC: number first
        tracking = {"trackingNumber": "TRK-1", "trackingUrl": "https://t.example/TRK-1", "courier": "Correios",
                    "dispatchedDate": None}
        r = await c.patch(f"/api/oms/pvt/orders/{oid}/invoice/NF-1", json=tracking)
        assert r.status_code == 200 and set(r.json()) == {"date", "orderId", "receipt"}
        assert (await c.put(f"/api/oms/pvt/orders/{oid}/invoice/NF-1/tracking", json=events)).status_code == 200
        [pkg] = (await c.get(f"/api/oms/pvt/orders/{oid}")).json()["packageAttachment"]["packages"]
        assert pkg["trackingNumber"] == "TRK-1" and pkg["courier"] == "Correios"
        assert pkg["courierStatus"]["finished"] is True and pkg["courierStatus"]["data"][0]["city"] == "Rio"
        [audited] = (await c.get(f"/_mock/orders/{oid}/audit")).json()["invoices"]
        assert "trackingNumber" not in audited["body"]  # the audit keeps the invoice as it was sent
        r = await c.patch(f"/api/oms/pvt/orders/{oid}/invoice/NF-404", json=tracking)
        assert r.status_code == 404 and r.json()["error"]["code"] == "InvoiceNotFound"
        r = await c.patch(f"/api/oms/pvt/orders/{oid}/invoice/NF-1", json={"trackingNumber": "TRK-2"})
        assert r.status_code == 400 and "trackingUrl" in r.json()["error"]["message"]


async def test_get_order_has_vtex_fields_and_package_items_by_item_index() -> None:
    async with _client(MockConfig(), [0]) as c:
        fresh = (await c.get(f"/api/oms/pvt/orders/{await _order(c)}")).json()
        assert fresh["workflowIsInError"] is False and fresh["invoicedDate"] is None
        assert fresh["cancellationData"] is None
        view = (await c.get(f"/api/oms/pvt/orders/{await _invoiced(c)}")).json()
        assert view["status"] == "invoiced" and view["invoicedDate"]
        [pkg] = view["packageAttachment"]["packages"]
        # The OMS route's items name SKUs by id; Get order shows their index in the order (SPEC).
        assert [(i["itemIndex"], i["quantity"]) for i in pkg["items"]] == [(1, 1), (0, 2)]


async def test_faults_and_429s_are_kept_in_the_order_audit() -> None:
    async with _client(MockConfig(rate_limits={"get-order": 1.0}), [0]) as c:
        oid = await _order(c)
        assert (await c.get(f"/api/oms/pvt/orders/{oid}")).status_code == 200
        r = await c.get(f"/api/oms/pvt/orders/{oid}")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert (await c.post(f"/api/oms/pvt/orders/{oid}/start-handling", headers={"X-Mock-Fault": "503"})
                ).status_code == 503
        faults = (await c.get(f"/_mock/orders/{oid}/audit")).json()["faults"]
        assert [(f["route"], f["kind"]) for f in faults] == [("get-order", "429"), ("start-handling", "fault-503")]


async def test_openapi_documents_429_with_retry_after_and_5xx_on_every_limited_route() -> None:
    async with _client(MockConfig(), [0]) as c:
        doc = (await c.get("/openapi.json")).json()
    limited = [(p, m) for p, ops in doc["paths"].items() for m, op in ops.items()
               if "Mock route name" in op.get("description", "")]
    assert len(limited) >= 12
    for path, method in limited:
        responses = doc["paths"][path][method]["responses"]
        assert {"429", "500", "503"} <= set(responses), (method, path)
    assert "Retry-After" in doc["components"]["responses"]["Error429"]["headers"]
    v1 = doc["paths"]["/api/oms/pvt/orders/{orderId}/changes"]["post"]
    assert v1["deprecated"] is True and set(v1["requestBody"]["content"]["application/json"]["schema"]["required"]) \
        == {"requestId", "reason", "discountValue", "incrementValue"}
    assert not any(p["name"].lower() == "x-mock-fault" for ops in doc["paths"].values() for op in ops.values()
                   for p in op["parameters"])  # a contract test must not inject faults
