"""Auth on the VTEX routes and the admin API, the command line, and reading config from the env."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mock_orders_api import __main__ as cli
from mock_orders_api import server
from mock_orders_api.config import MockConfig
from mock_orders_api.delays import Fixed, LogNormal, Uniform
from mock_orders_api.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
KEY, TOKEN, RO_KEY, RO_TOKEN, ADMIN = "vtexappkey-mock", "s3cret-token", "ro-key", "ro-token", "adm-token"
GOOD = {"X-VTEX-API-AppKey": KEY, "X-VTEX-API-AppToken": TOKEN}
READONLY = {"X-VTEX-API-AppKey": RO_KEY, "X-VTEX-API-AppToken": RO_TOKEN}
ENV_NAMES = ("MOCK_POLICY", "MOCK_CHANGE_DELAY", "MOCK_SETTLE_MS", "MOCK_SEED", "VTEX_APP_KEY", "VTEX_APP_TOKEN",
             "MOCK_ADMIN_TOKEN", "VTEX_READONLY_APP_KEY", "VTEX_READONLY_APP_TOKEN", "MOCK_HOST", "MOCK_PORT")


def _auth_config(**kw) -> MockConfig:
    return MockConfig(delay=Fixed(300.0), app_key=KEY, app_token=TOKEN, readonly_app_key=RO_KEY,
                      readonly_app_token=RO_TOKEN, admin_token=ADMIN, **kw)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- auth off -------------------------------------------------------------------------------

async def test_auth_off_needs_no_headers(make_api) -> None:
    api = make_api(MockConfig())
    assert api.vtex_headers == {} and api.admin_headers == {}
    c = api.client
    r = await c.post("/_mock/orders", json={"items": [{"id": "a", "quantity": 1, "price": 100}]})
    assert r.status_code == 201
    oid = r.json()["orderId"]
    assert (await c.post(f"/api/oms/pvt/orders/{oid}/start-handling")).status_code == 204
    assert (await c.get(f"/api/oms/pvt/orders/{oid}")).status_code == 200
    assert (await c.patch(f"/api/order-system/orders/{oid}/changes", json={"reason": "x"})).status_code == 202
    assert (await c.get("/_mock/config")).json()["auth"] is False
    # credentials that are sent anyway are ignored
    assert (await c.get(f"/api/oms/pvt/orders/{oid}", headers={"X-VTEX-API-AppKey": "whatever"})).status_code == 200


# --- auth on ---------------------------------------------------------------------------------

@pytest.fixture
async def secured(make_api):
    api = make_api(_auth_config())
    order = await api.handling_order()
    return api, order


@pytest.mark.parametrize(
    ("headers", "status", "mentions"),
    [
        ({}, 401, "missing"),
        ({"X-VTEX-API-AppKey": KEY}, 401, "missing"),
        ({"X-VTEX-API-AppToken": TOKEN}, 401, "missing"),
        ({"X-VTEX-API-AppKey": KEY, "X-VTEX-API-AppToken": "wrong"}, 401, "invalid"),
        ({"X-VTEX-API-AppKey": "wrong", "X-VTEX-API-AppToken": TOKEN}, 401, "invalid"),
        ({"X-VTEX-API-AppKey": RO_KEY, "X-VTEX-API-AppToken": TOKEN}, 401, "invalid"),  # pairs don't mix
        ({"X-VTEX-API-AppKey": ADMIN, "X-VTEX-API-AppToken": ADMIN}, 401, "invalid"),
    ],
)
async def test_bad_credentials_get_401_on_reads_and_writes(secured, assert_error, headers, status, mentions) -> None:
    api, order = secured
    oid = order["orderId"]
    before = await api.audit(oid)
    for method, path, body in [
        ("GET", f"/api/oms/pvt/orders/{oid}", None),
        ("GET", f"/api/order-system/orders/{oid}/changes", None),
        ("POST", f"/api/orders/pvt/document/{oid}/invoices",
         {"type": "Output", "issuedDate": "2026-01-09", "invoiceNumber": "1", "invoiceValue": 100,
          "items": [{"itemIndex": 0, "price": 100, "quantity": 1}]}),
        ("PATCH", f"/api/order-system/orders/{oid}/changes", {"reason": "x", "manualDiscountValue": 1}),
        ("POST", f"/api/oms/pvt/orders/{oid}/cancel", None),
    ]:
        r = await api.client.request(method, path, json=body, headers=headers)
        err = assert_error(r, status, code="Unauthorized", mentions=mentions)
        assert TOKEN not in err["message"]  # never echo secrets
    assert await api.audit(oid) == before


async def test_valid_credentials_read_and_write(secured) -> None:
    api, order = secured
    oid = order["orderId"]
    c = api.client
    assert (await c.get(f"/api/oms/pvt/orders/{oid}", headers=GOOD)).status_code == 200
    r = await c.patch(f"/api/order-system/orders/{oid}/changes", json={"reason": "x", "manualDiscountValue": 5},
                      headers={**GOOD, "X-Mock-Change-Delay-Ms": "0"})
    assert r.status_code == 202
    r = await c.post(f"/api/oms/pvt/orders/{oid}/invoice", headers=GOOD,
                     json={"type": "Output", "issuanceDate": "2026-01-09", "invoiceNumber": "1", "invoiceValue": 100,
          "items": [{"id": "1", "price": 100, "quantity": 1}]})
    assert r.status_code == 200
    audit = await api.audit(oid)
    assert audit["invoicedTotal"] == 100 and audit["finalValue"] == order["value"] - 5


async def test_read_only_key_reads_but_cannot_write(secured, assert_error) -> None:
    api, order = secured
    oid = order["orderId"]
    c = api.client
    rid = (await api.change(oid, discount=5, delay_ms=0)).json()["requestId"]
    before = await api.audit(oid)
    for path in (f"/api/oms/pvt/orders/{oid}", f"/api/order-system/orders/{oid}/changes",
                 f"/api/order-system/orders/{oid}/changes/{rid}"):
        assert (await c.get(path, headers=READONLY)).status_code == 200, path
    for method, path, body in [
        ("POST", f"/api/orders/pvt/document/{oid}/invoices",
         {"type": "Output", "issuedDate": "2026-01-09", "invoiceNumber": "1", "invoiceValue": 100,
          "items": [{"itemIndex": 0, "price": 100, "quantity": 1}]}),
        ("POST", f"/api/oms/pvt/orders/{oid}/invoice",
         {"type": "Output", "issuanceDate": "2026-01-09", "invoiceNumber": "1", "invoiceValue": 100,
          "items": [{"id": "1", "price": 100, "quantity": 1}]}),
        ("PATCH", f"/api/order-system/orders/{oid}/changes", {"reason": "x", "manualDiscountValue": 1}),
        ("POST", f"/api/oms/pvt/orders/{oid}/changes", {"reason": "x", "discountValue": 1}),
        ("POST", f"/api/oms/pvt/orders/{oid}/cancel", None),
    ]:
        r = await c.request(method, path, json=body, headers=READONLY)
        assert_error(r, 403, code="Forbidden", mentions="read-only")
    assert await api.audit(oid) == before
    wrong = {**READONLY, "X-VTEX-API-AppToken": "nope"}
    assert_error(await c.get(f"/api/oms/pvt/orders/{oid}", headers=wrong), 401)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        (GOOD, 401),  # VTEX credentials do not open the admin API
        ({"X-Mock-Admin-Token": "wrong"}, 403),
        ({"Authorization": "Bearer wrong"}, 403),
        ({"X-Mock-Admin-Token": ADMIN}, 200),
        ({"Authorization": f"Bearer {ADMIN}"}, 200),
    ],
)
async def test_admin_token_protects_the_mock_api(secured, assert_error, headers, status) -> None:
    api, order = secured
    c = api.client
    reads = [("GET", "/_mock/health"), ("GET", "/_mock/config"), ("GET", f"/_mock/orders/{order['orderId']}/audit"),
             ("GET", "/_mock/journal"), ("GET", "/_mock/verdicts")]
    for method, path in reads:
        r = await c.request(method, path, headers=headers)
        if status == 200:
            assert r.status_code == 200, (path, r.text)
        else:
            assert_error(r, status, mentions="admin")
    if status != 200:
        for method, path, body in [("PATCH", "/_mock/config", {"policy": "strict"}), ("POST", "/_mock/reset", None),
                                   ("POST", "/_mock/orders", {"items": [{"id": "a", "quantity": 1, "price": 1}]})]:
            assert_error(await c.request(method, path, json=body, headers=headers), status)
        health = (await c.get("/_mock/health", headers={"X-Mock-Admin-Token": ADMIN})).json()
        assert health["orders"] == 1 and health["policy"] == "vulnerable"  # nothing was reset or changed


async def test_config_view_masks_credentials(secured) -> None:
    api, _ = secured
    body = (await api.client.get("/_mock/config", headers=api.admin_headers)).text
    for secret in (TOKEN, RO_TOKEN, ADMIN):
        assert secret not in body
    assert '"auth":true' in body.replace(" ", "") and '"admin_auth":true' in body.replace(" ", "")


async def test_auth_on_a_live_server(make_api, assert_error) -> None:
    api = make_api(_auth_config(), kind="live")  # ThreadedMock waits for health with the admin token
    order = await api.handling_order()
    async with httpx.AsyncClient(base_url=str(api.client.base_url), timeout=5) as raw:
        assert_error(await raw.get(f"/api/oms/pvt/orders/{order['orderId']}"), 401)
        assert (await raw.get(f"/api/oms/pvt/orders/{order['orderId']}", headers=GOOD)).status_code == 200
        assert_error(await raw.get("/_mock/health"), 401)


async def test_child_process_gets_every_credential_from_the_environment(make_api, assert_error, clean_env) -> None:
    api = make_api(_auth_config(), kind="process")  # MockProcess passes secrets by env, not argv
    order = await api.handling_order()
    oid = order["orderId"]
    c = api.client
    assert_error(await c.get(f"/api/oms/pvt/orders/{oid}"), 401)
    assert (await c.get(f"/api/oms/pvt/orders/{oid}", headers=GOOD)).status_code == 200
    assert (await c.get(f"/api/oms/pvt/orders/{oid}", headers=READONLY)).status_code == 200
    assert_error(await c.post(f"/api/oms/pvt/orders/{oid}/cancel", headers=READONLY), 403)
    assert_error(await c.get("/_mock/health"), 401)
    assert (await c.get("/_mock/health", headers={"X-Mock-Admin-Token": ADMIN})).status_code == 200


def test_create_app_refuses_half_configured_auth() -> None:
    from mock_orders_api import create_app
    with pytest.raises(ConfigError, match="both"):
        create_app(MockConfig(app_key=KEY))


# --- command line ------------------------------------------------------------------------------

def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "mock_orders_api", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env=full_env)


def test_cli_help_lists_the_settings() -> None:
    r = _run(["--help"])
    assert r.returncode == 0, r.stderr
    for flag in ("--policy", "--change-delay", "--settle-ms", "--seed", "--port", "--admin-token", "MOCK_POLICY"):
        assert flag in r.stdout
    assert "--fd" not in r.stdout  # internal


def test_cli_bad_flag_exits_2_with_a_clear_message_in_a_real_process() -> None:
    r = _run(["--policy", "lenient", "--port", "0"])
    assert r.returncode == 2
    assert "--policy" in r.stderr and "invalid choice" in r.stderr and "lenient" in r.stderr


@pytest.fixture
def no_serving(monkeypatch: pytest.MonkeyPatch, clean_env: pytest.MonkeyPatch) -> None:
    """If a bad setting slipped through, fail instead of serving forever."""
    def _serve(*a, **k):
        raise AssertionError("the mock started serving despite a bad setting")
    monkeypatch.setattr(server, "serve", _serve)


@pytest.mark.parametrize(
    ("argv", "env", "mentions"),
    [
        (["--port", "eighty"], {}, "invalid int value"),
        (["--settle-ms", "soon"], {}, "invalid float value"),
        (["--policy", "lax"], {}, "invalid choice"),
        (["--bogus"], {}, "unrecognized arguments"),
        (["--change-delay", "gauss:1,2"], {}, "flags.delay: unknown delay distribution"),
        (["--change-delay", "uniform:5"], {}, "uniform takes 2"),
        (["--settle-ms", "-5"], {}, "flags.settle_ms"),
        (["--app-key", KEY], {}, "app token"),
        ([], {"MOCK_POLICY": "lax"}, "env.policy"),
        ([], {"MOCK_SEED": "seven"}, "MOCK_SEED"),
        ([], {"MOCK_PORT": "http"}, "MOCK_PORT"),
        ([], {"VTEX_APP_TOKEN": TOKEN}, "app key"),
    ],
)
def test_cli_bad_settings_exit_2_naming_the_setting(no_serving, monkeypatch, capsys, argv, env, mentions) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert mentions in err, err
    assert TOKEN not in err


def test_cli_flags_override_env(clean_env, monkeypatch) -> None:
    monkeypatch.setenv("MOCK_POLICY", "strict")
    monkeypatch.setenv("MOCK_SETTLE_MS", "40")
    args = argparse_parse(["--policy", "vulnerable", "--change-delay", "uniform:10,20", "--seed", "9"])
    cfg = cli.config_from_args(args)
    assert cfg.policy == "vulnerable" and cfg.delay == Uniform(10.0, 20.0) and cfg.seed == 9
    assert cfg.settle_ms == 40.0  # not overridden: from the env


def argparse_parse(argv: list[str]):
    import argparse
    p = argparse.ArgumentParser()
    cli.add_serve_arguments(p)
    return p.parse_args(argv)


# --- MockConfig.from_env -------------------------------------------------------------------------

def test_from_env_reads_every_setting(clean_env) -> None:
    for k, v in {"MOCK_POLICY": "strict", "MOCK_CHANGE_DELAY": "lognormal:250,0.5", "MOCK_SETTLE_MS": "75.5",
                 "MOCK_SEED": "1348894", "VTEX_APP_KEY": KEY, "VTEX_APP_TOKEN": TOKEN, "MOCK_ADMIN_TOKEN": ADMIN,
                 "VTEX_READONLY_APP_KEY": RO_KEY, "VTEX_READONLY_APP_TOKEN": RO_TOKEN}.items():
        clean_env.setenv(k, v)
    cfg = MockConfig.from_env()
    assert cfg.policy == "strict"
    assert cfg.delay == LogNormal(250.0, 0.5)
    assert cfg.settle_ms == 75.5 and cfg.seed == 1348894
    assert (cfg.app_key, cfg.app_token, cfg.admin_token) == (KEY, TOKEN, ADMIN)
    assert (cfg.readonly_app_key, cfg.readonly_app_token) == (RO_KEY, RO_TOKEN)


def test_from_env_defaults_when_unset(clean_env) -> None:
    cfg = MockConfig.from_env()
    assert cfg == MockConfig()
    assert cfg.app_key is None and cfg.admin_token is None and cfg.policy == "vulnerable"


def test_from_env_explicit_mapping_ignores_process_env(clean_env) -> None:
    clean_env.setenv("MOCK_POLICY", "strict")
    assert MockConfig.from_env({}).policy == "vulnerable"
    assert MockConfig.from_env({"MOCK_CHANGE_DELAY": "fixed:5"}).delay == Fixed(5.0)


@pytest.mark.parametrize(
    ("env", "mentions"),
    [
        ({"MOCK_POLICY": "lax"}, "env.policy"),
        ({"MOCK_CHANGE_DELAY": "fixed:-1"}, "env.delay"),
        ({"MOCK_CHANGE_DELAY": "lognormal:0,1"}, "median_ms"),
        ({"MOCK_SETTLE_MS": "inf"}, "env.settle_ms"),
        ({"MOCK_SEED": "1.5"}, "MOCK_SEED"),
        ({"VTEX_APP_KEY": KEY}, "both"),
        ({"VTEX_READONLY_APP_KEY": RO_KEY, "VTEX_READONLY_APP_TOKEN": RO_TOKEN}, "main app key"),
    ],
)
def test_from_env_rejects_bad_values_naming_them(clean_env, env, mentions) -> None:
    for k, v in env.items():
        clean_env.setenv(k, v)
    with pytest.raises(ConfigError, match=mentions.replace(".", r"\.")):
        MockConfig.from_env()
