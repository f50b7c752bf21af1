"""The README's examples, run as written, so they cannot drift from the code.

A code block is an example when the line before its opening fence is an HTML comment
`<!-- example: KIND -->`:

* `bash`: run by bash in a temporary directory (errors fatal, background jobs killed at the
  end). A leading `pip install ... &&` is dropped: the suite already runs inside that install.
  The fixed ports of the examples (8080, 9000) are mapped to free ones, so a run cannot collide
  with a service already listening there.
* `pytest`: written to a temporary test file (named by its first comment line) and run with
  `python -m pytest` in a subprocess: the installed pytest plugin provides its fixtures.
* `ci`: the command `.ci/run` runs (the suite itself): checked to be identical, not re-run.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
_MARKER = re.compile(r"<!--\s*example:\s*(\w+)\s*-->")
_INSTALL = re.compile(r"^pip install [^&\n]+&&\s*")
_PORTS = ("8080", "9000")


@dataclass(frozen=True)
class Example:
    kind: str
    line: int  # of the opening fence, 1-based
    code: str

    def __str__(self) -> str:
        return f"{self.kind}@README.md:{self.line}"


def examples(path: Path) -> list[Example]:
    """Every marked code block of a Markdown file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    for i, line in enumerate(lines):
        m = _MARKER.fullmatch(line.strip())
        if not m:
            continue
        fence = i + 1
        assert fence < len(lines) and lines[fence].startswith("```"), f"{path.name}:{i + 1}: marker without a code block"
        end = next(j for j in range(fence + 1, len(lines)) if lines[j].startswith("```"))
        found.append(Example(m.group(1), fence + 1, "\n".join(lines[fence + 1:end]) + "\n"))
    return found


ALL = examples(README)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(argv: list[str], cwd: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run in a session of its own; whatever the example left running is killed with it."""
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout_s} s\n{out[-3000:]}\n{err[-3000:]}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def test_the_readme_marks_its_examples() -> None:
    kinds = [e.kind for e in ALL]
    assert kinds.count("ci") == 1 and kinds.count("pytest") == 1, kinds
    assert {e.kind for e in ALL} <= {"bash", "pytest", "ci"}, kinds
    quick_start = next(e for e in ALL if e.kind == "bash")
    assert _INSTALL.match(quick_start.code) and "race-harness run" in quick_start.code, quick_start.code
    assert any("--hook-url" in e.code for e in ALL if e.kind == "bash"), "the integration commands are examples"


def test_the_ci_example_is_what_ci_runs() -> None:
    (ci,) = [e for e in ALL if e.kind == "ci"]
    commands = [ln for ln in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
                if ln.strip() and not ln.startswith("#") and not ln.startswith(("set ", "cd "))]
    # Before it, only the provisioning of Debian's chromium for tests/test_browser.py.
    assert commands[-1] == ci.code.strip() and all("chromium" in c for c in commands[:-1]), commands


@pytest.mark.parametrize("example", [e for e in ALL if e.kind == "bash"], ids=str)
def test_bash_example(example: Example, tmp_path: Path) -> None:
    code = _INSTALL.sub("", example.code, count=1)
    for port in _PORTS:
        code = re.sub(rf"\b{port}\b", str(_free_port()), code)
    script = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + code
    done = _run(["bash", "-c", script], tmp_path, timeout_s=300)
    assert done.returncode == 0, f"{example}\n{code}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"


def test_pytest_example(tmp_path: Path) -> None:
    (example,) = [e for e in ALL if e.kind == "pytest"]
    name = re.match(r"#\s*(test_\w+\.py)", example.code)
    assert name, "the pytest example names its file in its first line"
    (tmp_path / name.group(1)).write_text(example.code, encoding="utf-8")
    done = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name.group(1)], tmp_path,
                timeout_s=300)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
