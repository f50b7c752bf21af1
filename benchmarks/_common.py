"""Helpers shared by the benchmark scripts: machine description, CPU accounting, percentiles,
the operation mix, WireMock, and printing the result.

The machine is shared (other jobs may run during a benchmark), so every timing figure is
printed with how much CPU *other* processes used during the measurement: a p99 measured
while something else held a core is not the harness's own figure.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine() -> dict[str, Any]:
    return {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "loadavg_1m": os.getloadavg()[0]}


def _busy_ticks() -> int | None:
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            f = [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return sum(f) - f[3] - f[4]  # all but idle and iowait


def _tree_ticks(pids: list[int]) -> int:
    """CPU ticks of this process, its reaped children, and the given live pids."""
    t = os.times()
    total = round((t.user + t.system + t.children_user + t.children_system) * _TCK)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                f = fh.read().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            pass
    return total


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far; 0.0 if it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            f = fh.read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / _TCK
    except (OSError, ValueError, IndexError):
        return 0.0


class CpuMeter:
    """CPU used during a `with` block: by us (this process, reaped children, `pids`) and by others.

    Children that are still alive at the end must be listed in `pids` (e.g. WireMock's JVM);
    children reaped inside the block are counted through `os.times()`.
    """

    def __init__(self, pids: list[int] | None = None) -> None:
        self.pids = pids or []
        self.result: dict[str, Any] = {}

    def __enter__(self) -> CpuMeter:
        self._t0 = time.monotonic()
        self._busy0 = _busy_ticks()
        self._ours0 = _tree_ticks(self.pids)
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(time.monotonic() - self._t0, 1e-9)
        busy1 = _busy_ticks()
        ours = (_tree_ticks(self.pids) - self._ours0) / _TCK
        if self._busy0 is None or busy1 is None:
            self.result = {"wall_s": wall, "ours_cores": ours / wall, "others_cores": None}
            return
        busy = (busy1 - self._busy0) / _TCK
        self.result = {"wall_s": wall, "ours_cores": ours / wall,
                       "others_cores": max(0.0, busy - ours) / wall}


def find_wiremock_jar(given: str | None, tmp: Path) -> tuple[Path | None, str]:
    """(the wiremock-standalone jar, where it came from) or (None, why not).

    `given`, else $WIREMOCK_JAR, else `npm install wiremock` into `tmp` (the npm package ships
    the jar; nothing is installed outside `tmp`)."""
    for cand in (given, os.environ.get("WIREMOCK_JAR")):
        if cand:
            return (Path(cand), "given") if Path(cand).is_file() else (None, f"jar not found: {cand}")
    npm = shutil.which("npm")
    if npm is None:
        return None, "npm not found (give --wiremock-jar or $WIREMOCK_JAR)"
    try:
        proc = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(tmp), "wiremock"],
                              capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, f"npm install wiremock failed: {err}"
    if proc.returncode != 0:
        return None, f"npm install wiremock failed: {proc.stderr.strip()[-300:]}"
    jars = sorted(glob.glob(str(tmp / "node_modules/wiremock/**/wiremock-standalone-*.jar"), recursive=True))
    return (Path(jars[-1]), "npm install wiremock") if jars else (None, "npm installed wiremock but no jar found")


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]); NaN for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))]


def stats(values: list[float]) -> dict[str, Any]:
    """n, p50, p99, max and min of millisecond values."""
    return {"n": len(values), "p50_ms": pct(values, 0.5), "p99_ms": pct(values, 0.99),
            "max_ms": max(values) if values else float("nan"), "min_ms": min(values) if values else float("nan")}


OPS = ("get", "invoice", "change")


def parse_mix(text: str) -> dict[str, float]:
    """`get=60,invoice=20,change=20` -> weights for every operation of `OPS` (absent ones 0)."""
    mix = {op: 0.0 for op in OPS}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in OPS:
            raise ValueError(f"--mix: unknown operation {name!r}; expected some of {list(OPS)}")
        try:
            mix[name] = float(weight)
        except ValueError:
            raise ValueError(f"--mix: weight of {name!r} must be a number; got {weight!r}") from None
        if mix[name] < 0:
            raise ValueError(f"--mix: weight of {name!r} must be >= 0")
    if sum(mix.values()) <= 0:
        raise ValueError("--mix: at least one weight must be > 0")
    return mix


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WireMockError(RuntimeError):
    pass


@contextlib.contextmanager
def wiremock(jar: Path, workdir: Path, extra: list[str] | None = None,
             startup_timeout_s: float = 60.0) -> Iterator[tuple[str, int]]:
    """WireMock standalone on a free loopback port, healthy: yields (url, pid); stopped on exit.

    Raises WireMockError when java is missing, the JVM exits, or it is not healthy in time."""
    import httpx

    from mock_orders_api.server import stop_process

    java = shutil.which("java")
    if java is None:
        raise WireMockError("java not found")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / f"wiremock-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([java, "-jar", str(jar), "--port", str(port), "--bind-address", "127.0.0.1",
                                 "--no-request-journal", "--disable-banner", *(extra or [])],
                                cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + startup_timeout_s
            with httpx.Client(base_url=url, timeout=5) as c:
                while True:
                    if proc.poll() is not None:
                        raise WireMockError(f"WireMock exited with code {proc.returncode} (see {log_path})")
                    with contextlib.suppress(httpx.HTTPError):
                        if c.get("/__admin/health").status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise WireMockError(f"WireMock not healthy within {startup_timeout_s:g} s (see {log_path})")
                    time.sleep(0.2)
            yield url, proc.pid
        finally:
            stop_process(proc, 15.0)


def time_command(cmd: list[str], *, stderr: int | None, timeout_s: float) -> tuple[int, float | None, float]:
    """Run a race-harness command from the repo root: (exit code, seconds to its `gate: ` line or
    None, seconds to exit)."""
    t0 = time.monotonic()
    verdict_s = None
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("gate: ") and verdict_s is None:
            verdict_s = time.monotonic() - t0
    proc.wait(timeout=timeout_s)
    return proc.returncode, verdict_s, time.monotonic() - t0


def emit(result: dict[str, Any], table: Callable[[dict[str, Any]], str]) -> int:
    """Print the result as one JSON line, then its readable table; the script's exit code."""
    print(json.dumps(result, sort_keys=True))
    print(table(result))
    return 0
