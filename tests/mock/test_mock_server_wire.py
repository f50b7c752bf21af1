"""What the mock's server puts on the wire (real uvicorn, raw sockets): one write per response,
a 100 Continue sent at once, a lost response cut after its head."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from mock_orders_api.config import MockConfig
from mock_orders_api.server import ThreadedMock, _OneWrite

_ITEMS = {"items": [{"id": "sku-1", "quantity": 2, "price": 500}], "status": "handling"}


@pytest.fixture(scope="module")
def mock() -> Iterator[ThreadedMock]:
    with ThreadedMock(MockConfig()) as m:
        yield m


def _connect(m: ThreadedMock) -> socket.socket:
    u = urlsplit(m.url)
    s = socket.create_connection((u.hostname, u.port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _request(method: str, path: str, body: bytes = b"", extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{extra}"
    if body or method != "GET":
        head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def _read_response(s: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk
        body += chunk
    return head + b"\r\n\r\n" + body


def _create(m: ThreadedMock) -> str:
    with _connect(m) as s:
        s.sendall(_request("POST", "/_mock/orders", json.dumps(_ITEMS).encode()))
        return json.loads(_read_response(s).partition(b"\r\n\r\n")[2])["orderId"]


def test_connections_write_through_one_write_and_keep_alive(mock: ThreadedMock) -> None:
    oid = _create(mock)
    with _connect(mock) as s:
        for _ in range(3):  # keep-alive: every response of the connection, whole
            s.sendall(_request("GET", f"/api/oms/pvt/orders/{oid}"))
            head, _, body = _read_response(s).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200") and json.loads(body)["orderId"] == oid
        connections = mock._server.server_state.connections
        assert connections and all(isinstance(c.transport, _OneWrite) for c in connections)


def test_100_continue_is_not_held_back(mock: ThreadedMock) -> None:
    body = json.dumps(_ITEMS).encode()
    with _connect(mock) as s:
        s.sendall(_request("POST", "/_mock/orders", body, extra="expect: 100-continue\r\n")[:-len(body)])
        assert s.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")  # before the body is sent
        s.sendall(body)
        assert _read_response(s).startswith(b"HTTP/1.1 201")


def test_a_lost_response_leaves_its_head_then_the_connection_drops(mock: ThreadedMock) -> None:
    oid = _create(mock)
    invoice = json.dumps({"type": "Output", "issuedDate": "2026-01-09", "invoiceNumber": "NF-1", "invoiceValue": 1,
                          "items": [{"itemIndex": 0, "price": 1, "quantity": 1}]}).encode()
    with _connect(mock) as s:
        s.sendall(_request("POST", f"/api/orders/pvt/document/{oid}/invoices", invoice, extra="x-mock-fault: drop\r\n"))
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    assert data.startswith(b"HTTP/1.1 200") and b"content-length: 1024" in data.lower()
    assert data.endswith(b"\r\n\r\n")  # the head, and no body


class _Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_one_write_joins_a_head_with_its_body_and_flushes_it_on_close() -> None:
    t = _Recorder()
    w = _OneWrite(t)
    w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert t.writes == []
    w.write(b"{}")
    w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert t.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", b"HTTP/1.1 100 Continue\r\n\r\n"]
    w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1024\r\n\r\n")
    w.close()
    assert t.writes[-1] == b"HTTP/1.1 200 OK\r\ncontent-length: 1024\r\n\r\n" and t.closed
    assert w.is_closing()  # the rest is the transport's own


def test_a_head_request_gets_its_head_and_the_connection_stays_usable(mock: ThreadedMock) -> None:
    # uvicorn writes no body for HEAD, so a held head must go out when the response completes.
    with _connect(mock) as s:
        s.sendall(b"HEAD /openapi.json HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk, f"connection closed after {data!r}"
            data += chunk
        assert data.startswith(b"HTTP/1.1 200")
        assert data.endswith(b"\r\n\r\n")  # a head, no body
        s.sendall(_request("GET", "/_mock/health"))
        assert _read_response(s).startswith(b"HTTP/1.1 200")
