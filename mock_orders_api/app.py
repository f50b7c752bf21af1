"""The ASGI app: the routes of `routes/`, the request journal, errors as VTEX-style JSON,
and `/openapi.json` + `/docs` built from the routes' own operations.

Input never gets a 500 by design (see routes/_shared.py and limits.py); should one
remain, it is still a VTEX-shaped body and carries `Connection: close`, so the client
does not reuse a connection the server is about to drop. A 405 carries `Allow` with
every method the path serves. No CORS headers are ever sent."""

from __future__ import annotations

import http
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mock_orders_api import openapi
from mock_orders_api.config import MockConfig
from mock_orders_api.errors import ApiError, Forbidden, NotFound, Unauthorized
from mock_orders_api.faults import DropLostResponses
from mock_orders_api.journal import JournalMiddleware
from mock_orders_api.limits import BodyLimitMiddleware
from mock_orders_api.routes import ROUTES
from mock_orders_api.state import MockState


def error_response(err: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    headers = {**(err.headers or {}), **(headers or {})}
    if err.status == 413 or err.status >= 500:
        headers["connection"] = "close"  # 413: the rest of the body is unread; 5xx: state unknown
    return JSONResponse(err.body(), status_code=err.status, headers=headers)


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

    app = Starlette(
        routes=[*ROUTES, Route("/openapi.json", _openapi, methods=["GET"], include_in_schema=False),
                Route("/docs", _docs, methods=["GET"], include_in_schema=False),
                Mount(openapi.ASSETS_PATH, StaticFiles(directory=openapi.SWAGGER_UI_DIR), name="docs-assets")],
        middleware=[Middleware(JournalMiddleware, journal=state.journal, clock=clock),
                    Middleware(BodyLimitMiddleware, limit=lambda: state.config.max_body_bytes),
                    Middleware(DropLostResponses)],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, ClientDisconnect: _client_gone,
                            Exception: _server_error},
        lifespan=_lifespan,
    )
    app.state.mock = state
    return app
