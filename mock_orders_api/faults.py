"""A seeded fault schedule: per route, the probability of a 500, a 503, a slow response, or a
response lost after the operation was applied (the connection is dropped).

VTEX documents these as things an integration must survive: start-handling "can also respond with
status 500" and must be retried until 204 (SPEC `start-handling.post`); circuit breakers answer 503
(VTEX guide "how to load test a store"). A lost response is the Jepsen case: the operation took
effect and the client cannot know, so a harness must classify it indeterminate.

Off by default. A draw depends only on (seed, route, the route's request count), so a run is
reproducible from its seed; the `X-Mock-Fault` header pins a fault on one request (a pinned step
of a trial), as the delay header pins a Change's delay. Every fault is journaled (the request's
`outcome`: `fault-500`, `fault-503`, `slow`, `response-lost`).
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.types import Send

from mock_orders_api.errors import ApiError, BadRequest, ConfigError
from mock_orders_api.ratelimit import ROUTE_NAMES
from mock_orders_api.request_headers import header

FAULT_HEADER = "X-Mock-Fault"
FAULT_KINDS: tuple[str, ...] = ("500", "503", "slow", "drop")
_DEFAULT_SLOW_MS = 2000.0
# How each fault kind is named in the journal's `outcome` and in an order audit's `faults`.
_JOURNALED = {"500": "fault-500", "503": "fault-503", "slow": "slow", "drop": "response-lost"}


@dataclass(frozen=True)
class FaultRule:
    """Probabilities of each fault on one route (their sum <= 1), and how slow `slow` is."""

    p500: float = 0.0
    p503: float = 0.0
    slow: float = 0.0
    drop: float = 0.0
    slow_ms: float = _DEFAULT_SLOW_MS

    def spec(self) -> dict[str, float]:
        return {"500": self.p500, "503": self.p503, "slow": self.slow, "drop": self.drop, "slow_ms": self.slow_ms}

    def pick(self, u: float) -> str | None:
        """The fault a uniform draw `u` in [0, 1) lands on, or None."""
        edge = 0.0
        for kind, p in zip(FAULT_KINDS, (self.p500, self.p503, self.slow, self.drop)):
            edge += p
            if u < edge:
                return kind
        return None


def parse_faults(value: Any, where: str) -> dict[str, FaultRule]:
    """{route: {"500": p, "503": p, "slow": p, "drop": p, "slow_ms": ms}}; None / {} = off."""
    if value is None or value == {}:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected {{route: {{'500': p, '503': p, 'slow': p, 'drop': p}}}}; got {value!r}")
    out: dict[str, FaultRule] = {}
    for route, raw in value.items():
        at = f"{where}.{route}"
        if route not in ROUTE_NAMES:
            raise ConfigError(f"{where}: unknown route {route!r}; known: {sorted(ROUTE_NAMES)}")
        if isinstance(raw, FaultRule):
            out[route] = raw
            continue
        if not isinstance(raw, dict) or set(raw) - {*FAULT_KINDS, "slow_ms"}:
            raise ConfigError(f"{at}: expected some of {[*FAULT_KINDS, 'slow_ms']}; got {raw!r}")
        probs = [_probability(raw.get(k, 0.0), f"{at}.{k}") for k in FAULT_KINDS]
        if sum(probs) > 1.0 + 1e-9:
            raise ConfigError(f"{at}: the probabilities add up to {sum(probs):g} > 1")
        slow_ms = raw.get("slow_ms", _DEFAULT_SLOW_MS)
        if isinstance(slow_ms, bool) or not isinstance(slow_ms, (int, float)) or not math.isfinite(slow_ms) \
                or slow_ms < 0:
            raise ConfigError(f"{at}.slow_ms: expected milliseconds >= 0; got {slow_ms!r}")
        out[route] = FaultRule(*probs, slow_ms=float(slow_ms))
    return out


def _probability(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{where}: expected a probability 0..1; got {value!r}")
    return float(value)


class FaultSchedule:
    """Draws a route's faults from (seed, route, count): the same run gets the same faults."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def reset(self) -> None:
        self._counts.clear()

    def draw(self, route: str, rule: FaultRule | None, seed: int, pinned: str | None) -> str | None:
        n = self._counts.get(route, 0)
        self._counts[route] = n + 1
        if pinned is not None:
            return pinned
        if rule is None:
            return None
        key = hashlib.sha256(f"{seed}:fault:{route}:{n}".encode()).digest()[:8]
        return rule.pick(random.Random(int.from_bytes(key, "big")).random())


class ServerFault(ApiError):
    """An injected 500 (start-handling "can also respond with status 500", SPEC)."""

    status = 500
    code = "InternalServerError"


class Unavailable(ApiError):
    """An injected 503, as VTEX's circuit breakers answer."""

    status = 503
    code = "ServiceUnavailable"


async def inject(request: Request, route: str) -> bool:
    """Throttle and draw `route`'s fault for this request, before it acts: raise the 500/503, or
    sleep through the slow response; True when the response must be lost once the request acted
    (the handler then raises `ResponseLost`)."""
    state = request.scope["app"].mock
    params = request.path_params
    order_id = params.get("orderId", params.get("changeOrderId"))
    state.throttle(route, order_id)
    pinned = header(request, FAULT_HEADER)
    if pinned is not None and pinned not in FAULT_KINDS:
        raise BadRequest(f"header {FAULT_HEADER.lower()}: expected one of {list(FAULT_KINDS)}; got {pinned!r}")
    rule = state.config.faults.get(route)
    kind = state.faults.draw(route, rule, state.config.seed, pinned)
    if kind is None:
        return False
    state.note_fault(order_id, route, _JOURNALED[kind], state.clock())
    if kind == "500":
        request.state.outcome = _JOURNALED[kind]
        raise ServerFault(f"injected fault on {route}: 500 (retry until it succeeds)")
    if kind == "503":
        request.state.outcome = _JOURNALED[kind]
        raise Unavailable(f"injected fault on {route}: 503 (circuit breaker)")
    if kind == "slow":
        request.state.outcome = _JOURNALED[kind]  # a handler that judges the request overwrites it
        await state.sleep_ms((rule or FaultRule()).slow_ms)
        return False
    return True


def lose(request: Request) -> None:
    """The request acted; cut its response (journaled as `response-lost`)."""
    request.state.outcome = "response-lost"
    raise ResponseLost


class ResponseLost(Exception):
    """The operation was applied; its response must never reach the client."""


async def send_lost_start(send: Send) -> None:
    """What a lost response leaves on the wire (app.py, on `ResponseLost`): a started response
    promising a body that never comes; the server then aborts the connection, so the client
    sees a broken response."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"1024")]})
