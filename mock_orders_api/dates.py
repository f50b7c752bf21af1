"""The dates the mock writes (ISO 8601, UTC, microseconds, `Z`).

`iso_now` reads the wall clock unless `DATE_SOURCE` is set: a simulated run sets
it to `virtual_dates(its virtual clock)`, so the dates it writes are
reproducible too.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

# Where dates come from: None = the wall clock; a simulated run sets a function of its virtual clock
# (see `virtual_dates`), so the dates it writes are reproducible too.
DATE_SOURCE: contextvars.ContextVar[Callable[[], str] | None] = contextvars.ContextVar("mock_date_source",
                                                                                      default=None)


def iso_now() -> str:
    source = DATE_SOURCE.get()
    if source is not None:
        return source()
    return _wall_now()


def _wall_now() -> str:
    """The wall clock's ISO date; the seconds part formatted once per second (every request
    journals a date: a datetime per call was ~3% of the mock's CPU under load)."""
    ns = time.time_ns()
    sec = ns // 1_000_000_000
    if sec != _wall_cache[0]:
        _wall_cache[0] = sec
        _wall_cache[1] = datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_wall_cache[1]}.{ns // 1000 % 1_000_000:06d}Z"


_wall_cache: list[Any] = [None, ""]


def virtual_dates(clock_ns: Callable[[], int], epoch: datetime = datetime(2026, 1, 9, tzinfo=timezone.utc),
                  ) -> Callable[[], str]:
    """ISO dates (as `iso_now` formats them) of `epoch` + `clock_ns()` nanoseconds."""
    cache: list[Any] = [None, ""]

    def now() -> str:
        ns = clock_ns()
        sec = ns // 1_000_000_000
        if sec != cache[0]:
            cache[0], cache[1] = sec, (epoch + timedelta(seconds=sec)).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{cache[1]}.{ns // 1000 % 1_000_000:06d}Z"

    return now
