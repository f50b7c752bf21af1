"""The run folder, the on-disk contract every mode shares: `run.json` (built by
`run_meta`), and the trial data appended as each trial finishes.

Each trial's row, requests and audit are written and flushed the moment the
trial ends, so an interrupted or crashed run keeps everything it measured and
`race-harness report DIR` can rebuild the report from the folder alone.
`read_run_json` reads run.json back (summary.json is returned by
`harness.report.build_report`, so nothing reads it back).
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from harness.core.results import TRIALS_SCHEMA_VERSION, TrialResult
from harness.core.scenario import Scenario
from harness.errors import ReportError

RUN_SCHEMA_VERSION = 1
# trials.csv schemas a report reads: version 2 lacks `late` (read as False: harness.core.results.ADDED_COLUMNS).
READABLE_TRIALS_SCHEMA_VERSIONS = (2, TRIALS_SCHEMA_VERSION)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_meta(scenario: Scenario, *, target_kind: str, target_url: str | None, planned_trials: int | None,
             concurrency: int, **extra: Any) -> dict[str, Any]:
    """The mode-independent part of run.json (RunWriter adds schema versions, times and host);
    `extra` holds the mode's own section (e.g. `simulate`)."""
    return {
        "scenario": scenario.to_dict(),
        "seed": scenario.seed,
        "target": {"kind": target_kind, "url": target_url},
        "mock": {"policy": scenario.mock.policy, "delay": scenario.mock.change_delay.spec(),
                 "settle_ms": scenario.mock.settle_ms},
        "planned_trials": planned_trials,
        "concurrency": concurrency,
        "git": git_describe(Path.cwd()),
        **extra,
    }


def git_describe(cwd: Path) -> dict[str, str] | None:
    """`git describe --always --dirty` of the checkout `cwd` is in (the code under test, in CI), so
    `race-harness trend` can label runs by commit; None outside a git checkout or without git."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=cwd, capture_output=True,
                              text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    describe = done.stdout.strip()
    return {"describe": describe} if done.returncode == 0 and describe else None


def new_run_dir(reports: Path, scenario_name: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = reports / f"{scenario_name}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = reports / f"{scenario_name}-{stamp}-{n}"
    path.mkdir(parents=True)
    return path


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    return x


# json.dumps(x, allow_nan=False) builds an encoder per call; trial data are trees of JSON values
# (requests, responses, audits), so one encoder serves them all, without the cycle check.
_encode = json.JSONEncoder(allow_nan=False, check_circular=False).encode


def _dumps(x: Any) -> str:
    """json.dumps(_jsonable(x)), without walking `x` when it holds no NaN/inf (the usual case)."""
    try:
        return _encode(x)
    except ValueError:
        return json.dumps(_jsonable(x))


class RunWriter:
    """Appends trials to the folder; a context manager so files close on any exit."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.meta = {
            "schema_version": RUN_SCHEMA_VERSION,
            "trials_schema_version": TRIALS_SCHEMA_VERSION,
            "started_at": utc_now(),
            "finished_at": None,
            "interrupted": False,
            "wall_s": None,
            "host": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()},
            **meta,
        }
        self._write_meta()
        self._trials: TextIO = open(path / "trials.csv", "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._trials)
        self._csv.writerow(TrialResult.columns())
        self._history: TextIO = open(path / "history.jsonl", "w", encoding="utf-8")
        self._audits: TextIO = open(path / "audits.jsonl", "w", encoding="utf-8")
        self.count = 0

    def _write_meta(self) -> None:
        tmp = self.path / "run.json.tmp"
        tmp.write_text(json.dumps(_jsonable(self.meta), indent=2), encoding="utf-8")
        tmp.replace(self.path / "run.json")  # atomic: a crash never leaves half a run.json

    def add(self, result: TrialResult, events: list[dict[str, Any]], audit: dict[str, Any] | None) -> None:
        self._history.write("".join([f"{_dumps(event)}\n" for event in events]))
        self._audits.write(_dumps({"trial_id": result.trial_id, "order_id": result.order_id, "audit": audit}) + "\n")
        self._csv.writerow(result.values())
        # history and audit first: a row in trials.csv promises its evidence is on disk.
        self._history.flush()
        self._audits.flush()
        self._trials.flush()
        self.count += 1

    def append_parts(self, parts: list[Path]) -> None:
        """Append the trials other writers wrote to part folders (a run split over processes):
        history and audits part after part, trials.csv rows in execution order (`seq`)."""
        self._history.flush()
        self._audits.flush()
        for name in ("history.jsonl", "audits.jsonl"):
            with (self.path / name).open("ab") as out:  # bytes: no decoding and re-encoding
                for part in parts:
                    if (part / name).exists():
                        with (part / name).open("rb") as src:
                            shutil.copyfileobj(src, out, 1 << 20)
        columns = TrialResult.columns()
        seq = columns.index("seq")
        rows: list[list[str]] = []
        for part in parts:
            if (part / "trials.csv").exists():
                with (part / "trials.csv").open(newline="", encoding="utf-8") as fh:
                    reader = csv.reader(fh)
                    next(reader, None)  # the header: parts are written with the same columns
                    # A row cut short (its writer was killed mid-line) has missing fields: left out.
                    rows.extend(r for r in reader if len(r) == len(columns))
        rows.sort(key=lambda r: int(r[seq]))
        self._csv.writerows(rows)
        self._trials.flush()
        self.count += len(rows)

    def close(self, interrupted: bool, wall_s: float, extra: dict[str, Any] | None = None) -> None:
        for f in (self._history, self._audits, self._trials):
            f.close()
        self.meta.update({"finished_at": utc_now(), "interrupted": interrupted, "wall_s": wall_s,
                          "trials_written": self.count, **(extra or {})})
        self._write_meta()


def read_run_json(run_dir: Path) -> dict[str, Any]:
    """run.json, checked: a JSON object of this run schema over this trials.csv schema (else ReportError)."""
    path = run_dir / "run.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: missing (is {run_dir} a run folder?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: cannot read as JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ReportError(f"{path}: expected a JSON object; got {type(meta).__name__}")
    version = meta.get("schema_version")
    if version != RUN_SCHEMA_VERSION:
        raise ReportError(f"{path}: schema_version {version!r} not supported (this report reads {RUN_SCHEMA_VERSION})")
    trials_version = meta.get("trials_schema_version", TRIALS_SCHEMA_VERSION)
    if trials_version not in READABLE_TRIALS_SCHEMA_VERSIONS:
        raise ReportError(f"{path}: trials_schema_version {trials_version!r} not supported "
                          f"(this report reads trials.csv version {TRIALS_SCHEMA_VERSION})")
    return meta
