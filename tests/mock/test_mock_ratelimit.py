"""Per-route token buckets: 429 with Retry-After (VTEX: Get order 6000/min per account, SPEC; undisclosed
limits elsewhere answer 429 with Retry-After, VTEX's load-test guide)."""

from __future__ import annotations

import argparse

import pytest

from mock_orders_api.__main__ import add_serve_arguments, config_from_args
from mock_orders_api.config import MockConfig
from mock_orders_api.errors import ConfigError
from mock_orders_api.ratelimit import PRESETS, RateLimiter, parse_limits, parse_rate


def test_rates_parse_per_second_and_per_minute() -> None:
    assert parse_rate("5/s", "x") == 5.0 and parse_rate("6000/min", "x") == 100.0 and parse_rate(2, "x") == 2.0
    for bad in ("fast", "0/s", "-1/s", "5/h", True):
        with pytest.raises(ConfigError):
            parse_rate(bad, "x")
    assert parse_limits(["get-order=6000/min", "invoice=2/s"], "x") == {"get-order": 100.0, "invoice": 2.0}
    assert parse_limits("vtex", "x") == PRESETS["vtex"] == {"get-order": 100.0}
    assert parse_limits(None, "x") == {} and parse_limits({}, "x") == {}
    with pytest.raises(ConfigError, match="unknown route"):
        parse_limits({"get-orders": "1/s"}, "x")


def test_bucket_refills_on_the_clock() -> None:
    lim = RateLimiter()
    assert [lim.take("invoice", 2.0, 0) for _ in range(2)] == [None, None]  # a burst of one second's worth
    assert lim.take("invoice", 2.0, 0) == pytest.approx(0.5)
    assert lim.take("invoice", 2.0, 500_000_000) is None  # refilled half a second later
    assert lim.take("get-order", None, 0) is None  # unlimited route


async def test_a_limited_route_answers_429_with_retry_after_and_others_do_not(api) -> None:
    oid = (await api.handling_order())["orderId"]
    assert (await api.client.patch("/_mock/config", json={"rate_limits": {"get-order": "2/min"}})).status_code == 200
    r1 = await api.client.get(f"/api/oms/pvt/orders/{oid}")
    r2 = await api.client.get(f"/api/oms/pvt/orders/{oid}")
    assert r1.status_code == 200 and r2.status_code == 429
    assert int(r2.headers["retry-after"]) >= 29  # one token per 30 s
    assert r2.json()["error"]["code"] == "TooManyRequests"
    assert (await api.change(oid, discount=1, delay_ms=1)).status_code == 202  # other routes unlimited
    cfg = (await api.client.patch("/_mock/config", json={"rate_limits": None})).json()
    assert (await api.client.get(f"/api/oms/pvt/orders/{oid}")).status_code == 200
    assert cfg.get("rate_limits", {}) == {} or cfg.get("config", {}).get("rate_limits") == {}


def test_serve_flag_is_repeatable_and_lists_routes_in_help() -> None:
    p = argparse.ArgumentParser()
    add_serve_arguments(p)
    args = p.parse_args(["--rate-limit", "get-order=6000/min", "--rate-limit", "start-handling=5/s"])
    cfg = config_from_args(args)
    assert cfg.rate_limits == {"get-order": 100.0, "start-handling": 5.0}
    assert "get-order" in p.format_help() and "start-handling" in p.format_help()
    assert MockConfig().rate_limits == {}  # off by default
