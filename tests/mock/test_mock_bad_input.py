"""Every bad request gets its 4xx with the VTEX error body, names the field, and changes nothing."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest

from mock_orders_api.config import MockConfig
from mock_orders_api.delays import Fixed
from mock_orders_api.wire import CHANGE_DELAY_HEADER

ITEMS = [{"id": "sku-1", "quantity": 2, "price": 5000}, {"id": "sku-2", "quantity": 1, "price": 3000}]
MISSING = "9999999-99"
INV = {"type": "Output", "issuanceDate": "2026-01-09T00:00:00Z", "invoiceNumber": "NFe-9", "invoiceValue": 1000,
       "items": [{"id": "sku-1", "price": 1000, "quantity": 1}]}  # the OMS route's body (SPEC)
PII = {"type": "Output", "issuedDate": "2026-01-09", "invoiceNumber": "NFe-9", "invoiceValue": 1000,
       "items": [{"itemIndex": 0, "price": 1000, "quantity": 1}]}  # the PII route's body (PII-SPEC)
DOC = "/api/orders/pvt/document/{oid}/invoices"
OMS_INV = "/api/oms/pvt/orders/{oid}/invoice"
CHG = "/api/order-system/orders/{oid}/changes"
OMS_CHG = "/api/oms/pvt/orders/{oid}/changes"
V1 = {"requestId": "r-1", "reason": "x", "discountValue": 0, "incrementValue": 0}  # a valid v1 Change body
DELAY = CHANGE_DELAY_HEADER


def inv(**kw: Any) -> dict[str, Any]:
    body = {**INV, **kw}
    return {k: v for k, v in body.items() if v is not ...}


def pii(**kw: Any) -> dict[str, Any]:
    body = {**PII, **kw}
    return {k: v for k, v in body.items() if v is not ...}


def rm(**kw: Any) -> dict[str, Any]:
    return {"reason": "partial cancellation", "remove": {"items": [{"id": "sku-1", "quantity": 1, **kw}]}}


@dataclass
class Case:
    id: str
    method: str
    path: str
    status: int
    mentions: str
    code: str | None = None
    json: Any = ...
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    order: str = "handling"  # state of the order the request targets: handling | ready | canceled


CASES = [
    # --- invoice body ---------------------------------------------------------------
    Case("inv-malformed-json", "POST", DOC, 400, "malformed json", "MalformedJson", content=b'{"type": "Output",'),
    Case("inv-malformed-json-oms", "POST", OMS_INV, 400, "malformed json", "MalformedJson", content=b"{'a': 1}"),
    Case("inv-not-utf8", "POST", DOC, 400, "malformed json", "MalformedJson", content=b"\xff\xfe{}"),
    Case("inv-empty-body", "POST", DOC, 400, "json body is required", content=b"  "),
    Case("inv-array-body", "POST", OMS_INV, 400, "expected a json object", json=[INV]),
    Case("inv-missing-type", "POST", OMS_INV, 400, "invoice.type", json=inv(type=...)),
    Case("inv-bad-type", "POST", OMS_INV, 400, "invoice.type", json=inv(type="Sale")),
    Case("inv-negative-cents", "POST", OMS_INV, 400, "invoice.invoiceValue", json=inv(invoiceValue=-100)),
    Case("inv-negative-cents-string", "POST", OMS_INV, 400, "invoice.invoiceValue", json=inv(invoiceValue="-100")),
    Case("inv-fractional-cents", "POST", OMS_INV, 400, "invoice.invoiceValue", json=inv(invoiceValue=12.5)),
    Case("inv-integral-float-cents", "POST", OMS_INV, 400, "invoice.invoiceValue", json=inv(invoiceValue=1000.0)),
    Case("inv-decimal-string", "POST", OMS_INV, 400, "invoice.invoiceValue", json=inv(invoiceValue="10.50")),
    Case("inv-zero", "POST", OMS_INV, 400, "invoice.invoiceValue", json=inv(invoiceValue=0)),
    Case("inv-bool-value", "POST", OMS_INV, 400, "invoice.invoiceValue", json=inv(invoiceValue=True)),
    Case("inv-missing-value", "POST", OMS_INV, 400, "invoice.invoiceValue", json=inv(invoiceValue=...)),
    Case("inv-superscript-digit", "POST", OMS_INV, 400, "invoice.invoiceValue", json=inv(invoiceValue="\u00b2")),
    Case("inv-fullwidth-digits", "POST", OMS_INV, 400, "invoice.invoiceValue", json=inv(invoiceValue="\uff11\uff12")),
    Case("inv-missing-number", "POST", OMS_INV, 400, "invoice.invoiceNumber", json=inv(invoiceNumber=...)),
    Case("inv-empty-number", "POST", OMS_INV, 400, "invoice.invoiceNumber", json=inv(invoiceNumber=" ")),
    Case("inv-date-wrong-type", "POST", OMS_INV, 400, "invoice.issuanceDate", json=inv(issuanceDate=20260109)),
    Case("inv-courier-wrong-type", "POST", OMS_INV, 400, "invoice.courier", json=inv(courier=["x"])),
    Case("inv-items-not-list", "POST", OMS_INV, 400, "invoice.items", json=inv(items="sku-1")),
    Case("inv-item-negative-price", "POST", OMS_INV, 400, "invoice.items[0].price",
         json=inv(items=[{"id": "sku-1", "price": -1, "quantity": 1}])),
    Case("inv-item-zero-quantity", "POST", OMS_INV, 400, "invoice.items[0].quantity",
         json=inv(items=[{"id": "sku-1", "price": 1, "quantity": 0}])),
    Case("inv-above-remaining", "POST", OMS_INV, 400, "remaining value", "InvalidInvoiceValue",
         json=inv(invoiceValue=10**9)),
    Case("inv-return-above-invoiced", "POST", OMS_INV, 400, "return invoice value", "InvalidInvoiceValue",
         json=inv(type="Input", invoiceValue=10**9)),
    Case("inv-items-missing", "POST", OMS_INV, 400, "invoice.items", json=inv(items=...)),
    Case("inv-items-empty", "POST", OMS_INV, 400, "invoice.items", json=inv(items=[])),
    # --- PII invoice body (PII-SPEC InvoiceNotification2) -------------------------------
    Case("pii-oms-body", "POST", DOC, 400, "invoice.issueddate", json=inv()),
    Case("pii-bad-date", "POST", DOC, 400, "invoice.issueddate", json=pii(issuedDate="2026-01-09T00:00:00Z")),
    Case("pii-string-value", "POST", DOC, 400, "invoice.invoicevalue", json=pii(invoiceValue="1000")),
    Case("pii-items-missing", "POST", DOC, 400, "invoice.items", json=pii(items=...)),
    Case("pii-item-without-index", "POST", DOC, 400, "invoice.items[0].itemindex",
         json=pii(items=[{"id": "sku-1", "price": 1000, "quantity": 1}])),
    Case("pii-item-index-out-of-range", "POST", DOC, 400, "invoice.items[0].itemindex",
         json=pii(items=[{"itemIndex": 7, "price": 1000, "quantity": 1}])),
    Case("pii-negative-extra", "POST", DOC, 400, "invoice.extravalue", json=pii(extraValue=-1)),
    # --- invoice: state -----------------------------------------------------------------
    Case("inv-unknown-order", "POST", DOC.replace("{oid}", MISSING), 404, MISSING, "OrderNotFound", json=inv()),
    Case("inv-unknown-order-oms", "POST", OMS_INV.replace("{oid}", MISSING), 404, MISSING, "OrderNotFound",
         json=inv()),
    Case("inv-canceled-order", "POST", OMS_INV, 409, "canceled", "OrderCanceled", json=inv(), order="canceled"),
    Case("inv-not-handling-yet", "POST", OMS_INV, 409, "start handling", "InvalidStatus", json=inv(), order="ready"),
    # --- Change (order-system) body ----------------------------------------------------------------
    Case("chg-malformed-json", "PATCH", CHG, 400, "malformed json", "MalformedJson", content=b'{"reason": '),
    Case("chg-array-body", "PATCH", CHG, 400, "expected a json object", json=["x"]),
    Case("chg-missing-reason", "PATCH", CHG, 400, "change.reason", json={"manualDiscountValue": 1}),
    Case("chg-reason-wrong-type", "PATCH", CHG, 400, "change.reason", json={"reason": 5}),
    Case("chg-unknown-field", "PATCH", CHG, 400, "unknown field", json={"reason": "x", "discount": 5}),
    Case("chg-negative-quantity", "PATCH", CHG, 400, "change.remove.items[0].quantity", json=rm(quantity=-1)),
    Case("chg-fractional-quantity", "PATCH", CHG, 400, "change.remove.items[0].quantity", json=rm(quantity=1.5)),
    Case("chg-item-id-wrong-type", "PATCH", CHG, 400, "change.remove.items[0].id", json=rm(id=5)),
    Case("chg-items-not-list", "PATCH", CHG, 400, "change.remove.items", json={"reason": "x", "remove": {"items": 1}}),
    Case("chg-negative-discount", "PATCH", CHG, 400, "change.manualDiscountValue",
         json={"reason": "x", "manualDiscountValue": -5}),
    Case("chg-fractional-discount", "PATCH", CHG, 400, "change.manualDiscountValue",
         json={"reason": "x", "manualDiscountValue": 2.5}),
    Case("chg-text-discount", "PATCH", CHG, 400, "change.manualDiscountValue",
         json={"reason": "x", "manualDiscountValue": "abc"}),
    Case("chg-bool-discount", "PATCH", CHG, 400, "change.manualDiscountValue",
         json={"reason": "x", "manualDiscountValue": False}),
    Case("chg-empty-string-increment", "PATCH", CHG, 400, "change.manualIncrementValue",
         json={"reason": "x", "manualIncrementValue": ""}),
    Case("chg-replace", "PATCH", CHG, 400, "change.replace", json={"reason": "x", "replace": [{"from": {}}]}),
    Case("chg-item-not-in-order", "PATCH", CHG, 400, "change.remove[0]", json=rm(id="sku-404")),
    Case("chg-remove-too-many", "PATCH", CHG, 400, "cannot remove", json=rm(quantity=3)),
    Case("chg-new-item-without-price", "PATCH", CHG, 400, "change.add[0]",
         json={"reason": "x", "add": {"items": [{"id": "sku-new", "quantity": 1}]}}),
    Case("chg-value-below-zero", "PATCH", CHG, 400, "negative", "CHK0034",
         json={"reason": "x", "manualDiscountValue": 10**9}),
    Case("chg-delay-header-text", "PATCH", CHG, 400, DELAY, json=rm(), headers={DELAY: "soon"}),
    Case("chg-delay-header-negative", "PATCH", CHG, 400, DELAY, json=rm(), headers={DELAY: "-5"}),
    Case("chg-delay-header-nan", "PATCH", CHG, 400, DELAY, json=rm(), headers={DELAY: "nan"}),
    # --- Change: state -----------------------------------------------------------------------------
    Case("chg-unknown-order", "PATCH", CHG.replace("{oid}", MISSING), 404, MISSING, "OrderNotFound", json=rm()),
    Case("chg-canceled-order", "PATCH", CHG, 409, "canceled", "SalesOrderSystem008", json=rm(), order="canceled"),
    Case("chg-not-handling-yet", "PATCH", CHG, 409, "ready-for-handling", "CHK0124", json=rm(),
         order="ready"),
    # --- older oms Change endpoint -------------------------------------------------------------------
    Case("oms-chg-text-discount", "POST", OMS_CHG, 400, "change.discountValue",
         json={**V1, "discountValue": "abc"}),
    Case("oms-chg-negative-increment", "POST", OMS_CHG, 400, "change.incrementValue",
         json={**V1, "incrementValue": -1}),
    Case("oms-chg-items-not-list", "POST", OMS_CHG, 400, "change.itemsRemoved", json={**V1, "itemsRemoved": 3}),
    Case("oms-chg-request-id-wrong-type", "POST", OMS_CHG, 400, "change.requestId", json={**V1, "requestId": 5}),
    # SPEC RegisterChange: requestId, discountValue, incrementValue and item prices are required.
    Case("oms-chg-no-request-id", "POST", OMS_CHG, 400, "change.requestId",
         json={k: v for k, v in V1.items() if k != "requestId"}),
    Case("oms-chg-no-discount", "POST", OMS_CHG, 400, "change.discountValue",
         json={k: v for k, v in V1.items() if k != "discountValue"}),
    Case("oms-chg-no-increment", "POST", OMS_CHG, 400, "change.incrementValue",
         json={k: v for k, v in V1.items() if k != "incrementValue"}),
    Case("oms-chg-item-without-price", "POST", OMS_CHG, 400, "change.itemsRemoved[0].price",
         json={**V1, "itemsRemoved": [{"id": "sku-1", "quantity": 1}]}),
    Case("oms-chg-order-system-field", "POST", OMS_CHG, 400, "unknown field", json=rm()),
    Case("oms-chg-unknown-order", "POST", OMS_CHG.replace("{oid}", MISSING), 404, MISSING, "OrderNotFound",
         json=V1),
    # --- reads and transitions -----------------------------------------------------------------------
    Case("get-unknown-order", "GET", f"/api/oms/pvt/orders/{MISSING}", 404, MISSING, "OrderNotFound"),
    Case("history-unknown-order", "GET", CHG.replace("{oid}", MISSING), 404, MISSING, "OrderNotFound"),
    Case("detail-unknown-change", "GET", CHG + "/no-such-change", 404, "no-such-change", "CHK0289"),
    Case("start-unknown-order", "POST", f"/api/oms/pvt/orders/{MISSING}/start-handling", 404, MISSING),
    Case("start-twice", "POST", "/api/oms/pvt/orders/{oid}/start-handling", 409, "handling", "InvalidStatus"),
    Case("cancel-unknown-order", "POST", f"/api/oms/pvt/orders/{MISSING}/cancel", 404, MISSING),
    Case("unknown-route", "GET", "/api/oms/pvt/nothing-here", 404, "/api/oms/pvt/nothing-here"),
    Case("wrong-method", "DELETE", "/api/oms/pvt/orders/{oid}", 405, "DELETE", "MethodNotAllowed"),
    # --- admin API -------------------------------------------------------------------------------------
    Case("adm-order-malformed", "POST", "/_mock/orders", 400, "malformed json", "MalformedJson", content=b"{"),
    Case("adm-order-no-items", "POST", "/_mock/orders", 400, "order.items", json={"items": []}),
    Case("adm-order-negative-price", "POST", "/_mock/orders", 400, "order.items[0].price",
         json={"items": [{"id": "a", "quantity": 1, "price": -1}]}),
    Case("adm-order-fractional-price", "POST", "/_mock/orders", 400, "order.items[0].price",
         json={"items": [{"id": "a", "quantity": 1, "price": 9.99}]}),
    Case("adm-order-zero-quantity", "POST", "/_mock/orders", 400, "order.items[0].quantity",
         json={"items": [{"id": "a", "quantity": 0, "price": 1}]}),
    Case("adm-order-duplicate-item", "POST", "/_mock/orders", 400, "order.items[1].id",
         json={"items": [{"id": "a", "quantity": 1, "price": 1}, {"id": "a", "quantity": 1, "price": 1}]}),
    Case("adm-order-unknown-field", "POST", "/_mock/orders", 400, "unknown field",
         json={"items": ITEMS, "value": 1}),
    Case("adm-order-bad-status", "POST", "/_mock/orders", 400, "order.status", json={"items": ITEMS, "status": "invoiced"}),
    Case("adm-order-id-with-slash", "POST", "/_mock/orders", 400, "order.orderId", json={"items": ITEMS, "orderId": "a/b"}),
    Case("adm-order-duplicate-id", "POST", "/_mock/orders", 409, "already exists", "OrderAlreadyExists",
         json={"items": ITEMS, "orderId": "{oid}"}),
    Case("adm-order-negative-shipping", "POST", "/_mock/orders", 400, "order.shipping",
         json={"items": ITEMS, "shipping": -1}),
    Case("adm-order-discount-too-big", "POST", "/_mock/orders", 400, "discounts exceed",
         json={"items": ITEMS, "discounts": 10**9}),
    Case("adm-config-policy", "PATCH", "/_mock/config", 400, "config.policy", "InvalidConfig", json={"policy": "lax"}),
    Case("adm-config-delay", "PATCH", "/_mock/config", 400, "config.delay", "InvalidConfig", json={"delay": "gauss:1"}),
    Case("adm-config-delay-args", "PATCH", "/_mock/config", 400, "config.delay", "InvalidConfig",
         json={"delay": "uniform:900,50"}),
    Case("adm-config-settle", "PATCH", "/_mock/config", 400, "config.settle_ms", "InvalidConfig",
         json={"settle_ms": -1}),
    Case("adm-config-seed", "PATCH", "/_mock/config", 400, "config.seed", "InvalidConfig", json={"seed": "7"}),
    Case("adm-config-unknown", "PATCH", "/_mock/config", 400, "unknown field", "InvalidConfig",
         json={"policy": "strict", "app_key": "x"}),
    Case("adm-config-array", "PATCH", "/_mock/config", 400, "expected a json object", json=[]),
    Case("adm-audit-unknown-order", "GET", f"/_mock/orders/{MISSING}/audit", 404, MISSING),
    Case("adm-audits-bad-ids", "POST", "/_mock/audits", 400, "audits.orderIds", json={"orderIds": "x"}),
    Case("adm-journal-limit", "GET", "/_mock/journal?limit=0", 400, "limit"),
    Case("adm-journal-limit-type", "GET", "/_mock/journal?limit=many", 400, "limit"),
]


async def _snapshot(api: Any, oid: str) -> dict[str, Any]:
    """Everything a bad request must leave untouched (refusal records are compared separately)."""
    audit = await api.audit(oid)
    state = api.state
    return {
        "view": await api.order(oid),
        "history": await api.change_history(oid),
        "audit": {k: v for k, v in audit.items() if k not in ("invoices", "changes")},
        "accepted_invoices": [i for i in audit["invoices"] if i["accepted"]],
        "accepted_changes": [c for c in audit["changes"] if c["accepted"]],
        "n_invoices": len(audit["invoices"]),
        "n_changes": len(audit["changes"]),
        "orders": sorted(o.order_id for o in state.store),
        "config": (await api.client.get("/_mock/config")).json(),
        "rng": state.rng.getstate(),
        "timers": len(state._timers),
    }


async def _order_in_state(api: Any, state: str) -> str:
    if state == "ready":
        return (await api.create_order(ITEMS))["orderId"]  # type: ignore[no-any-return]
    order = await api.handling_order(ITEMS, shipping=1000)
    oid = order["orderId"]
    if state == "canceled":
        assert (await api.cancel(oid)).status_code == 200
        return oid  # type: ignore[no-any-return]
    # handling, with history: a Change that stays pending through the test, and a partial invoice
    # (in that order: VTEX refuses a Change after an invoice, SalesOrderSystem046)
    assert (await api.change(oid, discount=100, delay_ms=60_000)).status_code == 202
    assert (await api.invoice(oid, 1000, number="NFe-1")).status_code == 200
    return oid  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_request_is_refused_with_its_4xx_and_changes_nothing(make_api, assert_error, case: Case) -> None:
    api = make_api(MockConfig(delay=Fixed(300.0), seed=3))
    await api.set_config(delay="uniform:100,900")  # random draws: a refused Change must not consume one
    oid = await _order_in_state(api, case.order)
    other = await _order_in_state(api, "handling")
    before = await _snapshot(api, oid)
    before_other = await _snapshot(api, other)

    kwargs: dict[str, Any] = {"headers": case.headers}
    if case.content is not None:
        kwargs["content"] = case.content
        kwargs["headers"] = {"content-type": "application/json", **case.headers}
    elif case.json is not ...:
        kwargs["json"] = _fill(case.json, oid)
    r = await api.client.request(case.method, case.path.replace("{oid}", oid), **kwargs)
    assert_error(r, case.status, code=case.code, mentions=case.mentions)

    after = await _snapshot(api, oid)
    # A refusal that reached the policy is kept in the audit as refused (the oracle reads it);
    # nothing else may differ.
    audit = await api.audit(oid)
    for rec in audit["invoices"][before["n_invoices"]:] + audit["changes"][before["n_changes"]:]:
        assert rec["accepted"] is False and rec["status"] == case.status, rec
    for key in ("n_invoices", "n_changes"):
        assert after[key] - before[key] in (0, 1)
        before[key] = after[key]
    assert after == before
    assert await _snapshot(api, other) == before_other


def _fill(body: Any, oid: str) -> Any:
    body = copy.deepcopy(body)
    if isinstance(body, dict) and body.get("orderId") == "{oid}":
        body["orderId"] = oid
    return body


async def test_refused_requests_are_journaled_with_their_status(make_api) -> None:
    api = make_api()
    order = await api.handling_order(ITEMS)
    oid = order["orderId"]
    r = await api.client.post(DOC.replace("{oid}", oid), json=inv(invoiceValue=-1))
    assert r.status_code == 400
    entries = (await api.client.get("/_mock/journal", params={"orderId": oid})).json()["entries"]
    last = entries[-1]
    assert last["method"] == "POST" and last["path"] == DOC.replace("{oid}", oid) and last["status"] == 400
    assert last["arrivalNs"] <= last["actedNs"] <= last["doneNs"]


async def test_digit_string_cents_are_accepted_as_the_published_example_sends_them(make_api) -> None:
    api = make_api()
    order = await api.handling_order(ITEMS)
    r = await api.invoice(order["orderId"], f" {order['value']} ")
    assert r.status_code == 200, r.text
    assert (await api.audit(order["orderId"]))["invoicedTotal"] == order["value"]
