"""A VTEX-shaped mock Orders API that reproduces (vulnerable) or fixes (strict) ticket 1348894."""

from mock_orders_api.app import create_app
from mock_orders_api.config import MockConfig, parse_delay

__all__ = ["create_app", "MockConfig", "parse_delay"]
