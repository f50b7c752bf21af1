"""The ASGI app: the routes of `routes/`, the request journal, errors as VTEX-style JSON,
and `/openapi.json` + `/docs` built from the routes' own operations.

Input never gets a 500 by design (see routes/_shared.py and limits.py); should one
remain, it is still a VTEX-shaped body and carries `Connection: close`, so the client
does not reuse a connection the server is about to drop. A 405 carries `Allow` with
every method the path serves. No CORS headers are ever sent."""

from __future__ import annotations

import asyncio
import http
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from mock_orders_api import faults, openapi
from mock_orders_api.config import MockConfig
from mock_orders_api.errors import ApiError, Forbidden, NotFound, Unauthorized
from mock_orders_api.faults import ResponseLost
from mock_orders_api.journal import request_entry
from mock_orders_api.limits import bounded_receive, check_declared, content_length
from mock_orders_api.routes import ROUTES, ApiRoute
from mock_orders_api.routes._shared import json_response
from mock_orders_api.state import MockState


def error_response(err: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    headers = {**(err.headers or {}), **(headers or {})}
    if err.status == 413 or err.status >= 500:
        headers["connection"] = "close"  # 413: the rest of the body is unread; 5xx: state unknown
    return json_response(err.body(), err.status, headers)


async def _api_error(request: Request, err: Exception) -> Response:
    assert isinstance(err, ApiError)
    return error_response(err)


async def _http_error(request: Request, err: Exception) -> Response:
    """Routing errors (unknown path, wrong method) in the same error shape as the handlers'."""
    assert isinstance(err, HTTPException)
    cls = {401: Unauthorized, 403: Forbidden, 404: NotFound}.get(err.status_code)
    message = f"{request.method} {request.url.path}: {err.detail}"
    # Any other status (405, ...) is named after its reason phrase, e.g. "MethodNotAllowed".
    e = cls(message) if cls is not None else ApiError(message, code=_status_code_name(err.status_code))
    e.status = err.status_code
    headers = dict(err.headers or {})
    if err.status_code == 405:
        # Starlette names only the first route matching the path; each ApiRoute has one method.
        allowed = sorted({m for r in request.app.routes if isinstance(r, Route) and r.methods
                          and r.path_regex.match(request.url.path) for m in r.methods})
        headers["Allow"] = ", ".join(allowed)
    return error_response(e, headers)


async def _client_gone(request: Request, err: Exception) -> Response:
    """The client closed the connection before its body arrived: nothing to answer, nothing to log
    (journaled as 499, nginx's "client closed request")."""
    return Response(status_code=499)


async def _server_error(request: Request, err: Exception) -> Response:
    """A bug, not input: still the VTEX error shape, and the connection is closed after it."""
    e = ApiError(f"{request.method} {request.url.path}: internal error ({type(err).__name__})",
                 code="InternalServerError")
    e.status = 500
    return error_response(e)


def _status_code_name(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return f"Http{status}"


class MockApp(Starlette):
    """The mock's ASGI app: one layer in front of Starlette for every request.

    Per request, in one frame (no middleware chain): stamp the arrival, bound the body
    (limits.py), find the API route in a method -> path table, call its handler, render
    `ApiError`s, cut lost responses (faults.py), journal the request. Only what the table
    does not serve (`/openapi.json`, `/docs`, its assets, 404 / 405 with `Allow`, routes added
    to `router.routes` after creation) goes through Starlette's own stack, journaled and bounded
    the same way. Measured under wrk (GET order): the layers this replaces were ~15% of the
    mock's CPU, and its CPU per request fell by ~25-30% (docs/performance.md).

    Untimed routes (reads and the admin API: setup, polls, audits) yield to the loop once
    before acting while a state-changing request is still waiting for its body (a timed one:
    the harness holds its last byte), so one whose last byte arrived in the same loop
    iteration acts first; with none waiting they cost nothing extra."""

    def __init__(self, state: MockState, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state.mock = state
        self.awaiting_body = 0  # state-changing requests waiting in their body read (a timed last byte)
        self._mock = state
        self.mock = state  # what the routes read (`routes._shared.mock`): app.state.mock without State's lookup
        self._clock = state.clock
        self._routes: dict[str, list[tuple[re.Pattern[str], ApiRoute]]] = {}
        for route in ROUTES:
            self._routes.setdefault(route.method, []).append((route.path_regex, route))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        mock = self._mock
        arrival = self._clock()
        scope["app"] = self
        req_state = scope.get("state")
        if req_state is None:
            req_state = scope["state"] = {}
        req_state["arrival_ns"] = arrival
        status = 0
        try:
            limit = mock.config.max_body_bytes
            declared = content_length(scope)
            refused = check_declared(scope, declared, limit)
            if refused is not None:
                status = refused.status
                await error_response(refused)(scope, receive, send)
                return
            if declared is None:
                receive = bounded_receive(scope, receive, limit)
            route, match = self._match(scope)
            if route is None:
                async def _send(message: Message) -> None:  # Starlette's stack: the status it sends
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                    await send(message)

                await super().__call__(scope, receive, _send)
                return
            if route.deferrable:
                if self.awaiting_body:
                    await asyncio.sleep(0)  # a timed request's last byte woken in this iteration acts first
            elif declared:
                receive = _AwaitedBody(self, receive)
            scope["path_params"] = match
            request = Request(scope, receive)
            try:
                response = await route.endpoint(request)
            except ApiError as err:
                response = error_response(err)
            except HTTPException as err:
                response = await _http_error(request, err)
            except ClientDisconnect:
                response = await _client_gone(request, ClientDisconnect())
            except ResponseLost:
                status = 200
                await faults.send_lost_start(send)
                raise  # the server aborts the half-sent response: the connection drops
            except Exception as err:
                status = 500
                await (await _server_error(request, err))(scope, receive, send)
                raise  # as Starlette's ServerErrorMiddleware: the server logs it
            status = response.status_code
            await response(scope, receive, send)
        finally:
            mock.journal.add(request_entry(scope, status, arrival, self._clock()))

    def _match(self, scope: Scope) -> tuple[ApiRoute | None, dict[str, str]]:
        if scope.get("root_path"):
            return None, {}  # mounted under a prefix: Starlette's router strips it
        path = scope["path"]
        for regex, route in self._routes.get(scope["method"], ()):
            m = regex.match(path)
            if m is not None:
                return route, m.groupdict()
        return None, {}


class _AwaitedBody:
    """`receive` of a state-changing request with a body, counted in `MockApp.awaiting_body` while
    it waits in it: a body already arrived (a client that sent it with the headers) is read in the
    same step, unseen by any other request, so only a held last byte makes reads yield (under wrk,
    counting every such request from its start made most reads of the mix yield for nothing)."""

    __slots__ = ("_app", "_receive")

    def __init__(self, app: MockApp, receive: Receive) -> None:
        self._app = app
        self._receive = receive

    async def __call__(self) -> Message:
        app = self._app
        app.awaiting_body += 1
        try:
            return await self._receive()
        finally:
            app.awaiting_body -= 1


def create_app(config: MockConfig | None = None, clock: Callable[[], int] = time.monotonic_ns,
               deterministic: bool = False) -> Starlette:
    """A fresh mock with its own state (each app instance is independent).

    `clock` and `deterministic`: see `MockState` (a simulated run's virtual clock)."""
    config = config or MockConfig()
    config.check_auth()
    state = MockState(config, clock=clock, deterministic=deterministic)
    doc = openapi.document(ROUTES)

    async def _openapi(request: Request) -> Response:
        return JSONResponse(doc)

    async def _docs(request: Request) -> Response:
        return HTMLResponse(openapi.swagger_html("/openapi.json"))

    @asynccontextmanager
    async def _lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await state.hooks.aclose()  # cancel pending hook deliveries, close their client

    return MockApp(
        state,
        routes=[*ROUTES, Route("/openapi.json", _openapi, methods=["GET"], include_in_schema=False),
                Route("/docs", _docs, methods=["GET"], include_in_schema=False),
                Mount(openapi.ASSETS_PATH, StaticFiles(directory=openapi.SWAGGER_UI_DIR), name="docs-assets")],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, ClientDisconnect: _client_gone,
                            Exception: _server_error},
        lifespan=_lifespan,
    )
