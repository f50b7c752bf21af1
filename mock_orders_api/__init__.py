"""A VTEX-shaped mock Orders API that reproduces (vulnerable) or fixes (strict) ticket 1348894."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "MockConfig", "parse_delay"]


def __getattr__(name: str) -> Any:
    # Lazy, so that light users of the package (the firing helper process, the
    # config and errors modules) do not pay for importing FastAPI.
    if name == "create_app":
        from mock_orders_api.app import create_app

        return create_app
    if name in ("MockConfig", "parse_delay"):
        from mock_orders_api import config

        return getattr(config, name)
    raise AttributeError(f"module 'mock_orders_api' has no attribute {name!r}")
