"""Mock Orders API: order creation and shape, start-handling, cancel, OpenAPI document."""

from __future__ import annotations

import re
from typing import Any

import pytest

ITEMS = [
    {"id": "sku-1", "name": "Shirt", "quantity": 2, "price": 5000},
    {"id": "sku-2", "name": "Cap", "quantity": 3, "price": 2990, "sellingPrice": 2500},
]


def _expected(items: list[dict[str, Any]], shipping: int = 0, tax: int = 0, discounts: int = 0) -> tuple[int, int]:
    items_total = sum(i["quantity"] * i.get("sellingPrice", i["price"]) for i in items)
    return items_total, items_total - discounts + shipping + tax


@pytest.mark.parametrize(
    ("shipping", "tax", "discounts"),
    [(0, 0, 0), (1000, 500, 0), (1234, 99, 700), ("1000", "0", "250")],  # digit strings are cents too
)
async def test_created_order_has_the_vtex_shape_and_cents(api, shipping, tax, discounts) -> None:
    ship, tx, disc = int(shipping), int(tax), int(discounts)
    items_total, value = _expected(ITEMS, ship, tx, disc)
    created = await api.create_order(ITEMS, shipping=shipping, tax=tax, discounts=discounts)
    fetched = await api.order(created["orderId"])
    assert created == fetched  # the create response is the GET view

    assert re.fullmatch(r"\d+-\d{2}", fetched["orderId"])
    assert fetched["sequence"] == fetched["orderId"].split("-")[0]
    assert fetched["status"] == "ready-for-handling"
    assert fetched["value"] == value and isinstance(fetched["value"], int)
    totals = {t["id"]: t["value"] for t in fetched["totals"]}
    assert [t["id"] for t in fetched["totals"]] == ["Items", "Discounts", "Shipping", "Tax"]
    assert totals == {"Items": items_total, "Discounts": -disc, "Shipping": ship, "Tax": tx}
    assert sum(totals.values()) == fetched["value"]
    assert all(isinstance(t["name"], str) and t["name"] for t in fetched["totals"])

    by_id = {i["id"]: i for i in fetched["items"]}
    assert set(by_id) == {i["id"] for i in ITEMS}
    for spec in ITEMS:
        got = by_id[spec["id"]]
        assert got["quantity"] == spec["quantity"]
        assert got["price"] == spec["price"]
        assert got["sellingPrice"] == spec.get("sellingPrice", spec["price"])
        assert got["name"] == spec["name"]
    assert fetched["packageAttachment"] == {"packages": []}
    assert fetched["changesAttachment"] is None

    audit = await api.audit(fetched["orderId"])
    assert audit["initialValue"] == audit["finalValue"] == value
    assert audit["invoicedTotal"] == 0 and audit["verdict"] == "clean"
    assert audit["invoices"] == [] and audit["changes"] == []


async def test_order_ids_are_unique_and_custom_ids_are_kept(api) -> None:
    ids = [(await api.create_order())["orderId"] for _ in range(5)]
    assert len(set(ids)) == 5
    custom = await api.create_order(orderId="1348894-01", status="handling")
    assert custom["orderId"] == "1348894-01" and custom["status"] == "handling"
    assert custom["sequence"] == "1348894"
    assert len(api.state.store) == 6


async def test_packages_and_changes_attachment_reflect_invoices_and_finished_changes(api) -> None:
    order = await api.handling_order(ITEMS, shipping=1000)
    oid, value = order["orderId"], order["value"]
    r = await api.change(oid, remove=[{"id": "sku-2", "quantity": 1}], delay_ms=20)
    assert r.status_code == 202
    pending = await api.order(oid)
    assert pending["changesAttachment"] is None  # not finished yet: not in the attachment
    change_id = r.json()["requestId"]
    await api.wait_finished(oid, change_id, timeout_s=5)
    reduced = value - 2500
    r = await api.invoice(oid, str(reduced), number="NFe-77", invoiceKey="k-77", courier="Correios")
    assert r.status_code == 200, r.text
    view = await api.order(oid)
    assert view["value"] == reduced
    [pkg] = view["packageAttachment"]["packages"]
    assert pkg["invoiceNumber"] == "NFe-77" and pkg["type"] == "Output"
    assert pkg["invoiceValue"] == reduced and isinstance(pkg["invoiceValue"], int)  # string in, cents int out
    assert pkg["invoiceKey"] == "k-77" and pkg["courier"] == "Correios"
    [entry] = view["changesAttachment"]["changesData"]
    assert entry["itemsRemoved"] == [{"id": "sku-2", "quantity": 1}]
    assert entry["itemsAdded"] == [] and entry["reason"] == "partial cancellation"
    assert entry["receipt"]["receipt"] == change_id and entry["receipt"]["orderId"] == oid


async def test_start_handling_transitions_once(api, assert_error) -> None:
    created = await api.create_order()
    oid = created["orderId"]
    r = await api.start_handling(oid)
    assert r.status_code == 204 and r.content == b""
    view = await api.order(oid)
    assert view["status"] == "handling"
    assert view["value"] == created["value"]
    assert_error(await api.start_handling(oid), 409, code="InvalidStatus", mentions="handling")
    history = [h["status"] for h in (await api.audit(oid))["statusHistory"]]
    assert history == ["ready-for-handling", "handling"]


async def test_invoice_before_start_handling_is_refused(api, assert_error) -> None:
    created = await api.create_order()
    r = await api.invoice(created["orderId"], created["value"])
    assert_error(r, 409, code="InvalidStatus", mentions="start handling")
    assert (await api.audit(created["orderId"]))["invoicedTotal"] == 0


async def test_cancel_then_no_invoice_no_change_no_start(api, assert_error) -> None:
    order = await api.handling_order()
    oid = order["orderId"]
    r = await api.cancel(oid)
    assert r.status_code == 200
    assert r.json()["orderId"] == oid and r.json()["receipt"]
    assert (await api.order(oid))["status"] == "canceled"
    again = await api.cancel(oid)  # idempotent
    assert again.status_code == 200
    assert [h["status"] for h in (await api.audit(oid))["statusHistory"]] == [
        "ready-for-handling", "handling", "cancel", "canceled"]
    assert_error(await api.invoice(oid, order["value"]), 409, code="OrderCanceled", mentions="canceled")
    assert_error(await api.change(oid, remove=[{"id": "sku-1", "quantity": 1}]), 409, code="SalesOrderSystem008")
    assert_error(await api.start_handling(oid), 409, code="InvalidStatus", mentions="canceled")
    assert (await api.order(oid))["value"] == order["value"]


async def test_an_invoiced_order_cannot_be_canceled(api, assert_error) -> None:
    order = await api.handling_order()
    oid = order["orderId"]
    assert (await api.invoice(oid, order["value"])).status_code == 200
    assert (await api.order(oid))["status"] == "invoiced"
    assert_error(await api.cancel(oid), 409, code="OrderAlreadyInvoiced")
    assert (await api.order(oid))["status"] == "invoiced"


async def test_partial_invoices_move_to_invoiced_only_at_the_order_value(api) -> None:
    order = await api.handling_order()
    oid, value = order["orderId"], order["value"]
    first = value // 3
    assert (await api.invoice(oid, first, number="A")).status_code == 200
    assert (await api.order(oid))["status"] == "handling"
    assert (await api.invoice(oid, value - first, number="B")).status_code == 200
    view = await api.order(oid)
    assert view["status"] == "invoiced"
    assert sorted(p["invoiceValue"] for p in view["packageAttachment"]["packages"]) == sorted([first, value - first])
    assert (await api.audit(oid))["invoicedTotal"] == value


async def test_oms_invoice_resend_gets_a_new_receipt_that_overrides_the_old_one(api) -> None:
    """SPEC (OMS invoice notification): same invoiceNumber -> new receipt, overrides; other fields cannot change."""
    order = await api.handling_order()
    oid, value = order["orderId"], order["value"]
    r1 = await api.invoice(oid, value - 100, number="NF-1", path="oms")
    r2 = await api.invoice(oid, value - 100, number="NF-1", path="oms")
    r3 = await api.invoice(oid, 100, number="NF-1", path="oms")  # a different value cannot change the invoice
    assert r1.status_code == r2.status_code == r3.status_code == 200
    assert len({r.json()["receipt"] for r in (r1, r2, r3)}) == 3
    audit = await api.audit(oid)
    assert audit["invoicedTotal"] == value - 100
    [inv] = [i for i in audit["invoices"] if i["accepted"]]
    assert inv["receipt"] == r3.json()["receipt"]


async def test_pii_invoice_number_cannot_be_reused(api, assert_error) -> None:
    """PII-SPEC: "It is not allowed to use the same invoiceNumber in more than one request"."""
    order = await api.handling_order()
    oid, value = order["orderId"], order["value"]
    assert (await api.invoice(oid, value - 100, number="NF-1")).status_code == 200
    assert_error(await api.invoice(oid, value - 100, number="NF-1"), 409, code="InvoiceAlreadyExists")
    assert (await api.audit(oid))["invoicedTotal"] == value - 100


async def test_return_invoice_reduces_invoiced_total(api, assert_error) -> None:
    order = await api.handling_order()
    oid, value = order["orderId"], order["value"]
    assert (await api.invoice(oid, value, number="OUT")).status_code == 200
    assert (await api.invoice(oid, 1500, number="RET", type="Input")).status_code == 200
    assert (await api.audit(oid))["invoicedTotal"] == value - 1500
    r = await api.invoice(oid, value, number="RET2", type="Input")  # more than what is still invoiced
    assert_error(r, 400, code="InvalidInvoiceValue", mentions="return invoice value")


async def test_openapi_lists_the_vtex_paths(make_client) -> None:
    client = make_client()  # plain httpx.AsyncClient over the ASGI app
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    paths = doc["paths"]
    expected = {
        "/api/oms/pvt/orders/{orderId}": {"get"},
        "/api/oms/pvt/orders/{orderId}/start-handling": {"post"},
        "/api/oms/pvt/orders/{orderId}/cancel": {"post"},
        "/api/orders/pvt/document/{orderId}/invoices": {"post"},
        "/api/oms/pvt/orders/{orderId}/invoice": {"post"},
        "/api/order-system/orders/{changeOrderId}/changes": {"get", "patch"},
        "/api/order-system/orders/{changeOrderId}/changes/{changeRequestId}": {"get"},
        "/api/oms/pvt/orders/{orderId}/changes": {"post"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    patch = paths["/api/order-system/orders/{changeOrderId}/changes"]["patch"]
    assert "202" in patch["responses"]
    inv = paths["/api/orders/pvt/document/{orderId}/invoices"]["post"]
    schema = inv["requestBody"]["content"]["application/json"]["schema"]
    assert {"type", "issuedDate", "invoiceNumber", "invoiceValue", "items"} <= set(schema["required"])
    assert any(p.startswith("/_mock/") for p in paths)  # the admin API is documented too


async def test_independent_apps_do_not_share_state(make_client) -> None:
    a, b = make_client(), make_client()
    r = await a.post("/_mock/orders", json={"items": ITEMS, "orderId": "1-01"})
    assert r.status_code == 201
    assert (await a.get("/api/oms/pvt/orders/1-01")).status_code == 200
    assert (await b.get("/api/oms/pvt/orders/1-01")).status_code == 404
    assert (await b.post("/_mock/orders", json={"items": ITEMS, "orderId": "1-01"})).status_code == 201


async def test_a_partially_invoiced_order_cannot_be_canceled(api, assert_error) -> None:
    """SPEC `cancel.post`, VTEX's order-canceling guide: partially invoiced -> 400."""
    order = await api.handling_order()
    oid = order["orderId"]
    assert (await api.invoice(oid, 100)).status_code == 200
    assert_error(await api.cancel(oid), 400, code="OrderPartiallyInvoiced")
    assert (await api.order(oid))["status"] == "handling"
