"""A scorecard's records (`Cell`, `Scorecard`: scorecard.json, docs/outputs.md) and scorecard.html:
the hazard x subject matrix, self-contained (inline CSS, the run report's look), each cell linking
to its hazard's report and evidence. Running one is `harness.scorecard`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from harness.core.thresholds import VERDICT_EXIT_CODES
from harness.errors import StorageError
from harness.hazards import get_hazard
from harness.hazards.base import Hazard
from harness.report.html import _CSS

SCORECARD_SCHEMA_VERSION = 1
EXIT_ERROR = 2

@dataclass(frozen=True)
class Cell:
    """One hazard against one subject (scorecard.json `cells[]`, docs/outputs.md)."""

    hazard: str
    subject: str
    verdict: str  # "pass" | "fail" | "inconclusive" | "error"
    expected: str  # "pass" | "fail"
    races: int = 0
    trials: int = 0  # judged trials (race + no race)
    rate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    not_judged: int = 0
    failed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)  # non-zero outcome counts
    reasons: tuple[str, ...] = ()  # the gate lines about this subject (or the error)
    run_dir: str = ""  # relative to the scorecard folder
    report: str = ""
    evidence: str = ""

    @property
    def score(self) -> str:
        """The verdict against the expectation: what the exit code is built from."""
        if self.expected == "pass" or self.verdict in ("error", "inconclusive"):
            return self.verdict
        return "pass" if self.verdict == "fail" else "fail"


@dataclass
class Scorecard:
    folder: Path
    started_at: str
    target: str  # "built-in" or the team's hook URL
    cells: list[Cell]
    wall_s: float = 0.0

    @property
    def subjects(self) -> list[str]:
        seen: list[str] = []
        for c in self.cells:
            if c.subject not in seen:
                seen.append(c.subject)
        return seen

    @property
    def hazards(self) -> list[str]:
        seen: list[str] = []
        for c in self.cells:
            if c.hazard not in seen:
                seen.append(c.hazard)
        return seen

    def cell(self, hazard: str, subject: str) -> Cell | None:
        return next((c for c in self.cells if c.hazard == hazard and c.subject == subject), None)

    @property
    def exit_code(self) -> int:
        scores = {c.score for c in self.cells}
        if "fail" in scores:
            return VERDICT_EXIT_CODES["fail"]
        if "error" in scores or not self.cells:
            return EXIT_ERROR
        if "inconclusive" in scores:
            return VERDICT_EXIT_CODES["inconclusive"]
        return VERDICT_EXIT_CODES["pass"]

    def not_survived(self) -> list[str]:
        """`hazard/subject` of every cell expected to pass that did not (the pytest entry point's list)."""
        return [f"{c.hazard}/{c.subject}: {c.verdict.upper()}" + (f" ({c.reasons[0]})" if c.reasons else "")
                for c in self.cells if c.expected == "pass" and c.verdict != "pass"]

    def assert_survived(self) -> None:
        """AssertionError listing every hazard a subject expected to survive did not (pytest entry point)."""
        missed = self.not_survived()
        if missed or not self.cells:
            raise AssertionError(f"scorecard ({self.folder / 'scorecard.html'}): did not survive "
                                 f"{len(missed)} hazard(s):\n  " + "\n  ".join(missed or ["no hazard ran"]))

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCORECARD_SCHEMA_VERSION,
            "started_at": self.started_at,
            "wall_s": round(self.wall_s, 3),
            "target": self.target,
            "exit_code": self.exit_code,
            "hazards": [_hazard_json(get_hazard(h)) for h in self.hazards],
            "subjects": self.subjects,
            "cells": [{**asdict(c), "reasons": list(c.reasons), "score": c.score} for c in self.cells],
        }


def _hazard_json(h: Hazard) -> dict[str, Any]:
    return {"id": h.id, "title": h.title, "ki": list(h.ki), "summary": h.summary, "subjects": h.subjects,
            "survivors": list(h.survivors), "invariants": list(h.invariants)}



_EXTRA_CSS = "td.cell{text-align:center;min-width:9rem}.error{color:#555;font-weight:bold}.small{font-size:.8rem;color:#555}"


def _cell_html(c: Cell | None) -> str:
    if c is None:
        return '<td class="cell small">n/a</td>'
    verdict = c.verdict if c.verdict in ("pass", "fail", "inconclusive") else "error"
    expect = "" if c.expected == "pass" else '<br><span class="small">known-bad: expected FAIL</span>'
    rate = (f'<br><span class="small">{c.races}/{c.trials} races, 95% CI [{c.ci_low:.2f}, {c.ci_high:.2f}]'
            f'{f", {c.not_judged} not judged" if c.not_judged else ""}{f", {c.failed} failed" if c.failed else ""}'
            "</span>") if c.rate is not None else ""
    links = " ".join(f'<a href="{escape(href)}">{name}</a>' for name, href in (("report", c.report),
                                                                                ("evidence", c.evidence)) if href)
    why = f'<br><span class="small">{escape(c.reasons[0])}</span>' if c.reasons and c.verdict != "pass" else ""
    return (f'<td class="cell"><span class="{verdict}">{verdict.upper()}</span>{rate}{expect}{why}'
            f'{"<br>" + links if links else ""}</td>')


def render(card: Scorecard) -> str:
    subjects = card.subjects
    rows = []
    for hid in card.hazards:
        h = get_hazard(hid)
        ki = ", ".join(f"KI {k}" for k in h.ki) or "-"
        rows.append(f'<tr><th>{escape(hid)}<br><span class="small">{escape(ki)}: {escape(h.summary)}</span></th>'
                    + "".join(_cell_html(card.cell(hid, s)) for s in subjects) + "</tr>")
    code = card.exit_code
    return "\n".join([
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>race-harness scorecard</title>",
        f"<style>{_CSS}{_EXTRA_CSS}</style></head><body>",
        "<h1>Order-integration hazards: scorecard</h1>",
        f"<p>Target: {escape(card.target)}. Started {escape(card.started_at)}, {card.wall_s:.0f} s. "
        f"Exit code {code} (0 PASS, 1 FAIL, 2 could not run, 3 INCONCLUSIVE; a known-bad reference is "
        "expected to FAIL).</p>",
        "<table><tr><th>hazard</th>" + "".join(f"<th>{escape(s)}</th>" for s in subjects) + "</tr>",
        *rows, "</table>",
        "<p class=\"small\">Each cell: the sequential gate's verdict on that subject (race rate &le; limit in every "
        "offset bin, no failed trial), its judged races and Wilson 95% interval, and links to the hazard's run "
        "report and evidence. See docs/hazards/README.md.</p>",
        "</body></html>",
    ])


def write_html(card: Scorecard, path: Path) -> Path:
    try:
        path.write_text(render(card), encoding="utf-8")
    except OSError as err:
        raise StorageError(f"cannot write {path}: {err.strerror or err}") from None
    return path

__all__ = ["SCORECARD_SCHEMA_VERSION", "Cell", "Scorecard", "render", "write_html"]
