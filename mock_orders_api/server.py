"""Running the mock: in the foreground, in a thread (tests), or as a child process.

Loopback-only by default. A socket is bound *before* uvicorn starts so that
port 0 (a free port) works and the caller knows the port with no race.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mock_orders_api import child_env
from mock_orders_api.app import create_app
from mock_orders_api.config import SECRET_ENV, MockConfig
from mock_orders_api.errors import RaceHarnessError
from mock_orders_api.faults import ResponseLost
from mock_orders_api.gc_pacer import GcPacer
from mock_orders_api.lifeline import spawn
from mock_orders_api.wire import ADMIN_TOKEN_HEADER


class _OneWrite:
    """A connection's transport that hands a response's head to the socket together with the first
    write after it (the body): one `send` syscall per response instead of two. uvicorn writes the
    status line and headers as one chunk on `http.response.start` and the body on
    `http.response.body`; under wrk (GET order) the second syscall was ~15% of the mock's CPU.

    Only a final response's head is held (`HTTP/1.1 1xx`, e.g. 100 Continue, goes out at once);
    a response that completes without a body write (HEAD) has its head written at completion;
    `close()` first writes a held head, so a response cut after its start (a `ResponseLost`, a bug
    after the start) leaves the same bytes on the wire as before: a head and then the drop."""

    __slots__ = ("_head", "_transport")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
        elif data[:5] == b"HTTP/" and data[9:10] != b"1" and data[-4:] == b"\r\n\r\n":
            self._head = data
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Write a held head now (a response that ends without a body write: HEAD)."""
        head, self._head = self._head, None
        if head is not None and not self._transport.is_closing():
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's own
        return getattr(self._transport, name)


class _OneWriteProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a `_OneWrite` transport."""

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(_OneWrite(transport))

    def on_response_complete(self) -> None:
        # uvicorn writes no body for HEAD: without this its head would wait for the next response.
        self.transport.flush()
        super().on_response_complete()


# No access log, no proxy-headers layer (the mock binds loopback: no proxy in front); uvloop and
# httptools are dependencies (uvicorn's "auto" loop picks uvloop), the protocol is httptools'
# with one socket write per response.
_UVICORN: dict[str, Any] = {"access_log": False, "proxy_headers": False, "timeout_keep_alive": 60, "backlog": 4096,
                            "http": _OneWriteProtocol}


class ServerError(RaceHarnessError):
    """The mock server could not start or stop."""


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY on accepted sockets only
    # when their proto says TCP; without it every keep-alive response waits ~40 ms (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ServerError(f"cannot bind {host}:{port}: {err}") from None
    sock.listen(4096)
    return sock


def serve(config: MockConfig, host: str = "127.0.0.1", port: int = 8080, fd: int | None = None,
          log_level: str = "warning") -> None:
    """Serve in the foreground until interrupted."""
    sock = socket.socket(fileno=fd) if fd is not None else bind(host, port)
    app = create_app(config)
    pacer = GcPacer()  # this process is the mock's own: no GC stalls while requests flow
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, callback_notify=pacer.tick,
                                           timeout_notify=0.5, **_UVICORN))
    mock = app.state.mock
    pacer.busy = lambda: bool(server.server_state.tasks) or mock.timers_armed() > 0
    pacer.install()
    logging.getLogger("uvicorn.error").addFilter(_not_a_disconnect)
    try:
        server.run(sockets=[sock])
    finally:
        pacer.uninstall()


def _not_a_disconnect(record: logging.LogRecord) -> bool:
    """A client that hung up mid-request (a harness stopped by Ctrl-C) is not a server error, nor is
    a response the fault schedule cut on purpose (journaled as `response-lost`): uvicorn's
    "Exception in ASGI application" record of a ClientDisconnect or ResponseLost is dropped."""
    exc = record.exc_info[1] if record.exc_info else None
    while exc is not None:
        if isinstance(exc, (ClientDisconnect, ResponseLost)):
            return False
        group = getattr(exc, "exceptions", None)  # an ExceptionGroup from a task group
        exc = group[0] if group and len(group) == 1 else exc.__cause__ or exc.__context__
    return True


def wait_healthy(url: str, timeout_s: float = 15.0, headers: dict[str, str] | None = None,
                 alive: "subprocess.Popen[bytes] | None" = None) -> None:
    """Poll `/_mock/health` until it answers 200, within a bound."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if alive is not None and alive.poll() is not None:
                raise ServerError(f"mock process exited with code {alive.returncode} before it was healthy")
            try:
                r = client.get(f"{url}/_mock/health", headers=headers)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}"
            except httpx.HTTPError as err:
                last = repr(err)
            time.sleep(0.02)
    raise ServerError(f"mock at {url} not healthy after {timeout_s:.0f} s ({last})")


class ThreadedMock:
    """The mock on a free loopback port, served by uvicorn in a background thread.

    `with ThreadedMock(config) as m: m.url, m.app` — `m.app.state.mock` is the
    live state for white-box assertions.
    """

    def __init__(self, config: MockConfig | None = None, host: str = "127.0.0.1") -> None:
        self.config = config or MockConfig()
        self.app = create_app(self.config)
        self._sock = bind(host, 0)
        port = self._sock.getsockname()[1]
        self.url = f"http://{host}:{port}"
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", **_UVICORN))
        logging.getLogger("uvicorn.error").addFilter(_not_a_disconnect)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> ThreadedMock:
        self._thread.start()
        wait_healthy(self.url, headers=_admin_headers(self.config))
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
        if self._thread.is_alive():
            raise ServerError("mock server thread did not stop within 10 s")


class MockProcess:
    """The mock in a child process (its own core and GIL: timing is not shared with the client)."""

    def __init__(self, config: MockConfig | None = None, host: str = "127.0.0.1", port: int = 0,
                 log_level: str = "warning") -> None:
        self.config = config or MockConfig()
        self._sock = bind(host, port)
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        self._log_level = log_level
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MockProcess:
        cfg = self.config
        args = [sys.executable, "-m", "mock_orders_api", "--fd", str(self._sock.fileno()),
                "--policy", cfg.policy, "--change-delay", _delay_arg(cfg), "--settle-ms", str(cfg.settle_ms),
                "--seed", str(cfg.seed), "--log-level", self._log_level]
        env = child_env()
        # Credentials travel by environment, never on the command line (ps shows it); the
        # hook settings too (one mechanism; a parent's MOCK_HOOK_* must not leak in).
        for name, value in (("VTEX_APP_KEY", cfg.app_key), ("VTEX_APP_TOKEN", cfg.app_token),
                            ("MOCK_ADMIN_TOKEN", cfg.admin_token), ("VTEX_READONLY_APP_KEY", cfg.readonly_app_key),
                            ("VTEX_READONLY_APP_TOKEN", cfg.readonly_app_token), ("MOCK_HOOK_URL", cfg.hook_url),
                            ("MOCK_HOOK_STATUS", ",".join(cfg.hook_status) if cfg.hook_status else None),
                            ("MOCK_HOOK_TIMEOUT_S", str(cfg.hook_timeout_s)),
                            ("MOCK_HOOK_RETRIES", str(cfg.hook_retries)),
                            ("MOCK_HOOK_DELAY_MS", str(cfg.hook_delay_ms)),
                            ("MOCK_HOOK_RETRY_HORIZON_S", str(cfg.hook_retry_horizon_s)),
                            ("MOCK_HOOK_DUPLICATE_RATE", str(cfg.hook_duplicate_rate)),
                            ("MOCK_HOOK_EXTRA_DELAY_MS", str(cfg.hook_extra_delay_ms)),
                            ("MOCK_CHANGE_WORKERS", str(cfg.change_workers) if cfg.change_workers else None),
                            ("MOCK_JOURNAL_BYTES", str(cfg.journal_bytes)),
                            ("MOCK_MAX_BODY_BYTES", str(cfg.max_body_bytes)),
                            ("MOCK_MAX_PENDING_CHANGES", str(cfg.max_pending_changes)),
                            ("MOCK_MAX_ORDERS", str(cfg.max_orders) if cfg.max_orders else None),
                            ("MOCK_ORDER_TTL_S", str(cfg.order_ttl_s) if cfg.order_ttl_s else None),
                            ("MOCK_HOOK_ALLOW", ",".join(cfg.hook_allow) or None)):
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        for name in SECRET_ENV.values():  # a parent's secret files must not override the config's secrets
            env.pop(f"{name}_FILE", None)
        # Own session and parent-death signal (mock_orders_api.lifeline): a Ctrl-C at the terminal
        # is the parent's to handle, and a killed parent leaves no mock holding the port.
        self._proc = spawn(args, pass_fds=(self._sock.fileno(),), env=env)
        try:
            wait_healthy(self.url, headers=_admin_headers(cfg), alive=self._proc)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    @property
    def pid(self) -> int | None:
        """The child's process id (None before `__enter__`)."""
        return self._proc.pid if self._proc is not None else None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._proc is not None:
            stop_process(self._proc, 10.0)
        self._sock.close()


def stop_process(proc: subprocess.Popen[Any], timeout_s: float) -> None:
    """Terminate a child and reap it; kill it if it has not exited within `timeout_s`."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _delay_arg(cfg: MockConfig) -> str:
    spec = cfg.delay.spec()
    kind = spec.pop("kind")
    return f"{kind}:" + ",".join(str(v) for v in spec.values())


def _admin_headers(cfg: MockConfig) -> dict[str, str] | None:
    return {ADMIN_TOKEN_HEADER: cfg.admin_token} if cfg.admin_token else None
