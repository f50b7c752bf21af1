"""`python -m mock_orders_api` (also `race-harness serve`).

Protected mode, as Redis has it: on a non-loopback address the mock refuses to start
(exit 2, one line saying why and how) unless VTEX credentials and an admin token are
configured, or `--insecure` is given. Secrets come from env vars or files (`*_FILE` env
vars, `--*-file` flags); the plain `--app-key`/`--app-token`/`--admin-token` flags stay
for quick local use (they are visible in `ps`).
"""

from __future__ import annotations

import argparse
import ipaddress
import sys

from mock_orders_api.config import POLICIES, MockConfig, read_secret_file
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
    p.add_argument("--app-token-file", metavar="PATH", help="read the app token from this file "
                   "(env VTEX_APP_TOKEN_FILE)")
    p.add_argument("--admin-token-file", metavar="PATH", help="read the admin token from this file "
                   "(env MOCK_ADMIN_TOKEN_FILE)")
    p.add_argument("--insecure", action="store_true", help="serve on a non-loopback address without "
                   "credentials (protected mode off: anyone who reaches the port controls the mock)")
    p.add_argument("--hook-allow", metavar="LIST", help="comma list of hosts, IPs or CIDRs hooks may target "
                   "besides loopback; * = any (env MOCK_HOOK_ALLOW)")
    p.add_argument("--journal-bytes", type=int, metavar="N", help="bound of the request journal in bytes "
                   "(env MOCK_JOURNAL_BYTES; default 64 MiB)")
    p.add_argument("--max-body-bytes", type=int, metavar="N", help="largest request body accepted "
                   "(env MOCK_MAX_BODY_BYTES; default 1 MiB)")
    p.add_argument("--max-pending-changes", type=int, metavar="N", help="unfinished Changes per order "
                   "(env MOCK_MAX_PENDING_CHANGES; default 100)")
    p.add_argument("--max-orders", type=int, metavar="N", help="keep at most N orders, evicting the oldest "
                   "(env MOCK_MAX_ORDERS; default unbounded)")
    p.add_argument("--order-ttl-s", type=float, metavar="S", help="evict orders older than S seconds "
                   "(env MOCK_ORDER_TTL_S; default never)")
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
    p.add_argument("--cancel-delay-ms", type=float, metavar="MS", help="how long a canceled order stays `cancel` "
                   "before `canceled` (env MOCK_CANCEL_DELAY_MS; default 0: one loop turn)")
    p.add_argument("--cancel-policy", choices=POLICIES, help="an invoice while the order is `cancel`: vulnerable "
                   "accepts it and the cancellation sticks in error (KI-1400005), strict refuses it "
                   "(env MOCK_CANCEL_POLICY; default vulnerable)")
    p.add_argument("--list-lag-ms", type=float, metavar="MS", help="List orders shows orders as they were this "
                   "long ago (VTEX: ~4 min of indexing; env MOCK_LIST_LAG_MS; default 0)")
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))


def config_from_args(args: argparse.Namespace) -> MockConfig:
    """Env first, flags override; raises ConfigError naming the bad setting."""
    cfg = MockConfig.from_env()
    patch = {k: v for k, v in (("policy", args.policy), ("delay", args.change_delay),
                               ("settle_ms", args.settle_ms), ("seed", args.seed), ("hook_url", args.hook_url),
                               ("hook_status", args.hook_status), ("hook_delay_ms", args.hook_delay_ms),
                               ("change_workers", args.change_workers), ("rate_limits", args.rate_limit),
                               ("change_cancel_rate", args.change_cancel_rate), ("hook_allow", args.hook_allow),
                               ("journal_bytes", args.journal_bytes), ("max_body_bytes", args.max_body_bytes),
                               ("max_pending_changes", args.max_pending_changes), ("max_orders", args.max_orders),
                               ("order_ttl_s", args.order_ttl_s), ("cancel_delay_ms", args.cancel_delay_ms),
                               ("cancel_policy", args.cancel_policy), ("list_lag_ms", args.list_lag_ms))
             if v is not None}
    cfg = cfg.updated(patch, where="flags", startup=True)
    for attr in ("app_key", "app_token", "admin_token"):
        if getattr(args, attr):
            setattr(cfg, attr, getattr(args, attr))
    for attr in ("app_token", "admin_token"):
        path = getattr(args, f"{attr}_file")
        if path:
            setattr(cfg, attr, read_secret_file(path, f"--{attr.replace('_', '-')}-file"))
    cfg.check_auth()
    return cfg


def exposure_error(host: str, cfg: MockConfig, insecure: bool) -> str | None:
    """Why serving on `host` is refused (protected mode), or None if it is allowed."""
    if insecure or _is_loopback(host) or (cfg.app_key is not None and cfg.admin_token is not None):
        return None
    missing = " and ".join(n for n, v in (("VTEX credentials (VTEX_APP_KEY + VTEX_APP_TOKEN)", cfg.app_key),
                                          ("an admin token (MOCK_ADMIN_TOKEN or --admin-token-file)",
                                           cfg.admin_token)) if v is None)
    return (f"refusing to serve on non-loopback address {host} without {missing}: anyone who reaches it could "
            f"change orders and the mock's settings; set them, bind 127.0.0.1, or pass --insecure")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


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
    refused = None if args.fd is not None else exposure_error(host, cfg, args.insecure)
    if refused is not None:
        print(f"error: {refused}", file=sys.stderr)
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
