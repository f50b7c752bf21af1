"""Orders Feed v3 on the in-process mock, on a clock the test moves: item shape, maxlot bounds,
commit, reappearance after the visibility timeout, the seeded delivery plan, config validation,
FromOrders (JSONata) with single fire, the bounded queue."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from mock_orders_api import create_app
from mock_orders_api.config import MockConfig
from mock_orders_api.domain import feed as feed_domain
from mock_orders_api.wire import FEED, FEED_CONFIG, HOOK_DELAY_HEADER
from tests.mock.conftest import MockApi, mock_config

S = 1_000_000_000
VISIBILITY_S = 30
ITEM_KEYS = ["eventId", "handle", "domain", "state", "lastState", "orderId", "lastChange", "currentChange"]


class Clock:
    """The mock's clock: it only moves when the test moves it."""

    def __init__(self) -> None:
        self.ns = 1_000 * S

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += round(seconds * S)


@pytest.fixture
async def feed_api() -> AsyncIterator[Callable[..., tuple[MockApi, Clock]]]:
    clients: list[httpx.AsyncClient] = []

    def _make(config: MockConfig | None = None) -> tuple[MockApi, Clock]:
        clock = Clock()
        app = create_app(config or mock_config(), clock=clock)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mock.test", timeout=10.0)
        clients.append(client)
        return MockApi(client, kind="asgi", app=app), clock

    yield _make
    for c in clients:
        await c.aclose()


def _config(flt: dict[str, Any] | None = None, visibility_s: int = VISIBILITY_S) -> dict[str, Any]:
    return {"filter": flt or {"type": "FromWorkflow", "status": ["handling"]},
            "queue": {"visibilityTimeoutInSeconds": visibility_s, "MessageRetentionPeriodInSeconds": 345600}}


async def _configure(api: MockApi, body: dict[str, Any] | None = None) -> None:
    r = await api.client.post(FEED_CONFIG, json=body or _config())
    assert r.status_code == 200, r.text


async def _read(api: MockApi, maxlot: int = 10) -> list[dict[str, Any]]:
    r = await api.client.get(FEED, params={"maxlot": maxlot})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def _commit(api: MockApi, handles: list[str]) -> None:
    r = await api.client.post(FEED, json={"handles": handles})
    assert r.status_code == 200, r.text


async def test_no_config_is_404_and_maxlot_is_required_1_to_10(feed_api, assert_error) -> None:
    api, _ = feed_api()
    assert_error(await api.client.get(FEED, params={"maxlot": 1}), 404, code="FeedNotConfigured")
    assert_error(await api.client.get(FEED_CONFIG), 404, code="FeedNotConfigured")
    assert_error(await api.client.delete(FEED_CONFIG), 404)
    await _configure(api)
    for bad in ({}, {"maxlot": 0}, {"maxlot": 11}, {"maxlot": "x"}):
        assert_error(await api.client.get(FEED, params=bad), 400, mentions="maxlot")
    assert await _read(api, 10) == []


async def test_item_shape_commit_and_config_view(feed_api) -> None:
    api, clock = feed_api()
    await _configure(api)
    order = await api.handling_order()
    [item] = await _read(api, 1)
    assert list(item) == ITEM_KEYS
    assert (item["orderId"], item["state"], item["lastState"], item["domain"]) == (
        order["orderId"], "handling", "ready-for-handling", "Fulfillment")
    assert item["currentChange"] == order["lastChange"]
    assert await _read(api) == []  # hidden while it is being processed
    view = (await api.client.get(FEED_CONFIG)).json()
    assert view["quantity"] == 1 and view["queue"]["visibilityTimeoutInSeconds"] == VISIBILITY_S
    await _commit(api, [item["handle"]])
    clock.advance(VISIBILITY_S + 1)
    assert await _read(api) == []
    assert (await api.client.get(FEED_CONFIG)).json()["quantity"] == 0
    events = [e["event"] for e in (await api.audit(order["orderId"]))["feed"]]
    assert events == ["enqueued", "read", "committed"]


async def test_uncommitted_item_reappears_after_the_visibility_timeout_under_a_new_handle(feed_api) -> None:
    api, clock = feed_api()
    await _configure(api)
    oid = (await api.handling_order())["orderId"]
    [first] = await _read(api)
    clock.advance(VISIBILITY_S - 0.001)
    assert await _read(api) == []
    clock.advance(0.001)
    [again] = await _read(api)
    assert again["eventId"] == first["eventId"] and again["handle"] != first["handle"]
    await _commit(api, [first["handle"]])  # superseded: ignored, the item stays
    assert (await api.client.get(FEED_CONFIG)).json()["quantity"] == 1
    await _commit(api, [again["handle"]])
    assert (await api.client.get(FEED_CONFIG)).json()["quantity"] == 0
    reads = [e["receive"] for e in (await api.audit(oid))["feed"] if e["event"] == "read"]
    assert reads == [1, 2]
    health = await api.health()
    assert health["feedRedeliveries"] == 1 and health["feedCommitted"] == 1 and health["feedQueue"] == 0


async def test_pinned_delay_sets_when_the_event_becomes_visible(feed_api) -> None:
    api, clock = feed_api()
    await _configure(api)
    created = await api.create_order()
    r = await api.client.post(f"/api/oms/pvt/orders/{created['orderId']}/start-handling",
                              headers={HOOK_DELAY_HEADER: "500"})
    assert r.status_code == 204
    [enqueued] = [e for e in (await api.audit(created["orderId"]))["feed"] if e["event"] == "enqueued"]
    assert enqueued["visibleNs"] - enqueued["changeNs"] == 500_000_000
    clock.advance(0.499)
    assert await _read(api) == []
    clock.advance(0.001)
    assert [i["orderId"] for i in await _read(api)] == [created["orderId"]]


async def test_duplicates_and_extra_delays_follow_the_seeded_plan(feed_api) -> None:
    def plan_of(seed: int) -> MockConfig:
        return mock_config(seed=seed, hook_duplicate_rate=1.0, hook_extra_delay_ms=200.0)

    async def run(seed: int) -> list[dict[str, Any]]:
        api, clock = feed_api(plan_of(seed))
        await _configure(api)
        oid = (await api.create_order(orderId="plan-1"))["orderId"]
        assert (await api.start_handling(oid)).status_code == 204
        enqueued = [e for e in (await api.audit(oid))["feed"] if e["event"] == "enqueued"]
        clock.advance(0.2)
        items = await _read(api)
        assert len(items) == 2 and items[0]["eventId"] == items[1]["eventId"]  # one event, twice
        assert items[0]["handle"] != items[1]["handle"]
        return enqueued

    a, b, other = await run(7), await run(7), await run(8)
    assert [e["copy"] for e in a] == [0, 1]
    assert [e["extraDelayMs"] for e in a] == [e["extraDelayMs"] for e in b]  # a trial replays
    assert [e["extraDelayMs"] for e in a] != [e["extraDelayMs"] for e in other]
    assert all(e["visibleNs"] == e["changeNs"] + round(e["extraDelayMs"] * 1e6) for e in a)


@pytest.mark.parametrize(("body", "mentions"), [
    ({"filter": {"type": "FromWorkflow", "status": ["handling"]}}, "queue"),
    (_config() | {"queue": {"visibilityTimeoutInSeconds": 30}}, "MessageRetentionPeriodInSeconds"),
    (_config() | {"queue": {"visibilityTimeoutInSeconds": 30, "MessageRetentionPeriodInSeconds": 60}},
     "345600..1209600"),
    (_config() | {"queue": {"visibilityTimeoutInSeconds": -1, "MessageRetentionPeriodInSeconds": 345600}},
     "visibilityTimeoutInSeconds"),
    (_config() | {"extra": 1}, "unknown field"),
    (_config({"type": "FromSomewhere"}), "filter.type"),
    (_config({"type": "FromWorkflow", "status": ["handling"], "expression": "x"}), "not allowed"),
    (_config({"type": "FromOrders", "expression": "status = "}), "Unexpected end of expression"),
    (_config({"type": "FromOrders", "expression": "value > 0", "disableSingleFire": "no"}), "disableSingleFire"),
])
async def test_bad_config_is_400_naming_the_field_and_keeps_the_old_one(feed_api, assert_error, body,
                                                                        mentions) -> None:
    api, _ = feed_api()
    await _configure(api)
    assert_error(await api.client.post(FEED_CONFIG, json=body), 400, mentions=mentions)
    assert (await api.client.get(FEED_CONFIG)).json()["filter"] == {"type": "FromWorkflow", "status": ["handling"]}


async def test_from_workflow_accepts_any_status_string(feed_api) -> None:
    api, _ = feed_api()
    await _configure(api, _config({"type": "FromWorkflow", "status": ["cancelation-request", "handling"]}))
    await api.handling_order()
    assert [i["state"] for i in await _read(api)] == ["handling"]


@pytest.mark.parametrize(("expression", "single", "states"), [
    ('status = "invoiced"', False, ["invoiced"]),  # true only once it is invoiced
    ("value > 0", False, ["ready-for-handling"]),  # single fire: the first time it holds
    ("value > 0", True, ["ready-for-handling", "handling", "invoiced"]),  # every change (settle_ms 0: no `invoice`)
    ('status = "nonexistent"', True, []),
    ("$number(status)", True, []),  # a runtime error counts as false
])
async def test_from_orders_evaluates_jsonata_over_the_order(feed_api, expression, single, states) -> None:
    api, clock = feed_api(mock_config(settle_ms=0))
    await _configure(api, _config({"type": "FromOrders", "expression": expression, "disableSingleFire": single}))
    order = await api.handling_order()
    assert (await api.invoice(order["orderId"], order["value"])).status_code == 200
    clock.advance(0.001)
    assert (await api.order(order["orderId"]))["status"] == "invoiced"
    got = [i["state"] for i in sorted(await _read(api), key=lambda i: i["currentChange"])]
    assert got == states


async def test_hook_from_orders_bad_expression_is_400_with_the_parsers_message(feed_api, assert_error) -> None:
    api, _ = feed_api()
    r = await api.client.post("/api/orders/hook/config", json={
        "filter": {"type": "FromOrders", "expression": "items[", "disableSingleFire": False},
        "hook": {"url": "http://127.0.0.1:9/hook"}})
    assert_error(r, 400, code="InvalidExpression", mentions="Expected ]")


async def test_queue_is_bounded_dropping_the_oldest(feed_api, monkeypatch) -> None:
    monkeypatch.setattr(feed_domain, "MAX_ITEMS", 3)
    api, _ = feed_api()
    await _configure(api, _config({"type": "FromWorkflow", "status": ["ready-for-handling"]}))
    ids = [(await api.create_order())["orderId"] for _ in range(5)]
    assert sorted(i["orderId"] for i in await _read(api)) == sorted(ids[2:])
    health = await api.health()
    assert health["feedDropped"] == 2 and health["feedQueue"] == 3
    assert [e["event"] for e in (await api.audit(ids[0]))["feed"]] == ["enqueued", "dropped"]


async def test_reset_empties_the_queue_and_keeps_the_config_delete_removes_both(feed_api) -> None:
    api, _ = feed_api()
    await _configure(api)
    await api.handling_order()
    await api.reset()
    assert await _read(api) == []
    await api.handling_order()
    assert (await api.client.delete(FEED_CONFIG)).status_code == 200
    await _configure(api)
    assert await _read(api) == []


async def test_openapi_documents_the_feed_routes(feed_api) -> None:
    api, _ = feed_api()
    paths = (await api.client.get("/openapi.json")).json()["paths"]
    assert set(paths[FEED]) == {"get", "post"} and set(paths[FEED_CONFIG]) == {"get", "post", "delete"}
    assert paths[FEED]["get"]["parameters"][0]["name"] == "maxlot"
