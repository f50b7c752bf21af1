"""A VTEX-shaped mock Orders API that reproduces (vulnerable) or fixes (strict) ticket 1348894."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["create_app", "MockConfig", "parse_delay", "child_env"]


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child `python -m ...` of this project: the project
    root on PYTHONPATH, so children work from a checkout that is not installed."""
    out = dict(os.environ if env is None else env)
    root = str(Path(__file__).resolve().parent.parent)
    out["PYTHONPATH"] = os.pathsep.join(p for p in (root, out.get("PYTHONPATH")) if p)
    return out


def __getattr__(name: str) -> Any:
    # Lazy, so that light users of the package (the firing helper process, the
    # config and errors modules) do not pay for importing Starlette.
    if name == "create_app":
        from mock_orders_api.app import create_app

        return create_app
    if name == "MockConfig":
        from mock_orders_api.config import MockConfig

        return MockConfig
    if name == "parse_delay":
        from mock_orders_api.delays import parse_delay

        return parse_delay
    raise AttributeError(f"module 'mock_orders_api' has no attribute {name!r}")
