"""The run folder, the on-disk contract every mode shares: `run.json` (built by
`run_meta`), and the trial data appended as each trial finishes.

Each trial's row, requests and audit are written and flushed the moment the
trial ends, so an interrupted or crashed run keeps everything it measured and
`race-harness report DIR` can rebuild the report from the folder alone.
`read_run_json` reads run.json back (summary.json is returned by
`harness.report.build_report`, so nothing reads it back).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from harness.core.results import TRIALS_SCHEMA_VERSION, TrialResult
from harness.core.scenario import Scenario
from harness.errors import ReportError, StorageError

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
    try:
        path.mkdir(parents=True)
    except OSError as err:
        raise StorageError(f"cannot create the run folder {path}: {_describe(err)}") from None
    return path


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    return x


# json.dumps(x, allow_nan=False) builds an encoder per call (JSONEncoder.encode builds the C one
# per call too); trial data are trees of JSON values (requests, responses, audits), so one C encoder,
# made once with json.dumps's own settings (no cycle check), serves them all: the same text.
_c_encoder = (json.encoder.c_make_encoder(None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii,
                                          None, ": ", ", ", False, False, False)
              if json.encoder.c_make_encoder is not None else None)
_encode = json.JSONEncoder(allow_nan=False, check_circular=False).encode


def _dumps(x: Any) -> str:
    """json.dumps(_jsonable(x)), without walking `x` when it holds no NaN/inf (the usual case)."""
    try:
        return "".join(_c_encoder(x, 0)) if _c_encoder is not None else _encode(x)
    except ValueError:
        return json.dumps(_jsonable(x))


class RunWriter:
    """Appends trials to the folder; a context manager so files close on any exit.

    A failed write (disk full, read-only file system, permission, I/O error) raises StorageError
    naming the file, and every later write raises it again: the run stops. What was written stays
    consistent: a trial's history and audit lines are written before its trials.csv row, and a
    trial whose writes did not all succeed is cut off all three files again (truncated back to the
    previous trial's end), so every row's evidence is on disk and no half line is left.
    """

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
        self.failed: StorageError | None = None
        self._write_meta()
        # Unbuffered binary files: a trial is one write per file, and what a failed write left
        # behind is known exactly (the `_ends` of the last whole trial).
        self._history = self._open("history.jsonl")
        self._audits = self._open("audits.jsonl")
        self._trials = self._open("trials.csv")
        self._ends = [0, 0, 0]
        self._row = io.StringIO()
        self._csv = csv.writer(self._row)
        self._append([b"", b"", self._csv_bytes([TrialResult.columns()])])
        self.count = 0

    def _open(self, name: str) -> BinaryIO:
        try:
            return open(self.path / name, "wb", buffering=0)
        except OSError as err:
            raise self._fault(self.path / name, err) from None

    def _fault(self, path: Path, err: OSError) -> StorageError:
        self.failed = self.failed or StorageError(f"cannot write {path}: {_describe(err)}; the run stopped "
                                                  f"(trials written before are kept, consistent)")
        return self.failed

    def _csv_bytes(self, rows: list[list[Any]]) -> bytes:
        self._row.seek(0)
        self._row.truncate()
        self._csv.writerows(rows)
        return self._row.getvalue().encode("utf-8")

    def _append(self, chunks: list[bytes | list[int]]) -> None:
        """Append chunks to history, audits and trials.csv, in that order, all or nothing. A chunk is
        bytes, or open files (descriptors) whose contents are appended, copied by the kernel."""
        if self.failed is not None:
            raise self.failed
        files = (self._history, self._audits, self._trials)
        sizes = []
        for f, data in zip(files, chunks):
            try:
                if isinstance(data, bytes):
                    view = memoryview(data)
                    while view:
                        view = view[f.write(view):]
                    sizes.append(len(data))
                else:
                    sizes.append(sum(_copy_into(f, fd) for fd in data))
            except OSError as err:
                for g, end in zip(files, self._ends):
                    with contextlib.suppress(OSError):
                        os.ftruncate(g.fileno(), end)
                        g.seek(end)
                raise self._fault(self.path / Path(f.name).name, err) from None
        self._ends = [end + n for end, n in zip(self._ends, sizes)]

    def _write_meta(self) -> None:
        tmp = self.path / "run.json.tmp"
        try:
            tmp.write_text(json.dumps(_jsonable(self.meta), indent=2), encoding="utf-8")
            tmp.replace(self.path / "run.json")  # atomic: a crash never leaves half a run.json
        except OSError as err:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise self._fault(self.path / "run.json", err) from None

    def add(self, result: TrialResult, events: list[dict[str, Any]], audit: dict[str, Any] | None) -> None:
        # history and audit first: a row in trials.csv promises its evidence is on disk.
        self._append(["".join([f"{_dumps(event)}\n" for event in events]).encode("utf-8"),
                      (_dumps({"trial_id": result.trial_id, "order_id": result.order_id, "audit": audit})
                       + "\n").encode("utf-8"),
                      self._csv_bytes([result.values()])])
        self.count += 1

    def append_parts(self, parts: list[Path]) -> None:
        """Append the trials other writers wrote to part folders (a run split over processes):
        history and audits part after part, trials.csv rows in execution order (`seq`)."""
        columns = TrialResult.columns()
        seq = columns.index("seq")
        rows: list[list[str]] = []
        for part in parts:
            if (part / "trials.csv").exists():
                with (part / "trials.csv").open(newline="", encoding="utf-8", errors="replace") as fh:
                    reader = csv.reader(fh)
                    next(reader, None)  # the header: parts are written with the same columns
                    # A row cut short (its writer was killed mid-line) has missing fields: left out.
                    rows.extend(r for r in reader if len(r) == len(columns))
        rows.sort(key=lambda r: int(r[seq]))
        # Bytes, not decoded and re-encoded (~1 MB per 100 trials: copied file to file by the kernel);
        # one chunk per file keeps the all-or-nothing rule.
        with contextlib.ExitStack() as stack:
            sources = [[_open_fd(stack, part / name) for part in parts if (part / name).exists()]
                       for name in ("history.jsonl", "audits.jsonl")]
            self._append([*sources, self._csv_bytes(rows)])
        self.count += len(rows)

    def close(self, interrupted: bool, wall_s: float, extra: dict[str, Any] | None = None) -> None:
        """Close the files and finish run.json; after a storage fault, as far as the disk lets it
        (the fault was raised already, so nothing is raised again)."""
        for f in (self._history, self._audits, self._trials):
            with contextlib.suppress(OSError):
                f.close()
        self.meta.update({"finished_at": utc_now(), "interrupted": interrupted or self.failed is not None,
                          "wall_s": wall_s, "trials_written": self.count, **(extra or {})})
        if self.failed is not None:
            self.meta["error"] = str(self.failed)
            with contextlib.suppress(StorageError):
                self._write_meta()
            return
        self._write_meta()


# copy_file_range errors that mean "not between these files" (another file system on an old kernel,
# a file system without it): the copy goes through read/write instead.
_NO_COPY_RANGE = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}
_COPY_CHUNK = 1 << 24


def _open_fd(stack: contextlib.ExitStack, path: Path) -> int:
    fd = os.open(path, os.O_RDONLY)
    stack.callback(os.close, fd)
    return fd


def _copy_into(f: BinaryIO, fd: int) -> int:
    """Append the rest of file `fd` to `f` (both at their positions); the bytes copied."""
    total = 0
    if hasattr(os, "copy_file_range"):
        while True:
            try:
                n = os.copy_file_range(fd, f.fileno(), _COPY_CHUNK)
            except OSError as err:
                if err.errno not in _NO_COPY_RANGE:
                    raise
                break
            if n == 0:
                return total
            total += n
    while chunk := os.read(fd, _COPY_CHUNK):
        view = memoryview(chunk)
        while view:
            view = view[f.write(view):]
        total += len(chunk)
    return total


def check_writable(out: Path) -> None:
    """`--out` exists (it is created) and a file can be written in it: checked before a run
    starts anything, so an unwritable folder costs no run and leaves no empty run folder."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise StorageError(f"cannot write to --out {out}: {_describe(err)}; choose a writable folder "
                           f"with --out") from None


def _describe(err: OSError) -> str:
    """"No space left on device (ENOSPC)"."""
    name = errno.errorcode.get(err.errno or 0)
    return f"{err.strerror or err}" + (f" ({name})" if name else "")


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
