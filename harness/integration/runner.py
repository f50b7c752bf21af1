"""Integration mode: a team's own service is the client under test (the trial loop; services.py starts them).

The service receives the mock's order hooks and calls the Orders API itself;
the harness needs nothing inside it but its hook URL. Per trial: create an
order, trigger `handling` with a pinned hook delay H (so the hook's delivery
time t_hook is known ahead), send the partial-cancel Change at t_hook + offset,
wait (bounded) for the service's invoice, then judge from the mock's audit.

With `delivery = "feed"` the service reads Feed v3 instead: the harness configures the feed
(FromWorkflow `handling`, emptied first), waits for the service's first read, and the same
pinned delay H sets when the handling event becomes visible (t_visible = start + H, the
trigger; offset = t_change - t_visible).

The mock has one hook and one feed configuration (as VTEX has one per appKey), so the
services of a scenario run one after another, each in its own block.

A scenario naming a hazard (`hazard = "<id>"`, harness.hazards) swaps in that hazard's recipe and
oracle: what the harness does at t_hook + offset (a Change, an order cancel, two Changes, or
nothing), whether it starts handling itself, which statuses the service is notified of, and the
invariants the trial is judged by. Without one, the trial is the ticket's (a Change, the default
oracle).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from harness.core import history as h
from harness.core.plan import PlannedTrial
from harness.core.results import TrialResult, integration_result
from harness.errors import TargetError
from harness.hazards import get_hazard
from harness.hazards.base import Hazard, Recipe, default_judge
from harness.integration.services import SERVICE_START_S, running
from harness.live.client import OrdersClient
from harness.live.runner import Runner

HOOK_DELAY_HEADER = "X-Mock-Hook-Delay-Ms"  # the mock pins the hook's delivery and the feed event's visibility
FEED_VISIBILITY_S = 30  # a read item not committed within this reappears (VTEX's example config: 250)
_FEED_RETENTION_S = 345_600  # the least VTEX accepts (4 days)
_AUDIT_POLL_S = 0.05
_EXTRA_INVOICE_GRACE_MS = 300.0  # after the first invoice is seen: time for an extra one to show
_DUPLICATE_GRACE_MS = 500.0  # after the last planned copy of the trigger hook: time for the service to act
_SECOND_CHANGE_MS = 20.0  # recipe "two-changes": the second Change follows the first by this much


class IntegrationRunner(Runner):
    @property
    def _hazard(self) -> Hazard | None:
        return get_hazard(self.scenario.hazard) if self.scenario.hazard else None

    @property
    def _recipe(self) -> Recipe:
        hazard = self._hazard
        return hazard.recipe if hazard is not None else Recipe()

    async def _execute(self, client: OrdersClient, stop: asyncio.Event) -> None:
        integ = self.scenario.target.integration
        assert integ is not None
        for service in integ.services:
            trials = [p for p in self.plan.trials if p.guard == service.name]
            if not trials or stop.is_set():
                continue
            feed = integ.delivery == "feed"
            reads = await self._configure_feed(client) if feed else 0
            async with running(service, self.base_url) as hook_url:
                if feed:
                    await self._await_feed_reader(client, service.name, reads)
                else:
                    assert hook_url is not None
                    await self._configure_hook(client, service.name, hook_url)
                await self._schedule(client, stop, trials)

    async def _configure_hook(self, client: OrdersClient, name: str, hook_url: str) -> None:
        """Point the mock's order hook at the service; the mock pings it, which may need a few tries."""
        integ = self.scenario.target.integration
        headers = dict(integ.headers) if integ is not None else {}
        body = {"filter": {"type": "FromWorkflow", "status": list(self._recipe.hook_statuses)},
                "hook": {"url": hook_url, "headers": headers}}
        deadline = time.monotonic() + SERVICE_START_S
        while True:
            event = await client.call(None, "hook_config", "POST", "/api/orders/hook/config", json=body)
            if event.ok:
                return
            if time.monotonic() >= deadline:
                raise TargetError(f"service {name!r}: hook configuration at {hook_url} failed: "
                                  f"{event.error or f'HTTP {event.status}: {event.response_body}'}")
            await asyncio.sleep(0.2)

    async def _configure_feed(self, client: OrdersClient) -> int:
        """An empty feed of `handling` events (the previous service's leftovers deleted); returns the
        feed reads so far, so the service's first read can be told apart."""
        await client.call(None, "feed_config", "DELETE", "/api/orders/feed/config")  # 404 when none: fine
        body = {"filter": {"type": "FromWorkflow", "status": ["handling"]},
                "queue": {"visibilityTimeoutInSeconds": FEED_VISIBILITY_S,
                          "MessageRetentionPeriodInSeconds": _FEED_RETENTION_S}}
        event = await client.call(None, "feed_config", "POST", "/api/orders/feed/config", json=body)
        if not event.ok:
            raise TargetError(f"feed configuration failed: {event.error or f'HTTP {event.status}: {event.response_body}'}")
        return int((await client.admin("GET", "/health")).get("feedReads", 0))

    async def _await_feed_reader(self, client: OrdersClient, name: str, reads_before: int) -> None:
        """Wait (bounded) until the service reads the feed: its trials must not start before it polls."""
        deadline = time.monotonic() + SERVICE_START_S
        while int((await client.admin("GET", "/health")).get("feedReads", 0)) <= reads_before:
            if time.monotonic() >= deadline:
                raise TargetError(f"service {name!r} did not read the feed (GET /api/orders/feed) within "
                                  f"{SERVICE_START_S:.0f} s")
            await asyncio.sleep(0.1)

    async def _trial(self, client: OrdersClient, p: PlannedTrial,
                     start_ns: int) -> tuple[TrialResult, list[dict[str, Any]], dict[str, Any] | None]:
        integ = self.scenario.target.integration
        assert integ is not None
        began = self.clock.now_ns()
        hist = h.TrialHistory(shard=p.seq)
        hook_delay_ns = round(integ.hook_delay_ms * 1e6)
        t_hook = start_ns + hook_delay_ns
        created = await client.create_order(hist, self._order_spec)
        if not created.ok:
            return self._failed(p, hist, t_hook, began, "", f"create order: {created.error or created.status}")
        order_id = created.response_body["orderId"]
        initial = int(created.response_body["value"])
        recipe = self._recipe
        if recipe.start_handling:
            handled = await client.call(hist, h.START_HANDLING, "POST",
                                        f"/api/oms/pvt/orders/{order_id}/start-handling",
                                        headers={HOOK_DELAY_HEADER: f"{integ.hook_delay_ms:.3f}"}, deadline_ns=start_ns)
            if not handled.ok:
                return self._failed(p, hist, t_hook, began, order_id,
                                    f"start-handling: {handled.error or handled.status}")
        action = await self._act(client, hist, recipe, order_id, t_hook + round(p.offset_ms * 1e6), p)
        change = action if action is not None and action.kind == h.CHANGE else None
        # With a delivery plan, the duplicate copies still come after the invoice: judge once they had
        # time to arrive and be acted on, so a service invoicing per copy shows its extra invoices.
        hold_ns = (t_hook + round((integ.extra_delay_ms + _DUPLICATE_GRACE_MS) * 1e6)
                   if integ.duplicate_rate > 0 or integ.extra_delay_ms > 0 else 0)
        audit = await self._await_invoice(client, order_id, t_hook + round(integ.invoice_wait_ms * 1e6), hold_ns)
        hazard = self._hazard
        judged = (hazard.judge if hazard is not None else default_judge)(action, audit)
        result = integration_result(trial_id=p.trial_id, seq=p.seq, guard=p.guard, offset_ms=p.offset_ms,
                                    order_id=order_id, initial_value=initial, change=change, audit=audit,
                                    judged=judged, trigger=recipe.trigger,
                                    t0_ns=t_hook, duration_ms=(self.clock.now_ns() - began) / 1e6,
                                    tolerance_ms=self.scenario.timing_tolerance_ms, delivery=integ.delivery)
        return result, [e.to_json(p.trial_id, p.guard, t_hook) for e in hist.events], audit

    async def _act(self, client: OrdersClient, hist: h.TrialHistory, recipe: Recipe, order_id: str,
                   at_ns: int, p: PlannedTrial) -> h.RequestEvent | None:
        """What the harness does to the order at t_hook + offset; the event the oracle judges (the first
        Change for "two-changes": the second one is in the history and the audit)."""
        if recipe.action == "nothing":
            return None
        if recipe.action == "cancel":
            return await client.call(hist, h.CANCEL, "POST", f"/api/oms/pvt/orders/{order_id}/cancel", deadline_ns=at_ns)
        first = await client.change(hist, order_id, self._change_body, at_ns, p.change_delay_ms)
        if recipe.action == "two-changes":
            await client.change(hist, order_id, self._change_body, at_ns + round(_SECOND_CHANGE_MS * 1e6),
                                p.change_delay_ms)
        return first

    async def _await_invoice(self, client: OrdersClient, order_id: str, wait_until_ns: int,
                             hold_ns: int = 0) -> dict[str, Any] | None:
        """The audit once the service invoiced, every Change finished and `hold_ns` passed, or at the bounds."""
        settle_until = wait_until_ns + round((self.scenario.guards.timeout_ms + 1000) * 1e6)
        while True:
            event = await client.audit(None, order_id)
            if not event.ok:
                return None
            audit: dict[str, Any] = event.response_body
            now = self.clock.now_ns()
            invoiced = bool(audit.get("invoices"))
            if invoiced and not hold_ns:  # a second invoice may follow the first: judge it too
                hold_ns = now + round(_EXTRA_INVOICE_GRACE_MS * 1e6)
            if invoiced and audit.get("verdict") != "pending" and now >= hold_ns:
                return audit
            if (not invoiced and now >= wait_until_ns) or now >= settle_until:
                return audit
            await asyncio.sleep(_AUDIT_POLL_S)
