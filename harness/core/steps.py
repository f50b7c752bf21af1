"""What one side of a trial may ask of its driver: the sans-I/O vocabulary of the guards.

A *side* (the invoice side or the Change side of a trial, `harness.core.guards`)
is a generator. It yields steps and receives the driver's reply to each, as an
httpx `auth_flow` yields requests and receives responses, so one guard runs
unchanged on every runtime: asyncio (`harness.live.runner`, also on the simulated
mode's virtual clock) and gevent (`harness.load.users`). Each runtime has one
small `drive(side)` loop that interprets these steps:

* `Send`  -> send the request (at `at_ns` if given, through the runtime's timed
  path), record it in the trial's history; reply: the recorded `RequestEvent`.
  A driver never raises for an HTTP error: the event carries it.
* `Wait`  -> return as close after `until_ns` as the clock can (the precise wait
  of a deadline); reply: None.
* `Pause` -> sleep `seconds`, coarsely (a poll interval: no spinning); reply: None.
* `NOW`   -> reply: the driver clock's time in ns (the guards' bounded waits).
* `LOCK` / `UNLOCK` -> acquire / release the trial's per-order lock (shared by
  its two sides); reply: None. A driver releases a lock still held when the side
  ends, normally or by an exception, so a side yields `UNLOCK` only on its happy path.

A side ends by returning, or by raising `GuardTimeout` (the trial's outcome is
then `guard_timeout`); anything else it raises is a bug and propagates.

Also here, because steps are built from them: the Orders API routes a side
sends to (the templates double as Locust's per-route stats names) and the
response body decoding every driver applies. Pure: no asyncio, httpx or gevent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Generator, Mapping, Union


# Orders API routes (`{orderId}` is filled in per trial).
ORDER_ROUTE = "/api/oms/pvt/orders/{orderId}"
START_HANDLING_ROUTE = "/api/oms/pvt/orders/{orderId}/start-handling"
CHANGES_ROUTE = "/api/order-system/orders/{orderId}/changes"
INVOICES_ROUTE = "/api/orders/pvt/document/{orderId}/invoices"
# The mock's per-request Change delay (the trial pins the delay it drew).
DELAY_HEADER = "X-Mock-Change-Delay-Ms"

NOW = "now"
LOCK = "lock"
UNLOCK = "unlock"
_BODY_TEXT_CHARS = 2000  # a non-JSON body is kept as text, cut to this length


@dataclass(frozen=True)
class Send:
    """Send one request; the driver answers with the `RequestEvent` it recorded."""

    kind: str  # a request kind of harness.core.history (CHANGE, INVOICE, GET_ORDER, GET_CHANGES, ...)
    method: str
    path: str
    body: Any = None
    at_ns: int | None = None  # a timed request: sent at this deadline (None: now)
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Wait:
    """Wait until `until_ns` on the driver's clock (precisely: it is a deadline)."""

    until_ns: int


@dataclass(frozen=True)
class Pause:
    """Sleep `seconds` (a poll interval: coarse, no spinning)."""

    seconds: float


Step = Union[Send, Wait, Pause, str]  # str: NOW, LOCK or UNLOCK
Side = Generator[Step, Any, None]  # sent: the reply to the last step (RequestEvent, int or None)


def decode_body(raw: bytes) -> Any:
    """A response body as recorded in the history: parsed JSON, else text (cut), None when empty."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw[:_BODY_TEXT_CHARS].decode("utf-8", "replace")


__all__ = [
    "CHANGES_ROUTE",
    "DELAY_HEADER",
    "INVOICES_ROUTE",
    "LOCK",
    "NOW",
    "ORDER_ROUTE",
    "START_HANDLING_ROUTE",
    "UNLOCK",
    "Pause",
    "Send",
    "Side",
    "Step",
    "Wait",
    "decode_body",
]
