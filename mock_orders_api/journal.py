"""Request journal: every request with server arrival, acted and completion times.

`arrival_ns` is when the ASGI app is called (headers parsed); `acted_ns` is when
the handler acted on the request (body read, state mutated) and is the time
that counts for the race model; `done_ns` is when the last response byte was
handed to the server. All are `time.monotonic_ns()`, comparable with a client
on the same host (or the clock the app was given: a simulated run's virtual one).

The journal is bounded both in entries and in (estimated) bytes: the oldest entries are
dropped first and counted in `dropped`; a path or query longer than MAX_FIELD_CHARS is
kept truncated, so one entry's size is bounded too.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mock_orders_api.dates import iso_now


MAX_FIELD_CHARS = 1024
_ENTRY_OVERHEAD = 1200  # bytes of a journal dict with its ints and short strings (measured with tracemalloc)


class Journal:
    """A bounded in-memory journal; `dropped` counts entries evicted by either bound."""

    def __init__(self, maxlen: int, max_bytes: int | None = None) -> None:
        self._entries: deque[tuple[dict[str, Any], int]] = deque()
        self._maxlen = maxlen
        self.max_bytes = max_bytes
        self._seq = itertools.count(1)
        self.dropped = 0
        self.bytes = 0  # estimated size of the entries held

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, entry: dict[str, Any]) -> None:
        entry["seq"] = next(self._seq)
        size = _ENTRY_OVERHEAD + sum(len(v) for v in entry.values() if isinstance(v, str))
        self._entries.append((entry, size))
        self.bytes += size
        while self._entries and (len(self._entries) > self._maxlen
                                 or (self.max_bytes is not None and self.bytes > self.max_bytes)):
            _, old = self._entries.popleft()
            self.bytes -= old
            self.dropped += 1

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
        self.dropped = 0

    def query(self, since: int = 0, limit: int = 1000, order_id: str | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for e, _ in self._entries:
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
        "path": _clip(scope["path"]),
        "query": _clip(scope.get("query_string", b"").decode("latin-1")),
        "status": status,
        "arrivalNs": arrival_ns,
        "actedNs": state.get("acted_ns"),
        "doneNs": done_ns,
        "date": iso_now(),
        "orderId": _clip(state["order_id"]) if state.get("order_id") is not None else None,
        "outcome": state.get("outcome"),
    }


def _clip(text: str) -> str:
    return text if len(text) <= MAX_FIELD_CHARS else text[:MAX_FIELD_CHARS] + "...(truncated)"
