"""Request journal: every request with server arrival, acted and completion times.

`arrival_ns` is when the ASGI app is called (headers parsed); `acted_ns` is when
the handler acted on the request (body read, state mutated) and is the time
that counts for the race model; `done_ns` is when the last response byte was
handed to the server. All are `time.monotonic_ns()`, comparable with a client
on the same host (or the clock the app was given: a simulated run's virtual one).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mock_orders_api.dates import iso_now


class Journal:
    """A bounded in-memory journal; `dropped` counts entries evicted by the bound."""

    def __init__(self, maxlen: int) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._seq = itertools.count(1)
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, entry: dict[str, Any]) -> None:
        if len(self._entries) == self._entries.maxlen:
            self.dropped += 1
        entry["seq"] = next(self._seq)
        self._entries.append(entry)

    def clear(self) -> None:
        self._entries.clear()
        self.dropped = 0

    def query(self, since: int = 0, limit: int = 1000, order_id: str | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for e in self._entries:
            if e["seq"] <= since or (order_id is not None and e.get("orderId") != order_id):
                continue
            out.append(e)
            if len(out) >= limit:
                break
        return out


class JournalMiddleware:
    """Pure ASGI middleware (no per-request task switch, unlike BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp, journal: Journal, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.app = app
        self.journal = journal
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrival = self.clock()
        state = scope.setdefault("state", {})
        state["arrival_ns"] = arrival
        status = 0

        async def _send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            self.journal.add(request_entry(scope, status, arrival, self.clock()))


def request_entry(scope: Scope, status: int, arrival_ns: int, done_ns: int) -> dict[str, Any]:
    """The journal entry of one request: its ASGI scope (method, path, query string and the
    `state` the handler stamped: acted_ns, order_id, outcome), its status (0: no response
    started) and its arrival and completion times. The simulated mode's in-process
    dispatch journals through this too."""
    state = scope.get("state", {})
    return {
        "method": scope["method"],
        "path": scope["path"],
        "query": scope.get("query_string", b"").decode("latin-1"),
        "status": status,
        "arrivalNs": arrival_ns,
        "actedNs": state.get("acted_ns"),
        "doneNs": done_ns,
        "date": iso_now(),
        "orderId": state.get("order_id"),
        "outcome": state.get("outcome"),
    }
