"""A reference ERP connector on aiohttp: invoices VTEX orders when they reach `handling`.

It is the kind of integration VTEX ticket 1348894 is about, written the way a
real one would be, so the harness can point it at the mock Orders API as a
black box and integration teams can read it as an example:

* an aiohttp web server receives the order hook (`POST /hook`), answers 200 at
  once (the platform must not wait on our ERP) and works in the background;
* ``naive`` mode invoices the value read when the hook arrives: it reproduces
  the ticket when a value-reducing Change is still processing (the known-bad
  reference);
* ``guarded`` mode is the ticket's workaround: poll the order's Change history
  until every request is ``finished`` (or ``canceled``: HC-ADAPT), re-read the
  order, invoice what remains; the wait is bounded (``guard_timeout``: no invoice);
* ``robust`` mode is guarded plus what the rest of the hazard catalogue needs:
  one action per (orderId, State) (hooks are at-least-once, duplicates by
  design: ERP integration guide), a cancel hook noted whatever order hooks
  arrive in and checked again (re-read) right before the invoice (KI-1400005),
  ``start-handling`` on ``ready-for-handling`` retried until 204 (SPEC: it
  "can also respond with status 500"), retries bounded by a time budget rather
  than a count, and a check after the invoice settles that the order value did
  not drop below it (KI-1348894's invoice-first window: reported, and with
  ``--correct-over-invoice`` a return (``Input``) invoice for the excess).

The modes are one code path: a mode is a `Strategy` (a few booleans).

Every Orders API call retries 429/5xx/connection errors/timeouts, honouring
``Retry-After`` (seconds or an HTTP date; VTEX recommends a 1-minute back-off
after a 429, Orders Feed guide) within ``--retry-budget-s`` per call; naive and
guarded also stop after ``--max-retries``. A Retry-After beyond the budget left
gives up at once. Other 4xx are refusals and are never retried. The invoice
number is deterministic (``ERP-{orderId}``), so a retry after a lost response
is idempotent: the PII route refuses the reused number with 409 and a re-read
of the order shows whether the first attempt landed.

Run it::

    VTEX_APP_KEY=... VTEX_APP_TOKEN=... python -m harness.connectors.erp_connector \\
        --mode robust --api-url http://127.0.0.1:8000 --host 127.0.0.1 --port 0

It prints ``listening on http://HOST:PORT`` on stdout once ready, logs to
stderr, and stops cleanly on SIGTERM/SIGINT. Only aiohttp and the stdlib are
used on purpose: nothing here depends on the harness.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import json
import logging
import os
import random
import signal
import socket
import sys
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import aiohttp
from aiohttp import web

from harness.connectors.feed import FeedReader

log = logging.getLogger("erp_connector")

Mode = Literal["naive", "guarded", "robust"]
MODES: tuple[Mode, ...] = ("naive", "guarded", "robust")
Outcome = Literal["accepted", "refused", "skipped", "canceled", "guard_timeout", "error"]

HANDLING = "handling"
READY_FOR_HANDLING = "ready-for-handling"
SETTLING = "invoice"  # the order's status while an accepted invoice settles (HC-FLOW "Verifying invoice")
STUCK = "payment-approved"  # where KI-1348894 (b) leaves an order with a valid invoice
# A cancellation requested, in progress or done (HC-FLOW; KI-1400005 leaves a marketplace in request-cancel):
# such an order must not be invoiced.
CANCEL_STATES = frozenset({"request-cancel", "cancel", "canceled"})
_NO_BODY_TYPE = ("Content-Type",)
_REMEMBERED = 100_000  # (orderId, State) pairs and canceled orders kept: bounded memory on a long run


@dataclass(frozen=True)
class Strategy:
    """What a mode does beyond reading the order and invoicing its value (one code path, see module doc)."""

    wait_changes: bool = False  # wait until every Change is terminal, then re-read (KI-1348894 workaround)
    dedup_hooks: bool = False  # act once per (orderId, State): hooks are at-least-once
    respect_cancel: bool = False  # a cancel hook or status stops the order's invoice (KI-1400005)
    verify_invoice: bool = False  # after invoicing, check the settled order is not below the invoice
    retry_until_budget: bool = False  # retries bounded by the time budget only, not by --max-retries
    start_handling: bool = False  # default of --start-handling


STRATEGIES: dict[Mode, Strategy] = {
    "naive": Strategy(),
    "guarded": Strategy(wait_changes=True),
    "robust": Strategy(wait_changes=True, dedup_hooks=True, respect_cancel=True, verify_invoice=True,
                       retry_until_budget=True, start_handling=True),
}


# --------------------------------------------------------------------------- errors
class ApiError(Exception):
    """An Orders API call failed; the message says which call and why."""


class ApiRefused(ApiError):
    """The API answered a 4xx other than 429: the request is wrong, retrying cannot help."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ApiUnavailable(ApiError):
    """429/5xx/connection errors/timeouts persisted past --max-retries."""


class HookError(ValueError):
    """A hook notification we cannot act on (answered with 400)."""


# --------------------------------------------------------------------------- results and stats
@dataclass(frozen=True)
class InvoiceResult:
    """What `invoice_order` did for one order."""

    order_id: str
    outcome: Outcome
    value: int | None = None  # cents invoiced (or attempted)
    receipt: str | None = None
    detail: str = ""


@dataclass
class ConnectorStats:
    """Counters served at GET /stats. Retries are counted per retried call, not per operation."""

    pings: int = 0
    hooks_received: int = 0  # order notifications (pings excluded)
    hooks_ignored: int = 0  # states the mode does not act on
    hooks_duplicate: int = 0  # robust: an (orderId, State) already acted on
    handling_started: int = 0  # start-handling calls that got 204 (or found the order already started)
    invoices_sent: int = 0  # invoice operations that reached the POST (its retries not counted)
    invoices_accepted: int = 0
    invoices_refused: int = 0
    invoices_skipped: int = 0  # nothing left to invoice, or already invoiced by us
    invoices_canceled: int = 0  # robust: not invoiced because the order is being canceled
    guard_timeouts: int = 0
    over_invoices: int = 0  # robust: the settled order ended below our invoice (KI-1348894 b)
    corrections: int = 0  # return invoices sent for an over-invoice (--correct-over-invoice)
    retries: int = 0
    errors: int = 0
    last_errors: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    last_refusals: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    last_invoices: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("last_errors", "last_refusals", "last_invoices"):
            data[key] = list(data[key])
        return data


# --------------------------------------------------------------------------- order helpers
def _cents(raw: Any, what: str) -> int:
    """Monetary values are integer cents; VTEX examples send invoiceValue as a digit string."""
    if isinstance(raw, bool):
        raise ApiError(f"{what}: expected integer cents, got {raw!r}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        return int(raw)
    raise ApiError(f"{what}: expected integer cents, got {raw!r}")


def _packages(order: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    attachment = order.get("packageAttachment") or {}
    return list(attachment.get("packages") or [])


def remaining_value(order: Mapping[str, Any]) -> int:
    """Order value minus what is already invoiced (Output invoices; Input/return invoices add back).

    Partial invoices are allowed, so after a Change the invoice must carry the
    remaining value, not the order total.
    """
    remaining = _cents(order.get("value"), "order.value")
    for pkg in _packages(order):
        value = _cents(pkg.get("invoiceValue", 0), "packageAttachment.packages[].invoiceValue")
        remaining += -value if pkg.get("type", "Output") == "Output" else value
    return remaining


def invoice_number(order_id: str) -> str:
    return f"ERP-{order_id}"


def invoice_body(order: Mapping[str, Any], number: str, value: int) -> dict[str, Any]:
    """The invoice notification of the PII route this connector uses (`type: Output` = a sale).

    PII-SPEC `POST /api/orders/pvt/document/{orderId}/invoices`: `issuedDate` as YYYY-MM-DD, an
    integer `invoiceValue` in cents, and `items[]` of {itemIndex, price (the line total), quantity}.
    """
    issued = datetime.now(timezone.utc).date().isoformat()
    items = [
        {"itemIndex": n, "price": int(it.get("sellingPrice", it.get("price")) or 0) * int(it.get("quantity") or 0),
         "quantity": int(it.get("quantity") or 0)}
        for n, it in enumerate(order.get("items") or [])
    ]
    return {
        "type": "Output",
        "issuedDate": issued,
        "invoiceNumber": number,
        "invoiceValue": value,
        "items": [i for i in items if i["quantity"] > 0],  # lines a Change removed entirely are not invoiced
        "courier": "",
        "trackingNumber": "",
        "trackingUrl": "",
        "invoiceKey": None,
        "invoiceUrl": None,
    }


def _retry_after_s(header: str | None) -> float | None:
    """`Retry-After` as seconds (delta-seconds, fractions tolerated, or an HTTP-date)."""
    if not header:
        return None
    try:
        delay = float(header)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        delay = (when - datetime.now(timezone.utc)).total_seconds()
    return max(delay, 0.0)  # the caller weighs it against its retry budget


def _error_message(text: str) -> str:
    """The VTEX error body is `{"error": {"code", "message"}}`; fall back to the raw text."""
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:300] or "(empty body)"
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return f"{err.get('code', '')}: {err.get('message', '')}".strip(": ")
    return text.strip()[:300]


# --------------------------------------------------------------------------- the connector
class _Remembered:
    """A bounded set (oldest forgotten first): what a long-running connector remembers per order."""

    def __init__(self, size: int = _REMEMBERED) -> None:
        self._items: OrderedDict[Any, None] = OrderedDict()
        self._size = size

    def __contains__(self, item: Any) -> bool:
        return item in self._items

    def add(self, item: Any) -> None:
        self._items[item] = None
        self._items.move_to_end(item)
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def discard(self, item: Any) -> None:
        self._items.pop(item, None)


class ErpConnector:
    """Invoices orders on `handling` notifications, in `naive`, `guarded` or `robust` mode.

    Use as ``async with ErpConnector(...) as c`` or call ``close()``; the aiohttp
    session is created lazily inside the running loop (aiohttp requires one).
    """

    def __init__(
        self,
        api_url: str,
        mode: Mode = "guarded",
        *,
        app_key: str | None = None,
        app_token: str | None = None,
        poll_interval_s: float = 0.05,
        guard_timeout_s: float = 5.0,
        max_retries: int = 3,
        request_timeout_s: float = 5.0,
        backoff_base_s: float = 0.1,
        retry_budget_s: float = 60.0,
        start_handling: bool | None = None,
        correct_over_invoice: bool = False,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0; got {max_retries}")
        for name, value in (("poll_interval_s", poll_interval_s), ("guard_timeout_s", guard_timeout_s),
                            ("request_timeout_s", request_timeout_s), ("retry_budget_s", retry_budget_s)):
            if value <= 0:
                raise ValueError(f"{name} must be > 0; got {value}")
        self.api_url = api_url.rstrip("/")
        self.mode: Mode = mode
        self.strategy = STRATEGIES[mode]
        self.start_handling = self.strategy.start_handling if start_handling is None else start_handling
        self.correct_over_invoice = correct_over_invoice
        self.poll_interval_s = poll_interval_s
        self.guard_timeout_s = guard_timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.retry_budget_s = retry_budget_s
        self.stats = ConnectorStats()
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._headers = {"Accept": "application/json"}
        if app_key:
            self._headers["X-VTEX-API-AppKey"] = app_key
        if app_token:
            self._headers["X-VTEX-API-AppToken"] = app_token
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Per-order serialisation: a platform retrying the hook must not race our own invoice.
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._seen = _Remembered()  # robust: (orderId, State) pairs acted on
        self._canceling = _Remembered()  # robust: orders a cancel hook named, whenever it arrived

    async def __aenter__(self) -> ErpConnector:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._session is None or self._session.closed:
            # One session for all calls: it owns the keep-alive pool.
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)

    async def close(self) -> None:
        """Cancel background work still running and close the HTTP session (idempotent)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
            log.warning("abandoned %d unfinished background task(s) on close", len(tasks))
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---------------------------------------------------------------- hooks and background work
    async def handle_hook(self, payload: Any) -> str:
        """Act on one hook body; returns "pong", "ignored", "duplicate", "noted" or "scheduled".

        Never waits for the invoice. Synchronous up to the spawn, so two copies of a hook in flight
        at once cannot both pass the duplicate check.
        """
        if not isinstance(payload, Mapping):
            raise HookError(f"hook body must be a JSON object; got {type(payload).__name__}")
        if payload.get("hookConfig") == "ping":
            self.stats.pings += 1
            return "pong"
        order_id, state = payload.get("OrderId"), payload.get("State")
        if not isinstance(order_id, str) or not order_id:
            raise HookError(f"hook body: OrderId must be a non-empty string; got {order_id!r}")
        if not isinstance(state, str) or not state:
            raise HookError(f"hook body: State must be a non-empty string; got {state!r}")
        self.stats.hooks_received += 1
        if self.strategy.dedup_hooks:
            if (order_id, state) in self._seen:
                self.stats.hooks_duplicate += 1  # at-least-once delivery: acted on already
                return "duplicate"
            self._seen.add((order_id, state))
        if self.strategy.respect_cancel and state in CANCEL_STATES:
            # Hooks may come in any order: a later `handling` copy must not invoice this order,
            # and an invoice in progress stops at its next check.
            self._canceling.add(order_id)
            log.info("order %s: %s noted; no invoice from now on", order_id, state)
            return "noted"
        if state == READY_FOR_HANDLING and self.start_handling:
            self._spawn(self.start_handling_order(order_id), name=f"start-handling {order_id}")
            return "scheduled"
        if state != HANDLING:
            self.stats.hooks_ignored += 1
            log.info("order %s: state %s (from %s) ignored", order_id, state, payload.get("LastState"))
            return "ignored"
        self._spawn(self.invoice_order(order_id), name=f"invoice {order_id}")
        return "scheduled"

    def _spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)  # keep a reference: the loop only holds weak ones
        task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) for background work, including work it spawns; True if all done."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._tasks:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=remaining)
        return True

    @contextlib.asynccontextmanager
    async def _order_lock(self, order_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(order_id, (asyncio.Lock(), 0))
        self._locks[order_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[order_id]
            if users <= 1:
                del self._locks[order_id]  # bounded memory on a long-running connector
            else:
                self._locks[order_id] = (lock, users - 1)

    def _error(self, order_id: str, detail: str) -> None:
        self.stats.errors += 1
        self.stats.last_errors.append(f"{order_id}: {detail}")
        log.error("order %s: %s", order_id, detail)

    # ---------------------------------------------------------------- start-handling
    async def start_handling_order(self, order_id: str) -> bool:
        """`ready-for-handling` -> `handling`: POST start-handling, retried on 500/503/429 until 204
        (SPEC: start-handling "can also respond with status 500"; the store retries until 204), within
        the retry budget. A 409 means the order left ready-for-handling: someone (or an earlier attempt
        whose response was lost) started it. The `handling` hook then drives the invoice."""
        path = f"/api/oms/pvt/orders/{quote(order_id, safe='')}/start-handling"
        try:
            await self._call("POST", path)
        except ApiError as exc:
            if not (isinstance(exc, ApiRefused) and exc.status == 409):
                self._seen.discard((order_id, READY_FOR_HANDLING))  # a later copy of the hook may try again
                self._error(order_id, f"start-handling failed: {exc}")
                return False
            log.info("order %s: already started (%s)", order_id, exc)
        self.stats.handling_started += 1
        return True

    # ---------------------------------------------------------------- invoicing
    async def invoice_order(self, order_id: str) -> InvoiceResult:
        """Invoice the order's remaining value (after the mode's checks). Never raises ApiError."""
        async with self._order_lock(order_id):
            try:
                result = await self._invoice_order(order_id)
            except ApiError as exc:
                result = InvoiceResult(order_id, "error", detail=str(exc))
            except Exception as exc:  # a background task must not die silently
                log.exception("order %s: unexpected failure", order_id)
                result = InvoiceResult(order_id, "error", detail=f"{type(exc).__name__}: {exc}")
        if result.outcome in ("error", "guard_timeout"):
            self._seen.discard((order_id, HANDLING))  # a later copy of the hook may try again
        if result.outcome == "error":
            self._error(order_id, f"not invoiced: {result.detail}")
        else:
            log.info("order %s: %s %s %s", order_id, result.outcome, result.value, result.detail)
        return result

    def _cancel_noted(self, order_id: str) -> bool:
        return self.strategy.respect_cancel and order_id in self._canceling

    def _canceled(self, order_id: str, why: str) -> InvoiceResult:
        self.stats.invoices_canceled += 1
        return InvoiceResult(order_id, "canceled", detail=f"{why}; not invoiced")

    async def _invoice_order(self, order_id: str) -> InvoiceResult:
        if self.strategy.wait_changes:
            finished = await self._wait_changes_terminal(order_id)
            if self._cancel_noted(order_id):
                return self._canceled(order_id, "a cancel hook arrived while waiting for Changes")
            if not finished:
                self.stats.guard_timeouts += 1
                return InvoiceResult(order_id, "guard_timeout",
                                     detail=f"Changes still unfinished after {self.guard_timeout_s:g} s; not invoiced")
        if self._cancel_noted(order_id):
            return self._canceled(order_id, "a cancel hook arrived first")
        # naive: this read is the value at the hook; guarded/robust: the re-read after every Change ended.
        order = await self._get_order(order_id)
        if self.strategy.respect_cancel and order.get("status") in CANCEL_STATES:
            return self._canceled(order_id, f"the order is {order.get('status')!r}")
        number = invoice_number(order_id)
        if any(pkg.get("invoiceNumber") == number for pkg in _packages(order)):
            self.stats.invoices_skipped += 1  # a repeated `handling` notification: we already invoiced it
            return InvoiceResult(order_id, "skipped", detail=f"{number} already on the order")
        value = remaining_value(order)
        if value <= 0:
            self.stats.invoices_skipped += 1
            return InvoiceResult(order_id, "skipped", value=value, detail="nothing left to invoice")
        if self._cancel_noted(order_id):  # the last moment a cancel can stop the invoice (KI-1400005)
            return self._canceled(order_id, "a cancel hook arrived during the re-read")
        self.stats.invoices_sent += 1
        result = await self._send_invoice(order_id, invoice_body(order, number, value))
        if result.outcome == "accepted" and self.strategy.verify_invoice:
            return await self._verify_settled(result)
        return result

    async def _send_invoice(self, order_id: str, body: dict[str, Any]) -> InvoiceResult:
        number, value = body["invoiceNumber"], body["invoiceValue"]
        try:
            # Retried like every call: the invoiceNumber is the idempotency key. The PII route refuses a
            # reused invoiceNumber (PII-SPEC), so a retry after a lost response gets 409; the order then
            # shows whether the first attempt landed.
            receipt = await self._call("POST", f"/api/orders/pvt/document/{quote(order_id, safe='')}/invoices",
                                       json_body=body)
        except ApiRefused as exc:
            if exc.status == 409 and await self._has_invoice(order_id, number):
                self.stats.invoices_accepted += 1
                return InvoiceResult(order_id, "accepted", value=value, detail="an earlier attempt landed")
            self.stats.invoices_refused += 1
            self.stats.last_refusals.append(f"{order_id}: {exc}")
            return InvoiceResult(order_id, "refused", value=value, detail=str(exc))
        except ApiUnavailable:
            # Every attempt failed or lost its response: only the order can say whether one landed.
            if self.strategy.verify_invoice and await self._has_invoice(order_id, number):
                self.stats.invoices_accepted += 1
                return InvoiceResult(order_id, "accepted", value=value, detail="a lost attempt landed")
            raise
        self.stats.invoices_accepted += 1
        receipt_id = receipt.get("receipt") if isinstance(receipt, Mapping) else None
        self.stats.last_invoices.append({"orderId": order_id, "invoiceNumber": number, "type": body["type"],
                                         "invoiceValue": value, "receipt": receipt_id})
        return InvoiceResult(order_id, "accepted", value=value, receipt=receipt_id)

    async def _get_order(self, order_id: str) -> Mapping[str, Any]:
        order = await self._call("GET", f"/api/oms/pvt/orders/{quote(order_id, safe='')}")
        if not isinstance(order, Mapping):
            raise ApiError(f"GET order {order_id}: expected a JSON object, got {type(order).__name__}")
        return order

    async def _has_invoice(self, order_id: str, number: str) -> bool:
        order = await self._get_order(order_id)
        return any(pkg.get("invoiceNumber") == number for pkg in _packages(order))

    async def _wait_changes_terminal(self, order_id: str) -> bool:
        """Poll the Change history until every request is `finished` (the ticket's workaround) or
        `canceled` (VTEX's canceled Change keeps `finished: false` for ever, HC-ADAPT: waiting for
        `finished` alone would give up on the order). Robust mode also stops at a cancel hook.

        False when the bound runs out. It cannot see a Change not sent yet: that
        residual window is what the harness measures.
        """
        path = f"/api/order-system/orders/{quote(order_id, safe='')}/changes"
        try:
            async with asyncio.timeout(self.guard_timeout_s):  # bounds retries and slow calls too
                while not self._cancel_noted(order_id):
                    history = await self._call("GET", path)
                    requests = history.get("requests") if isinstance(history, Mapping) else None
                    if not isinstance(requests, list):
                        raise ApiError(f"GET {path}: expected {{'requests': [...]}}, got {history!r:.200}")
                    # A request without a boolean `finished` (and not canceled) counts as in progress:
                    # invoicing early is the bug.
                    if all(isinstance(r, Mapping) and (r.get("finished") is True or r.get("status") == "canceled")
                           for r in requests):
                        return True
                    await asyncio.sleep(self.poll_interval_s)
                return True
        except TimeoutError:
            return False

    async def _verify_settled(self, result: InvoiceResult) -> InvoiceResult:
        """KI-1348894's invoice-first window: a Change accepted while our invoice settles (status
        `invoice`) still lowers the order value. Once the order has left `invoice` no new Change is
        accepted, so: wait for that, then for every Change to end, re-read and compare. An excess is
        reported (stats, /stats `last_errors`) and, with --correct-over-invoice, returned with an
        `Input` invoice (Output minus Input invoices is what counts, KI-930491). A bounded wait."""
        order_id = result.order_id
        try:
            async with asyncio.timeout(self.guard_timeout_s):
                while (await self._get_order(order_id)).get("status") == SETTLING:
                    await asyncio.sleep(self.poll_interval_s)
        except TimeoutError:
            self._error(order_id, f"invoice still settling after {self.guard_timeout_s:g} s; not verified")
            return result
        if not await self._wait_changes_terminal(order_id):
            self._error(order_id, f"a Change still unfinished {self.guard_timeout_s:g} s after the invoice; "
                                  "not verified")
            return result
        order = await self._get_order(order_id)
        excess = -remaining_value(order)
        if excess <= 0:
            return result
        self.stats.over_invoices += 1
        stuck = f", order stuck in {STUCK}" if order.get("status") == STUCK else ""
        problem = (f"over-invoiced by {excess} cents: a Change was accepted while the invoice settled "
                   f"(KI-1348894 b{stuck})")
        self.stats.last_errors.append(f"{order_id}: {problem}")  # the platform's fault, not an error of ours
        log.warning("order %s: %s", order_id, problem)
        if not self.correct_over_invoice:
            return InvoiceResult(order_id, "accepted", value=result.value, receipt=result.receipt, detail=problem)
        body = {**invoice_body(order, f"{invoice_number(order_id)}-R", excess), "type": "Input"}
        correction = await self._send_invoice(order_id, body)
        if correction.outcome == "accepted":
            self.stats.corrections += 1
        return InvoiceResult(order_id, "accepted", value=result.value, receipt=result.receipt,
                             detail=f"{problem}; return invoice {correction.outcome}")

    # ---------------------------------------------------------------- HTTP with retries
    def _backoff_s(self, attempt: int) -> float:
        # Exponential with jitter, so many orders failing together do not retry in lockstep.
        return self.backoff_base_s * (2 ** (attempt - 1)) * (0.5 + random.random() / 2)

    async def _call(self, method: str, path: str, *, json_body: Any = None) -> Any:
        """One API call, retried on 429/5xx/connection errors/timeouts within the retry budget
        (and, outside robust mode, at most `max_retries` times)."""
        await self.start()
        assert self._session is not None
        url = self.api_url + path
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_budget_s
        max_attempts = None if self.strategy.retry_until_budget else self.max_retries + 1
        attempt = 0
        while True:  # bounded: each turn sleeps > 0 and the budget's deadline ends it
            attempt += 1
            retry_after: float | None = None
            try:
                # A bodyless POST (start-handling) must not claim a body type: aiohttp would say octet-stream.
                async with self._session.request(method, url, json=json_body, timeout=self._timeout,
                                                 skip_auto_headers=_NO_BODY_TYPE if json_body is None else ()) as resp:
                    text = await resp.text()
                    if 200 <= resp.status < 300:
                        try:
                            return json.loads(text) if text.strip() else {}
                        except ValueError as exc:
                            raise ApiError(f"{method} {path}: HTTP {resp.status} body is not JSON: {text[:200]!r}") from exc
                    problem = f"{method} {path}: HTTP {resp.status}: {_error_message(text)}"
                    if resp.status != 429 and resp.status < 500:
                        raise ApiRefused(resp.status, problem)
                    retry_after = _retry_after_s(resp.headers.get("Retry-After"))
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError) as exc:
                problem = f"{method} {path}: {type(exc).__name__}: {exc or 'timed out'}"
            left = deadline - loop.time()
            if max_attempts is not None and attempt >= max_attempts:
                raise ApiUnavailable(f"{problem} (gave up after {attempt} attempt(s))")
            if retry_after is not None and retry_after > left:
                # Retrying before the server's Retry-After only earns another 429.
                raise ApiUnavailable(f"{problem} (Retry-After {retry_after:g} s exceeds the {max(left, 0):.3g} s "
                                     f"left of the {self.retry_budget_s:g} s retry budget; gave up after "
                                     f"{attempt} attempt(s))")
            if left <= 0:
                raise ApiUnavailable(f"{problem} (retry budget of {self.retry_budget_s:g} s spent after "
                                     f"{attempt} attempt(s))")
            delay = retry_after if retry_after is not None else min(self._backoff_s(attempt), left)
            self.stats.retries += 1
            log.warning("%s; retry %d in %.3f s", problem, attempt, delay)
            await asyncio.sleep(delay)


# --------------------------------------------------------------------------- web app
CONNECTOR_KEY = web.AppKey("connector", ErpConnector)


def build_app(connector: ErpConnector) -> web.Application:
    """POST /hook, GET /health, GET /stats. App cleanup closes the connector."""
    app = web.Application()
    app[CONNECTOR_KEY] = connector

    async def hook(request: web.Request) -> web.Response:
        try:
            payload = json.loads(await request.text())
        except ValueError as exc:
            return web.json_response({"error": f"hook body is not JSON: {exc}"}, status=400)
        try:
            status = await connector.handle_hook(payload)
        except HookError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"status": status})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "mode": connector.mode})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"mode": connector.mode, "pending": connector.pending, **connector.stats.as_dict()})

    async def close_connector(app: web.Application) -> None:
        await app[CONNECTOR_KEY].close()

    app.router.add_post("/hook", hook)
    app.router.add_get("/health", health)
    app.router.add_get("/stats", stats)
    app.on_cleanup.append(close_connector)
    return app


# --------------------------------------------------------------------------- process
def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _port(text: str) -> int:
    value = _non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535, got {text}")
    return value


def _api_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"expected an http(s) URL such as http://127.0.0.1:8000, got {text!r}")
    return text.rstrip("/")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.connectors.erp_connector",
        description="Reference ERP connector: invoices VTEX orders on the `handling` hook. "
        "Credentials come from VTEX_APP_KEY / VTEX_APP_TOKEN.",
    )
    p.add_argument("--mode", required=True, choices=MODES,
                   help="naive: invoice the value read at the hook; guarded: wait for Changes to finish first; "
                   "robust: guarded plus dedup, cancel checks, start-handling, budgeted retries, settle check")
    p.add_argument("--api-url", required=True, type=_api_url, help="Orders API base URL")
    p.add_argument("--host", default="127.0.0.1", help="hook listener address (default %(default)s)")
    p.add_argument("--port", type=_port, default=0, help="hook listener port; 0 picks a free one (default)")
    p.add_argument("--poll-interval-ms", type=_positive_float, default=50.0,
                   help="guarded/robust: Change history polling interval (default %(default)s)")
    p.add_argument("--timeout-ms", type=_positive_float, default=5000.0,
                   help="guarded/robust: give up (no invoice) if Changes are unfinished after this "
                   "(default %(default)s)")
    p.add_argument("--max-retries", type=_non_negative_int, default=3,
                   help="naive/guarded: retries per API call on 429/5xx/connection errors/timeouts "
                   "(default %(default)s); robust retries until --retry-budget-s is spent")
    p.add_argument("--retry-budget-s", type=_positive_float, default=60.0,
                   help="time one API call may spend retrying, Retry-After waits included; a Retry-After "
                   "beyond what is left gives up (default %(default)s: VTEX advises a 1-minute back-off)")
    p.add_argument("--start-handling", action=argparse.BooleanOptionalAction, default=None,
                   help="on a ready-for-handling hook, POST start-handling, retried until 204 "
                   "(default: on in robust mode, off otherwise)")
    p.add_argument("--correct-over-invoice", action="store_true",
                   help="robust: send a return (Input) invoice for the excess when a Change accepted while "
                   "the invoice settled left the order below it (default: report only)")
    p.add_argument("--request-timeout-s", type=_positive_float, default=5.0,
                   help="per-request total timeout (default %(default)s)")
    p.add_argument("--backoff-ms", type=_positive_float, default=100.0,
                   help="first retry backoff when there is no Retry-After; doubles each retry (default %(default)s)")
    p.add_argument("--shutdown-grace-s", type=_positive_float, default=5.0,
                   help="on SIGTERM, wait this long for in-flight invoices before abandoning them")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.add_argument("--source", choices=("hook", "feed"), default="hook",
                   help="hook: act on POST /hook (default); feed: poll Orders Feed v3, invoice `handling` "
                        "orders, commit each item once handled (harness/connectors/feed.py)")
    p.add_argument("--feed-poll-ms", type=_positive_float, default=200.0,
                   help="--source feed: wait between reads of an empty feed (default %(default)s); the "
                        "reaction time it adds widens the residual race window")
    return p


def _start_feed(args: argparse.Namespace, connector: ErpConnector, stop: asyncio.Event) -> asyncio.Task[None]:
    """--source feed: the feed reader invokes the same invoicing as the hook, and commits after it."""
    headers = {name: value for name, value in (("X-VTEX-API-AppKey", os.environ.get("VTEX_APP_KEY")),
                                               ("X-VTEX-API-AppToken", os.environ.get("VTEX_APP_TOKEN"))) if value}
    reader = FeedReader(args.api_url, lambda order_id, _state: connector.invoice_order(order_id), headers=headers,
                        poll_interval_s=args.feed_poll_ms / 1000, request_timeout_s=args.request_timeout_s)
    return asyncio.create_task(reader.run(stop, args.shutdown_grace_s), name="feed reader")


async def _serve(args: argparse.Namespace) -> int:
    connector = ErpConnector(
        args.api_url,
        args.mode,
        app_key=os.environ.get("VTEX_APP_KEY") or None,
        app_token=os.environ.get("VTEX_APP_TOKEN") or None,
        poll_interval_s=args.poll_interval_ms / 1000,
        guard_timeout_s=args.timeout_ms / 1000,
        max_retries=args.max_retries,
        request_timeout_s=args.request_timeout_s,
        backoff_base_s=args.backoff_ms / 1000,
        retry_budget_s=args.retry_budget_s,
        start_handling=args.start_handling,
        correct_over_invoice=args.correct_over_invoice,
    )
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    try:
        # Bind ourselves so `--port 0` can report the port the OS picked.
        sock = socket.create_server((args.host, args.port), family=family, reuse_port=False)
    except OSError as exc:
        print(f"erp_connector: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    runner = web.AppRunner(build_app(connector), handle_signals=False, shutdown_timeout=2.0,
                           access_log=log if args.log_level == "DEBUG" else None)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(f"listening on http://{shown}:{port}", flush=True)
    log.info("mode=%s api=%s", args.mode, args.api_url)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C still raises KeyboardInterrupt
            loop.add_signal_handler(sig, stop.set)
    feed = _start_feed(args, connector, stop) if args.source == "feed" else None
    try:
        await stop.wait()
        if feed is not None:
            await feed  # stops polling, drains the items being handled
    finally:
        log.info("stopping: no new hooks, draining in-flight invoices (<= %g s)", args.shutdown_grace_s)
        await site.stop()
        await connector.drain(args.shutdown_grace_s)
        await runner.cleanup()  # also closes the connector (cancels what is left)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # bad flags: argparse prints the error and exits 2
    logging.basicConfig(stream=sys.stderr, level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:  # only where signal handlers are unsupported
        return 0


if __name__ == "__main__":
    sys.exit(main())
