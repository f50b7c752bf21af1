"""Bounded Change workers: Changes queue when every worker is busy, and the audit says for how long."""

from __future__ import annotations

import pytest

from mock_orders_api.domain import changes
from mock_orders_api.config import MockConfig
from mock_orders_api.delays import Fixed
from mock_orders_api.domain.store import OrderStore

_MS = 1_000_000
ITEMS = [{"id": "1", "quantity": 4, "price": 1000}]
REMOVE_ONE = changes.ChangeSpec(reason="cancel one", removed=(changes.ItemDelta("1", 1),))


def _register(pool: changes.WorkerPool, order, delay_ms: float, at_ns: int) -> changes.ChangeRecord:
    pool.advance(at_ns)  # as the app does before acting
    rec = changes.register(order, REMOVE_ONE, policy="vulnerable", delay_ms=delay_ms, arrival_ns=at_ns,
                           now_ns=at_ns, endpoint="order-system", account="t", autostart=False)
    pool.submit(order, rec, at_ns)
    return rec


def test_changes_queue_behind_busy_workers_and_start_when_one_frees() -> None:
    store = OrderStore()
    orders = [store.create({"items": ITEMS, "status": "handling"}, now_ns=0) for _ in range(3)]
    pool = changes.WorkerPool(2)
    recs = [_register(pool, o, 100, i * _MS) for i, o in enumerate(orders)]  # at 0, 1, 2 ms
    assert [r.started_ns for r in recs] == [0, _MS, None]  # two workers busy, the third waits
    assert pool.advance(100 * _MS - 1) == []
    applied = pool.advance(100 * _MS)
    assert applied == [(orders[0], recs[0])] and orders[0].value == 3000
    # The freed worker takes the waiting Change at the moment it frees, not when someone looks.
    assert recs[2].ready_ns == 2 * _MS and recs[2].started_ns == 100 * _MS
    assert recs[2].audit_view()["queueWaitMs"] == pytest.approx(98.0)
    pool.advance(10**12)
    assert all(r.finished for r in recs)
    assert [r.finished_ns for r in recs] == [100 * _MS, 101 * _MS, 200 * _MS]


def test_a_second_change_on_one_order_is_refused_under_a_pool_014() -> None:
    order = OrderStore().create({"items": ITEMS, "status": "handling"}, now_ns=0)
    pool = changes.WorkerPool(4)
    first = _register(pool, order, 100, 0)
    with pytest.raises(changes.Conflict) as err:  # MOD-ERR SalesOrderSystem014, not a queue per order
        _register(pool, order, 10, _MS)
    assert err.value.code == "SalesOrderSystem014"
    pool.advance(10**12)
    assert first.finished_ns == 100 * _MS and order.value == 3000
    second = _register(pool, order, 10, 200 * _MS)
    pool.advance(10**12)
    assert second.started_ns == 200 * _MS and order.value == 2000


def test_replay_is_independent_of_when_the_pool_is_looked_at() -> None:
    def run(looks: list[int]) -> list[int | None]:
        store = OrderStore()
        orders = [store.create({"items": ITEMS, "status": "handling"}, now_ns=0) for _ in range(5)]
        pool = changes.WorkerPool(2)
        recs = [_register(pool, o, 50 + 10 * i, i * _MS) for i, o in enumerate(orders)]
        for t in looks:
            pool.advance(t)
        pool.advance(10**12)
        return [r.finished_ns for r in recs]

    assert run([]) == run([t * _MS for t in range(5, 400, 7)])


async def test_admin_config_sets_workers_and_refuses_a_change_while_pending(make_api) -> None:
    api = make_api(MockConfig(delay=Fixed(10_000)))
    r = await api.client.patch("/_mock/config", json={"change_workers": 0})
    assert r.status_code == 400 and "change_workers" in r.json()["error"]["message"]
    r = await api.client.patch("/_mock/config", json={"change_workers": 1})
    assert r.status_code == 200 and r.json()["change_workers"] == 1
    a = (await api.handling_order(ITEMS))["orderId"]
    b = (await api.handling_order(ITEMS))["orderId"]
    for oid in (a, b):
        assert (await api.change(oid, remove=[{"id": "1", "quantity": 1}])).status_code == 202
    audit_b = await api.audit(b)
    assert audit_b["changes"][0]["startedNs"] is None  # queued behind a's Change
    r = await api.client.patch("/_mock/config", json={"change_workers": None})
    assert r.status_code == 409 and r.json()["error"]["code"] == "ChangesPending"
    assert (await api.client.get("/_mock/config")).json()["change_workers"] == 1


async def test_unbounded_by_default_no_queue_wait(make_api) -> None:
    api = make_api(MockConfig(delay=Fixed(50)))
    oid = (await api.handling_order(ITEMS))["orderId"]
    await api.change(oid, remove=[{"id": "1", "quantity": 1}])
    c = (await api.audit(oid))["changes"][0]
    assert c["queueWaitMs"] == 0.0 and c["readyNs"] == c["startedNs"] == c["actedNs"]


async def test_live_pool_timers_apply_changes_without_reads(make_api, poll) -> None:
    """The pool's timer applies each Change at its due time even when nobody reads the order."""
    api = make_api(MockConfig(delay=Fixed(80), change_workers=2), kind="live")
    oids = [(await api.handling_order(ITEMS))["orderId"] for _ in range(6)]
    for oid in oids:
        assert (await api.change(oid, remove=[{"id": "1", "quantity": 1}])).status_code == 202
    state = api.state  # white-box: the live mock's own records, read without advancing anything
    recs = [state.store.get(oid).changes[0] for oid in oids]

    async def _all_applied() -> bool:
        return all(r.applied_ns is not None for r in recs)

    await poll(_all_applied, timeout_s=5.0, what="every Change applied by the pool timer")
    waits = sorted((r.started_ns - r.ready_ns) / _MS for r in recs)
    assert waits[:2] == [0.0, 0.0] and waits[-1] >= 80  # the last pair waited for a whole delay at least
    assert all(r.applied_ns >= r.due_ns for r in recs)  # never before due (lateness is a benchmark figure)
