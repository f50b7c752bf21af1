"""Timers on the running event loop, in the mock's own clock.

A timer calls `fire(now_ns)` once the clock has reached its due time: the loop
may fire up to its clock resolution early, so an early timer re-arms itself.
With the host clock (`time.monotonic_ns`, the loop's own) timers are armed at an
absolute time; with another clock (a simulated run's virtual one) only the
remaining delay is comparable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class LoopTimers:
    """The armed timers of one mock (`len()`: how many are pending)."""

    def __init__(self, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock = clock
        self._handles: set[asyncio.TimerHandle] = set()

    def __len__(self) -> int:
        return len(self._handles)

    def arm(self, due_ns: int, fire: Callable[[int], None]) -> None:
        # One scope per timer: `_fire` must discard its own handle (a closure shared across
        # loop iterations discarded the last handle twice and leaked the other).
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def _fire() -> None:
            nonlocal handle
            self._handles.discard(handle)  # type: ignore[arg-type]
            handle = None  # break handle -> _fire -> cell -> handle: a fired timer leaves no garbage cycle
            now = self._clock()
            if now < due_ns:
                self.arm(due_ns, fire)
                return
            fire(now)

        if self._clock is time.monotonic_ns:  # the loop's clock (asyncio, uvloop) is this one
            handle = loop.call_at(due_ns / 1e9, _fire)
        else:
            handle = loop.call_later(max(0, due_ns - self._clock()) / 1e9, _fire)
        self._handles.add(handle)

    def cancel_all(self) -> None:
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
