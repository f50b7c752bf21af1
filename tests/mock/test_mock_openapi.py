"""The OpenAPI document lists exactly the routes the app serves, so it cannot drift from them."""

from __future__ import annotations

from starlette.routing import Route

from mock_orders_api import create_app

# Served beside the API and left out of its own document.
_UNDOCUMENTED = {("GET", "/openapi.json"), ("GET", "/docs")}


async def test_openapi_lists_every_route_the_app_serves(make_client) -> None:  # type: ignore[no-untyped-def]
    app = create_app()
    served = {(m, r.path) for r in app.routes if isinstance(r, Route) for m in r.methods or () if m != "HEAD"}
    r = await make_client().get("/openapi.json")
    assert r.status_code == 200
    documented = {(m.upper(), p) for p, ops in r.json()["paths"].items() for m in ops}
    assert documented == served - _UNDOCUMENTED
    for path, ops in r.json()["paths"].items():
        for op in ops.values():
            names = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert names == {s[1:-1] for s in path.split("/") if s.startswith("{")}, path
