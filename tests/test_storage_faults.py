"""Storage faults stop the run, loudly (issue 12, item 2), and the smaller run-folder items.

Faults are injected: the run writer's file object raises OSError on its Nth write (ENOSPC, EIO,
...), or `--out` cannot hold a folder. Each must stop the run with one line naming the file and
the error, exit 2 (could not run, never 1 = FAIL, also under `check`), and leave what was
written consistent: every trials.csv row has its history and audit lines, no line is cut.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from harness.cli import EXIT_ERROR, EXIT_OK, main
from harness.errors import StorageError
from harness.runfolder import RunWriter
from test_report import make_trial  # the report tests' synthetic trials


class _FailingFile:
    """A run writer file whose `fail_on`-th write raises OSError(code)."""

    def __init__(self, f: Any, fail_on: int, code: int) -> None:
        self._f, self._left, self._code = f, fail_on, code

    def write(self, data: Any) -> int:
        self._left -= 1
        if self._left == 0:
            self._f.write(bytes(data)[: len(data) // 2])  # half of it reached the disk
            raise OSError(self._code, os.strerror(self._code))
        return int(self._f.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _inject(monkeypatch: pytest.MonkeyPatch, name: str, fail_on: int, code: int = errno.ENOSPC) -> None:
    real_open = RunWriter._open

    def _open(self: RunWriter, file_name: str) -> Any:
        f = real_open(self, file_name)
        return _FailingFile(f, fail_on, code) if file_name == name else f

    monkeypatch.setattr(RunWriter, "_open", _open)


def _consistent(run_dir: Path) -> list[dict[str, str]]:
    """trials.csv rows, checked: each has its audit and history lines; no file ends mid-line."""
    for name in ("trials.csv", "history.jsonl", "audits.jsonl"):
        data = (run_dir / name).read_bytes()
        assert not data or data.endswith(b"\n"), f"{name} ends mid-line"
    with (run_dir / "trials.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    audits = [json.loads(line) for line in (run_dir / "audits.jsonl").read_text().splitlines()]
    history = {json.loads(line)["trial_id"] for line in (run_dir / "history.jsonl").read_text().splitlines()}
    assert sorted(int(r["trial_id"]) for r in rows) == sorted(a["trial_id"] for a in audits)
    assert {int(r["trial_id"]) for r in rows} <= history
    return rows


@pytest.mark.parametrize("name", ["history.jsonl", "audits.jsonl", "trials.csv"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO, errno.EROFS, errno.EACCES])
def test_writer_fault_names_the_file_and_keeps_whole_trials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           name: str, code: int) -> None:
    trials = [make_trial(k, "none", 100.0) for k in range(6)]
    _inject(monkeypatch, name, fail_on=4 if name == "trials.csv" else 3, code=code)  # trials.csv: header first
    writer = RunWriter(tmp_path, {"planned_trials": len(trials)})
    with pytest.raises(StorageError) as info:
        for t in trials:
            writer.add(t, [{"trial_id": t.trial_id, "kind": "invoice", "note": "café"}], {"verdict": "clean"})
    assert str(tmp_path / name) in str(info.value) and errno.errorcode[code] in str(info.value)
    with pytest.raises(StorageError):  # the run stays stopped
        writer.add(trials[-1], [], None)
    writer.close(interrupted=False, wall_s=1.0)
    assert len(_consistent(tmp_path)) == 2 == writer.count
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["interrupted"] is True and name in meta["error"]


@pytest.mark.parametrize("workers", ["1", "2"])  # 2: the fault is in a forked worker, reported by the parent
def test_disk_full_mid_run_exits_2_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str], workers: str) -> None:
    _inject(monkeypatch, "history.jsonl", fail_on=2)  # a simulation part's second trial
    out = tmp_path / "out"
    rc = main(["check", "guard-regression", "--simulate", "--workers", workers, "--trials", "1", "--out",
               str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == EXIT_ERROR
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert "history.jsonl" in line and "No space left on device (ENOSPC)" in line
    assert "Traceback" not in err
    (run_dir,) = out.iterdir()
    _consistent(run_dir)


def test_unwritable_out_exits_2_before_any_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for command in ("run", "check"):
        rc = main([command, "--simulate", "--trials", "1", "--out", str(blocker / "reports"), "--no-progress"])
        err = capsys.readouterr().err
        assert rc == EXIT_ERROR and f"--out {blocker / 'reports'}" in err and "Traceback" not in err, err
    assert blocker.read_text() == "not a folder"


def test_unreachable_target_url_names_it_and_leaves_no_run_folder(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    out = tmp_path / "out"
    assert main(["check", "--target-url", url, "--out", str(out), "--no-progress"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"cannot reach the target {url}" in err and "--target-url" in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    assert main(["run", "guard-regression", "--simulate", "--workers", "1", "--trials", "1", "--out", str(out),
                 "--no-progress"]) == EXIT_OK
    (run_dir,) = out.iterdir()
    return run_dir


def test_trials_csv_cut_inside_a_multibyte_character_still_reports(sim_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for f in sim_run.iterdir():
        if f.is_file():
            (run_dir / f.name).write_bytes(f.read_bytes())
    rows = (run_dir / "trials.csv").read_bytes()
    (run_dir / "trials.csv").write_bytes(rows + b"999,999,none,0.0,caf" + "é".encode()[:1])
    assert main(["report", str(run_dir)]) == EXIT_OK
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["run"]["skipped_trial_lines"] == 1


def test_killed_run_is_interrupted_in_summary_json_too(sim_run: Path, tmp_path: Path) -> None:
    """A run killed before run.json was finished: finished_at null, interrupted still false there."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for f in sim_run.iterdir():
        if f.is_file():
            (run_dir / f.name).write_bytes(f.read_bytes())
    meta = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**meta, "finished_at": None, "interrupted": False}))
    assert main(["report", str(run_dir)]) == EXIT_OK
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["run"]["interrupted"] is True
    assert "interrupted" in (run_dir / "report.md").read_text().lower()


def test_client_disconnect_and_a_cut_response_are_not_logged_as_mock_errors() -> None:
    import logging
    import sys

    from starlette.requests import ClientDisconnect

    from mock_orders_api.faults import ResponseLost
    from mock_orders_api.server import _not_a_disconnect

    def record(exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except BaseException:
            return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application",
                                     None, sys.exc_info())

    assert not _not_a_disconnect(record(ClientDisconnect()))
    assert not _not_a_disconnect(record(ResponseLost()))  # the fault schedule's `drop`, journaled already
    assert _not_a_disconnect(record(ValueError("a real bug")))


def _parts(tmp_path: Path, n_parts: int, per_part: int) -> list[Path]:
    """Part folders as simulation workers leave them, trial k in part k % n_parts."""
    parts = [tmp_path / "parts" / f"1-{k}" for k in range(n_parts)]
    writers = []
    for part in parts:
        part.mkdir(parents=True)
        writers.append(RunWriter(part, {"planned_trials": per_part}))
    for k in range(n_parts * per_part):
        t = make_trial(k, "none", 100.0)
        writers[k % n_parts].add(t, [{"trial_id": k, "kind": "invoice", "note": "café " * 50}], {"verdict": "clean"})
    for w in writers:
        w.close(interrupted=False, wall_s=1.0)
    return parts


@pytest.mark.parametrize("copy", ["kernel", "read-write"])
def test_merged_parts_are_the_parts_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copy: str) -> None:
    """Merging parts appends their history and audit bytes as they are, part after part, whether the
    kernel copies them or (a file system without copy_file_range) they go through read/write."""
    parts = _parts(tmp_path, 3, 4)
    if copy == "read-write":
        def _unsupported(*args: Any, **kwargs: Any) -> int:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        monkeypatch.setattr(os, "copy_file_range", _unsupported, raising=False)
    run = tmp_path / "run"
    run.mkdir()
    writer = RunWriter(run, {"planned_trials": 12})
    writer.append_parts(parts)
    writer.add(make_trial(12, "none", 100.0), [{"trial_id": 12}], None)  # appends after the merged bytes
    writer.close(interrupted=False, wall_s=1.0)
    for name in ("history.jsonl", "audits.jsonl"):
        merged = b"".join((part / name).read_bytes() for part in parts)
        assert (run / name).read_bytes().startswith(merged) and (run / name).read_bytes() != merged
    assert [int(r["trial_id"]) for r in _consistent(run)] == list(range(13))


@pytest.mark.skipif(not hasattr(os, "copy_file_range"), reason="the kernel copy path needs copy_file_range")
def test_disk_full_while_merging_parts_keeps_the_run_folder_consistent(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    parts = _parts(tmp_path, 2, 3)
    run = tmp_path / "run"
    run.mkdir()
    writer = RunWriter(run, {"planned_trials": 7})
    writer.add(make_trial(100, "none", 100.0), [{"trial_id": 100}], {"verdict": "clean"})
    real = os.copy_file_range
    audits_fd = os.open(run / "audits.jsonl", os.O_RDONLY)  # to recognise the writer's audits file
    audits = os.fstat(audits_fd)
    os.close(audits_fd)

    def _fills_up(src: int, dst: int, count: int, *args: Any) -> int:
        st = os.fstat(dst)
        if (st.st_dev, st.st_ino) == (audits.st_dev, audits.st_ino):  # every part's history is in by now
            real(src, dst, 10)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst, count, *args)

    monkeypatch.setattr(os, "copy_file_range", _fills_up)
    with pytest.raises(StorageError) as info:
        writer.append_parts(parts)
    assert str(run / "audits.jsonl") in str(info.value) and "ENOSPC" in str(info.value)
    writer.close(interrupted=False, wall_s=1.0)
    assert [int(r["trial_id"]) for r in _consistent(run)] == [100]  # the merge is all or nothing
    assert len((run / "history.jsonl").read_text().splitlines()) == 1
