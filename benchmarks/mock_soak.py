"""Soak: the mock's memory stays flat under a long, bounded loopback load (a benchmark script, not a test).

Starts the mock in a child process (`MockProcess`) with memory bounds small enough to be
reached during the run (--journal-bytes, --max-orders), then runs --workers closed-loop
workers for --duration-s seconds (default 600). Each loop creates an order, starts handling
it, sends a Change (1 ms delay) and an invoice, reads the order through a long URL (the
journal's byte bound), and sends hostile input: a 3,000-deep JSON body, a 5,000-digit
integer, a body over the limit (413). Every request has a timeout. The mock's RSS is read
from /proc every --sample-s seconds; the "start" figure is the first sample after both
--warmup-s and the moment both bounds were reached (orders held = --max-orders, journal
dropping): before that, growth is the bounded state filling up.

Leak or allocator warm-up? Once the bounds are reached a leak keeps growing at the same
rate, while the allocator's warm-up (pymalloc arenas and malloc's heap settling under a
mix of request sizes) levels off: the table gives the RSS growth over the first and the
second half of the run after warm-up, and `leak_suspected` when the second half grew by
more than 1 MiB and by at least half as much as the first. (Measured with tracemalloc, in
process, both bounds reached: the mock's Python heap stays flat, +37 KiB over 60 s, a
set's table resize, and its request path makes no cyclic garbage.)

Prints one JSON line, then a table: RSS start/end/max (MiB), the growth per half, requests,
5xx and transport errors (both must stay 0), journal drops and order evictions from
/_mock/health.

    python benchmarks/mock_soak.py [--duration-s 600] [--workers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from _common import emit, machine

import httpx  # noqa: E402

from mock_orders_api.config import MockConfig  # noqa: E402
from mock_orders_api.delays import Fixed  # noqa: E402
from mock_orders_api.server import MockProcess  # noqa: E402

_JSON = {"content-type": "application/json"}
_ORDER = {"items": [{"id": "a", "quantity": 4, "price": 2500}]}
_INVOICE = {"type": "Output", "issuanceDate": "2026-01-09T00:00:00Z", "invoiceNumber": "NFe-1", "invoiceValue": 100}


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found")


async def _worker(client: httpx.AsyncClient, stop_at: float, counts: dict[str, int], n: int) -> None:
    deep = b"[" * 3000 + b"]" * 3000
    huge = b'{"items": [{"id": "a", "quantity": 1, "price": ' + b"9" * 5000 + b"}]}"
    too_big = b" " * (70 * 1024)
    loop = 0
    while time.monotonic() < stop_at:
        loop += 1
        try:
            r = await client.post("/_mock/orders", json=_ORDER)
            oid = r.json()["orderId"]
            steps = [
                client.post(f"/api/oms/pvt/orders/{oid}/start-handling"),
                client.patch(f"/api/order-system/orders/{oid}/changes", headers={"x-mock-change-delay-ms": "1"},
                             json={"reason": "soak", "remove": {"items": [{"id": "a", "quantity": 1}]}}),
                client.post(f"/api/orders/pvt/document/{oid}/invoices",
                            json={**_INVOICE, "invoiceNumber": f"{n}-{loop}"}),
                client.get(f"/api/oms/pvt/orders/{oid}", params={"pad": "x" * 4000}),
                client.post("/_mock/orders", content=deep, headers=_JSON),
                client.post("/_mock/orders", content=huge, headers=_JSON),
                client.post("/_mock/orders", content=too_big, headers=_JSON),
            ]
            for step in steps:
                resp = await step
                counts["requests"] += 1
                if resp.status_code >= 500:
                    counts["server_errors"] += 1
            counts["requests"] += 1
        except httpx.HTTPError:
            counts["transport_errors"] += 1


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = MockConfig(delay=Fixed(1.0), journal_bytes=args.journal_bytes, max_orders=args.max_orders,
                     max_body_bytes=64 * 1024)
    counts = {"requests": 0, "server_errors": 0, "transport_errors": 0}
    samples: list[tuple[float, float]] = []
    with MockProcess(cfg) as proc:
        assert proc.pid is not None
        limits = httpx.Limits(max_connections=args.workers, max_keepalive_connections=args.workers)
        async with httpx.AsyncClient(base_url=proc.url, timeout=10.0, limits=limits) as client:
            t0 = time.monotonic()
            stop_at = t0 + args.duration_s
            workers = [asyncio.create_task(_worker(client, stop_at, counts, n)) for n in range(args.workers)]
            bounds_at: float | None = None  # when both bounds (orders, journal bytes) were first reached
            while time.monotonic() < stop_at:
                samples.append((time.monotonic() - t0, _rss_mib(proc.pid)))
                if bounds_at is None:
                    h = (await client.get("/_mock/health")).json()
                    if h["orders"] >= args.max_orders and h["journalDropped"] > 0:
                        bounds_at = time.monotonic() - t0
                await asyncio.sleep(min(args.sample_s, max(0.0, stop_at - time.monotonic())))
            await asyncio.gather(*workers)
            samples.append((time.monotonic() - t0, _rss_mib(proc.pid)))
            health = (await client.get("/_mock/health")).json()
    warm_s = max(args.warmup_s, bounds_at if bounds_at is not None else args.duration_s)
    after_warmup = [rss for t, rss in samples if t >= warm_s] or [samples[-1][1]]
    mid_t = (warm_s + args.duration_s) / 2
    mid = next((rss for t, rss in samples if t >= mid_t), samples[-1][1])
    first_half, second_half = mid - after_warmup[0], samples[-1][1] - mid
    return {
        "benchmark": "mock_soak", "machine": machine(), "duration_s": args.duration_s, "workers": args.workers,
        "bounds_reached_s": None if bounds_at is None else round(bounds_at, 1), "warm_s": round(warm_s, 1),
        "rss_start_mib": round(after_warmup[0], 1), "rss_end_mib": round(samples[-1][1], 1),
        "rss_max_mib": round(max(rss for _, rss in samples), 1), "rss_first_mib": round(samples[0][1], 1),
        # The trend: RSS at each tenth of the run (flat once the bounds are reached).
        "rss_by_tenth_mib": [round(next(rss for t, rss in samples if t >= args.duration_s * k / 10), 1)
                             for k in range(10)] + [round(samples[-1][1], 1)],
        "rss_growth_first_half_mib": round(first_half, 1), "rss_growth_second_half_mib": round(second_half, 1),
        "leak_suspected": second_half > 1.0 and second_half >= 0.5 * first_half,
        "samples": len(samples), **counts, "orders": health["orders"], "orders_evicted": health["ordersEvicted"],
        "journal_bytes": health["journalBytes"], "journal_dropped": health["journalDropped"],
    }


def _table(r: dict[str, Any]) -> str:
    rows = [("duration (s)", r["duration_s"]), ("requests", r["requests"]),
            ("5xx / transport errors", f"{r['server_errors']} / {r['transport_errors']}"),
            ("RSS at first sample (MiB)", r["rss_first_mib"]),
            ("bounds reached at (s)", r["bounds_reached_s"]),
            (f"RSS start, at {r['warm_s']} s (MiB)", r["rss_start_mib"]),
            ("RSS end (MiB)", r["rss_end_mib"]), ("RSS max (MiB)", r["rss_max_mib"]),
            ("RSS growth, 1st / 2nd half (MiB)", f"{r['rss_growth_first_half_mib']} / {r['rss_growth_second_half_mib']}"
                                                 f" -> {'leak suspected' if r['leak_suspected'] else 'levels off (allocator warm-up)'}"),
            ("RSS at each tenth (MiB)", " ".join(str(v) for v in r["rss_by_tenth_mib"])),
            ("orders held / evicted", f"{r['orders']} / {r['orders_evicted']}"),
            ("journal bytes / dropped entries", f"{r['journal_bytes']} / {r['journal_dropped']}")]
    return "\n".join(f"{k:<34} {v}" for k, v in rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration-s", type=float, default=600.0)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--sample-s", type=float, default=1.0)
    p.add_argument("--warmup-s", type=float, default=30.0)
    p.add_argument("--journal-bytes", type=int, default=8 << 20)
    p.add_argument("--max-orders", type=int, default=2000)
    args = p.parse_args()
    return emit(asyncio.run(run(args)), _table)


if __name__ == "__main__":
    raise SystemExit(main())
