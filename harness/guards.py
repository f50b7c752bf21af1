"""Client-side invoicing strategies (docs/model.md "Guards"), one class each.

A guard runs the integration's two operations of a trial: the invoice, fired
at the invoice deadline, and the partial-cancel Change, fired at the Change
deadline. Adding a guard = one class with `name`, `invoice()` and `change()`,
registered in `GUARDS`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from harness.core import history as h
from harness.core.wire import all_changes_finished, invoice_body, invoice_settled, remaining_value

if TYPE_CHECKING:  # type-only: the pure guard decisions (harness.core.wire) need no HTTP client
    from harness.live.client import OrdersClient


class GuardTimeout(Exception):
    """The guard's bounded wait ran out; the trial is classified `guard_timeout`."""


@dataclass
class TrialContext:
    """What one trial's two operations share."""

    client: OrdersClient
    hist: h.TrialHistory
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
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # the integration's per-order lock

    async def send_change(self) -> h.RequestEvent:
        self.change_event = await self.client.change(
            self.hist, self.order_id, self.change_body, self.change_deadline_ns, self.pinned_delay_ms
        )
        return self.change_event

    async def send_invoice(self, value: int, deadline_ns: int | None) -> h.RequestEvent:
        self.invoice_value = value
        self.invoice_event = await self.client.invoice(
            self.hist, self.order_id, invoice_body(self.invoice_number, value), deadline_ns
        )
        return self.invoice_event

    def _stop_ns(self, start_ns: int | None = None) -> int:
        """The guard's bound: `timeout_ms` from `start_ns` (or now, if later)."""
        now = self.client.clock.now_ns()
        return max(now, start_ns or now) + round(self.timeout_ms * 1e6)

    def _expired(self, stop_ns: int) -> bool:
        return self.client.clock.now_ns() >= stop_ns

    async def wait_changes_finished(self, deadline_ns: int | None = None) -> None:
        """Poll the order's Change history (first poll at `deadline_ns`) until every Change is `finished`."""
        stop = self._stop_ns(deadline_ns)
        while True:
            event = await self.client.list_changes(self.hist, self.order_id, deadline_ns)
            deadline_ns = None
            if not event.ok:
                raise GuardTimeout(f"change history read failed: HTTP {event.status} {event.error}".strip())
            if all_changes_finished(event.response_body):
                return
            if self._expired(stop):
                raise GuardTimeout(f"Changes still unfinished after {self.timeout_ms:.0f} ms")
            await asyncio.sleep(self.poll_interval_ms / 1000)

    async def current_value(self) -> int:
        """Re-read the order; the value still to invoice (order value minus what is invoiced)."""
        event = await self.client.get_order(self.hist, self.order_id)
        if not event.ok:
            raise GuardTimeout(f"order read failed: HTTP {event.status} {event.error}".strip())
        return remaining_value(event.response_body)

    async def wait_invoiced(self) -> None:
        """Poll the order until its invoice settled (status `invoiced`), bounded."""
        stop = self._stop_ns()
        while True:
            event = await self.client.get_order(self.hist, self.order_id)
            if event.ok and invoice_settled(event.response_body):
                return
            if self._expired(stop):
                raise GuardTimeout(f"invoice not settled after {self.timeout_ms:.0f} ms")
            await asyncio.sleep(self.poll_interval_ms / 1000)


class Guard(Protocol):
    name: str

    async def invoice(self, ctx: TrialContext) -> None: ...

    async def change(self, ctx: TrialContext) -> None: ...


class NoGuard:
    """Invoice the value read at the `handling` trigger, at the planned time."""

    name = "none"

    async def invoice(self, ctx: TrialContext) -> None:
        await ctx.send_invoice(ctx.naive_value, ctx.invoice_deadline_ns)

    async def change(self, ctx: TrialContext) -> None:
        await ctx.send_change()


class FinishedCheck(NoGuard):
    """The ticket's workaround: wait until every Change is `finished`, re-read, invoice the current value.

    Blind to a Change not sent yet, so a residual window remains (invoice
    first with S > 0, or a Change landing between the check and the invoice).
    """

    name = "finished-check"

    async def invoice(self, ctx: TrialContext) -> None:
        await ctx.wait_changes_finished(ctx.invoice_deadline_ns)
        await ctx.send_invoice(await ctx.current_value(), None)


class Serialized:
    """The integration owns both operations and serialises them per order:
    a Change holds the lock until it finished, an invoice until it settled."""

    name = "serialized"

    async def invoice(self, ctx: TrialContext) -> None:
        await ctx.client.clock.sleep_until(ctx.invoice_deadline_ns)
        async with ctx.lock:
            await ctx.send_invoice(await ctx.current_value(), None)
            if ctx.invoice_event is not None and ctx.invoice_event.ok:
                await ctx.wait_invoiced()

    async def change(self, ctx: TrialContext) -> None:
        await ctx.client.clock.sleep_until(ctx.change_deadline_ns)
        async with ctx.lock:
            event = await ctx.send_change()
            if event.status == 202:
                await ctx.wait_changes_finished()


GUARDS: dict[str, type[Guard]] = {g.name: g for g in (NoGuard, FinishedCheck, Serialized)}  # type: ignore[misc]


def get_guard(name: str) -> Guard:
    try:
        return GUARDS[name]()
    except KeyError:
        raise KeyError(f"unknown guard {name!r}; known: {sorted(GUARDS)}") from None
