"""Hostile input and bounds: each gets a VTEX-shaped 4xx with a clear message and changes
nothing; memory stays bounded (journal bytes, pending Changes, orders); the mock refuses
what a web page could send cross-site; `serve` refuses exposure without credentials."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from mock_orders_api import create_app
from mock_orders_api.__main__ import exposure_error, main
from mock_orders_api.config import MockConfig, hook_target_allowed
from mock_orders_api.delays import Fixed
from mock_orders_api.errors import ConfigError
from mock_orders_api.wire import (
    ADMIN_TOKEN_HEADER,
    APP_KEY_HEADER,
    APP_TOKEN_HEADER,
    CHANGE_DELAY_HEADER,
)

ITEMS = [{"id": "sku-1", "quantity": 2, "price": 5000}]
INV = {"type": "Output", "issuanceDate": "2026-01-09T00:00:00Z", "invoiceNumber": "NFe-1"}
JSON = {"content-type": "application/json"}


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


async def _snapshot(api: Any, oid: str) -> dict[str, Any]:
    audit = await api.audit(oid)
    return {k: v for k, v in audit.items() if k not in ("verdict",)}


# --- item 3: no 500 from input ---------------------------------------------------------------------------

@pytest.mark.parametrize("body, mentions", [
    (_deep(3000), "nested deeper"),
    (b'{"items": ' + _deep(100) + b"}", "nested deeper"),
    (b'{"items": [{"id": "a", "quantity": 1, "price": ' + b"9" * 5000 + b"}]}", "digits"),
    (b'{"items": [{"id": "a", "quantity": 1, "price": "' + b"9" * 5000 + b'"}]}', "10**18"),
    (b'{"items": [{"id": "a", "quantity": 1, "price": 1000000000000000000000}]}', "10**18"),
])
async def test_hostile_order_bodies_are_400(api, assert_error, body: bytes, mentions: str) -> None:
    r = await api.client.post("/_mock/orders", content=body, headers=JSON)
    assert_error(r, 400, mentions=mentions)
    assert (await api.health())["orders"] == 0


@pytest.mark.parametrize("value", ["9" * 5000, "1" + "0" * 4400])
async def test_huge_cents_on_invoices_and_changes_are_400_and_change_nothing(api, assert_error, value: str) -> None:
    oid = (await api.handling_order())["orderId"]
    before = await _snapshot(api, oid)
    raw = json.dumps({**INV, "invoiceValue": "X"}).replace('"X"', value).encode()
    assert_error(await api.client.post(f"/api/orders/pvt/document/{oid}/invoices", content=raw, headers=JSON), 400,
                 mentions="digits")
    raw_str = json.dumps({**INV, "invoiceValue": value}).encode()
    assert_error(await api.client.post(f"/api/oms/pvt/orders/{oid}/invoice", content=raw_str, headers=JSON), 400,
                 mentions="invoiceValue")
    change = b'{"reason": "x", "manualDiscountValue": ' + value.encode() + b"}"
    assert_error(await api.client.patch(f"/api/order-system/orders/{oid}/changes", content=change, headers=JSON),
                 400, mentions="digits")
    assert await _snapshot(api, oid) == before


@pytest.mark.parametrize("patch, mentions", [
    (b'{"settle_ms": 1' + b"0" * 400 + b"}", "digits"),
    (b'{"settle_ms": 1e400}', "finite"),
    (b'{"settle_ms": 1e300}', "at most"),
    (b'{"hook_delay_ms": 1e12}', "at most"),
    (b'{"hook_timeout_s": 1e300}', "at most"),
    (b'{"seed": 100000000000000000000000}', "seed"),
    (b'{"delay": {"kind": "fixed", "ms": 1e300}}', "at most"),
    (b'{"delay": "uniform:0,1e308"}', "at most"),
    (b'{"max_pending_changes": 0}', "max_pending_changes"),
    (b'{"change_workers": 10000000000000000000000}', "change_workers"),
    (b'{"hook_retries": 10000000000000000000000}', "hook_retries"),
])
async def test_overflowing_config_values_are_400_and_leave_the_config(api, assert_error, patch: bytes,
                                                                      mentions: str) -> None:
    before = (await api.client.get("/_mock/config")).json()
    assert_error(await api.client.patch("/_mock/config", content=patch, headers=JSON), 400, mentions=mentions)
    assert (await api.client.get("/_mock/config")).json() == before


async def test_change_delay_header_is_bounded(api, assert_error) -> None:
    oid = (await api.handling_order())["orderId"]
    for value in ("1e300", "inf", "3600001"):
        r = await api.client.patch(f"/api/order-system/orders/{oid}/changes", json={"reason": "x"},
                                   headers={CHANGE_DELAY_HEADER: value})
        assert_error(r, 400, mentions=CHANGE_DELAY_HEADER.lower())
    assert await api.change_history(oid) == []


@pytest.mark.parametrize("kind", ["vtex", "admin"])
async def test_non_ascii_credential_headers_are_401_or_403(make_api, assert_error, kind: str) -> None:
    api = make_api(MockConfig(delay=Fixed(300.0), app_key="k", app_token="t", admin_token="adm-é"))
    api.admin_headers = {ADMIN_TOKEN_HEADER: "adm-é".encode()}  # type: ignore[dict-item]  # UTF-8 bytes on the wire
    oid = (await api.create_order())["orderId"]
    bad = "caf\xe9".encode("latin-1")
    if kind == "vtex":
        r = await api.client.get(f"/api/oms/pvt/orders/{oid}", headers={APP_KEY_HEADER: bad, APP_TOKEN_HEADER: bad})
        assert_error(r, 401)
    else:
        assert_error(await api.client.get("/_mock/health", headers={ADMIN_TOKEN_HEADER: bad}), 403)
        # A UTF-8 configured token still matches its UTF-8 bytes.
        ok = await api.client.get("/_mock/health", headers={ADMIN_TOKEN_HEADER: "adm-é".encode()})
        assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("order_id", [".", "..", "a/b", "a?b", "a#b", "a%2F", "x" * 129, "tab\there"])
async def test_odd_order_ids_are_refused(api, assert_error, order_id: str) -> None:
    assert_error(await api.client.post("/_mock/orders", json={"orderId": order_id, "items": ITEMS}), 400,
                 mentions="orderId")
    assert (await api.health())["orders"] == 0


async def test_405_carries_allow_with_every_method_of_the_path(api, assert_error) -> None:
    r = await api.client.put("/api/orders/hook/config", json={})
    assert_error(r, 405)
    assert r.headers["allow"] == "DELETE, GET, HEAD, POST"
    r = await api.client.get("/_mock/reset")
    assert r.headers["allow"] == "POST"
    r = await api.client.options("/_mock/orders", headers={"Origin": "http://evil.example",
                                                           "Access-Control-Request-Method": "POST"})
    assert r.status_code == 405 and not [h for h in r.headers if h.lower().startswith("access-control")]


async def test_a_remaining_500_is_vtex_shaped_and_closes_the_connection(assert_error) -> None:
    app = create_app(MockConfig())

    async def _boom(request: Any) -> Any:
        raise RuntimeError("a bug")
    app.router.routes.insert(0, Route("/boom", _boom, methods=["GET"]))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://mock.test") as client:
        r = await client.get("/boom")
    assert_error(r, 500, code="InternalServerError")
    assert r.headers["connection"] == "close"


# --- item 5: what a web page could send ------------------------------------------------------------------

@pytest.mark.parametrize("headers, status", [
    ({"content-type": "text/plain"}, 415),
    ({"content-type": "application/x-www-form-urlencoded"}, 415),
    ({"content-type": "multipart/form-data; boundary=x"}, 415),
    ({"origin": "http://evil.example"}, 403),
    ({"sec-fetch-site": "cross-site"}, 403),
])
async def test_simple_cross_origin_posts_are_refused(api, assert_error, headers: dict[str, str],
                                                     status: int) -> None:
    oid = (await api.create_order())["orderId"]
    content = b'{"items": [{"id": "a", "quantity": 1, "price": 1}]}' if "content-type" in headers else None
    assert_error(await api.client.post("/_mock/orders", content=content, headers=headers), status)
    assert_error(await api.client.post("/_mock/reset", content=content, headers=headers), status)
    assert_error(await api.client.post(f"/api/oms/pvt/orders/{oid}/start-handling", content=content,
                                       headers=headers), status)
    assert (await api.health())["orders"] == 1
    assert (await api.order(oid))["status"] == "ready-for-handling"


async def test_json_and_same_origin_requests_pass(api) -> None:
    r = await api.client.post("/_mock/orders", json={"items": ITEMS},
                              headers={"origin": "http://mock.test", "content-type": "application/json; charset=utf-8"})
    assert r.status_code == 201, r.text
    assert (await api.client.post("/_mock/reset")).status_code == 200


async def test_admin_api_needs_its_token_once_vtex_keys_are_set(make_api, assert_error) -> None:
    api = make_api(MockConfig(app_key="k", app_token="t"))
    assert_error(await api.client.get("/_mock/health"), 401, mentions="admin token")
    assert_error(await api.client.post("/_mock/reset"), 401)


@pytest.mark.parametrize("url, allow, ok", [
    ("http://127.0.0.1:9/h", (), True), ("http://localhost:9/h", (), True), ("http://[::1]:9/h", (), True),
    ("http://10.0.0.5/h", (), False), ("http://example.com/h", (), False), ("http://169.254.169.254/", (), False),
    ("http://10.0.0.5/h", ("10.0.0.0/8",), True), ("http://erp.internal/h", ("erp.internal",), True),
    ("http://anything.example/h", ("*",), True),
])
def test_hook_targets_are_loopback_unless_allowed(url: str, allow: tuple[str, ...], ok: bool) -> None:
    assert hook_target_allowed(url, allow) is ok


async def test_hook_config_to_a_non_loopback_host_is_refused(api, assert_error) -> None:
    body = {"filter": {"type": "FromWorkflow", "status": ["handling"]}, "hook": {"url": "http://169.254.169.254/x"}}
    assert_error(await api.client.post("/api/orders/hook/config", json=body), 400, code="HookTargetNotAllowed",
                 mentions="--hook-allow")
    assert (await api.client.get("/api/orders/hook/config")).status_code == 404


# --- item 4: bounded memory --------------------------------------------------------------------------------

async def test_journal_is_bounded_in_bytes_and_reports_drops(make_api) -> None:
    api = make_api(MockConfig(journal_bytes=1 << 16))
    for n in range(200):
        await api.client.get(f"/api/oms/pvt/orders/{'x' * 3000}{n}")
    health = await api.health()
    assert health["journalBytes"] <= 1 << 16
    assert health["journalDropped"] > 0
    entries = (await api.client.get("/_mock/journal")).json()["entries"]
    assert all(len(e["path"]) <= 1100 for e in entries)
    assert any(e["path"].endswith("(truncated)") for e in entries)


async def test_pending_changes_per_order_are_capped(make_api, assert_error) -> None:
    # VTEX itself allows one Change in progress (SalesOrderSystem014); the mock's own cap is checked
    # first, so a cap of 1 answers with its own code.
    api = make_api(MockConfig(delay=Fixed(60_000.0), max_pending_changes=1))
    oid = (await api.handling_order())["orderId"]
    assert (await api.change(oid, remove=[{"id": "sku-1", "quantity": 1}])).status_code == 202
    r = await api.change(oid, remove=[{"id": "sku-1", "quantity": 1}])
    assert_error(r, 409, code="TooManyPendingChanges", mentions="max_pending_changes")
    assert len(await api.change_history(oid)) == 1


async def test_orders_are_evicted_by_count(make_api) -> None:
    api = make_api(MockConfig(max_orders=3))
    ids = [(await api.create_order())["orderId"] for _ in range(5)]
    health = await api.health()
    assert (health["orders"], health["ordersEvicted"]) == (3, 2)
    assert (await api.client.get(f"/api/oms/pvt/orders/{ids[0]}")).status_code == 404
    assert (await api.client.get(f"/api/oms/pvt/orders/{ids[-1]}")).status_code == 200


async def test_orders_are_evicted_by_age() -> None:
    now = [0]
    app = create_app(MockConfig(order_ttl_s=10.0), clock=lambda: now[0])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mock.test") as c:
        first = (await c.post("/_mock/orders", json={"items": ITEMS})).json()["orderId"]
        now[0] = 11 * 10**9
        second = (await c.post("/_mock/orders", json={"items": ITEMS})).json()["orderId"]
        assert (await c.get(f"/api/oms/pvt/orders/{first}")).status_code == 404
        assert (await c.get(f"/api/oms/pvt/orders/{second}")).status_code == 200


async def test_body_over_the_limit_is_413_in_process(make_api, assert_error) -> None:
    api = make_api(MockConfig(max_body_bytes=4096))
    r = await api.client.post("/_mock/orders", content=b" " * 5000, headers=JSON)
    assert_error(r, 413, code="PayloadTooLarge", mentions="4096")
    assert r.headers["connection"] == "close"


# --- real server: 413 before reading, chunked cut-off, connection reuse ------------------------------------

def _raw(sock: socket.socket, timeout_s: float = 5.0) -> bytes:
    """One HTTP response from `sock` (headers + Content-Length body)."""
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def test_413_from_content_length_before_the_body_is_sent(live_mock) -> None:
    m = live_mock(MockConfig())
    with _connect(m.url) as s:
        s.sendall(b"POST /_mock/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 209715200\r\n\r\n")  # 200 MB announced, none sent
        t0 = time.monotonic()
        resp = _raw(s)
    assert resp.startswith(b"HTTP/1.1 413"), resp[:200]
    assert b"connection: close" in resp.lower()
    assert time.monotonic() - t0 < 5
    assert len(m.app.state.mock.store) == 0


def test_chunked_body_is_cut_off_at_the_limit(live_mock) -> None:
    m = live_mock(MockConfig(max_body_bytes=1 << 16))
    with _connect(m.url) as s:
        s.sendall(b"POST /_mock/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b" " * 16384
        try:
            for _ in range(64):  # 1 MiB offered; the mock answers after 64 KiB
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass  # the mock closed the connection while we were still sending: what we want
        resp = _raw(s)
    assert resp.startswith(b"HTTP/1.1 413"), resp[:200]
    assert len(m.app.state.mock.store) == 0


def test_connection_stays_usable_after_hostile_input(live_mock) -> None:
    m = live_mock(MockConfig())
    with _connect(m.url) as s:
        for body in (_deep(3000), b'{"items": [{"id": "a", "quantity": 1, "price": ' + b"9" * 5000 + b"}]}",
                     b'{"orderId": "..", "items": []}'):
            s.sendall(b"POST /_mock/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            resp = _raw(s)
            assert resp.startswith(b"HTTP/1.1 400"), resp[:200]
            assert b"connection: close" not in resp.lower()
        s.sendall(b"GET /_mock/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _raw(s).startswith(b"HTTP/1.1 200")


# --- item 5: protected mode, secrets from files ----------------------------------------------------------

def test_serve_refuses_a_non_loopback_address_without_credentials(capsys, monkeypatch) -> None:
    for name in ("VTEX_APP_KEY", "VTEX_APP_TOKEN", "MOCK_ADMIN_TOKEN", "MOCK_HOST"):
        monkeypatch.delenv(name, raising=False)
    assert main(["--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "non-loopback" in err and "--insecure" in err and "MOCK_ADMIN_TOKEN" in err


def test_exposure_rule() -> None:
    open_cfg, keys = MockConfig(), MockConfig(app_key="k", app_token="t")
    full = MockConfig(app_key="k", app_token="t", admin_token="a")
    assert exposure_error("127.0.0.1", open_cfg, False) is None
    assert exposure_error("localhost", open_cfg, False) is None
    assert exposure_error("::1", open_cfg, False) is None
    assert "admin token" in (exposure_error("0.0.0.0", keys, False) or "")
    assert exposure_error("0.0.0.0", full, False) is None
    assert exposure_error("0.0.0.0", open_cfg, True) is None


def test_secrets_from_files(tmp_path, monkeypatch) -> None:
    import argparse

    from mock_orders_api.__main__ import add_serve_arguments, config_from_args

    (tmp_path / "admin").write_text("adm-from-file\n")
    (tmp_path / "token").write_text("tok-from-env-file\n")
    monkeypatch.setenv("VTEX_APP_KEY", "k")
    monkeypatch.delenv("VTEX_APP_TOKEN", raising=False)
    monkeypatch.setenv("VTEX_APP_TOKEN_FILE", str(tmp_path / "token"))
    p = argparse.ArgumentParser()
    add_serve_arguments(p)
    cfg = config_from_args(p.parse_args(["--admin-token-file", str(tmp_path / "admin")]))
    assert (cfg.app_key, cfg.app_token, cfg.admin_token) == ("k", "tok-from-env-file", "adm-from-file")
    with pytest.raises(ConfigError, match="cannot read secret file"):
        config_from_args(p.parse_args(["--admin-token-file", str(tmp_path / "missing")]))


async def test_refused_invoice_bodies_are_kept_truncated(api) -> None:
    oid = (await api.handling_order())["orderId"]
    pad = "x" * 100_000
    r = await api.invoice(oid, 10**9, number="NFe-big", invoiceUrl=pad, items=[{"itemIndex": 0, "price": 1,
                                                                              "quantity": 1, "note": pad}])
    assert r.status_code == 400, r.text  # above the order value: refused
    refused = [i for i in (await api.audit(oid))["invoices"] if not i["accepted"]]
    assert len(json.dumps(refused)) < 10_000
    assert refused[0]["body"]["truncatedFromBytes"] > 200_000


def test_a_client_that_disconnects_mid_body_is_journaled_not_logged_as_an_error(live_mock, caplog) -> None:
    m = live_mock(MockConfig())
    with _connect(m.url) as s:
        s.sendall(b"POST /_mock/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{\"items\": ")
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        statuses = [e["status"] for e in m.app.state.mock.journal.query() if e["path"] == "/_mock/orders"]
        if statuses:
            break
        time.sleep(0.02)
    assert statuses == [499]
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
