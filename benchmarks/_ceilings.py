"""What Python allows: hello-world servers on the mock's own server settings, for
`mock_throughput_wrk.py` to read the mock's figure against (a benchmark helper, not a test).

Each answers `GET /` with the same small JSON body, on uvicorn with the mock's settings
(`mock_orders_api.server._UVICORN`: uvloop + httptools, no access log), one process:

* `raw`: a bare ASGI callable (the server's own cost: parsing, two writes per response);
* `starlette`: a Starlette app with one route returning a `JSONResponse`;
* `fastapi`: a FastAPI app with one path operation. FastAPI is not a dependency of the
  project (the `bench` extra: `pip install -e '.[bench]'`); without it the row says so.

    python benchmarks/_ceilings.py KIND --fd FD   (started by mock_throughput_wrk.py)
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from _common import ROOT

KINDS = ("raw", "starlette", "fastapi")
_BODY = b'{"ok":true}'


def available(kind: str) -> str | None:
    """None if `kind` can be served here, else why not."""
    if kind != "fastapi":
        return None
    try:
        import fastapi  # noqa: F401
    except ImportError:
        return "fastapi not installed (not a project dependency; pip install -e '.[bench]' to measure it)"
    return None


def _app(kind: str) -> Any:
    if kind == "raw":
        async def raw(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                while (await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
                return
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")]})
            await send({"type": "http.response.body", "body": _BODY})
        return raw
    if kind == "starlette":
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def hello(request: Any) -> JSONResponse:
            return JSONResponse({"ok": True})
        return Starlette(routes=[Route("/", hello)])
    from fastapi import FastAPI

    api = FastAPI()

    @api.get("/")
    async def hello_fastapi() -> dict[str, bool]:
        return {"ok": True}
    return api


@contextmanager
def serve(kind: str) -> Iterator[tuple[str, int]]:
    """`kind` served in a child process on a free loopback port: yields (url, pid)."""
    import httpx

    from mock_orders_api.server import ServerError, bind, stop_process

    sock = bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    proc = subprocess.Popen([sys.executable, __file__, kind, "--fd", str(sock.fileno())],
                            pass_fds=(sock.fileno(),), cwd=ROOT)
    try:
        deadline = time.monotonic() + 15.0
        with httpx.Client(timeout=1.0) as client:
            while True:
                if proc.poll() is not None:
                    raise ServerError(f"{kind} server exited with code {proc.returncode}")
                with suppress(httpx.HTTPError):
                    if client.get(url + "/").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise ServerError(f"{kind} server at {url} not answering after 15 s")
                time.sleep(0.05)
        yield url, proc.pid
    finally:
        stop_process(proc, 10.0)
        sock.close()


def main() -> None:
    import uvicorn

    from mock_orders_api.server import _UVICORN

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--fd", type=int, required=True)
    args = p.parse_args()
    config = uvicorn.Config(_app(args.kind), log_level="warning", **_UVICORN)
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=args.fd)])


if __name__ == "__main__":
    main()
