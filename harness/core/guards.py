"""Client-side invoicing strategies (DESIGN.md "Guards"), one class each, written once.

A guard runs the integration's two operations of a trial: the invoice, fired
at the invoice deadline, and the partial-cancel Change, fired at the Change
deadline. Each operation is a *side*: a generator of `harness.core.steps`
(send this request at that time, wait, lock the order, ...) that every runtime
drives with its own small loop: asyncio (`harness.live.runner.drive`, live and
simulated) and gevent (`harness.load.users.drive`). Adding a guard = one class
with `name`, `invoice()` and `change()`, registered in `GUARDS`.

Pure: no asyncio, httpx or gevent imports (the guard decisions are
`harness.core.wire`; the clock and the lock belong to the driver).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generator, Protocol

from harness.core import history as h
from harness.core.steps import (
    CHANGES_ROUTE,
    DELAY_HEADER,
    INVOICES_ROUTE,
    LOCK,
    NOW,
    ORDER_ROUTE,
    UNLOCK,
    Pause,
    Send,
    Side,
    Wait,
)
from harness.core.wire import all_changes_terminal, invoice_body, invoice_settled, remaining_value


class GuardTimeout(Exception):
    """The guard's bounded wait ran out; the trial is classified `guard_timeout`."""


@dataclass
class TrialContext:
    """What one trial's two sides share: its parameters, and what they sent (read by the judge)."""

    hist: h.TrialHistory  # where the driver records the sides' requests
    order_id: str
    naive_value: int  # order value read at the `handling` trigger, before the Change
    change_body: dict[str, Any]
    change_deadline_ns: int
    invoice_deadline_ns: int
    pinned_delay_ms: float | None
    poll_interval_ms: float
    timeout_ms: float
    invoice_number: str
    invoice_value: int = -1  # what the integration sent (-1: nothing sent)
    change_event: h.RequestEvent | None = None
    invoice_event: h.RequestEvent | None = None
    guard_error: str = ""


# A sub-generator returning a value (`yield from` it inside a side).
_Steps = Generator[Any, Any, Any]


def _send_change(ctx: TrialContext) -> _Steps:
    headers = {DELAY_HEADER: f"{ctx.pinned_delay_ms:.3f}"} if ctx.pinned_delay_ms is not None else None
    ctx.change_event = yield Send(h.CHANGE, "PATCH", CHANGES_ROUTE.format(orderId=ctx.order_id), ctx.change_body,
                                  ctx.change_deadline_ns, headers)
    return ctx.change_event


def _send_invoice(ctx: TrialContext, value: int, deadline_ns: int | None) -> _Steps:
    ctx.invoice_value = value
    ctx.invoice_event = yield Send(h.INVOICE, "POST", INVOICES_ROUTE.format(orderId=ctx.order_id),
                                   invoice_body(ctx.invoice_number, value), deadline_ns)
    return ctx.invoice_event


def _stop_ns(ctx: TrialContext, start_ns: int | None = None) -> _Steps:
    """The guard's bound: `timeout_ms` from `start_ns` (or now, if later)."""
    now = yield NOW
    return max(now, start_ns or now) + round(ctx.timeout_ms * 1e6)


def _wait_changes_finished(ctx: TrialContext, deadline_ns: int | None = None) -> _Steps:
    """Poll the order's Change history (first poll at `deadline_ns`) until every Change is `finished`
    or `canceled` (a canceled Change never becomes `finished`: HC-ADAPT)."""
    stop = yield from _stop_ns(ctx, deadline_ns)
    while True:
        event = yield Send(h.GET_CHANGES, "GET", CHANGES_ROUTE.format(orderId=ctx.order_id), at_ns=deadline_ns)
        deadline_ns = None
        if not event.ok:
            raise GuardTimeout(f"change history read failed: HTTP {event.status} {event.error}".strip())
        if all_changes_terminal(event.response_body):
            return
        if (yield NOW) >= stop:
            raise GuardTimeout(f"Changes still unfinished after {ctx.timeout_ms:.0f} ms")
        yield Pause(ctx.poll_interval_ms / 1000)


def _read_order(ctx: TrialContext) -> _Steps:
    return (yield Send(h.GET_ORDER, "GET", ORDER_ROUTE.format(orderId=ctx.order_id)))


def _current_value(ctx: TrialContext) -> _Steps:
    """Re-read the order; the value still to invoice (order value minus what is invoiced)."""
    event = yield from _read_order(ctx)
    if not event.ok:
        raise GuardTimeout(f"order read failed: HTTP {event.status} {event.error}".strip())
    return remaining_value(event.response_body)


def _wait_invoiced(ctx: TrialContext) -> _Steps:
    """Poll the order until its invoice settled (status `invoiced`), bounded."""
    stop = yield from _stop_ns(ctx)
    while True:
        event = yield from _read_order(ctx)
        if event.ok and invoice_settled(event.response_body):
            return
        if (yield NOW) >= stop:
            raise GuardTimeout(f"invoice not settled after {ctx.timeout_ms:.0f} ms")
        yield Pause(ctx.poll_interval_ms / 1000)


class Guard(Protocol):
    name: str

    def invoice(self, ctx: TrialContext) -> Side: ...

    def change(self, ctx: TrialContext) -> Side: ...


class NoGuard:
    """Invoice the value read at the `handling` trigger, at the planned time."""

    name = "none"

    def invoice(self, ctx: TrialContext) -> Side:
        yield from _send_invoice(ctx, ctx.naive_value, ctx.invoice_deadline_ns)

    def change(self, ctx: TrialContext) -> Side:
        yield from _send_change(ctx)


class FinishedCheck(NoGuard):
    """The ticket's workaround: wait until every Change is `finished` (or `canceled`: it never will be),
    re-read, invoice the current value.

    Blind to a Change not sent yet, so a residual window remains (invoice
    first with S > 0, or a Change landing between the check and the invoice).
    """

    name = "finished-check"

    def invoice(self, ctx: TrialContext) -> Side:
        yield from _wait_changes_finished(ctx, ctx.invoice_deadline_ns)
        value = yield from _current_value(ctx)
        yield from _send_invoice(ctx, value, None)


class Serialized:
    """The integration owns both operations and serialises them per order:
    a Change holds the lock until it finished, an invoice until it settled."""

    name = "serialized"

    def invoice(self, ctx: TrialContext) -> Side:
        yield Wait(ctx.invoice_deadline_ns)
        yield LOCK  # the driver releases it if this side raises
        value = yield from _current_value(ctx)
        event = yield from _send_invoice(ctx, value, None)
        if event.ok:
            yield from _wait_invoiced(ctx)
        yield UNLOCK

    def change(self, ctx: TrialContext) -> Side:
        yield Wait(ctx.change_deadline_ns)
        yield LOCK
        event = yield from _send_change(ctx)
        if event.status == 202:
            yield from _wait_changes_finished(ctx)
        yield UNLOCK


GUARDS: dict[str, type[Guard]] = {g.name: g for g in (NoGuard, FinishedCheck, Serialized)}  # type: ignore[misc]


def get_guard(name: str) -> Guard:
    try:
        return GUARDS[name]()
    except KeyError:
        raise KeyError(f"unknown guard {name!r}; known: {sorted(GUARDS)}") from None
