"""scorecard.html: the hazard x subject matrix of a `race-harness scorecard`, self-contained
(inline CSS, the run report's look), each cell linking to its hazard's report and evidence."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import StorageError
from harness.hazards import get_hazard
from harness.report.html import _CSS

if TYPE_CHECKING:
    from harness.scorecard import Cell, Scorecard

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
