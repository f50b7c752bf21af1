"""Throughput and latency of the mock under a get/invoice/change mix (a benchmark script, not a test).

Starts the mock in a child process (`MockProcess`), pre-creates --orders orders in `handling`
(large enough that invoices of 1 cent and 1-item Changes keep being accepted), then runs
--workers closed-loop httpx workers for --duration-s seconds. Every request has a timeout.
Each worker picks an operation from the --mix weights and a random order (seeded):

* get     `GET /api/oms/pvt/orders/{id}`
* invoice `POST /api/orders/pvt/document/{id}/invoices` (1 cent, a unique invoice number)
* change  `PATCH /api/order-system/orders/{id}/changes` (remove 1 item; delay --change-delay-ms)

Reports requests/s, p50/p99 latency (overall and per operation), the error rate (transport
errors, timeouts and 5xx) and, separately, the refusal rate (4xx: the policy saying no).
Prints one JSON line, then a readable table.

    python benchmarks/mock_throughput.py [--workers 8] [--duration-s 10] [--mix get=60,invoice=20,change=20]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import defaultdict
from typing import Any

from _common import emit, machine, parse_mix, pct

import httpx  # noqa: E402

from mock_orders_api.config import MockConfig  # noqa: E402
from mock_orders_api.delays import Fixed  # noqa: E402
from mock_orders_api.server import MockProcess  # noqa: E402

async def run(args: argparse.Namespace) -> dict[str, Any]:
    mix = parse_mix(args.mix)
    names, weights = list(mix), list(mix.values())
    cfg = MockConfig(policy=args.policy, delay=Fixed(args.change_delay_ms))
    limits = httpx.Limits(max_connections=args.workers, max_keepalive_connections=args.workers)
    timeout = httpx.Timeout(args.request_timeout_s)
    lat: dict[str, list[float]] = defaultdict(list)
    status: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    errors: dict[str, int] = defaultdict(int)
    with MockProcess(cfg) as mock:
        async with httpx.AsyncClient(base_url=mock.url, limits=limits, timeout=timeout) as client:
            sem = asyncio.Semaphore(args.workers)

            async def _create() -> str:
                async with sem:
                    r = await client.post("/_mock/orders", json={
                        "items": [{"id": "sku-1", "quantity": 1_000_000, "price": 100}], "status": "handling"})
                    r.raise_for_status()
                    return r.json()["orderId"]  # type: ignore[no-any-return]
            order_ids = await asyncio.gather(*[_create() for _ in range(args.orders)])

            counter = 0
            t_start = time.monotonic()
            t_end = t_start + args.duration_s

            async def _worker(w: int) -> None:
                nonlocal counter
                rng = random.Random(args.seed * 1000 + w)
                while time.monotonic() < t_end:
                    op = rng.choices(names, weights)[0]
                    oid = rng.choice(order_ids)
                    counter += 1
                    t0 = time.perf_counter()
                    try:
                        if op == "get":
                            r = await client.get(f"/api/oms/pvt/orders/{oid}")
                        elif op == "invoice":
                            r = await client.post(f"/api/orders/pvt/document/{oid}/invoices", json={
                                "type": "Output", "issuedDate": "2026-01-09",
                                "invoiceNumber": f"w{w}-{counter}", "invoiceValue": 1,
                                "items": [{"itemIndex": 0, "price": 1, "quantity": 1}]})
                        else:
                            r = await client.patch(f"/api/order-system/orders/{oid}/changes", json={
                                "reason": "bench", "remove": {"items": [{"id": "sku-1", "quantity": 1}]}})
                    except httpx.HTTPError as err:  # timeouts included
                        errors[f"{op}:{type(err).__name__}"] += 1
                        status[op]["error"] += 1
                        continue
                    lat[op].append((time.perf_counter() - t0) * 1e3)
                    status[op][str(r.status_code)] += 1

            await asyncio.gather(*[_worker(w) for w in range(args.workers)])
            elapsed = time.monotonic() - t_start
            health = (await client.get("/_mock/health")).json()

    def _stats(values: list[float], counts: dict[str, int]) -> dict[str, Any]:
        total = sum(counts.values())
        bad = counts.get("error", 0) + sum(v for k, v in counts.items() if k.isdigit() and int(k) >= 500)
        refused = sum(v for k, v in counts.items() if k.isdigit() and 400 <= int(k) < 500)
        return {"requests": total, "rps": total / elapsed, "p50_ms": pct(values, 0.5), "p99_ms": pct(values, 0.99),
                "max_ms": max(values) if values else float("nan"),
                "error_rate": bad / total if total else 0.0, "refused_rate": refused / total if total else 0.0,
                "statuses": dict(counts)}

    all_counts: dict[str, int] = defaultdict(int)
    for counts in status.values():
        for k, v in counts.items():
            all_counts[k] += v
    return {
        "benchmark": "mock_throughput",
        "machine": machine(),
        "params": {"workers": args.workers, "duration_s": args.duration_s, "orders": args.orders, "mix": mix,
                   "policy": args.policy, "change_delay_ms": args.change_delay_ms,
                   "request_timeout_s": args.request_timeout_s, "seed": args.seed},
        "elapsed_s": elapsed,
        "overall": _stats([x for v in lat.values() for x in v], all_counts),
        "by_op": {op: _stats(lat[op], status[op]) for op in names if status[op]},
        "errors": dict(errors),
        "mock_journal_dropped": health.get("journalDropped"),
    }


def table(res: dict[str, Any]) -> str:
    p = res["params"]
    lines = [f"mock throughput: {p['workers']} workers x {p['duration_s']:g} s, {p['orders']} orders, "
             f"mix {p['mix']}, policy {p['policy']}, nproc={res['machine']['nproc']} "
             f"load={res['machine']['loadavg_1m']:.2f}",
             f"{'op':<8} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>8} "
             f"{'refused':>8}"]
    rows = [*res["by_op"].items(), ("all", res["overall"])]
    for name, s in rows:
        lines.append(f"{name:<8} {s['requests']:>9} {s['rps']:>8.0f} {s['p50_ms']:>8.2f} {s['p99_ms']:>8.2f} "
                     f"{s['max_ms']:>8.2f} {s['error_rate']:>8.2%} {s['refused_rate']:>8.2%}")
    lines.append("errors = transport errors, timeouts and 5xx; refused = 4xx answers from the mock.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=8, help="concurrent closed-loop workers (default 8)")
    p.add_argument("--duration-s", type=float, default=10.0, help="measurement duration (default 10)")
    p.add_argument("--orders", type=int, default=200, help="pre-created orders (default 200)")
    p.add_argument("--mix", default="get=60,invoice=20,change=20", help="operation weights (default %(default)s)")
    p.add_argument("--policy", choices=("vulnerable", "strict"), default="vulnerable")
    p.add_argument("--change-delay-ms", type=float, default=50.0, help="Change delay (default 50)")
    p.add_argument("--request-timeout-s", type=float, default=5.0, help="timeout of every request (default 5)")
    p.add_argument("--seed", type=int, default=1348894)
    args = p.parse_args(argv)
    if args.workers < 1 or args.orders < 1 or not 0 < args.duration_s <= 3600 or args.request_timeout_s <= 0:
        p.error("--workers and --orders must be >= 1, 0 < --duration-s <= 3600, --request-timeout-s > 0")
    try:
        parse_mix(args.mix)
    except ValueError as err:
        p.error(str(err))
    return emit(asyncio.run(run(args)), table)


if __name__ == "__main__":
    sys.exit(main())
