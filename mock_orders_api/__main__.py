"""`python -m mock_orders_api` (also `race-harness serve`)."""

from __future__ import annotations

import argparse
import sys

from mock_orders_api.config import POLICIES, MockConfig
from mock_orders_api.delays import DELAY_SYNTAX
from mock_orders_api.errors import ConfigError
from mock_orders_api.ratelimit import ROUTE_NAMES


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=None, help="bind address (env MOCK_HOST; default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (env MOCK_PORT; default 8080; 0 = any free port)")
    p.add_argument("--fd", type=int, default=None, help=argparse.SUPPRESS)  # a listening socket from a parent
    p.add_argument("--policy", choices=POLICIES, help="vulnerable (reproduces the ticket) or strict (env MOCK_POLICY)")
    p.add_argument("--change-delay", metavar="DIST", help=f"Change delay: {DELAY_SYNTAX} (env MOCK_CHANGE_DELAY)")
    p.add_argument("--settle-ms", type=float, help="invoice settle time S in ms (env MOCK_SETTLE_MS)")
    p.add_argument("--seed", type=int, help="seed of the delay draws (env MOCK_SEED)")
    p.add_argument("--app-key", help="require this X-VTEX-API-AppKey (prefer env VTEX_APP_KEY)")
    p.add_argument("--app-token", help="require this X-VTEX-API-AppToken (prefer env VTEX_APP_TOKEN)")
    p.add_argument("--admin-token", help="protect /_mock with this token (prefer env MOCK_ADMIN_TOKEN)")
    p.add_argument("--hook-url", metavar="URL", help="POST order status changes to this http(s) URL from the start "
                   "(no ping; env MOCK_HOOK_URL); or configure it with POST /api/orders/hook/config")
    p.add_argument("--hook-status", metavar="LIST", help="comma list of statuses the hook is told about "
                   "(env MOCK_HOOK_STATUS; default all)")
    p.add_argument("--hook-delay-ms", type=float, help="pinned delay between a status change and its hook "
                   "delivery (env MOCK_HOOK_DELAY_MS; default 0)")
    p.add_argument("--change-workers", type=int, metavar="N", help="at most N Changes processing at once across "
                   "orders; the rest queue (env MOCK_CHANGE_WORKERS; default unbounded)")
    p.add_argument("--rate-limit", action="append", metavar="ROUTE=N/s", default=None,
                   help="token bucket on a route, N/s or N/min, repeatable; routes: "
                   f"{', '.join(ROUTE_NAMES)}; or 'vtex' for VTEX's documented Get order limit (6000/min) "
                   "(env MOCK_RATE_LIMITS, comma list; default off)")
    p.add_argument("--change-cancel-rate", type=float, metavar="P", help="probability that an accepted Change ends "
                   "canceled instead of done (seeded; env MOCK_CHANGE_CANCEL_RATE; default 0)")
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))


def config_from_args(args: argparse.Namespace) -> MockConfig:
    """Env first, flags override; raises ConfigError naming the bad setting."""
    cfg = MockConfig.from_env()
    patch = {k: v for k, v in (("policy", args.policy), ("delay", args.change_delay),
                               ("settle_ms", args.settle_ms), ("seed", args.seed), ("hook_url", args.hook_url),
                               ("hook_status", args.hook_status), ("hook_delay_ms", args.hook_delay_ms),
                               ("change_workers", args.change_workers), ("rate_limits", args.rate_limit),
                               ("change_cancel_rate", args.change_cancel_rate))
             if v is not None}
    cfg = cfg.updated(patch, where="flags", startup=True)
    for attr in ("app_key", "app_token", "admin_token"):
        if getattr(args, attr):
            setattr(cfg, attr, getattr(args, attr))
    cfg.check_auth()
    return cfg


def run_serve(args: argparse.Namespace) -> int:
    import os

    from mock_orders_api.server import ServerError, serve

    try:
        cfg = config_from_args(args)
        host = args.host or os.environ.get("MOCK_HOST", "127.0.0.1")
        port = args.port if args.port is not None else _env_port(os.environ.get("MOCK_PORT", "8080"))
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.fd is None:
        print(f"mock Orders API on http://{host}:{port} (policy={cfg.policy}, delay={cfg.delay.spec()}, "
              f"settle_ms={cfg.settle_ms}); docs at /docs, admin at /_mock", file=sys.stderr)
        if cfg.hook_url:
            print(f"order hook: {cfg.hook_url} (statuses: {','.join(cfg.hook_status or ('all',))})", file=sys.stderr)
    try:
        serve(cfg, host=host, port=port, fd=args.fd, log_level=args.log_level)
    except ServerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _env_port(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"MOCK_PORT: expected an integer port; got {value!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mock_orders_api", description="Serve the mock VTEX Orders API.")
    add_serve_arguments(parser)
    return run_serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
