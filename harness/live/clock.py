"""Clocks the runner schedules on. The real one sleeps, then spins the last stretch.

A virtual clock (simulated mode) only has to provide the same two methods.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int: ...

    async def sleep_until(self, deadline_ns: int) -> None:
        """Return as close after `deadline_ns` as the clock can."""
        ...


class MonotonicClock:
    """`time.monotonic_ns()`: the same clock the mock stamps its journal with on this host.

    The event loop's timers wake up to ~1 ms late (epoll has millisecond
    resolution), so it sleeps until `spin_ns` before the deadline and then
    yields in a tight loop; yielding (not a blocking spin) keeps hundreds of
    concurrent trials from starving each other.
    """

    def __init__(self, spin_ns: int = 1_500_000) -> None:
        self.spin_ns = spin_ns

    def now_ns(self) -> int:
        return time.monotonic_ns()

    async def sleep_until(self, deadline_ns: int) -> None:
        remaining = deadline_ns - time.monotonic_ns()
        if remaining > self.spin_ns:
            await asyncio.sleep((remaining - self.spin_ns) / 1e9)
        while time.monotonic_ns() < deadline_ns:
            await asyncio.sleep(0)
