"""Per-route token buckets: the mock answers 429 with `Retry-After` as VTEX does.

VTEX documents one figure: Get order, "up to 6000 requests per minute" per account (SPEC
`GET /api/oms/pvt/orders/{orderId}`); other routes have undisclosed limits that answer 429 with
`Retry-After` (VTEX guide "how to load test a store"). Limits are off by default: the reproduction
scenarios measure a race, not throttling. A limit is `N/s` or `N/min` on a short kebab-case route
name (`ROUTE_NAMES`); the bucket holds one second's worth of tokens (at least 1), refilled
continuously on the mock's clock, so the same requests at the same (virtual) times are limited
the same way.
"""

from __future__ import annotations

import math
import re
from typing import Any

from mock_orders_api.errors import ConfigError

# Short names of the VTEX routes a limit can be set on (what `serve --rate-limit` accepts).
ROUTE_NAMES: dict[str, str] = {
    "get-order": "GET /api/oms/pvt/orders/{orderId}",
    "list-orders": "GET /api/oms/pvt/orders",
    "start-handling": "POST /api/oms/pvt/orders/{orderId}/start-handling",
    "cancel": "POST /api/oms/pvt/orders/{orderId}/cancel",
    "invoice": "POST /api/orders/pvt/document/{orderId}/invoices and POST /api/oms/pvt/orders/{orderId}/invoice",
    "change": "PATCH /api/order-system/orders/{changeOrderId}/changes and POST /api/oms/pvt/orders/{orderId}/changes",
    "change-history": "GET /api/order-system/orders/{changeOrderId}/changes",
    "change-detail": "GET /api/order-system/orders/{changeOrderId}/changes/{changeRequestId}",
    "tracking": "PATCH /api/oms/pvt/orders/{orderId}/invoice/{invoiceNumber} and PUT .../{invoiceNumber}/tracking",
}
# VTEX's one documented figure (SPEC, Get order): 6000 requests/min per account.
PRESETS: dict[str, dict[str, float]] = {"vtex": {"get-order": 6000 / 60}}
_LIMIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*/\s*(s|sec|second|min|minute)\s*$")


def parse_rate(value: Any, where: str) -> float:
    """`N/s`, `N/min` or a number (per second) -> requests per second (> 0)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        rate = float(value)
    elif isinstance(value, str) and (m := _LIMIT.match(value)):
        rate = float(m.group(1)) / (60.0 if m.group(2).startswith("min") else 1.0)
    else:
        raise ConfigError(f"{where}: expected N/s or N/min (e.g. 100/s, 6000/min); got {value!r}")
    if not math.isfinite(rate) or rate <= 0:
        raise ConfigError(f"{where}: expected a rate > 0; got {value!r}")
    return rate


def parse_limits(value: Any, where: str) -> dict[str, float]:
    """Limits from a mapping {route: rate}, a list of `ROUTE=RATE`, a preset name, or None / {} (off)."""
    if value is None or value == "" or value == {} or value == []:
        return {}
    if isinstance(value, str) and value in PRESETS:
        return dict(PRESETS[value])
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        pairs: dict[str, Any] = {}
        for item in value:
            if isinstance(item, str) and item.strip() in PRESETS:
                pairs.update(PRESETS[item.strip()])
                continue
            if not isinstance(item, str) or "=" not in item:
                raise ConfigError(f"{where}: expected ROUTE=N/s or ROUTE=N/min; got {item!r}")
            route, rate = item.split("=", 1)
            pairs[route.strip()] = rate.strip()
        value = pairs
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected {{route: 'N/s'}}, a list of ROUTE=N/s, or a preset "
                          f"{sorted(PRESETS)}; got {value!r}")
    out: dict[str, float] = {}
    for route, rate in value.items():
        if route not in ROUTE_NAMES:
            raise ConfigError(f"{where}: unknown route {route!r}; known: {sorted(ROUTE_NAMES)}")
        out[route] = rate if isinstance(rate, float) and rate > 0 else parse_rate(rate, f"{where}.{route}")
    return out


class RateLimiter:
    """One token bucket per limited route; `take` spends a token or says how long to wait."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, int]] = {}  # route -> (tokens, at_ns)

    def reset(self) -> None:
        self._buckets.clear()

    def take(self, route: str, rate: float | None, now_ns: int) -> float | None:
        """None when the request may go on, else the seconds until a token is free (Retry-After)."""
        if rate is None:
            return None
        burst = max(1.0, rate)
        tokens, at = self._buckets.get(route, (burst, now_ns))
        tokens = min(burst, tokens + (now_ns - at) / 1e9 * rate)
        if tokens >= 1.0:
            self._buckets[route] = (tokens - 1.0, now_ns)
            return None
        self._buckets[route] = (tokens, now_ns)
        return (1.0 - tokens) / rate
