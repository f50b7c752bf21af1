"""Virtual time for simulated runs: an event loop whose clock jumps to the next timer.

`VirtualTimeLoop` is an asyncio loop without I/O. Its time is an integer
nanosecond counter that only moves when nothing is ready to run: then it jumps
to the earliest timer. A trial that waits 1,000 ms costs no wall time, and the
same program always sees the same times, so a simulated run is deterministic.

Times are integers (ns) on purpose: `call_later(d)` lands exactly `round(d * 1e9)`
ns after now whatever "now" is, so a trial replayed alone (starting at another
absolute time) sees the same relative times, to the nanosecond, as in the full
run. Timers due at the same instant run in the order they were scheduled.

Anything that needs the outside world to wake the loop (sockets, subprocesses)
is not supported: the simulation must run in-process (ASGI or direct dispatch).
Threads are tolerated (`call_soon_threadsafe` wakes the loop) but nothing in
the simulated path uses them. A loop with nothing ready, no timer and no
thread to wait for can never progress: it raises `SimulationDeadlock`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from asyncio import events
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# Cancelled timers are dropped from the heap once they are this share of it (as asyncio does).
_PURGE_MIN = 100
_PURGE_FRACTION = 0.5
# Loop iterations per `_run_once` call (it returns earlier when the loop is stopped).
_BATCHES = 256
# How long (wall s) a loop with nothing to do waits for a thread before declaring a deadlock.
_THREAD_WAIT_S = 30.0


class SimulationDeadlock(RuntimeError):
    """Nothing ready, no timer pending: the simulated program waits for something that never comes."""


class VirtualTimeLoop(asyncio.BaseEventLoop):
    """An I/O-less event loop on a virtual nanosecond clock (see the module docstring)."""

    def __init__(self, start_ns: int = 0) -> None:
        super().__init__()
        self._now_ns = int(start_ns)
        self._timers: list[tuple[int, int, asyncio.TimerHandle | _Wakeup]] = []
        self._timer_seq = itertools.count()
        self._cancelled_timers = 0
        self._wakeup = threading.Event()
        self._clock_resolution = 1e-9

    # --- the clock ---------------------------------------------------------------
    def time(self) -> float:
        return self._now_ns / 1e9

    def now_ns(self) -> int:
        return self._now_ns

    def call_later(self, delay: float, callback: Any, *args: Any, context: Any = None) -> asyncio.TimerHandle:
        if delay is None:
            raise TypeError("delay must not be None")
        return self.call_at_ns(self._now_ns + max(0, round(delay * 1e9)), callback, *args, context=context)

    def call_at(self, when: float, callback: Any, *args: Any, context: Any = None) -> asyncio.TimerHandle:
        if when is None:
            raise TypeError("when cannot be None")
        return self.call_at_ns(round(when * 1e9), callback, *args, context=context)

    def call_at_ns(self, when_ns: int, callback: Any, *args: Any, context: Any = None) -> asyncio.TimerHandle:
        """Schedule `callback` at virtual `when_ns` exactly (no float round trip)."""
        self._check_closed()
        timer = events.TimerHandle(when_ns / 1e9, callback, args, self, context)
        heapq.heappush(self._timers, (when_ns, next(self._timer_seq), timer))
        timer._scheduled = True
        return timer

    def _wake_at_ns(self, when_ns: int, future: asyncio.Future[None]) -> _Wakeup:
        """Resolve `future` at virtual `when_ns`: `call_at_ns(when_ns, future.set_result, None)` at a
        fraction of its cost (the path every simulated request takes twice), in the same timer order."""
        self._check_closed()
        wakeup = _Wakeup(self, future)
        heapq.heappush(self._timers, (when_ns, next(self._timer_seq), wakeup))
        return wakeup

    def call_soon(self, callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
        """`BaseEventLoop.call_soon` without its debug-mode bookkeeping when not in debug mode: every
        task wake-up (a future's done callback) comes through here, twice per simulated request."""
        if self._debug or self._closed:  # type: ignore[attr-defined]
            return super().call_soon(callback, *args, context=context)
        handle = events.Handle(callback, args, self, context)
        self._ready.append(handle)  # type: ignore[attr-defined]
        return handle

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        if handle._scheduled:
            self._cancelled_timers += 1

    # --- the loop ----------------------------------------------------------------
    def _run_once(self) -> None:
        """Run batches of callbacks, jumping the clock whenever nothing is ready.

        One call runs up to `_BATCHES` iterations of the standard loop (due timers to
        the ready queue, then every callback ready at the start of the iteration),
        returning early once `stop()` was called: the same order of callbacks as one
        iteration per call, without a Python call per iteration.
        """
        ready = self._ready  # type: ignore[attr-defined]
        popleft = ready.popleft
        heappop = heapq.heappop
        # Nearly every iteration runs a single callback (a timer, then the task it wakes), so
        # this loop's own overhead counts per callback: keep it to local lookups.
        for _ in range(_BATCHES):
            if self._cancelled_timers:  # only a counted timer can be a cancelled one in the heap
                self._drop_cancelled()
            timers = self._timers
            if not ready and not self._stopping:  # type: ignore[attr-defined]
                if timers:
                    if timers[0][0] > self._now_ns:
                        self._now_ns = timers[0][0]  # nothing to do until then: jump
                else:
                    self._wait_for_threads()
            now = self._now_ns
            while timers and timers[0][0] <= now:
                timer = heappop(timers)[2]
                timer._scheduled = False
                if timer._cancelled:
                    self._cancelled_timers -= 1
                else:
                    ready.append(timer)
            for _ in range(len(ready)):
                handle = popleft()
                if not handle._cancelled:
                    handle._run()
            if self._stopping:  # type: ignore[attr-defined]
                return

    def _drop_cancelled(self) -> None:
        """Purge the heap of cancelled timers once they are many, and pop those at its head."""
        timers = self._timers
        if self._cancelled_timers > _PURGE_MIN and self._cancelled_timers > _PURGE_FRACTION * len(timers):
            self._purge_cancelled()
            timers = self._timers
        while timers and timers[0][2]._cancelled:
            heapq.heappop(timers)[2]._scheduled = False
            self._cancelled_timers -= 1

    def _purge_cancelled(self) -> None:
        kept = []
        for entry in self._timers:
            if entry[2]._cancelled:
                entry[2]._scheduled = False
            else:
                kept.append(entry)
        heapq.heapify(kept)
        self._timers = kept
        self._cancelled_timers = 0

    def _wait_for_threads(self) -> None:
        """Nothing scheduled: only another thread (an executor, a signal) can add work."""
        if self._default_executor is None:  # type: ignore[attr-defined]
            # A signal handler (Ctrl-C) may have just called call_soon_threadsafe.
            if self._wakeup.is_set():
                self._wakeup.clear()
                return
            raise SimulationDeadlock(
                f"simulation stalled at t={self._now_ns / 1e9:.6f} s (virtual): no callback ready, no timer "
                "pending; something waits for I/O, which the simulated mode does not have")
        if not self._wakeup.wait(_THREAD_WAIT_S):
            raise SimulationDeadlock(f"simulation stalled at t={self._now_ns / 1e9:.6f} s (virtual): "
                                     f"nothing ready and no thread woke the loop within {_THREAD_WAIT_S:g} s")
        self._wakeup.clear()

    def _write_to_self(self) -> None:
        self._wakeup.set()

    def _process_events(self, event_list: Any) -> None:  # no selector
        pass

    def close(self) -> None:
        for _, _, timer in self._timers:
            timer.cancel()
        self._timers.clear()
        super().close()


class _Wakeup:
    """A `VirtualClock` sleep's timer: the loop handles it like a TimerHandle (`_cancelled`,
    `_scheduled`, `_run`, `cancel`), without a context copy or a callback indirection."""

    __slots__ = ("_loop", "_future", "_cancelled", "_scheduled")

    def __init__(self, loop: VirtualTimeLoop, future: asyncio.Future[None]) -> None:
        self._loop = loop
        self._future = future
        self._cancelled = False
        self._scheduled = True

    def _run(self) -> None:
        if not self._future.done():  # the sleeper may have been cancelled since the timer came due
            self._future.set_result(None)

    def cancel(self) -> None:
        if not self._cancelled:
            self._cancelled = True
            if self._scheduled:
                self._loop._cancelled_timers += 1


_Future = asyncio.Future


class VirtualClock:
    """`harness.live.clock.Clock` on a `VirtualTimeLoop`: `now_ns()` is the loop's virtual time and
    `sleep_until()` a plain timer at exactly the deadline (no spinning: nothing is late)."""

    def __init__(self, loop: VirtualTimeLoop | None = None) -> None:
        loop = loop or asyncio.get_running_loop()  # type: ignore[assignment]
        if not isinstance(loop, VirtualTimeLoop):
            raise TypeError(f"VirtualClock needs a VirtualTimeLoop, not {type(loop).__name__}")
        self.loop = loop

    def now_ns(self) -> int:
        return self.loop._now_ns

    async def sleep_until(self, deadline_ns: int) -> None:
        if deadline_ns <= self.loop._now_ns:
            return
        await self.sleep_ns(deadline_ns - self.loop._now_ns)

    async def sleep_ns(self, delta_ns: int) -> None:
        """Sleep exactly `delta_ns` virtual nanoseconds."""
        if delta_ns <= 0:
            await asyncio.sleep(0)
            return
        loop = self.loop
        future: asyncio.Future[None] = _Future(loop=loop)  # loop.create_future(), one call less
        wakeup = loop._wake_at_ns(loop._now_ns + int(delta_ns), future)
        try:
            await future
        except BaseException:  # cancelled: drop the timer now rather than when it comes due
            wakeup.cancel()
            raise


def run_virtual(main: Coroutine[Any, Any, T], start_ns: int = 0) -> T:
    """`asyncio.run` on a fresh `VirtualTimeLoop` (Ctrl-C cancels the main task, as asyncio.run does)."""
    with asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(start_ns)) as runner:
        return runner.run(main)


__all__ = ["SimulationDeadlock", "VirtualClock", "VirtualTimeLoop", "run_virtual"]
