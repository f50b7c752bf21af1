"""The race model of docs/model.md on the mock: the ticket sequence, policies, settle window, Changes."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from mock_orders_api.domain import changes, invoices
from mock_orders_api.config import MockConfig
from mock_orders_api.delays import Fixed
from mock_orders_api.errors import ApiError
from mock_orders_api.domain.store import OrderStore

ITEMS = [
    {"id": "sku-1", "name": "Shirt", "quantity": 2, "price": 5000},
    {"id": "sku-2", "name": "Cap", "quantity": 1, "price": 3000},
]
SHIPPING, TAX = 1000, 500
REMOVED = {"id": "sku-1", "quantity": 1}
REDUCTION = 5000 * 1  # price x quantity of REMOVED


@pytest.fixture(params=["asgi", "live"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


def _accepted(audit: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in audit["invoices"] if i["accepted"]]


# --- the ticket, by hand ------------------------------------------------------------

@pytest.mark.parametrize("path", ["document", "oms"])
async def test_ticket_sequence_vulnerable_accepts_invoice_above_final_total(make_api, kind, path) -> None:
    api = make_api(MockConfig(policy="vulnerable", delay=Fixed(300.0)), kind=kind)
    order = await api.handling_order(ITEMS, shipping=SHIPPING, tax=TAX)
    oid, v0 = order["orderId"], order["value"]  # the value the naive integration invoices
    delay_ms = 300.0

    t_change = time.monotonic_ns()
    rc = await api.change(oid, remove=[REMOVED], delay_ms=delay_ms)
    assert rc.status_code == 202, rc.text
    change = rc.json()
    assert change["finished"] is False and change["status"] == "waiting-confirmation"
    assert change["totalChangeValue"] == -REDUCTION
    assert change["delayMs"] == delay_ms

    ri = await api.invoice(oid, v0, path=path)
    assert ri.status_code == 200, ri.text
    assert ri.json()["orderId"] == oid and ri.json()["receipt"]
    detail = await api.change_detail(oid, change["requestId"])
    elapsed_ms = (time.monotonic_ns() - t_change) / 1e6
    if elapsed_ms >= delay_ms:  # the premise (three requests inside the delay) failed, not the mock
        pytest.skip(f"machine too busy: {elapsed_ms:.0f} ms for three requests")
    assert detail["finished"] is False  # the invoice landed inside the Change's processing window

    done = await api.wait_finished(oid, change["requestId"], timeout_s=5)
    assert done["finishedDate"] and done["status"] == "done"
    view = await api.order(oid)
    assert view["value"] == v0 - REDUCTION
    totals = {t["id"]: t["value"] for t in view["totals"]}
    assert totals["Items"] == v0 - SHIPPING - TAX and totals["Change"] == -REDUCTION  # Items kept (SPEC)
    [pkg] = view["packageAttachment"]["packages"]
    assert pkg["invoiceValue"] == v0 > view["value"]  # the ticket's evidence: invoice above the final total

    audit = await api.audit(oid)
    assert audit["verdict"] == "race"
    assert audit["invoicedTotal"] == v0 and audit["finalValue"] == v0 - REDUCTION
    [inv] = _accepted(audit)
    assert inv["validatedAgainst"] == v0  # validated against the pre-Change (committed) value
    [ch] = audit["changes"]
    assert ch["valueBefore"] == v0 and ch["valueAfter"] == v0 - REDUCTION
    assert ch["actedNs"] < inv["actedNs"] < ch["dueNs"]  # 0 < offset < D

    verdicts = (await api.client.get("/_mock/verdicts")).json()
    assert verdicts["counts"]["race"] == 1
    assert verdicts["races"] == [{"orderId": oid, "finalValue": v0 - REDUCTION, "invoicedTotal": v0,
                                  "excess": REDUCTION}]


@pytest.mark.parametrize("path", ["document", "oms"])
async def test_ticket_sequence_strict_refuses_invoice_while_change_unfinished(make_api, kind, path,
                                                                              assert_error) -> None:
    api = make_api(MockConfig(policy="strict", delay=Fixed(300.0)), kind=kind)
    order = await api.handling_order(ITEMS, shipping=SHIPPING, tax=TAX)
    oid, v0 = order["orderId"], order["value"]
    rc = await api.change(oid, remove=[REMOVED], delay_ms=300)
    assert rc.status_code == 202
    rid = rc.json()["requestId"]

    err = assert_error(await api.invoice(oid, v0, path=path), 409, code="ChangeInProgress", mentions="finished")
    assert rid in err["message"]
    audit = await api.audit(oid)
    assert audit["invoicedTotal"] == 0 and audit["status"] == "handling"
    assert [(i["accepted"], i["status"]) for i in audit["invoices"]] == [(False, 409)]

    await api.wait_finished(oid, rid, timeout_s=5)
    # The naive value is now above the reduced total: refused; the updated value is accepted.
    assert_error(await api.invoice(oid, v0, path=path, number="NFe-2"), 400, code="InvalidInvoiceValue",
                 mentions=str(v0 - REDUCTION))
    ok = await api.invoice(oid, v0 - REDUCTION, path=path, number="NFe-3")
    assert ok.status_code == 200, ok.text
    audit = await api.audit(oid)
    assert audit["verdict"] == "clean" and audit["status"] == "invoiced"
    assert audit["invoicedTotal"] == audit["finalValue"] == v0 - REDUCTION


@pytest.mark.parametrize("policy", ["vulnerable", "strict"])
@pytest.mark.parametrize("path", ["document", "oms"])
async def test_invoice_of_remaining_value_after_change_finished_is_clean(make_api, policy, path,
                                                                         assert_error) -> None:
    api = make_api(MockConfig(policy=policy))
    order = await api.handling_order(ITEMS, shipping=SHIPPING)
    oid, v0 = order["orderId"], order["value"]
    rid = (await api.change(oid, remove=[REMOVED], delay_ms=30)).json()["requestId"]
    await api.wait_finished(oid, rid, timeout_s=5)
    current = (await api.order(oid))["value"]  # the workaround: re-read after finished
    assert current == v0 - REDUCTION
    # offset >= D: the naive (pre-Change) value is refused under either policy
    assert_error(await api.invoice(oid, v0, path=path, number="naive"), 400, code="InvalidInvoiceValue")
    assert_error(await api.invoice(oid, current + 1, path=path, number="one-cent-over"), 400,
                 code="InvalidInvoiceValue")
    r = await api.invoice(oid, current, path=path, number="exact")
    assert r.status_code == 200, r.text
    audit = await api.audit(oid)
    assert audit["verdict"] == "clean" and audit["status"] == "invoiced"
    assert audit["invoicedTotal"] == audit["finalValue"] == current
    assert [i["invoiceNumber"] for i in _accepted(audit)] == ["exact"]


# --- settle window S ----------------------------------------------------------------------

async def test_strict_refuses_change_while_settling_and_once_invoiced(make_api, poll, assert_error) -> None:
    settle_ms = 150.0
    api = make_api(MockConfig(policy="strict", settle_ms=settle_ms))
    order = await api.handling_order(ITEMS)
    oid, v0 = order["orderId"], order["value"]
    assert (await api.invoice(oid, v0)).status_code == 200
    assert (await api.order(oid))["status"] == "invoice"  # settling
    assert_error(await api.change(oid, remove=[REMOVED], delay_ms=10), 409, code="SalesOrderSystem046")

    async def _invoiced() -> bool:
        return (await api.order(oid))["status"] == "invoiced"
    await poll(_invoiced, timeout_s=5)
    assert_error(await api.change(oid, remove=[REMOVED], delay_ms=10), 409, code="SalesOrderSystem046")

    audit = await api.audit(oid)
    assert audit["verdict"] == "clean" and audit["finalValue"] == v0
    [inv] = _accepted(audit)
    hist = {h["status"]: h["ns"] for h in audit["statusHistory"]}
    assert hist["invoice"] == inv["actedNs"]
    assert hist["invoiced"] - inv["actedNs"] == round(settle_ms * 1e6)  # exactly S after the invoice
    refused = [c for c in audit["changes"] if not c["accepted"]]
    assert [c["status"] for c in refused] == [409, 409]


async def test_vulnerable_accepts_change_during_settle_window_race(make_api, poll, assert_error) -> None:
    settle_ms = 200.0
    api = make_api(MockConfig(policy="vulnerable", settle_ms=settle_ms))
    order = await api.handling_order(ITEMS)
    oid, v0 = order["orderId"], order["value"]
    assert (await api.invoice(oid, v0)).status_code == 200  # invoice first (offset < 0)
    rc = await api.change(oid, remove=[REMOVED], delay_ms=20)  # within S: accepted
    assert rc.status_code == 202, rc.text
    await api.wait_finished(oid, rc.json()["requestId"], timeout_s=5)

    async def _invoiced() -> bool:
        return (await api.order(oid))["status"] == "invoiced"
    await poll(_invoiced, timeout_s=5)
    audit = await api.audit(oid)
    assert audit["verdict"] == "race"
    assert audit["invoicedTotal"] == v0 and audit["finalValue"] == v0 - REDUCTION
    [inv] = _accepted(audit)
    [ch] = audit["changes"]
    assert 0 < ch["actedNs"] - inv["actedNs"] < settle_ms * 1e6  # -S < offset < 0
    # offset <= -S: once invoiced, a Change is refused even under the vulnerable policy
    assert_error(await api.change(oid, remove=[{"id": "sku-2", "quantity": 1}]), 409, code="SalesOrderSystem046")


async def test_timers_are_released_once_they_fire(make_api, poll) -> None:
    """A Change and a settle window pending together: both timers fire and none is kept."""
    api = make_api(MockConfig(policy="vulnerable", delay=Fixed(40.0), settle_ms=60.0))
    order = await api.handling_order(ITEMS)
    oid = order["orderId"]
    assert (await api.change(oid, discount=100)).status_code == 202
    assert (await api.invoice(oid, order["value"])).status_code == 200
    assert len(api.state._timers) >= 2

    async def _quiet() -> bool:
        return not api.state._timers
    await poll(_quiet, timeout_s=5)
    # the timers (not an observer) did the work
    rec = api.state.store.get(oid)
    assert rec.status == "invoiced" and rec.changes[0].finished


# --- the race table with a deterministic clock ------------------------------------------

_D_MS, _S_MS = 100.0, 50.0
_MS = 1_000_000


def _trial(policy: str, offset_ns: int, delay_ms: float, settle_ms: float) -> str:
    """One trial on the mock's own state machine, with synthetic server times (ns).

    Change sent at T, invoice at T + offset; before every action the order is advanced to
    that time exactly as the app does (`changes.advance`, then `invoices.settle`).
    """
    order = OrderStore().create({"items": ITEMS, "shipping": SHIPPING, "status": "handling"}, now_ns=0)
    v0 = order.value
    t_change = 10**12
    events = sorted([(t_change, "change"), (t_change + offset_ns, "invoice")])
    outcome: dict[str, str] = {}
    for t, what in events:
        changes.advance(order, t)
        invoices.settle(order, t)
        try:
            if what == "change":
                spec = changes.parse_order_system_body({"reason": "pc", "remove": {"items": [REMOVED]}})
                changes.register(order, spec, policy=policy, delay_ms=delay_ms, arrival_ns=t, now_ns=t,
                                 endpoint="order-system", account="t")
            else:
                spec_i = invoices.parse_body({"type": "Output", "issuanceDate": "2026-01-09", "invoiceNumber": "1",
                                              "invoiceValue": v0, "items": [{"id": "sku-1", "price": 1, "quantity": 1}]})
                invoices.post_invoice(order, spec_i, policy=policy, settle_ms=settle_ms, arrival_ns=t, now_ns=t)
        except ApiError as err:
            outcome[what] = f"{what}_refused:{err.status}"
    end = t_change + abs(offset_ns) + round((delay_ms + settle_ms) * _MS) + 1
    changes.advance(order, end)
    invoices.settle(order, end)
    assert not order.unfinished_changes()
    if outcome:
        [result] = outcome.values()
        return result
    return "race" if order.invoiced_total > order.value else "clean"


@pytest.mark.parametrize(
    ("policy", "offset_ms", "settle_ms", "expected"),
    [
        # 0 < offset < D: race under vulnerable, invoice refused (409) under strict
        ("vulnerable", 1e-6, 0.0, "race"),
        ("vulnerable", _D_MS / 2, 0.0, "race"),
        ("vulnerable", _D_MS - 1e-6, 0.0, "race"),
        ("strict", 1e-6, 0.0, "invoice_refused:409"),
        ("strict", _D_MS - 1e-6, 0.0, "invoice_refused:409"),
        # offset >= D: the Change has applied; the pre-Change value is above the total (400)
        ("vulnerable", _D_MS, 0.0, "invoice_refused:400"),
        ("vulnerable", _D_MS * 3, 0.0, "invoice_refused:400"),
        ("strict", _D_MS, 0.0, "invoice_refused:400"),
        # -S < offset < 0 (S > 0): race under vulnerable, Change refused under strict
        ("vulnerable", -1e-6, _S_MS, "race"),
        ("vulnerable", -(_S_MS - 1e-6), _S_MS, "race"),
        ("strict", -1e-6, _S_MS, "change_refused:409"),
        # offset <= -S: clean, the Change is refused because the order is invoiced
        ("vulnerable", -_S_MS, _S_MS, "change_refused:409"),
        ("vulnerable", -1e-6, 0.0, "change_refused:409"),
        ("strict", -_S_MS * 2, _S_MS, "change_refused:409"),
    ],
)
def test_race_table_boundaries_with_synthetic_clock(policy, offset_ms, settle_ms, expected) -> None:
    assert _trial(policy, round(offset_ms * _MS), _D_MS, settle_ms) == expected


# --- Changes ---------------------------------------------------------------------------------

async def test_change_finishes_exactly_once_and_applies_its_reduction(api, poll) -> None:
    order = await api.handling_order(ITEMS, shipping=SHIPPING)
    oid, v0 = order["orderId"], order["value"]
    rid = (await api.change(oid, remove=[REMOVED], delay_ms=60)).json()["requestId"]
    [rec] = api.state.store.get(oid).changes
    # An observer after the due time applies it lazily (white-box "time travel" to due)...
    api.state.order(oid, rec.due_ns)
    assert rec.finished and rec.applied_ns == rec.due_ns == rec.finished_ns
    # ...and the timer that fires at the due time must not apply it again.
    async def _timers_done() -> bool:
        return time.monotonic_ns() > rec.due_ns + 20 * _MS and api.state.pending_changes() == 0
    await poll(_timers_done, timeout_s=5)
    for _ in range(3):
        view = await api.order(oid)
        assert view["value"] == v0 - REDUCTION
        assert {i["id"]: i["quantity"] for i in view["items"]} == {"sku-1": 1, "sku-2": 1}
    audit = await api.audit(oid)
    [ch] = audit["changes"]
    assert ch["finishedNs"] == ch["appliedNs"] == rec.due_ns
    assert ch["valueAfter"] == v0 - REDUCTION and audit["finalValue"] == v0 - REDUCTION
    assert len((await api.order(oid))["changesAttachment"]["changesData"]) == 1
    assert (await api.change_detail(oid, rid))["finished"] is True


async def test_a_second_change_while_one_is_in_progress_is_refused_014(api, assert_error) -> None:
    """MOD-ERR SalesOrderSystem014 "Change In Progress": VTEX does not queue a second Change."""
    order = await api.handling_order(ITEMS, shipping=SHIPPING)
    oid, v0 = order["orderId"], order["value"]
    r1 = await api.change(oid, remove=[{"id": "sku-1", "quantity": 1}], delay_ms=60)
    assert r1.status_code == 202 and r1.json()["status"] == "waiting-confirmation"
    assert_error(await api.change(oid, remove=[{"id": "sku-2", "quantity": 1}], delay_ms=5), 409,
                 code="SalesOrderSystem014")
    await api.wait_all_finished(oid, timeout_s=5)
    r2 = await api.change(oid, remove=[{"id": "sku-2", "quantity": 1}], delay_ms=5)  # once done: accepted
    assert r2.status_code == 202, r2.text
    await api.wait_all_finished(oid, timeout_s=5)
    c1, refused, c2 = sorted((await api.audit(oid))["changes"], key=lambda c: c["actedNs"])
    assert refused["accepted"] is False and refused["code"] == "SalesOrderSystem014"
    assert c1["valueAfter"] == v0 - 5000 and c2["valueAfter"] == v0 - 5000 - 3000
    assert (await api.order(oid))["value"] == v0 - 8000


def test_changes_apply_at_their_due_time_with_synthetic_clock() -> None:
    order = OrderStore().create({"items": ITEMS, "status": "handling"}, now_ns=0)
    v0 = order.value
    spec1 = changes.parse_order_system_body({"reason": "a", "remove": {"items": [{"id": "sku-1", "quantity": 1}]}})
    spec2 = changes.parse_order_system_body({"reason": "b", "manualDiscountValue": 700})
    kw: dict[str, Any] = {"policy": "vulnerable", "endpoint": "order-system", "account": "t"}
    c1 = changes.register(order, spec1, delay_ms=100, arrival_ns=0, now_ns=0, **kw)
    assert changes.advance(order, 100 * _MS - 1) == [] and order.value == v0
    assert changes.advance(order, 100 * _MS) == [c1] and order.value == v0 - 5000
    c2 = changes.register(order, spec2, delay_ms=10, arrival_ns=100 * _MS, now_ns=100 * _MS, **kw)
    assert c2.started_ns == 100 * _MS and c2.due_ns == 110 * _MS
    assert changes.advance(order, 110 * _MS - 1) == []
    assert changes.advance(order, 500 * _MS) == [c2] and order.value == v0 - 5700
    assert c2.finished_ns == 110 * _MS and c2.applied_ns == 500 * _MS  # mock time vs when it ran
    assert changes.advance(order, 10**15) == [] and order.value == v0 - 5700  # never twice


async def test_change_history_and_detail_expose_finished(api, assert_error) -> None:
    order = await api.handling_order(ITEMS)
    oid = order["orderId"]
    r1 = await api.change(oid, remove=[REMOVED], delay_ms=10, reason="first")
    await api.wait_all_finished(oid, timeout_s=5)
    r2 = await api.change(oid, discount=250, delay_ms=400, reason="second")
    ids = [r1.json()["requestId"], r2.json()["requestId"]]
    hist = await api.change_history(oid)
    assert [c["requestId"] for c in hist] == ids
    assert [c["reason"] for c in hist] == ["first", "second"]
    assert hist[1]["finished"] is False and hist[1]["finishedDate"] is None and hist[1]["inProgress"] is True
    assert hist[1]["totalChangeValue"] == -250 and hist[1]["manualDiscountValue"] == 250
    for c in hist:
        assert c["origin"]["orderId"] == oid and c["workflowId"]
        detail = await api.change_detail(oid, c["requestId"])
        assert {k: v for k, v in detail.items() if k != "status"} == {k: v for k, v in c.items() if k != "status"}
    done = await api.wait_all_finished(oid, timeout_s=5)
    assert all(c["finished"] is True and c["status"] == "done" and c["finishedDate"] for c in done)
    assert all(c["inProgress"] is False and c["cancellationData"] is None for c in done)
    assert_error(await api.client.get(f"/api/order-system/orders/{oid}/changes/nope"), 404,
                 code="CHK0289", mentions="nope")
    view = await api.order(oid)
    assert view["value"] == order["value"] - REDUCTION - 250
    # SPEC Get order: Items and Discounts stay as placed; a negative `Change` total carries the Changes.
    totals = {t["id"]: t["value"] for t in view["totals"]}
    assert totals["Discounts"] == 0 and totals["Change"] == -REDUCTION - 250
    assert totals["Items"] == sum(i["quantity"] * i["price"] for i in ITEMS)


async def test_change_v1_is_synchronous_and_idempotent_by_request_id(api) -> None:
    """SPEC RegisterChange (deprecated v1): 200 {date, orderId, receipt}, applied before the answer
    (no race window), and "only the first modification made with each requestId will be effective"."""
    order = await api.handling_order(ITEMS, shipping=SHIPPING)
    oid, v0 = order["orderId"], order["value"]
    r = await api.change(oid, endpoint="oms", remove=[{"id": "sku-2", "quantity": 1, "price": 3000}],
                         discount=300, request_id="req-42", delay_ms=5000)  # a v1 Change ignores the delay header
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"date", "orderId", "receipt"} and r.json()["receipt"] == "req-42"
    assert (await api.order(oid))["value"] == v0 - 3300  # already applied
    detail = await api.change_detail(oid, "req-42")  # visible through the order-system API, done
    assert detail["finished"] is True and detail["status"] == "done" and detail["totalChangeValue"] == -3300
    dup = await api.change(oid, endpoint="oms", discount=1, request_id="req-42")
    assert dup.status_code == 200 and dup.json()["receipt"] == "req-42"
    audit = await api.audit(oid)
    accepted = [c for c in audit["changes"] if c["accepted"]]
    assert [(c["requestId"], c["endpoint"]) for c in accepted] == [("req-42", "oms")]
    assert audit["finalValue"] == v0 - 3300  # the repeat changed nothing
    [entry] = (await api.order(oid))["changesAttachment"]["changesData"]
    assert entry["discountValue"] == 300 and entry["itemsRemoved"] == [{"id": "sku-2", "quantity": 1, "price": 3000}]


async def test_change_adding_items_increases_value(api) -> None:
    order = await api.handling_order(ITEMS)
    oid, v0 = order["orderId"], order["value"]
    r = await api.change(oid, add=[{"id": "sku-9", "quantity": 2, "price": 1250}], increment=100, delay_ms=10)
    assert r.status_code == 202 and r.json()["totalChangeValue"] == 2600
    await api.wait_all_finished(oid, timeout_s=5)
    view = await api.order(oid)
    assert view["value"] == v0 + 2600
    assert {i["id"]: i["quantity"] for i in view["items"]}["sku-9"] == 2


# --- runtime config -----------------------------------------------------------------------------

async def test_runtime_policy_switch(api, assert_error) -> None:
    assert (await api.client.get("/_mock/config")).json()["policy"] == "vulnerable"
    a = await api.handling_order(ITEMS)
    b = await api.handling_order(ITEMS)
    for o in (a, b):
        assert (await api.change(o["orderId"], remove=[REMOVED], delay_ms=5000)).status_code == 202
    cfg = await api.set_config(policy="strict")
    assert cfg["policy"] == "strict"
    assert (await api.client.get("/_mock/config")).json()["policy"] == "strict"
    assert_error(await api.invoice(a["orderId"], a["value"]), 409, code="ChangeInProgress")
    await api.set_config(policy="vulnerable")
    assert (await api.invoice(b["orderId"], b["value"])).status_code == 200
    assert (await api.audit(a["orderId"]))["invoicedTotal"] == 0
    assert (await api.audit(b["orderId"]))["invoicedTotal"] == b["value"]


async def _delays(api, n: int) -> list[float]:
    out = []
    for _ in range(n):
        o = await api.create_order(ITEMS, status="handling")
        r = await api.change(o["orderId"], discount=1)
        assert r.status_code == 202
        out.append(r.json()["delayMs"])
    return out


async def test_seeded_delay_distribution_is_reproducible(api) -> None:
    lo, hi, seed, n = 50.0, 1000.0, 11, 8
    cfg = await api.set_config(delay=f"uniform:{lo:g},{hi:g}", seed=seed)
    assert cfg["delay"] == {"kind": "uniform", "min_ms": lo, "max_ms": hi} and cfg["seed"] == seed
    await api.reset()
    first = await _delays(api, n)
    rng = random.Random(seed)
    assert first == [rng.uniform(lo, hi) for _ in range(n)]  # the configured seed drives the draws
    assert all(lo <= d <= hi for d in first) and len(set(first)) == n
    await api.reset()  # reset re-seeds; a refused Change in between consumes no draw
    refused = await api.create_order(ITEMS, status="handling")
    assert (await api.change(refused["orderId"], remove=[{"id": "nope", "quantity": 1}])).status_code == 400
    assert await _delays(api, n) == first
    await api.set_config(seed=seed + 1)
    await api.reset()
    assert await _delays(api, n) != first


async def test_per_request_delay_header_pins_delay_without_consuming_draws(api) -> None:
    seed = 5
    await api.set_config(delay="uniform:100,900", seed=seed)
    await api.reset()
    a = (await api.handling_order(ITEMS))["orderId"]
    b = (await api.handling_order(ITEMS))["orderId"]
    pinned = await api.change(a, discount=1, delay_ms=123.5)
    drawn = await api.change(b, discount=1)
    assert pinned.json()["delayMs"] == 123.5
    assert drawn.json()["delayMs"] == random.Random(seed).uniform(100, 900)  # the first draw, still unused
    [ca] = (await api.audit(a))["changes"]
    [cb] = (await api.audit(b))["changes"]
    assert ca["dueNs"] - ca["startedNs"] == 123_500_000
    assert cb["dueNs"] - cb["startedNs"] == round(drawn.json()["delayMs"] * _MS)


async def test_fixed_delay_from_config_is_served(make_api) -> None:
    api = make_api(MockConfig(delay=Fixed(42.0)))
    order = await api.handling_order(ITEMS)
    r = await api.change(order["orderId"], discount=1)
    assert r.json()["delayMs"] == 42.0
    [c] = (await api.audit(order["orderId"]))["changes"]
    assert c["dueNs"] - c["actedNs"] == 42 * _MS
