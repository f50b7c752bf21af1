"""Delayed responses at high concurrency, our mock next to WireMock, one C load generator for
both (a benchmark script, not a test).

The same `wrk` run shape for every server: --connections open connections (equal
concurrency), each sending its next request as soon as the previous answer arrives, for
--duration-s seconds per measurement; its latency percentiles are read in a Lua `done()`.
served - configured = wrk's latency - D, so it holds the round trip of the C client too;
each server's 0-delay round trip at the same concurrency (its floor) is measured alongside.

* our mock: `GET /api/oms/pvt/orders/{id}` with `X-Mock-Fault: slow`, the slow response of
  its fault schedule (faults.py) set to D ms for that route (`PATCH /_mock/config`); the floor
  is the same GET without the header. Also server side, from its journal (the oldest 20,000
  requests it kept): done - arrival - D (the response handed to the server; the client's share out).
* WireMock standalone: a stub with `fixedDelayMilliseconds: D` (`GET /delayed`); the floor a
  0-delay stub (`GET /undelayed`). Run twice: `java -jar wiremock-standalone-*.jar --port P
  --bind-address 127.0.0.1 --no-request-journal` ("defaults": each delayed response holds one
  of its Jetty threads) and with `--async-response-enabled true --async-response-threads 100`
  ("async": WireMock's setting for many concurrent delayed responses). Measured after a
  --wiremock-warmup-s undelayed wrk run (the JVM compiles its hot paths first).

The jar: --wiremock-jar, else $WIREMOCK_JAR, else `npm install wiremock` into a temp dir
(deleted afterwards). Without java or npm, our side only is printed, with the reason. The
background timer that applies a Change after its delay is measured by
`benchmarks/mock_delay_fidelity.py` (server side, from the audits). Prints one JSON line,
then a readable table.

    python benchmarks/delay_vs_wiremock.py [--connections 1000] [--duration-s 10] [--delay-ms 50 2000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import WireMockError, emit, find_wiremock_jar, machine, stats, wiremock
from mock_throughput_wrk import _STATIC_LUA, run_wrk

import httpx  # noqa: E402

from mock_orders_api.config import MockConfig  # noqa: E402
from mock_orders_api.server import MockProcess  # noqa: E402
from mock_orders_api.wire import ADMIN_CONFIG, ADMIN_JOURNAL, ADMIN_ORDERS  # noqa: E402

_JOURNAL_SAMPLE = 20_000
_ASYNC = ["--async-response-enabled", "true", "--async-response-threads", "100"]


def _lua(args: argparse.Namespace, headers: dict[str, str]) -> str:
    """wrk script: fixed request (the URL's), these headers, the WRKJSON summary in done()."""
    set_headers = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    return set_headers + _STATIC_LUA % {"w_get": 1, "w_invoice": 0, "w_change": 0, "seed": args.seed,
                                        "delay": "0", "delay_header": "X-Unused"}


def _measure(args: argparse.Namespace, url: str, headers: dict[str, str], workdir: Path, name: str,
             pid: int, delay_ms: float) -> dict[str, Any]:
    r = run_wrk(args, url, _lua(args, headers), workdir, name, server_pid=pid)
    return {**r, "delay_ms": delay_ms, "served_minus_configured": {
        "p50_ms": r["p50_ms"] - delay_ms, "p99_ms": r["p99_ms"] - delay_ms, "max_ms": r["max_ms"] - delay_ms}}


def run_ours(args: argparse.Namespace, delay_ms: float, workdir: Path) -> dict[str, Any]:
    with MockProcess(MockConfig()) as mock:
        with httpx.Client(base_url=mock.url, timeout=10) as c:
            oid = c.post(ADMIN_ORDERS, json={"items": [{"id": "sku-1", "quantity": 2, "price": 5000}]}).json()["orderId"]
            c.patch(ADMIN_CONFIG, json={"faults": {"get-order": {"slow_ms": delay_ms}}}).raise_for_status()
        url = f"{mock.url}/api/oms/pvt/orders/{oid}"
        delayed = _measure(args, url, {"X-Mock-Fault": "slow"}, workdir, "ours-delayed", mock.pid or 0, delay_ms)
        with httpx.Client(base_url=mock.url, timeout=60) as c:  # the oldest journaled requests: a sample
            entries = c.get(ADMIN_JOURNAL, params={"since": 0, "limit": _JOURNAL_SAMPLE}).json()["entries"]
        floor = _measure(args, url, {}, workdir, "ours-floor", mock.pid or 0, 0.0)
    server = [(e["doneNs"] - e["arrivalNs"]) / 1e6 - delay_ms for e in entries
              if e["method"] == "GET" and e["status"] == 200 and e["path"] == url.removeprefix(mock.url)]
    return {"server": "our mock", "floor": floor, "delayed": delayed, "server_side": stats(server)}


def run_wiremock(args: argparse.Namespace, delay_ms: float, jar: Path, extra: list[str],
                 workdir: Path) -> dict[str, Any]:
    name = "WireMock " + ("async" if extra else "defaults")
    with wiremock(jar, workdir, extra) as (url, pid):
        with httpx.Client(base_url=url, timeout=10) as c:
            for path, delay in (("/delayed", delay_ms), ("/undelayed", 0)):
                c.post("/__admin/mappings", json={
                    "request": {"method": "GET", "url": path},
                    "response": {"status": 200, "body": "ok", "fixedDelayMilliseconds": delay}}).raise_for_status()
        # Warm-up: the JVM compiles its hot paths over the first requests (a cold run was seconds late).
        run_wrk(args, f"{url}/undelayed", _lua(args, {}), workdir, "wiremock-warmup",
                duration_s=args.wiremock_warmup_s)
        floor = _measure(args, f"{url}/undelayed", {}, workdir, "wiremock-floor", pid, 0.0)
        delayed = _measure(args, f"{url}/delayed", {}, workdir, "wiremock-delayed", pid, delay_ms)
    return {"server": name, "args": extra, "floor": floor, "delayed": delayed, "server_side": None}


def run(args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {"benchmark": "delay_vs_wiremock", "machine": machine(),
                           "params": {"connections": args.connections, "threads": args.threads,
                                      "duration_s": args.duration_s, "delays_ms": args.delay_ms,
                                      "timeout_s": args.timeout_s, "load_generator": "wrk"},
                           "rows": []}
    with tempfile.TemporaryDirectory(prefix="wiremock-bench-") as tmp:
        workdir = Path(tmp)
        for d in args.delay_ms:
            res["rows"].append({"delay_ms": d, **run_ours(args, d, workdir)})
        if args.no_wiremock:
            res["wiremock_note"] = "skipped (--no-wiremock)"
            return res
        jar, how = find_wiremock_jar(args.wiremock_jar, workdir)
        res["wiremock_jar"] = {"path": str(jar) if jar else None, "source": how}
        if jar is None:
            res["wiremock_note"] = how
            return res
        for d in args.delay_ms:
            for extra in ([], _ASYNC):
                try:
                    res["rows"].append({"delay_ms": d, **run_wiremock(args, d, jar, extra, workdir)})
                except (WireMockError, OSError, RuntimeError) as err:
                    res["rows"].append({"delay_ms": d, "server": "WireMock " + ("async" if extra else "defaults"),
                                        "args": extra, "error": str(err)})
    return res


def table(res: dict[str, Any]) -> str:
    p, m = res["params"], res["machine"]
    lines = [f"delayed responses: wrk -t{p['threads']} -c{p['connections']} -d{p['duration_s']:g}s for every "
             f"server (nproc={m['nproc']}, load before={m['loadavg_1m']:.2f}; wrk shares the machine)",
             f"{'D ms':>6}  {'server':<18} {'served - configured (wrk) ms':>30} {'floor (0-delay) ms':>20} "
             f"{'req/s':>7} {'errors':>6} {'server-side p99':>16}",
             f"{'':>6}  {'':<18} {'p50':>10}{'p99':>10}{'max':>10} {'p50':>10}{'p99':>10} {'':>7} {'':>6}"]
    for d in p["delays_ms"]:
        for r in (r for r in res["rows"] if r["delay_ms"] == d):
            if "error" in r:
                lines.append(f"{d:>6g}  {r['server']:<18} error: {r['error']}")
                continue
            sm, fl, dl = r["delayed"]["served_minus_configured"], r["floor"], r["delayed"]
            ss = f"{r['server_side']['p99_ms']:.2f} ms" if r.get("server_side") else "n/a"
            lines.append(f"{d:>6g}  {r['server']:<18} {sm['p50_ms']:10.2f}{sm['p99_ms']:10.2f}{sm['max_ms']:10.1f} "
                         f"{fl['p50_ms']:10.2f}{fl['p99_ms']:10.2f} {dl['rps']:7.0f} {dl['socket_errors']:6d} {ss:>16}")
        ours = next((r for r in res["rows"] if r["delay_ms"] == d and r["server"] == "our mock"), None)
        for w in (r for r in res["rows"] if r["delay_ms"] == d and r["server"] != "our mock" and "error" not in r):
            if ours is not None:
                a = w["delayed"]["served_minus_configured"]["p99_ms"]
                b = ours["delayed"]["served_minus_configured"]["p99_ms"]
                lines.append(f"{'':>6}  p99 late {w['server']} / ours: {a / b if b > 0 else float('inf'):.1f}x; "
                             f"req/s ours / {w['server']}: {ours['delayed']['rps'] / max(w['delayed']['rps'], 1e-9):.2f}")
    if res.get("wiremock_note"):
        lines.append(f"WireMock not measured: {res['wiremock_note']}")
    lines.append("served - configured = wrk latency - D (client side, the same C client for every server); floor = "
                 "the server's 0-delay round trip at the same concurrency; server-side p99 (ours) = journal "
                 "done - arrival - D. At most connections / D requests/s can be answered on time.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=1000, help="wrk connections = requests in flight (default 1000)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--duration-s", type=float, default=10.0, help="each measurement (default 10)")
    p.add_argument("--delay-ms", type=float, nargs="+", default=[50.0, 2000.0],
                   help="configured delays D, one run each (default 50 2000)")
    p.add_argument("--timeout-s", type=float, default=30.0, help="wrk request timeout (default 30)")
    p.add_argument("--seed", type=int, default=1348894)
    p.add_argument("--wiremock-jar", help="wiremock-standalone jar (default: $WIREMOCK_JAR or npm install)")
    p.add_argument("--no-wiremock", action="store_true", help="measure our mock only")
    p.add_argument("--wiremock-warmup-s", type=float, default=10.0, help="undelayed wrk warm-up run (default 10)")
    args = p.parse_args(argv)
    if shutil.which("wrk") is None:
        p.error("wrk not found (Debian: apt-get install wrk)")
    if args.connections < args.threads or args.threads < 1 or min(args.delay_ms) < 0 or args.timeout_s <= 0 \
            or not 0 < args.duration_s <= 3600:
        p.error("need --connections >= --threads >= 1, --delay-ms >= 0, --timeout-s > 0, 0 < --duration-s <= 3600")
    return emit(run(args), table)


if __name__ == "__main__":
    sys.exit(main())
