"""GC policy of a mock that owns its process (`mock_orders_api.server.serve`).

Measured with the ticket scenario at 200 trials in flight: the mock's state grows during
a run (orders, Changes, requests waiting for their last byte) and the default cyclic GC
keeps rescanning it, full collections taking 50-75 ms of CPU and young ones up to 12 ms;
a timed request arriving meanwhile is acted on that much late, which is the offset error
the harness reports (server-side p99 45-64 ms before, 1-2 ms after). The core API makes no
cyclic garbage (reference counting frees everything; timers break their own cycle), so
automatic collection is off while requests flow and a full collection runs instead when
the server has been idle (no request in flight, no Change or settle timer armed: a timer
due during a 10 ms collection fires 10 ms late) at two ticks in a row, or when the peak RSS has
doubled since the last one (what cyclic garbage there is, e.g. from hook deliveries over
httpx, stays bounded). Not for a mock inside another process (tests' `ThreadedMock`).
"""

from __future__ import annotations

import gc
from typing import Callable


class GcPacer:
    _MIN_ALLOCATIONS = 1000  # tracked objects allocated since the last collection worth collecting for

    def __init__(self) -> None:
        self.busy: Callable[[], bool] = lambda: True  # the server wires its own (never idle until then)
        self.collections = 0
        self._rss_at_collect = 0
        self._idle_ticks = 0

    def install(self) -> None:
        gc.collect()
        gc.freeze()  # imported code and the app: never rescanned
        gc.disable()
        self._rss_at_collect = peak_rss()

    def uninstall(self) -> None:
        gc.unfreeze()
        gc.enable()

    def _collect(self) -> None:
        gc.collect()
        self._rss_at_collect = peak_rss()
        self._idle_ticks = 0
        self.collections += 1

    async def tick(self) -> None:
        """uvicorn's `callback_notify`, about once a second. Keep it O(1) (`gc.get_freeze_count()`
        walks the frozen list: measured as a 10 ms stall every second)."""
        self._idle_ticks = 0 if self.busy() else self._idle_ticks + 1
        if self._idle_ticks >= 2 and gc.get_count()[0] > self._MIN_ALLOCATIONS:
            self._collect()
        elif peak_rss() > 2 * self._rss_at_collect:
            self._collect()


def peak_rss() -> int:
    """Peak resident set size of this process (KiB on Linux, bytes on macOS; 0 where unknown)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
