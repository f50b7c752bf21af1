"""Delay fidelity with 1,000 delayed requests pending, our mock next to WireMock (a benchmark script, not a test).

One load generator for both servers, in the same run: a bounded httpx asyncio loop sending
--n requests with --concurrency in flight, every request with a timeout, after a warm-up
burst of the same size (connections opened, JIT warmed).

* our mock: a value-reducing Change per order (`PATCH .../changes`, pinned delay D with
  `X-Mock-Change-Delay-Ms`). The mock answers 202 at once and applies the Change after D,
  so the served delay is read from its audit: served - configured = appliedNs - (actedNs + D)
  (server side: when its timer applied the Change). `finishedNs - actedNs` is checked to be
  exactly D (`finished` is evaluated from the clock). The mock has no endpoint that answers
  after a delay, and none was added for this benchmark.
* WireMock standalone: a stub with `fixedDelayMilliseconds: D`; served - configured =
  (response headers read - request written) - D, client side (httpcore's trace events), so
  it also holds the round trip and, for responses that arrive while the single-threaded
  client is still sending, its loop's queueing. A 0-delay stub at the same concurrency
  gives that floor.
  Run as `java -jar wiremock-standalone-*.jar --port P --bind-address 127.0.0.1
  --no-request-journal` ("defaults") and once more with `--async-response-enabled true
  --async-response-threads 100` ("async": WireMock's setting for many concurrent delayed
  responses; by default each delay holds one of its Jetty threads). Measured after a
  delayed and --wiremock-warmup undelayed bursts (the JVM compiles its hot paths first).

The jar: --wiremock-jar, else $WIREMOCK_JAR, else `npm install wiremock` into a temp dir
(deleted afterwards). Without java or npm, our side only is printed, with the reason.
Prints one JSON line, then a readable table.

    python benchmarks/delay_vs_wiremock.py [--n 1000] [--concurrency 1000] [--delay-ms 50 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from _common import CpuMeter, WireMockError, emit, find_wiremock_jar, machine, stats, wiremock

import httpx  # noqa: E402

from mock_orders_api.config import MockConfig  # noqa: E402
from mock_orders_api.delays import Fixed  # noqa: E402
from mock_orders_api.server import MockProcess  # noqa: E402
from mock_orders_api.wire import CHANGE_DELAY_HEADER  # noqa: E402

ITEMS = [{"id": "sku-1", "quantity": 2, "price": 5000}]
_PER_POOL = 20  # connections per httpx pool (see Shards)
CHANGE = {"reason": "partial cancellation", "remove": {"items": [{"id": "sku-1", "quantity": 1}]}}


# --------------------------------------------------------------------------- the load generator


def max_overlap(intervals: list[tuple[int, int]]) -> int:
    """The most intervals open at one instant (how many requests were pending at once)."""
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    best = cur = 0
    for _, step in edges:
        cur += step
        best = max(best, cur)
    return best


async def _stamp_sent(request: httpx.Request) -> None:
    """Event hook: ask httpcore (its `trace` extension) for wire-level times of this request."""
    ext = request.extensions

    async def trace(event: str, info: dict[str, Any]) -> None:
        if event == "http11.send_request_body.complete":
            ext["t_sent"] = time.monotonic_ns()  # the whole request written to the socket
        elif event == "http11.receive_response_headers.complete":
            ext["t_recv"] = time.monotonic_ns()  # the status line and headers read

    ext["trace"] = trace


async def burst(client: Shards, make: Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]],
                n: int, concurrency: int, timeout_s: float) -> dict[str, Any]:
    """Send n requests, at most `concurrency` in flight; per request (sent ns, received ns, status).

    The times come from httpcore's trace events: the request written to its socket, and the
    response headers read from it; a request waiting for its turn in the client loop before
    being written is not counted (a response waiting for the loop after arriving still is).
    """
    sem = asyncio.Semaphore(concurrency)
    out: list[tuple[int, int, int]] = []
    errors: dict[str, int] = {}

    async def _one(i: int) -> None:
        async with sem:
            t0 = time.monotonic_ns()
            try:
                r = await asyncio.wait_for(make(client.pick(i), i), timeout_s)
            except (httpx.HTTPError, asyncio.TimeoutError) as err:
                errors[type(err).__name__] = errors.get(type(err).__name__, 0) + 1
                return
            ext = r.request.extensions
            out.append((ext.get("t_sent", t0), ext.get("t_recv", time.monotonic_ns()), r.status_code))

    started = time.monotonic()
    await asyncio.gather(*(_one(i) for i in range(n)))
    wall = time.monotonic() - started
    return {"results": out, "errors": errors, "wall_s": wall, "rps": len(out) / wall if wall > 0 else None}


class Shards:
    """`concurrency` connections as many small httpx pools (request i uses pool i % n).

    httpcore scans its whole pool on every request and every response: one pool of 1,000
    busy connections made the client itself take seconds per burst (measured), which no
    server can be blamed for. The harness's runner shards its pools for the same reason.
    """

    def __init__(self, url: str, concurrency: int, timeout_s: float, per_pool: int = _PER_POOL) -> None:
        n = max(1, -(-concurrency // per_pool))
        size = -(-concurrency // n)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        self.pools = [httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(timeout_s),
                                        event_hooks={"request": [_stamp_sent]})
                      for _ in range(n)]

    def pick(self, i: int) -> httpx.AsyncClient:
        return self.pools[i % len(self.pools)]

    async def get(self, path: str) -> httpx.Response:
        return await self.pools[0].get(path)

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        return await self.pools[0].post(path, **kw)

    async def __aenter__(self) -> Shards:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for p in self.pools:
            await p.aclose()


def _client(url: str, concurrency: int, timeout_s: float) -> Shards:
    return Shards(url, concurrency, timeout_s)


# --------------------------------------------------------------------------- our mock


async def run_ours(args: argparse.Namespace, delay_ms: float) -> dict[str, Any]:
    d_ns = round(delay_ms * 1e6)
    with MockProcess(MockConfig(delay=Fixed(delay_ms))) as mock, CpuMeter([mock.pid or 0]) as cpu:
        async with _client(mock.url, args.concurrency, args.timeout_s) as client:
            sem = asyncio.Semaphore(16)

            async def _create(_: int) -> str:
                async with sem:
                    r = await client.post("/_mock/orders", json={"items": ITEMS, "status": "handling"})
                    r.raise_for_status()
                    return r.json()["orderId"]  # type: ignore[no-any-return]
            orders = await asyncio.gather(*(_create(i) for i in range(args.n)))
            # Warm-up: the same concurrency on an undelayed read (opens the connections).
            await burst(client, lambda c, i: c.get(f"/api/oms/pvt/orders/{orders[i]}"),
                        args.n, args.concurrency, args.timeout_s)
            headers = {CHANGE_DELAY_HEADER: f"{delay_ms:g}"}
            b = await burst(client, lambda c, i: c.patch(f"/api/order-system/orders/{orders[i]}/changes",
                                                         json=CHANGE, headers=headers),
                            args.n, args.concurrency, args.timeout_s)
            deadline = time.monotonic() + delay_ms / 1e3 + args.timeout_s
            while (await client.get("/_mock/health")).json()["pendingChanges"]:
                if time.monotonic() > deadline:
                    raise RuntimeError("Changes still pending after the delay + the timeout")
                await asyncio.sleep(0.02)
            audits: list[dict[str, Any]] = []
            for i in range(0, len(orders), 500):
                r = await client.post("/_mock/audits", json={"orderIds": orders[i:i + 500]})
                r.raise_for_status()
                audits += r.json()["audits"]
    chs = [a["changes"][0] for a in audits if a["changes"]]
    late = [(c["appliedNs"] - c["actedNs"] - d_ns) / 1e6 for c in chs if c.get("appliedNs") is not None]
    exact = sum(1 for c in chs if c["finishedNs"] - c["actedNs"] == d_ns)
    rtt = [(e - s) / 1e6 for s, e, _ in b["results"]]
    return {"delay_ms": delay_ms, "served_minus_configured": stats(late), "exact_finished_delay": f"{exact}/{len(chs)}",
            "max_pending": max_overlap([(c["actedNs"], c["appliedNs"]) for c in chs if c.get("appliedNs")]),
            "rps": b["rps"], "errors": b["errors"], "accepted": sum(1 for *_, s in b["results"] if s == 202),
            "client_round_trip": stats(rtt), "cpu_cores": cpu.result}


# --------------------------------------------------------------------------- WireMock


async def run_wiremock(args: argparse.Namespace, delay_ms: float, jar: Path, extra: list[str],
                       workdir: Path) -> dict[str, Any]:
    with wiremock(jar, workdir, extra) as (url, pid):
        async with _client(url, args.concurrency, args.timeout_s) as client:
            for path, delay in (("/delayed", delay_ms), ("/undelayed", 0)):
                r = await client.post("/__admin/mappings", json={
                    "request": {"method": "GET", "url": path},
                    "response": {"status": 200, "body": "ok", "fixedDelayMilliseconds": delay}})
                r.raise_for_status()
            # Warm-up: the JVM compiles its hot paths over the first several thousand requests
            # (a cold first burst was measured seconds late, with wrk too).
            await burst(client, lambda c, i: c.get("/delayed"), args.n, args.concurrency, args.timeout_s)
            for _ in range(args.wiremock_warmup):
                await burst(client, lambda c, i: c.get("/undelayed"), args.n, args.concurrency, args.timeout_s)
            with CpuMeter([pid]) as cpu:
                floor = await burst(client, lambda c, i: c.get("/undelayed"), args.n, args.concurrency,
                                    args.timeout_s)
                b = await burst(client, lambda c, i: c.get("/delayed"), args.n, args.concurrency, args.timeout_s)
    late = [(e - s) / 1e6 - delay_ms for s, e, st in b["results"] if st == 200]
    return {"delay_ms": delay_ms, "args": extra, "served_minus_configured": stats(late), "rps": b["rps"],
            "errors": b["errors"], "max_pending": max_overlap([(s, e) for s, e, _ in b["results"]]),
            "ok": sum(1 for *_, st in b["results"] if st == 200),
            "client_round_trip_undelayed": stats([(e - s) / 1e6 for s, e, _ in floor["results"]]),
            "cpu_cores": cpu.result}


# --------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {"benchmark": "delay_vs_wiremock", "machine": machine(),
                           "params": {"n": args.n, "concurrency": args.concurrency, "delays_ms": args.delay_ms,
                                      "timeout_s": args.timeout_s},
                           "ours": [], "wiremock": []}
    for d in args.delay_ms:
        res["ours"].append(await run_ours(args, d))
    if args.no_wiremock:
        res["wiremock_note"] = "skipped (--no-wiremock)"
        return res
    with tempfile.TemporaryDirectory(prefix="wiremock-bench-") as tmp:
        jar, how = find_wiremock_jar(args.wiremock_jar, Path(tmp))
        res["wiremock_jar"] = {"path": str(jar) if jar else None, "source": how}
        if jar is None:
            res["wiremock_note"] = how
            return res
        for d in args.delay_ms:
            for extra in ([], ["--async-response-enabled", "true", "--async-response-threads", "100"]):
                try:
                    res["wiremock"].append(await run_wiremock(args, d, jar, extra, Path(tmp)))
                except (WireMockError, OSError) as err:
                    res["wiremock"].append({"delay_ms": d, "args": extra, "error": str(err)})
    return res


def _name(w: dict[str, Any]) -> str:
    return "WireMock " + ("async" if w["args"] else "defaults")


def table(res: dict[str, Any]) -> str:
    p, m = res["params"], res["machine"]
    lines = [f"delay fidelity: {p['n']} requests, {p['concurrency']} in flight, timeout {p['timeout_s']:g} s, "
             f"one httpx asyncio load generator (nproc={m['nproc']}, load before={m['loadavg_1m']:.2f})",
             f"{'D ms':>6}  {'server':<18} {'measured':<26} {'served - configured ms':>24} {'req/s':>7} "
             f"{'pending':>8}  {'cpu ours/others':>15}",
             f"{'':>6}  {'':<18} {'':<26} {'p50':>8}{'p99':>8}{'max':>8} {'':>7} {'at once':>8}"]
    for d in p["delays_ms"]:
        rows = [("our mock", "audit: applied-acted-D", o) for o in res["ours"] if o["delay_ms"] == d]
        rows += [(_name(w), "client: recv-sent-D", w) for w in res["wiremock"] if w["delay_ms"] == d]
        for name, how, r in rows:
            if "error" in r:
                lines.append(f"{d:>6g}  {name:<18} error: {r['error']}")
                continue
            sm, cpu = r["served_minus_configured"], r["cpu_cores"]
            c = f"{cpu['ours_cores']:.2f}/{cpu['others_cores']:.2f}" if cpu.get("others_cores") is not None else ""
            lines.append(f"{d:>6g}  {name:<18} {how:<26} {sm['p50_ms']:8.2f}{sm['p99_ms']:8.2f}{sm['max_ms']:8.2f} "
                         f"{r['rps']:7.0f} {r['max_pending']:8d}  {c:>15}")
        ours = next((o for o in res["ours"] if o["delay_ms"] == d), None)
        ok = [w for w in res["wiremock"] if w["delay_ms"] == d and "error" not in w]
        if ours and ok:
            best = min(ok, key=lambda w: w["served_minus_configured"]["p99_ms"])
            ratio = best["served_minus_configured"]["p99_ms"] / max(ours["served_minus_configured"]["p99_ms"], 1e-9)
            lines.append(f"{'':>6}  ratio p99 {_name(best)} / ours: {ratio:.1f}x; req/s ours / {_name(best)}: "
                         f"{ours['rps'] / best['rps']:.2f}; WireMock 0-delay round trip at this concurrency "
                         f"(client floor): p50 {best['client_round_trip_undelayed']['p50_ms']:.1f} ms, "
                         f"p99 {best['client_round_trip_undelayed']['p99_ms']:.1f} ms")
    for o in res["ours"]:
        lines.append(f"our mock, D={o['delay_ms']:g}: finishedNs - actedNs == D exactly for "
                     f"{o['exact_finished_delay']} Changes; {o['accepted']} accepted (202), errors {o['errors'] or 0}; "
                     f"PATCH round trip p50 {o['client_round_trip']['p50_ms']:.1f} ms, "
                     f"p99 {o['client_round_trip']['p99_ms']:.1f} ms")
    if not res["wiremock"]:
        lines.append(f"WireMock not measured: {res.get('wiremock_note')}")
    lines.append("Ours is server-side (when the mock's timer applied the Change); WireMock's is client-side "
                 "(httpcore trace: request written -> response headers read), so it also holds the round trip "
                 "and, when responses arrive while the client is still sending, the client loop. 'pending at once' = most delayed requests/Changes open at one instant: "
                 "a single Python client sends ~1,000 requests/s, so 1,000 are pending at once only when D "
                 "is longer than the send time.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="requests per burst (default 1000)")
    p.add_argument("--concurrency", type=int, default=1000, help="requests in flight (default 1000)")
    p.add_argument("--delay-ms", type=float, nargs="+", default=[50.0, 2000.0],
                   help="configured delays D, one run each (default 50 2000: 2000 keeps all 1,000 pending at once)")
    p.add_argument("--timeout-s", type=float, default=30.0, help="timeout of every request (default 30)")
    p.add_argument("--wiremock-jar", help="wiremock-standalone jar (default: $WIREMOCK_JAR or npm install)")
    p.add_argument("--no-wiremock", action="store_true", help="measure our mock only")
    p.add_argument("--wiremock-warmup", type=int, default=5,
                   help="undelayed warm-up bursts (after one delayed burst) before WireMock is measured (default 5)")
    args = p.parse_args(argv)
    if args.n < 1 or args.concurrency < 1 or min(args.delay_ms) < 0 or args.timeout_s <= 0:
        p.error("--n and --concurrency must be >= 1, --delay-ms >= 0, --timeout-s > 0")
    return emit(asyncio.run(run(args)), table)


if __name__ == "__main__":
    sys.exit(main())
