"""A VTEX Orders Feed v3 reader: the polling loop of a feed-driven connector (aiohttp + stdlib only).

What a feed reader must do, and what this one does:

* poll `GET /api/orders/feed?maxlot=N` (N <= 10); an empty answer waits `poll_interval_s`,
  a full one reads again at once;
* hand each item of a wanted state (`handling` by default) to the handler and commit its
  `handle` (`POST /api/orders/feed {"handles": [...]}`) only once the handler returned: an
  item whose handler failed is not committed, so it reappears after the feed's visibility
  timeout (at-least-once). Items of other states are committed unread;
* expect duplicates and any order (the feed guarantees neither uniqueness nor order): the
  handler must be idempotent (the reference connector skips an order it already invoiced);
* back off on 429, 5xx and connection errors: `Retry-After` when given (VTEX advises a
  1-minute back-off after a 429), else exponential with jitter, capped at `max_backoff_s`;
  404 means no feed is configured yet and is polled again slowly;
* stay bounded: at most `max_in_flight` items are being handled at once (reading pauses
  while all slots are busy), every request has a timeout, `run` ends when `stop` is set.

Nothing here imports the harness: `erp_connector.py --source feed` uses it, and a team can
copy it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

log = logging.getLogger("erp_connector.feed")

MAXLOT = 10  # the most Feed v3 hands out per read
FEED_PATH = "/api/orders/feed"
Handler = Callable[[str, str], Awaitable[Any]]  # (orderId, state) -> anything; raising = do not commit


@dataclass
class FeedStats:
    reads: int = 0  # GET requests answered 200
    items: int = 0  # items received (duplicates and redeliveries included)
    handled: int = 0  # items handed to the handler
    handler_errors: int = 0  # handler raised: item left uncommitted, it comes back
    committed: int = 0
    commit_errors: int = 0
    backoffs: int = 0  # waits after 429/5xx/connection errors

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class FeedReader:
    """Reads, dispatches and commits Feed v3 items until `run`'s stop event is set."""

    def __init__(self, api_url: str, handler: Handler, *, headers: Mapping[str, str] | None = None,
                 states: tuple[str, ...] = ("handling",), maxlot: int = MAXLOT, poll_interval_s: float = 0.05,
                 request_timeout_s: float = 5.0, backoff_base_s: float = 0.1, max_backoff_s: float = 60.0,
                 max_in_flight: int = 100) -> None:
        if not 1 <= maxlot <= MAXLOT:
            raise ValueError(f"maxlot must be 1..{MAXLOT}; got {maxlot}")
        for name, value in (("poll_interval_s", poll_interval_s), ("request_timeout_s", request_timeout_s),
                            ("backoff_base_s", backoff_base_s), ("max_backoff_s", max_backoff_s)):
            if value <= 0:
                raise ValueError(f"{name} must be > 0; got {value}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1; got {max_in_flight}")
        self.api_url = api_url.rstrip("/")
        self.handler = handler
        self.states = states
        self.maxlot = maxlot
        self.poll_interval_s = poll_interval_s
        self.backoff_base_s = backoff_base_s
        self.max_backoff_s = max_backoff_s
        self.stats = FeedStats()
        self._headers = {"Accept": "application/json", **(headers or {})}
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event, drain_s: float = 5.0) -> None:
        """Poll until `stop` is set, then wait (at most `drain_s`) for items being handled."""
        async with aiohttp.ClientSession(headers=self._headers, timeout=self._timeout) as session:
            failures = 0
            while not stop.is_set():
                wait_s, failed = await self._poll(session)
                failures = failures + 1 if failed else 0
                if failed:
                    self.stats.backoffs += 1
                    wait_s = wait_s if wait_s is not None else self._backoff_s(failures)
                if wait_s:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=wait_s)
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=drain_s)
            for task in list(self._tasks):  # past the grace: their items stay uncommitted and come back
                task.cancel()

    async def _poll(self, session: aiohttp.ClientSession) -> tuple[float | None, bool]:
        """One read: (seconds to wait before the next, whether it failed)."""
        url = f"{self.api_url}{FEED_PATH}?maxlot={self.maxlot}"
        try:
            async with session.get(url) as resp:
                text = await resp.text()
                if resp.status == 404:  # no feed configured (yet): not an error to hammer on
                    return max(self.poll_interval_s, 0.5), False
                if resp.status == 429 or resp.status >= 500:
                    log.warning("GET feed: HTTP %d; backing off", resp.status)
                    return _retry_after_s(resp.headers.get("Retry-After"), self.max_backoff_s), True
                if resp.status != 200:
                    log.error("GET feed: HTTP %d: %s", resp.status, text[:300])
                    return None, True
                items = json.loads(text)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            log.warning("GET feed failed: %s: %s", type(exc).__name__, exc)
            return None, True
        if not isinstance(items, list):
            log.error("GET feed: expected a JSON list, got %s", type(items).__name__)
            return None, True
        self.stats.reads += 1
        for item in items:
            await self._slots.acquire()  # bounded: reading waits while every slot is busy
            task = asyncio.create_task(self._process(session, item), name="feed item")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return (0.0 if len(items) >= self.maxlot else self.poll_interval_s), False

    async def _process(self, session: aiohttp.ClientSession, item: Any) -> None:
        try:
            self.stats.items += 1
            handle = item.get("handle") if isinstance(item, Mapping) else None
            order_id = item.get("orderId") if isinstance(item, Mapping) else None
            state = item.get("state") if isinstance(item, Mapping) else None
            if not isinstance(handle, str):
                log.error("feed item without a handle, cannot commit it: %r", item)
                return
            if isinstance(order_id, str) and order_id and state in self.states:
                self.stats.handled += 1
                try:
                    await self.handler(order_id, str(state))
                except Exception:  # the item comes back after the visibility timeout: at-least-once
                    self.stats.handler_errors += 1
                    log.exception("order %s: handling the %s event failed; left uncommitted", order_id, state)
                    return
            await self._commit(session, handle)
        finally:
            self._slots.release()

    async def _commit(self, session: aiohttp.ClientSession, handle: str, attempts: int = 3) -> None:
        for attempt in range(1, attempts + 1):
            try:
                async with session.post(f"{self.api_url}{FEED_PATH}", json={"handles": [handle]}) as resp:
                    await resp.read()
                    if resp.status == 200:
                        self.stats.committed += 1
                        return
                    retry = resp.status == 429 or resp.status >= 500
                    problem = f"HTTP {resp.status}"
                    wait = _retry_after_s(resp.headers.get("Retry-After"), self.max_backoff_s)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                retry, problem, wait = True, f"{type(exc).__name__}: {exc}", None
            if not retry or attempt == attempts:
                # Uncommitted: the item reappears after the visibility timeout; the handler is idempotent.
                self.stats.commit_errors += 1
                log.warning("commit failed (%s); the item will be delivered again", problem)
                return
            await asyncio.sleep(wait if wait is not None else self._backoff_s(attempt))

    def _backoff_s(self, failures: int) -> float:
        # Exponential with jitter, so readers failing together do not retry in lockstep.
        base = min(self.backoff_base_s * 2 ** (failures - 1), self.max_backoff_s)
        return base * (0.5 + random.random() / 2)


def _retry_after_s(header: str | None, cap_s: float) -> float | None:
    """`Retry-After` in delta-seconds, capped (an HTTP-date is rare on this API: use the back-off)."""
    try:
        return min(max(float(header), 0.0), cap_s) if header else None
    except ValueError:
        return None


__all__ = ["MAXLOT", "FeedReader", "FeedStats"]
