"""A request's headers read through one table per request (routes and faults.py).

`header(request, name)` answers as Starlette's `request.headers.get(name)` does (the first
header of that name; names in the scope are matched as they are, the asked name lowercased).
"""

from __future__ import annotations

from starlette.requests import Request


def header(request: Request, name: str) -> str | None:
    """`request.headers.get(name)` (the first header of that name), from a table built once per
    request: Starlette's `Headers` scans the list and raises a KeyError inside for every header that
    is absent, and a request reads up to ten of them (~5% of the mock's CPU per request)."""
    scope = request.scope
    table: dict[str, str] | None = scope.get("mock.headers")
    if table is None:
        table = scope["mock.headers"] = {k.decode("latin-1"): v.decode("latin-1")
                                         for k, v in reversed(scope["headers"])}
    return table.get(name.lower())
