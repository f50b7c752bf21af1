"""The services under test in integration mode: start one (when the scenario gives its command),
wait until it listens, stop it. A service is a black box reached by its hook URL; a feed-reading
service has none (it calls the mock itself: the runner waits for its first feed read instead)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from typing import AsyncIterator
from urllib.parse import urlsplit

from harness.core.scenario import Service
from harness.errors import TargetError
from mock_orders_api import child_env
from mock_orders_api.lifeline import spawn
from mock_orders_api.server import stop_process

# How long a service may take to listen (and to accept the mock's hook configuration).
SERVICE_START_S = 20.0


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def running(service: Service, api_url: str) -> AsyncIterator[str | None]:
    """The service's hook URL (None: it reads the feed), with the service started first when the
    scenario gives its command."""
    if not service.command:
        yield service.hook_url
        return
    port = str(_free_port())
    values = {"python": sys.executable, "port": port, "api_url": api_url}
    argv = [arg.format(**values) for arg in service.command]
    hook_url = service.hook_url.replace("{port}", port) if service.hook_url is not None else None
    # Own session, killed with the harness (mock_orders_api.lifeline): Ctrl-C is the harness's to handle.
    proc = spawn(argv, env=child_env(), stdout=subprocess.DEVNULL)
    try:
        if hook_url is not None:
            await _wait_listening(hook_url, proc, service.name)
        yield hook_url
    finally:
        stop_process(proc, 10.0)


async def _wait_listening(url: str, proc: subprocess.Popen[bytes], name: str) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)
    deadline = time.monotonic() + SERVICE_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TargetError(f"service {name!r} exited with code {proc.returncode} before listening on {url}")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=1.0)
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise TargetError(f"service {name!r} not listening on {url} after {SERVICE_START_S:.0f} s")


__all__ = ["SERVICE_START_S", "running"]
