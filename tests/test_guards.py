"""Tests for harness.core.guards: each guard against the in-process mock, request by request.

Every test builds a TrialContext by hand on a fresh order (created and put in
`handling` through the admin/VTEX API with a separate setup history), drives
the guard's two sides concurrently as the runner does (`harness.live.runner.drive`),
and checks the exact request sequence the guard recorded and the invoice value
it sent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

import httpx
import pytest

from harness.core import history as h
from harness.core.guards import GUARDS, FinishedCheck, GuardTimeout, NoGuard, Serialized, TrialContext, get_guard
from harness.core.steps import DELAY_HEADER, LOCK, NOW, Send, Wait
from harness.live.client import OrdersClient
from harness.live.clock import MonotonicClock
from harness.live.runner import drive
from mock_orders_api import create_app
from mock_orders_api.config import MockConfig
from mock_orders_api.delays import Fixed

ITEMS = [
    {"id": "1", "name": "Shirt", "quantity": 2, "price": 5000},
    {"id": "2", "name": "Shoes", "quantity": 1, "price": 12000},
]
SHIPPING = 1000
ORDER_SPEC = {"items": ITEMS, "shipping": SHIPPING, "tax": 0}
REMOVED = {"id": "1", "quantity": 1}
CHANGE_BODY = {"reason": "partial cancellation", "remove": {"items": [REMOVED]}}

INITIAL = sum(i["price"] * i["quantity"] for i in ITEMS) + SHIPPING
FINAL = INITIAL - next(i["price"] for i in ITEMS if i["id"] == REMOVED["id"]) * REMOVED["quantity"]

LEAD_MS = 30.0  # t0 this far after the context is built, so both deadlines are in the future
POLL_MS = 5.0


@dataclass
class Env:
    client: OrdersClient
    clock: MonotonicClock

    async def context(self, *, offset_ms: float, delay_ms: float, timeout_ms: float = 3000.0,
                      number: str = "NF-1") -> TrialContext:
        setup = h.TrialHistory()
        created = await self.client.create_order(setup, ORDER_SPEC)
        assert created.status == 201, created.response_body
        order_id = created.response_body["orderId"]
        assert created.response_body["value"] == INITIAL
        handled = await self.client.start_handling(setup, order_id)
        assert handled.ok, handled.response_body
        trigger = await self.client.get_order(setup, order_id)
        assert trigger.response_body["status"] == "handling"
        t0 = self.clock.now_ns() + round(LEAD_MS * 1e6) + round(max(0.0, -offset_ms) * 1e6)
        return TrialContext(
            hist=h.TrialHistory(), order_id=order_id,
            naive_value=int(trigger.response_body["value"]), change_body=CHANGE_BODY,
            change_deadline_ns=t0, invoice_deadline_ns=t0 + round(offset_ms * 1e6), pinned_delay_ms=delay_ms,
            poll_interval_ms=POLL_MS, timeout_ms=timeout_ms, invoice_number=number,
        )

    async def audit_when_settled(self, order_id: str, timeout_s: float = 3.0) -> dict[str, Any]:
        """The mock's audit once no Change is pending (bounded poll)."""
        stop = self.clock.now_ns() + round(timeout_s * 1e9)
        while True:
            event = await self.client.audit(None, order_id)
            assert event.ok, event.response_body
            if event.response_body["verdict"] != "pending":
                return event.response_body  # type: ignore[no-any-return]
            if self.clock.now_ns() >= stop:
                pytest.fail(f"audit of {order_id} still pending after {timeout_s} s")
            await asyncio.sleep(0.005)

    async def run_guard(self, guard: Any, ctx: TrialContext) -> list[Any]:
        """Both sides concurrently, as the runner does; exceptions are returned, not raised."""
        lock = asyncio.Lock()
        return await asyncio.gather(drive(guard.change(ctx), self.client, ctx.hist, lock),
                                    drive(guard.invoice(ctx), self.client, ctx.hist, lock), return_exceptions=True)


MakeEnv = Callable[..., Awaitable[Env]]


@pytest.fixture
async def make_env() -> AsyncIterator[MakeEnv]:
    clients: list[httpx.AsyncClient] = []

    async def _make(**config: Any) -> Env:
        config.setdefault("delay", Fixed(10_000.0))  # every test pins its delays; a default would hide that
        app = create_app(MockConfig(**config))
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mock", timeout=5.0)
        clients.append(http)
        clock = MonotonicClock()
        return Env(OrdersClient(http, clock), clock)

    yield _make
    for c in clients:
        await c.aclose()


def kinds(ctx: TrialContext) -> list[str]:
    return [e.kind for e in ctx.hist.events]


def events(ctx: TrialContext, kind: str) -> list[h.RequestEvent]:
    return [e for e in ctx.hist.events if e.kind == kind]


def sent_invoice_value(ctx: TrialContext) -> int:
    (inv,) = events(ctx, h.INVOICE)
    return int(inv.request_body["invoiceValue"])


def all_finished(event: h.RequestEvent) -> bool:
    return all(r["finished"] for r in event.response_body["requests"])


def ms(ns: int) -> int:
    return round(ns * 1e6)


# --------------------------------------------------------------------------- registry


def test_registry_names_every_guard() -> None:
    assert set(GUARDS) == {"none", "finished-check", "serialized"}
    assert isinstance(get_guard("none"), NoGuard)
    assert isinstance(get_guard("finished-check"), FinishedCheck)
    assert isinstance(get_guard("serialized"), Serialized)


def test_unknown_guard_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="unknown guard 'nope'.*finished-check"):
        get_guard("nope")


def test_a_side_is_a_pure_step_generator() -> None:
    """No runtime needed: feeding a side its replies is all a driver does (here, by hand)."""
    ctx = TrialContext(hist=h.TrialHistory(), order_id="o-1", naive_value=INITIAL, change_body=CHANGE_BODY,
                       change_deadline_ns=1_000, invoice_deadline_ns=2_000, pinned_delay_ms=80.0,
                       poll_interval_ms=POLL_MS, timeout_ms=1.0, invoice_number="NF-1")
    side = Serialized().change(ctx)
    assert next(side) == Wait(1_000)
    assert side.send(None) == LOCK
    send = side.send(None)
    assert isinstance(send, Send) and (send.kind, send.method, send.at_ns) == (h.CHANGE, "PATCH", 1_000)
    assert send.body == CHANGE_BODY and send.headers == {DELAY_HEADER: "80.000"}
    accepted = h.RequestEvent(h.CHANGE, "PATCH", send.path, 1_000, 1_000, 2_000, 202)
    assert side.send(accepted) == NOW  # the bounded wait starts now
    poll = side.send(5_000)
    assert isinstance(poll, Send) and poll.kind == h.GET_CHANGES and poll.at_ns is None
    unfinished = h.RequestEvent(h.GET_CHANGES, "GET", poll.path, None, 5_000, 6_000, 200,
                                response_body={"requests": [{"finished": False}]})
    assert side.send(unfinished) == NOW
    with pytest.raises(GuardTimeout, match="unfinished after 1 ms"):  # no UNLOCK: the driver releases the lock
        side.send(5_000 + 1_000_000)
    assert ctx.change_event is accepted


# --------------------------------------------------------------------------- none


async def test_none_invoices_the_naive_value_at_the_planned_time(make_env: MakeEnv) -> None:
    env = await make_env()
    offset, delay = 20.0, 80.0  # 0 < offset < D: the ticket's window
    ctx = await env.context(offset_ms=offset, delay_ms=delay)
    results = await env.run_guard(NoGuard(), ctx)

    assert results == [None, None]
    assert kinds(ctx) == [h.CHANGE, h.INVOICE]
    change, invoice = ctx.hist.events
    assert change.status == 202 and change.response_body["finished"] is False
    assert change.request_body == CHANGE_BODY
    assert change.response_body["delayMs"] == delay  # the pinned delay reached the mock
    assert ctx.invoice_value == ctx.naive_value == INITIAL
    assert sent_invoice_value(ctx) == INITIAL
    assert invoice.status == 200  # vulnerable: validated against the pre-Change value
    # Timed requests leave no earlier than their deadlines, and are planned on them.
    assert change.planned_ns == ctx.change_deadline_ns <= change.sent_ns
    assert invoice.planned_ns == ctx.invoice_deadline_ns <= invoice.sent_ns
    assert ctx.change_event is change and ctx.invoice_event is invoice

    audit = await env.audit_when_settled(ctx.order_id)
    assert audit["verdict"] == "race"
    assert audit["finalValue"] == FINAL
    assert audit["invoicedTotal"] == INITIAL


async def test_none_after_the_change_finished_is_refused(make_env: MakeEnv) -> None:
    env = await make_env()
    offset, delay = 60.0, 20.0  # offset >= D: the stale value is above the reduced total
    ctx = await env.context(offset_ms=offset, delay_ms=delay)
    await env.run_guard(NoGuard(), ctx)
    assert kinds(ctx) == [h.CHANGE, h.INVOICE]
    assert sent_invoice_value(ctx) == INITIAL
    assert ctx.invoice_event is not None and ctx.invoice_event.status in (400, 409)


# --------------------------------------------------------------------------- finished-check


async def test_finished_check_polls_until_finished_then_invoices_the_reduced_value(make_env: MakeEnv) -> None:
    env = await make_env()
    offset, delay = 20.0, 80.0  # the invoice deadline falls while the Change is processing
    ctx = await env.context(offset_ms=offset, delay_ms=delay)
    results = await env.run_guard(FinishedCheck(), ctx)

    assert results == [None, None]
    k = kinds(ctx)
    n_polls = k.count(h.GET_CHANGES)
    assert k == [h.CHANGE] + [h.GET_CHANGES] * n_polls + [h.GET_ORDER, h.INVOICE]
    assert n_polls >= 2, "the first poll happens before the Change finished, so at least one more is needed"
    polls = events(ctx, h.GET_CHANGES)
    assert polls[0].planned_ns == ctx.invoice_deadline_ns <= polls[0].sent_ns  # the check starts on time
    assert all(p.planned_ns is None for p in polls[1:])
    assert [all_finished(p) for p in polls] == [False] * (n_polls - 1) + [True]
    (reread,) = events(ctx, h.GET_ORDER)
    assert reread.response_body["value"] == FINAL
    assert ctx.invoice_value == sent_invoice_value(ctx) == FINAL
    invoice = ctx.invoice_event
    assert invoice is not None and invoice.status == 200
    assert invoice.planned_ns is None  # sent when the guard was satisfied, not at a deadline
    assert invoice.sent_ns >= ctx.change_event.sent_ns + ms(delay)  # type: ignore[union-attr]

    audit = await env.audit_when_settled(ctx.order_id)
    assert audit["verdict"] == "clean"
    assert audit["invoicedTotal"] == audit["finalValue"] == FINAL


async def test_finished_check_invoice_first_cannot_see_the_coming_change(make_env: MakeEnv) -> None:
    env = await make_env()  # settle 0: the order is invoiced at once and refuses the Change
    ctx = await env.context(offset_ms=-30.0, delay_ms=40.0)
    results = await env.run_guard(FinishedCheck(), ctx)

    assert results == [None, None]
    assert kinds(ctx) == [h.GET_CHANGES, h.GET_ORDER, h.INVOICE, h.CHANGE]
    assert events(ctx, h.GET_CHANGES)[0].response_body["requests"] == []
    assert sent_invoice_value(ctx) == INITIAL
    assert ctx.invoice_event.status == 200  # type: ignore[union-attr]
    assert ctx.change_event.status == 409  # type: ignore[union-attr]


async def test_finished_check_residual_window_with_settle_time(make_env: MakeEnv) -> None:
    """Invoice first, Change within S: the workaround races (docs/model.md residual window)."""
    settle_ms = 200.0
    env = await make_env(settle_ms=settle_ms)
    offset, delay = -30.0, 40.0  # -S < offset < 0
    ctx = await env.context(offset_ms=offset, delay_ms=delay)
    await env.run_guard(FinishedCheck(), ctx)

    assert kinds(ctx) == [h.GET_CHANGES, h.GET_ORDER, h.INVOICE, h.CHANGE]
    assert sent_invoice_value(ctx) == INITIAL
    assert ctx.invoice_event.status == 200  # type: ignore[union-attr]
    assert ctx.change_event.status == 202  # type: ignore[union-attr]  # still accepted while settling
    audit = await env.audit_when_settled(ctx.order_id)
    assert audit["verdict"] == "race"
    assert audit["invoicedTotal"] - audit["finalValue"] == INITIAL - FINAL


async def test_finished_check_times_out_on_a_long_change(make_env: MakeEnv) -> None:
    env = await make_env()
    timeout_ms, delay = 120.0, 600.0  # the Change outlasts the guard's bounded wait by far
    ctx = await env.context(offset_ms=10.0, delay_ms=delay, timeout_ms=timeout_ms)
    change_result, invoice_result = await env.run_guard(FinishedCheck(), ctx)

    assert change_result is None
    assert isinstance(invoice_result, GuardTimeout)
    assert f"{timeout_ms:.0f} ms" in str(invoice_result)
    k = kinds(ctx)
    assert k == [h.CHANGE] + [h.GET_CHANGES] * k.count(h.GET_CHANGES)  # no invoice, no re-read
    polls = events(ctx, h.GET_CHANGES)
    assert len(polls) >= 2
    assert not any(all_finished(p) for p in polls)
    assert polls[-1].response_ns < ctx.change_event.sent_ns + ms(delay)  # type: ignore[union-attr]  # gave up early
    assert ctx.invoice_event is None and ctx.invoice_value == -1


async def test_finished_check_timeout_budget_starts_at_the_invoice_deadline(make_env: MakeEnv) -> None:
    """The bound counts from the first poll, not from when the guard was called (lead + offset earlier)."""
    env = await make_env()
    timeout_ms, delay, offset = 60.0, 600.0, 40.0
    assert LEAD_MS + offset > timeout_ms  # a budget counted from the call would be spent before the first poll
    ctx = await env.context(offset_ms=offset, delay_ms=delay, timeout_ms=timeout_ms)
    _, invoice_result = await env.run_guard(FinishedCheck(), ctx)

    assert isinstance(invoice_result, GuardTimeout)
    polls = events(ctx, h.GET_CHANGES)
    assert polls[0].sent_ns >= ctx.invoice_deadline_ns
    # "unfinished after 60 ms" should mean the guard polled for (about) 60 ms after its deadline.
    assert polls[-1].sent_ns - polls[0].sent_ns >= ms(timeout_ms) - ms(POLL_MS) - 3_000_000
    # ... and still bounded: it gave up about timeout_ms after the deadline, long before the Change finished.
    assert polls[-1].response_ns - ctx.invoice_deadline_ns < ms(timeout_ms) + ms(POLL_MS) + 100_000_000  # type: ignore[operator]


# --------------------------------------------------------------------------- serialized


async def test_serialized_holds_the_change_until_finished_before_invoicing(make_env: MakeEnv) -> None:
    env = await make_env()
    offset, delay = 20.0, 60.0
    ctx = await env.context(offset_ms=offset, delay_ms=delay)
    results = await env.run_guard(Serialized(), ctx)

    assert results == [None, None]
    k = kinds(ctx)
    n_polls = k.count(h.GET_CHANGES)
    n_settle = k.count(h.GET_ORDER) - 1
    assert k == [h.CHANGE] + [h.GET_CHANGES] * n_polls + [h.GET_ORDER, h.INVOICE] + [h.GET_ORDER] * n_settle
    assert n_polls >= 1 and n_settle >= 1
    polls = events(ctx, h.GET_CHANGES)
    assert all_finished(polls[-1]) and not any(all_finished(p) for p in polls[:-1])
    invoice = ctx.invoice_event
    assert invoice is not None and invoice.status == 200
    assert invoice.sent_ns >= polls[-1].response_ns  # type: ignore[operator]  # the lock was held until then
    assert invoice.sent_ns >= ctx.change_event.sent_ns + ms(delay)  # type: ignore[union-attr]
    assert ctx.invoice_value == sent_invoice_value(ctx) == FINAL
    assert events(ctx, h.GET_ORDER)[-1].response_body["status"] == "invoiced"

    audit = await env.audit_when_settled(ctx.order_id)
    assert audit["verdict"] == "clean"
    assert audit["invoicedTotal"] == FINAL


async def test_serialized_invoice_first_holds_the_change_until_invoiced(make_env: MakeEnv) -> None:
    env = await make_env()
    ctx = await env.context(offset_ms=-30.0, delay_ms=40.0)
    results = await env.run_guard(Serialized(), ctx)

    assert results == [None, None]
    k = kinds(ctx)
    n_settle = k.count(h.GET_ORDER) - 1
    assert k == [h.GET_ORDER, h.INVOICE] + [h.GET_ORDER] * n_settle + [h.CHANGE]
    assert n_settle >= 1
    assert sent_invoice_value(ctx) == INITIAL  # nothing changed yet: the full value is right
    settled = events(ctx, h.GET_ORDER)[-1]
    assert settled.response_body["status"] == "invoiced"
    assert ctx.change_event.sent_ns >= settled.response_ns  # type: ignore[union-attr,operator]
    assert ctx.change_event.status == 409  # type: ignore[union-attr]


async def test_serialized_change_side_times_out(make_env: MakeEnv) -> None:
    env = await make_env()
    timeout_ms, delay = 40.0, 400.0
    ctx = await env.context(offset_ms=10.0, delay_ms=delay, timeout_ms=timeout_ms)
    change_result, _ = await env.run_guard(Serialized(), ctx)

    assert isinstance(change_result, GuardTimeout)
    polls = events(ctx, h.GET_CHANGES)
    assert polls and not any(all_finished(p) for p in polls)
    # The invoice side only ran once the Change side gave up and released the lock.
    invoice = ctx.invoice_event
    assert invoice is not None
    assert invoice.sent_ns >= polls[-1].response_ns  # type: ignore[operator]
    assert invoice.sent_ns < ctx.change_event.sent_ns + ms(delay)  # type: ignore[union-attr]


# --------------------------------------------------------------------------- a canceled Change (HC-ADAPT)


async def test_finished_check_treats_a_canceled_change_as_over_and_invoices_the_unchanged_value(
        make_env: MakeEnv) -> None:
    env = await make_env(change_cancel_rate=1.0)  # every Change ends `canceled`, `finished: false` for ever
    ctx = await env.context(offset_ms=20.0, delay_ms=80.0)
    results = await env.run_guard(FinishedCheck(), ctx)

    assert results == [None, None]
    last_poll = events(ctx, h.GET_CHANGES)[-1]
    [request] = last_poll.response_body["requests"]
    assert request["status"] == "canceled" and request["finished"] is False
    assert not all_finished(last_poll)  # a guard waiting for `finished: true` alone would poll until it timed out
    assert ctx.invoice_value == sent_invoice_value(ctx) == INITIAL  # the Change never applied
    audit = await env.audit_when_settled(ctx.order_id)
    assert audit["verdict"] == "clean" and audit["finalValue"] == INITIAL


async def test_serialized_releases_the_lock_once_the_change_is_canceled(make_env: MakeEnv) -> None:
    env = await make_env(change_cancel_rate=1.0)
    ctx = await env.context(offset_ms=10.0, delay_ms=60.0)
    results = await env.run_guard(Serialized(), ctx)
    assert results == [None, None]
    assert ctx.invoice_value == INITIAL and ctx.invoice_event is not None and ctx.invoice_event.status == 200


def test_a_guard_timeout_is_a_failure_not_a_pass() -> None:
    from harness.core.names import outcome_kind
    assert outcome_kind("guard_timeout") == "failed"
