"""Every API route, in routing order: the VTEX-shaped resources, then the admin API.

Each route is an `ApiRoute` (a Starlette `Route` for one method) carrying its
OpenAPI operation; `openapi.py` builds the document from these, so the document
lists exactly the routes the app serves.
"""

from __future__ import annotations

from mock_orders_api.routes import admin, changes, feed, hooks, invoices, orders
from mock_orders_api.routes._shared import ApiRoute

ROUTES: tuple[ApiRoute, ...] = (*orders.ROUTES, *invoices.ROUTES, *changes.ROUTES, *hooks.ROUTES, *feed.ROUTES, *admin.ROUTES)

__all__ = ["ROUTES", "ApiRoute"]
