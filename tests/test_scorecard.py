"""`race-harness scorecard`: json, html and exit code on a small run, and a team's service written in
another language (Node.js) scored through --target-url/--hook-url."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.cli import main
from harness.scorecard import Cell, Scorecard
from mock_orders_api.config import MockConfig
from mock_orders_api.server import MockProcess

TESTS = Path(__file__).resolve().parent


def _folder(out: Path) -> Path:
    (folder,) = out.glob("scorecard-*")
    return folder


def test_simulated_scorecard_writes_json_and_html_and_exits_by_verdicts_against_expectations(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["scorecard", "--hazards", "change-during-invoice-settle", "--simulate", "--trials", "20",
                 "--out", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    folder = _folder(tmp_path)
    data = json.loads((folder / "scorecard.json").read_text())
    cells = {c["subject"]: c for c in data["cells"]}
    # The known-bad guards race in the invoice-first window; serialized closes it (docs/model.md).
    assert cells["none"]["verdict"] == "fail" and cells["none"]["expected"] == "fail"
    assert cells["finished-check"]["verdict"] == "fail"
    assert cells["serialized"]["verdict"] == "pass" and cells["serialized"]["races"] == 0
    assert cells["serialized"]["trials"] >= 40 and cells["serialized"]["ci_high"] < 0.25
    assert code == data["exit_code"] == 0  # every cell as expected
    assert (folder / cells["serialized"]["report"]).is_file() and (folder / cells["none"]["evidence"]).is_file()
    html = (folder / "scorecard.html").read_text()
    assert f'href="{cells["none"]["report"]}"' in html and "known-bad" in html and "<style>" in html
    assert re.search(r"change-during-invoice-settle\s+FAIL\* \d+/\d+", out)


def test_exit_code_is_the_worst_cell_against_its_expectation(tmp_path: Path) -> None:
    def card(*cells: Cell) -> Scorecard:
        return Scorecard(tmp_path, "t", "built-in", list(cells))

    assert card(Cell("h", "naive", "fail", "fail"), Cell("h", "robust", "pass", "pass")).exit_code == 0
    assert card(Cell("h", "naive", "pass", "fail")).exit_code == 1  # the hazard did not show
    assert card(Cell("h", "robust", "inconclusive", "pass"), Cell("g", "robust", "error", "pass")).exit_code == 2
    assert card(Cell("h", "robust", "inconclusive", "pass")).exit_code == 3
    with pytest.raises(AssertionError, match="h/robust: FAIL"):
        card(Cell("h", "robust", "fail", "pass", reasons=("2 of 5 trials failed",))).assert_survived()


def test_unknown_hazard_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["scorecard", "--hazards", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown hazard 'nope'; known: invoice-during-change" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_a_node_service_is_scored_through_target_and_hook_urls(tmp_path: Path, race_scorecard) -> None:  # type: ignore[no-untyped-def]
    with MockProcess(MockConfig()) as mock:
        proc = subprocess.Popen(["node", str(TESTS / "hazard_service.js"), mock.url], stdout=subprocess.PIPE,
                                text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # bounded: the service prints it once listening, or exits
            match = re.search(r"listening on (http://\S+)", line)
            assert match, f"node service did not start: {line!r}"
            card = race_scorecard(target_url=mock.url, hook_url=match.group(1) + "/hook",
                                  hazards=["failed-change", "change-during-invoice-settle"], trials=2)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    # The service waits for `finished` only: a canceled Change never finishes, so it never invoices.
    assert card.subjects == ["integration"] and card.hazards == ["failed-change"]  # core-mode hazard skipped
    (cell,) = card.cells
    assert cell.verdict == "fail" and cell.outcomes.get("no_invoice") == cell.failed > 0
    with pytest.raises(AssertionError, match="failed-change/integration: FAIL"):
        card.assert_survived()
