"""The OpenAPI 3.1 document and the Swagger UI page, built from the routes' own operations.

The page works offline: its JavaScript and CSS are served from `SWAGGER_UI_DIR`, the Swagger UI
distribution the `swagger-ui-py` package ships in its wheel (Swagger UI 5: reads OpenAPI 3.1) (mounted at `ASSETS_PATH`), never
from a CDN."""

from __future__ import annotations

import http
import importlib.util
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mock_orders_api import wire
from mock_orders_api.routes import ApiRoute

TITLE = "Mock VTEX Orders API (race harness)"
# Found, not imported: importing swagger_ui pulls in yaml and jinja2, which only its own page
# rendering needs; the mock serves the files (and an in-process simulation never does).
_SPEC = importlib.util.find_spec("swagger_ui")
if _SPEC is None or not _SPEC.submodule_search_locations:
    raise ImportError("mock_orders_api.openapi: the swagger-ui-py package (a dependency) is not installed")
SWAGGER_UI_DIR = Path(next(iter(_SPEC.submodule_search_locations))) / "static"
ASSETS_PATH = "/docs/assets"
_DESCRIPTION = ("A stateful mock of the VTEX Orders API parts that ticket 1348894 touches: asynchronous Changes, "
                "invoices, a vulnerable and a strict policy, order hooks (status-change notifications), Orders Feed v3, audit and "
                "journal under /_mock.")
_ERROR_SCHEMA = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message", "exception"],
                             "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                            "exception": {"type": "null"}}}},
}


def document(routes: Iterable[ApiRoute]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    statuses: set[int] = set()
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = route.operation
        statuses.update(int(s) for s, r in route.operation["responses"].items() if "$ref" in r)
    responses: dict[str, Any] = {
        f"Error{s}": {"description": http.HTTPStatus(s).phrase,
                      "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        for s in sorted(statuses)}
    if "Error429" in responses:
        # VTEX answers 429 with Retry-After and recommends a 1-minute back-off (orders-feed guide).
        responses["Error429"]["headers"] = {"Retry-After": {
            "description": "seconds to wait before retrying (delta-seconds, at least 1)",
            "schema": {"type": "integer", "minimum": 1}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": "1.0", "description": _DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR_SCHEMA},
            "responses": responses,
            "securitySchemes": {
                "vtexAppKey": {"type": "apiKey", "in": "header", "name": wire.APP_KEY_HEADER},
                "vtexAppToken": {"type": "apiKey", "in": "header", "name": wire.APP_TOKEN_HEADER},
                "mockAdminToken": {"type": "apiKey", "in": "header", "name": wire.ADMIN_TOKEN_HEADER},
                "mockAdminBearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }


def swagger_html(openapi_url: str) -> str:
    """The /docs page: Swagger UI from the local assets, reading `openapi_url`."""
    return f"""<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<link type="text/css" rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css">
<link rel="icon" type="image/png" href="{ASSETS_PATH}/favicon-32x32.png">
<title>{TITLE} - Swagger UI</title>
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>
<script>
const ui = SwaggerUIBundle({{url: '{openapi_url}', dom_id: '#swagger-ui', deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout"}})
</script>
</body>
</html>
"""
