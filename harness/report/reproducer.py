"""A run folder's evidence trial as something a person can replay: reproduce.sh and test_reproduce.py.

`reproduce.sh MOCK_URL` sends the trial's requests with curl, in order, each at its recorded
time relative to the Change's planned instant (t0): the order created without its id (the mock
assigns one), start-handling, the Change with the trial's pinned delay
(`X-Mock-Change-Delay-Ms`), the invoice at the trial's offset and the guard's reads where it had
any. It sets the mock's policy and settle time as the run had them (a global setting of the mock
it is pointed at), waits for the Change to finish, prints the order's audit and exits 0 when the
mock judged the order a race, 1 when not. `test_reproduce.py` does the same as a pytest with the
`race_mock` fixture (harness.pytest_plugin), for a developer's own suite.

The requests are the ones history.jsonl recorded for the trial, so the replay follows what the
run sent; being a few ms late changes nothing unless the offset sits at the window's edge.
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.core.history import AUDIT, CREATE_ORDER
from harness.core.steps import DELAY_HEADER

REPRODUCE_SH = "reproduce.sh"
TEST_REPRODUCE = "test_reproduce.py"
_SETTLE_AFTER_MS = 200.0  # after the Change's due time, before reading the audit


def _steps(row: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The create-order body (without its id) and the timed requests: method, path with `{orderId}`,
    body, headers, at_ms (None: as soon as the previous answered)."""
    events = sorted((e for e in history if e.get("kind") != AUDIT and e.get("sent_ms") is not None),
                    key=lambda e: float(e["sent_ms"]))
    order_id = str(row["order_id"])
    create = next((e for e in events if e.get("kind") == CREATE_ORDER), None)
    body = {k: v for k, v in ((create or {}).get("request_body") or {}).items() if k != "orderId"}
    delay = row.get("change_delay_ms")
    timed_from = min(0.0, float(row["offset_ms"]))  # t0 is the Change's planned instant
    steps = []
    for e in events:
        if e.get("kind") == CREATE_ORDER:
            continue
        at = float(e["sent_ms"])
        headers = {}
        if e.get("kind") == "change" and isinstance(delay, (int, float)) and math.isfinite(delay):
            headers[DELAY_HEADER] = f"{float(delay):.3f}"
        steps.append({"kind": e.get("kind"), "method": e["method"], "path": str(e["path"]).replace(order_id, "{orderId}"),
                      "body": e.get("request_body"), "headers": headers,
                      "at_ms": round(at, 3) if at >= timed_from - 1.0 else None})
    return body, steps


def _wait_ms(row: Mapping[str, Any], steps: Sequence[Mapping[str, Any]]) -> float:
    delay = row.get("change_delay_ms")
    last = max([s["at_ms"] for s in steps if s["at_ms"] is not None] or [0.0])
    due = float(delay) if isinstance(delay, (int, float)) and math.isfinite(delay) else 0.0
    return max(last, due) + _SETTLE_AFTER_MS


def _shell(meta: Mapping[str, Any], row: Mapping[str, Any], body: Mapping[str, Any],
           steps: Sequence[Mapping[str, Any]]) -> str:
    mock = meta.get("mock") or {}
    config = {"policy": mock.get("policy", "vulnerable"), "settle_ms": mock.get("settle_ms", 0)}
    lines = [
        "#!/usr/bin/env bash",
        f"# Replays trial {row['trial_id']} of run {meta.get('started_at')} (guard {row['guard']}, planned offset "
        f"{float(row['offset_ms']):g} ms, pinned Change delay {row.get('change_delay_ms')} ms).",
        "# Usage: bash reproduce.sh MOCK_URL   (a mock started with `race-harness serve`)",
        "# Sets the mock's policy and settle_ms as the run had them. Exit 0: the mock judged the order a race.",
        "# Auth: VTEX_APP_KEY / VTEX_APP_TOKEN / MOCK_ADMIN_TOKEN from the environment when set.",
        "set -euo pipefail",
        'URL="${1:?usage: reproduce.sh MOCK_URL}"; URL="${URL%/}"',
        'H=(-H "Content-Type: application/json")',
        '[ -n "${VTEX_APP_KEY:-}" ] && H+=(-H "X-VTEX-API-AppKey: $VTEX_APP_KEY")',
        '[ -n "${VTEX_APP_TOKEN:-}" ] && H+=(-H "X-VTEX-API-AppToken: $VTEX_APP_TOKEN")',
        '[ -n "${MOCK_ADMIN_TOKEN:-}" ] && H+=(-H "X-Mock-Admin-Token: $MOCK_ADMIN_TOKEN")',
        "# at MS: wait until MS milliseconds after t0 (the Change's planned instant).",
        'at() { local d=$(( T0 + $1 - $(date +%s%N) / 1000 )); '
        'if [ "$d" -gt 0 ]; then sleep "$(printf "%d.%06d" $((d / 1000000)) $((d % 1000000)))"; fi; }',
        'req() { local m=$1 p=$2; shift 2; echo ">> $m $p" >&2; '
        'curl -sS -X "$m" "${H[@]}" "$@" "$URL$p" -w "\\n<< HTTP %{http_code}\\n" >&2; }',
        f"curl -sS -f -X PATCH \"${{H[@]}}\" \"$URL/_mock/config\" -d {shlex.quote(json.dumps(config))} >/dev/null",
        f"ORDER=$(curl -sS -f -X POST \"${{H[@]}}\" \"$URL/_mock/orders\" -d {shlex.quote(json.dumps(body))} "
        "| sed -n 's/.*\"orderId\": *\"\\([^\"]*\\)\".*/\\1/p')",
        'echo "order $ORDER" >&2',
    ]
    timed = [s for s in steps if s["at_ms"] is not None]
    first = min(s["at_ms"] for s in timed) if timed else 0.0
    started = False
    for s in steps:
        if s["at_ms"] is not None and not started:
            # t0 set so the first timed request goes 50 ms from now.
            lines.append(f"T0=$(( $(date +%s%N) / 1000 + 50000 - ({round(first * 1000)}) ))")
            started = True
        if s["at_ms"] is not None:
            lines.append(f"at {round(s['at_ms'] * 1000)}  # {s['at_ms']:g} ms: {s['kind']}")
        args = [f"-H {shlex.quote(f'{k}: {v}')}" for k, v in s["headers"].items()]
        if s["body"] is not None:
            args.append(f"-d {shlex.quote(json.dumps(s['body']))}")
        path = s["path"].replace("{orderId}", "$ORDER")
        lines.append(f"req {s['method']} \"{path}\" {' '.join(args)}".rstrip() + (" &" if s["at_ms"] is not None else ""))
    lines += [
        "wait",
        f"at {round(_wait_ms(row, steps) * 1000)}",
        'AUDIT=$(curl -sS -f "${H[@]}" "$URL/_mock/orders/$ORDER/audit")',
        'echo "$AUDIT"',
        'if echo "$AUDIT" | grep -q \'"verdict": *"race"\'; then echo "RACE reproduced: invoice accepted above the '
        'final order total" >&2; exit 0; fi',
        'echo "not reproduced this time (see the audit above)" >&2; exit 1',
    ]
    return "\n".join(lines) + "\n"


def _pytest(meta: Mapping[str, Any], row: Mapping[str, Any], body: Mapping[str, Any],
            steps: Sequence[Mapping[str, Any]]) -> str:
    mock = meta.get("mock") or {}
    return f'''"""Trial {row['trial_id']} of run {meta.get('started_at')} replayed against the `race_mock` fixture
(race-harness's pytest plugin): guard {row['guard']}, planned offset {float(row['offset_ms']):g} ms, pinned
Change delay {row.get('change_delay_ms')} ms. Written by `race-harness report`."""

import json
import time

import httpx

POLICY = {json.dumps(mock.get("policy", "vulnerable"))}
SETTLE_MS = {json.dumps(mock.get("settle_ms", 0))}
ORDER = json.loads({json.dumps(body)!r})
# method, path, body, headers, at_ms (ms after t0, the Change's planned instant; None: at once)
STEPS = json.loads({json.dumps([[s["method"], s["path"], s["body"], s["headers"], s["at_ms"]] for s in steps])!r})
WAIT_MS = {_wait_ms(row, steps)!r}


def test_reproduces_the_race(race_mock):
    race_mock.set_policy(POLICY)
    race_mock.set_settle_ms(SETTLE_MS)
    extra = {{k: v for k, v in ORDER.items() if k != "items"}}
    oid = race_mock.create_order(ORDER["items"], **extra)["orderId"]
    timed = [s[4] for s in STEPS if s[4] is not None]
    t0 = None
    with httpx.Client(base_url=race_mock.url, timeout=10) as client:
        for method, path, body, headers, at_ms in STEPS:
            if at_ms is not None:
                if t0 is None:  # the first timed request goes 50 ms from now
                    t0 = time.perf_counter() + 0.05 - min(timed) / 1000
                time.sleep(max(0.0, t0 + at_ms / 1000 - time.perf_counter()))
            client.request(method, path.replace("{{orderId}}", oid), json=body, headers=headers)
        time.sleep(max(0.0, (t0 or time.perf_counter()) + WAIT_MS / 1000 - time.perf_counter()))
    audit = race_mock.audit(oid)
    assert audit["verdict"] == "race", audit
    assert audit["invoicedTotal"] > audit["finalValue"]
'''


def write_reproducer(run_dir: Path, meta: Mapping[str, Any], row: Mapping[str, Any] | None,
                     history: Sequence[Mapping[str, Any]]) -> list[Path]:
    """Write reproduce.sh and test_reproduce.py for the evidence trial `row` (its history events);
    with no evidence trial, remove any an earlier build left. Returns the paths written."""
    paths = [run_dir / REPRODUCE_SH, run_dir / TEST_REPRODUCE]
    if row is None or not history:
        for p in paths:
            p.unlink(missing_ok=True)
        return []
    body, steps = _steps(row, history)
    paths[0].write_text(_shell(meta, row, body, steps), encoding="utf-8")
    paths[0].chmod(0o755)
    paths[1].write_text(_pytest(meta, row, body, steps), encoding="utf-8")
    return paths


__all__ = ["REPRODUCE_SH", "TEST_REPRODUCE", "write_reproducer"]
