"""How faithfully does the mock serve its Change delay? (a benchmark script, not a test)

Starts the mock in a child process (`MockProcess`), creates N orders in `handling`, fires one
value-reducing Change per order with a pinned delay D, and measures served − configured delay
two ways, in two phases on fresh orders:

(a) timers: the mock's own audit, `appliedNs − (actedNs + D)`: how late the mock's timer applied
    the Change (timer lateness). The client does not poll in this phase (it waits on
    `/_mock/health`, which counts pending Changes without advancing them), so every Change is
    applied by its timer. `finishedNs − actedNs` is checked to be exactly D for every Change.
(b) observed: Changes sent at --send-rate per second (paced, so the single-process client has
    CPU left to poll on time); a client polls each Change's detail (`GET .../changes/{id}`) from its send time
    + D, every --poll-interval-ms, and records the receive time of the first response saying
    `finished: true`; the figure is that time − (actedNs + D). It therefore INCLUDES the poll
    interval, the request round trip and client-side queueing (the client is one Python
    process, still sending later Changes while it polls earlier ones; polls use their own
    connection pool so they do not wait behind sends), not only the mock's lateness.

Prints one JSON line, then a readable table.

    python benchmarks/mock_delay_fidelity.py [--n 1000] [--delay-ms 300] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from _common import emit, machine, stats  # also puts this checkout first on sys.path (the mock child too)

import httpx  # noqa: E402

from mock_orders_api.config import MockConfig  # noqa: E402
from mock_orders_api.delays import Fixed  # noqa: E402
from mock_orders_api.server import MockProcess  # noqa: E402
from mock_orders_api.wire import CHANGE_DELAY_HEADER  # noqa: E402

ITEMS = [{"id": "sku-1", "quantity": 2, "price": 5000}]
CHANGE = {"reason": "partial cancellation", "remove": {"items": [{"id": "sku-1", "quantity": 1}]}}


async def _gather_bounded(sem: asyncio.Semaphore, coros: list[Any]) -> list[Any]:
    async def _one(c: Any) -> Any:
        async with sem:
            return await c
    return await asyncio.gather(*[_one(c) for c in coros])


async def _create_orders(client: httpx.AsyncClient, sem: asyncio.Semaphore, n: int) -> list[str]:
    async def _create() -> str:
        r = await client.post("/_mock/orders", json={"items": ITEMS, "status": "handling"})
        r.raise_for_status()
        return r.json()["orderId"]  # type: ignore[no-any-return]
    return await _gather_bounded(sem, [_create() for _ in range(n)])


async def _send_change(client: httpx.AsyncClient, oid: str, delay_ms: float) -> dict[str, Any]:
    t_send = time.monotonic_ns()
    r = await client.patch(f"/api/order-system/orders/{oid}/changes", json=CHANGE,
                           headers={CHANGE_DELAY_HEADER: str(delay_ms)})
    t_recv = time.monotonic_ns()
    if r.status_code != 202:
        raise RuntimeError(f"Change on {oid} refused: {r.status_code} {r.text}")
    return {"orderId": oid, "requestId": r.json()["requestId"], "sendNs": t_send, "recvNs": t_recv}


async def _audits(client: httpx.AsyncClient, order_ids: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(order_ids), 500):
        r = await client.post("/_mock/audits", json={"orderIds": order_ids[i:i + 500]})
        r.raise_for_status()
        out.update({a["orderId"]: a for a in r.json()["audits"]})
    return out


async def phase_timers(client: httpx.AsyncClient, sem: asyncio.Semaphore, n: int, delay_ms: float,
                       timeout_s: float) -> dict[str, Any]:
    order_ids = await _create_orders(client, sem, n)
    t0 = time.monotonic()
    sent = await _gather_bounded(sem, [_send_change(client, o, delay_ms) for o in order_ids])
    send_s = time.monotonic() - t0
    deadline = time.monotonic() + delay_ms / 1e3 + timeout_s
    while True:  # bounded wait; health does not advance Changes, so timers do all the work
        health = (await client.get("/_mock/health")).json()
        if health["pendingChanges"] == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{health['pendingChanges']} Changes still pending after the delay + {timeout_s} s")
        await asyncio.sleep(0.02)
    audits = await _audits(client, order_ids)
    lateness, exact, pending_at_once = [], 0, 0
    chs = [audits[s["orderId"]]["changes"][0] for s in sent]
    for ch in chs:
        exact += ch["finishedNs"] - ch["actedNs"] == round(delay_ms * 1e6)
        lateness.append((ch["appliedNs"] - (ch["actedNs"] + round(delay_ms * 1e6))) / 1e6)
    last_acted = max(c["actedNs"] for c in chs)
    pending_at_once = sum(1 for c in chs if c["dueNs"] > last_acted)
    return {"lateness": stats(lateness), "exact_delay": exact, "changes": len(chs), "send_s": send_s,
            "pending_when_last_sent": pending_at_once}


async def phase_observed(client: httpx.AsyncClient, poller: httpx.AsyncClient, sem: asyncio.Semaphore,
                         poll_sem: asyncio.Semaphore, n: int, delay_ms: float, poll_ms: float,
                         timeout_s: float, send_rate: float) -> dict[str, Any]:
    """Polls go through their own connection pool and limit so they never queue behind sends."""
    order_ids = await _create_orders(client, sem, n)
    polls_total = 0
    rtts: list[float] = []

    t_start = time.monotonic() + 0.05

    async def _one(k: int, oid: str) -> dict[str, Any]:
        nonlocal polls_total
        if send_rate > 0:  # open-loop pacing leaves the client CPU for polling
            await asyncio.sleep(max(0.0, t_start + k / send_rate - time.monotonic()))
        async with sem:
            sent = await _send_change(client, oid, delay_ms)
        # Start polling at send time + D (the earliest it can be finished), then every poll_ms.
        first_poll = sent["sendNs"] / 1e9 + delay_ms / 1e3
        await asyncio.sleep(max(0.0, first_poll - time.monotonic()))
        deadline = time.monotonic() + timeout_s
        url = f"/api/order-system/orders/{oid}/changes/{sent['requestId']}"
        while True:
            async with poll_sem:
                t0 = time.monotonic_ns()
                r = await poller.get(url)
                t1 = time.monotonic_ns()
            polls_total += 1
            rtts.append((t1 - t0) / 1e6)
            r.raise_for_status()
            if r.json()["finished"]:
                return {**sent, "seenNs": t1}
            if time.monotonic() > deadline:
                raise RuntimeError(f"Change {sent['requestId']} not finished {timeout_s} s after its delay")
            await asyncio.sleep(poll_ms / 1e3)

    seen = await asyncio.gather(*[_one(k, o) for k, o in enumerate(order_ids)])
    audits = await _audits(client, order_ids)
    observed = []
    for s in seen:
        ch = audits[s["orderId"]]["changes"][0]
        observed.append((s["seenNs"] - (ch["actedNs"] + round(delay_ms * 1e6))) / 1e6)
    return {"observed": stats(observed), "polls_per_change": polls_total / len(seen),
            "poll_rtt": stats(rtts)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = MockConfig(delay=Fixed(args.delay_ms))
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    with MockProcess(cfg) as mock:
        async with httpx.AsyncClient(base_url=mock.url, limits=limits, timeout=args.request_timeout_s) as client, \
                httpx.AsyncClient(base_url=mock.url, limits=limits, timeout=args.request_timeout_s) as poller:
            sem, poll_sem = asyncio.Semaphore(args.concurrency), asyncio.Semaphore(args.concurrency)
            timers = await phase_timers(client, sem, args.n, args.delay_ms, args.timeout_s)
            r = await client.post("/_mock/reset")
            r.raise_for_status()
            observed = await phase_observed(client, poller, sem, poll_sem, args.n, args.delay_ms,
                                            args.poll_interval_ms, args.timeout_s, args.send_rate)
    return {
        "benchmark": "mock_delay_fidelity",
        "machine": machine(),
        "params": {"n": args.n, "delay_ms": args.delay_ms, "concurrency": args.concurrency,
                   "poll_interval_ms": args.poll_interval_ms, "b_send_rate_per_s": args.send_rate},
        "a_timer_lateness_ms": timers["lateness"],
        "a_exact_served_delay": f"{timers['exact_delay']}/{timers['changes']}",
        "a_send_s": round(timers["send_s"], 3),
        "a_pending_when_last_sent": timers["pending_when_last_sent"],
        "b_client_observed_ms": observed["observed"],
        "b_polls_per_change": round(observed["polls_per_change"], 2),
        "b_poll_rtt_ms": observed["poll_rtt"],
    }


def table(res: dict[str, Any]) -> str:
    rows = [("(a) timer lateness: appliedNs - (actedNs + D)", res["a_timer_lateness_ms"]),
            ("(b) client observed: first finished poll - (actedNs + D)", res["b_client_observed_ms"]),
            ("    poll round trip (part of b)", res["b_poll_rtt_ms"])]
    w = max(len(r[0]) for r in rows)
    lines = [f"mock delay fidelity: n={res['params']['n']} D={res['params']['delay_ms']:g} ms "
             f"concurrency={res['params']['concurrency']} poll={res['params']['poll_interval_ms']:g} ms "
             f"(b) send rate={res['params']['b_send_rate_per_s']:g}/s "
             f"nproc={res['machine']['nproc']} load={res['machine']['loadavg_1m']:.2f}",
             f"{'served - configured (ms)':<{w}}  {'p50':>8} {'p99':>8} {'max':>8}"]
    for name, s in rows:
        lines.append(f"{name:<{w}}  {s['p50_ms']:8.2f} {s['p99_ms']:8.2f} {s['max_ms']:8.2f}")
    lines.append(f"finishedNs - actedNs == D exactly: {res['a_exact_served_delay']}; "
                 f"Changes still pending when the last was sent: {res['a_pending_when_last_sent']} "
                 f"(sent in {res['a_send_s']} s); polls per Change in (b): {res['b_polls_per_change']}")
    lines.append("(b) includes the poll interval, the request round trip and client queueing.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="orders / Changes (default 1000)")
    p.add_argument("--delay-ms", type=float, default=300.0, help="pinned Change delay D (default 300)")
    p.add_argument("--concurrency", type=int, default=8, help="client connections / in-flight requests (default 8)")
    p.add_argument("--poll-interval-ms", type=float, default=10.0, help="poll interval in phase (b) (default 10)")
    p.add_argument("--send-rate", type=float, default=250.0,
                   help="Changes/s sent in phase (b), paced so the client can poll on time; 0 = unpaced (default 250)")
    p.add_argument("--timeout-s", type=float, default=30.0, help="bound on waiting past the delay (default 30)")
    p.add_argument("--request-timeout-s", type=float, default=10.0, help="timeout of every request (default 10)")
    args = p.parse_args(argv)
    if args.n < 1 or args.delay_ms < 0 or args.concurrency < 1 or args.poll_interval_ms <= 0 or args.send_rate < 0:
        p.error("--n and --concurrency must be >= 1, --delay-ms and --send-rate >= 0, --poll-interval-ms > 0")
    return emit(asyncio.run(run(args)), table)


if __name__ == "__main__":
    sys.exit(main())
