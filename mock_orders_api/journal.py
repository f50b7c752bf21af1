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
from collections import deque
from typing import Any

from starlette.types import Scope

from mock_orders_api.dates import iso_now


MAX_FIELD_CHARS = 1024
_ENTRY_OVERHEAD = 1200  # bytes of a journal dict with its ints and short strings (measured with tracemalloc)
_REQUEST_OVERHEAD = 560  # bytes of a request record tuple with its ints and date (measured with tracemalloc)
_REQUEST_FIELDS = ("method", "path", "query", "status", "arrivalNs", "actedNs", "doneNs", "date", "orderId",
                   "outcome")
# method, path, query, status, arrival_ns, acted_ns, done_ns, date, order_id, outcome (see `request_entry`)
RequestRecord = tuple[str, str, str, int, int, "int | None", int, str, "str | None", "str | None"]
Entry = dict[str, Any] | RequestRecord


class Journal:
    """A bounded in-memory journal; `dropped` counts entries evicted by either bound.

    Entries are dicts (hook deliveries), or request records kept as tuples and turned into
    dicts only when queried (a request costs a tuple, not a dict)."""

    def __init__(self, maxlen: int, max_bytes: int | None = None) -> None:
        self._entries: deque[tuple[int, Entry, int]] = deque()
        self._maxlen = maxlen
        self.max_bytes = max_bytes
        self._seq = itertools.count(1)
        self.dropped = 0
        self.bytes = 0  # estimated size of the entries held

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, entry: Entry) -> None:
        seq = next(self._seq)
        if isinstance(entry, dict):
            entry["seq"] = seq
            size = _ENTRY_OVERHEAD + sum(len(v) for v in entry.values() if isinstance(v, str))
        else:
            size = _REQUEST_OVERHEAD + len(entry[1]) + len(entry[2]) + len(entry[8] or "") + len(entry[9] or "")
        entries = self._entries
        entries.append((seq, entry, size))
        self.bytes += size
        if len(entries) > self._maxlen or (self.max_bytes is not None and self.bytes > self.max_bytes):
            self._evict()

    def _evict(self) -> None:
        while self._entries and (len(self._entries) > self._maxlen
                                 or (self.max_bytes is not None and self.bytes > self.max_bytes)):
            _, _, old = self._entries.popleft()
            self.bytes -= old
            self.dropped += 1

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
        self.dropped = 0

    def query(self, since: int = 0, limit: int = 1000, order_id: str | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for seq, e, _ in self._entries:
            if seq <= since:
                continue
            if isinstance(e, dict):
                if order_id is not None and e.get("orderId") != order_id:
                    continue
                out.append(e)
            else:
                if order_id is not None and e[8] != order_id:
                    continue
                out.append({**dict(zip(_REQUEST_FIELDS, e)), "seq": seq})
            if len(out) >= limit:
                break
        return out


def request_entry(scope: Scope, status: int, arrival_ns: int, done_ns: int) -> RequestRecord:
    """The journal record of one request: its ASGI scope (method, path, query string and the
    `state` the handler stamped: acted_ns, order_id, outcome), its status (0: no response
    started) and its arrival and completion times. The simulated mode's in-process
    dispatch journals through this too."""
    state = scope.get("state", {})
    order_id = state.get("order_id")
    path = scope["path"]
    query = scope.get("query_string", b"")
    return (scope["method"], path if len(path) <= MAX_FIELD_CHARS else _clip(path),
            _clip(query.decode("latin-1")) if query else "", status, arrival_ns, state.get("acted_ns"), done_ns,
            iso_now(), None if order_id is None else _clip(order_id), state.get("outcome"))


def _clip(text: str) -> str:
    return text if len(text) <= MAX_FIELD_CHARS else text[:MAX_FIELD_CHARS] + "...(truncated)"
