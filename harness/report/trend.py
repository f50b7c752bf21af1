"""`race-harness trend DIR...`: the gate's numbers across CI runs, in time order (trend.html + trend.png).

Input: run folders, or folders holding run folders (a CI artifact store). Each run is read from
its summary.json (built with `build_report` first when missing) and run.json; runs are ordered
by `started_at` and labelled by the `git describe` run.json recorded (`git.describe`), else by
the caller's label, else by the folder name. Per guard and threshold the page shows the pooled
rate and the worst bin's anytime-valid bound, the verdicts and the timing quality; a row that
regressed against the run before it (a verdict that got worse, a rate above the previous run's
95% upper bound, timing newly degraded) is highlighted and listed first. Output is deterministic
for the same inputs, self-contained (the figure inlined) and escapes every value it shows.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.analysis.stats import ordered_guards
from harness.errors import ReportError
from harness.report import build_report, plots
from harness.runfolder import read_run_json

_RANK = {"pass": 0, "inconclusive": 1, "fail": 2}


@dataclass(frozen=True)
class TrendRun:
    """One run as the trend reads it."""

    run_dir: Path
    label: str
    started_at: str
    summary: Mapping[str, Any]

    @property
    def verdict(self) -> str:
        return str((self.summary.get("gate") or {}).get("verdict", "inconclusive"))


@dataclass(frozen=True)
class Trend:
    """What `build_trend` wrote, and the regressions it found (one line each)."""

    html: Path
    png: Path
    runs: tuple[TrendRun, ...]
    regressions: tuple[str, ...]


def find_runs(dirs: Sequence[Path]) -> list[Path]:
    """Run folders (with run.json) among `dirs` and their direct children."""
    found: list[Path] = []
    for d in dirs:
        if (d / "run.json").exists():
            found.append(d)
        elif d.is_dir():
            found += sorted(c for c in d.iterdir() if (c / "run.json").exists())
        else:
            raise ReportError(f"{d}: not a folder")
    if not found:
        raise ReportError(f"no run folder (with run.json) in {', '.join(map(str, dirs))}")
    return list(dict.fromkeys(found))


def _read(run_dir: Path, label: str | None) -> TrendRun:
    meta = read_run_json(run_dir)
    path = run_dir / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8")) if path.exists() else build_report(run_dir).summary
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: cannot read as JSON: {exc}") from None
    git = meta.get("git") if isinstance(meta.get("git"), Mapping) else {}
    name = (git or {}).get("describe") or label or run_dir.name
    return TrendRun(run_dir, str(name), str(meta.get("started_at") or ""), summary)


def _threshold_rows(run: TrendRun) -> list[dict[str, Any]]:
    rows = []
    for t in (run.summary.get("gate") or {}).get("thresholds") or []:
        bins = [b for b in t.get("bins") or [] if b.get("trials")]
        is_max = t.get("max_upper") is not None
        bound = (max(b["upper"] for b in bins) if is_max else min(b["lower"] for b in bins)) if bins else None
        rows.append({"key": t["threshold"], "guard": t["guard"], "verdict": t["verdict"],
                     "rate": t["races"] / t["trials"] if t.get("trials") else None, "bound": bound,
                     "limit": t["max_upper"] if is_max else t["min_lower"], "side": "upper" if is_max else "lower"})
    return rows


def _regressions(runs: Sequence[TrendRun]) -> dict[int, list[str]]:
    """Per run index: what got worse against the run before it."""
    out: dict[int, list[str]] = {}
    for i in range(1, len(runs)):
        prev, cur, found = runs[i - 1], runs[i], []
        if _RANK.get(cur.verdict, 1) > _RANK.get(prev.verdict, 1):
            found.append(f"gate {prev.verdict.upper()} -> {cur.verdict.upper()}")
        prev_t = {r["key"]: r for r in _threshold_rows(prev)}
        for r in _threshold_rows(cur):
            p = prev_t.get(r["key"])
            if p and _RANK.get(r["verdict"], 1) > _RANK.get(p["verdict"], 1):
                found.append(f"{r['guard']}: {p['verdict'].upper()} -> {r['verdict'].upper()} ({r['key']})")
        for guard, g in (cur.summary.get("guards") or {}).items():
            pg = (prev.summary.get("guards") or {}).get(guard)
            if pg and g.get("rate") is not None and pg.get("ci_high") is not None and g["rate"] > pg["ci_high"]:
                found.append(f"{guard}: race rate {g['rate']:.3f} above the previous run's 95% upper bound "
                             f"{pg['ci_high']:.3f}")
        if (cur.summary.get("timing") or {}).get("warning") and not (prev.summary.get("timing") or {}).get("warning"):
            found.append(f"timing degraded: {cur.summary['timing']['warning']}")
        if found:
            out[i] = found
    return out


def _plot(runs: Sequence[TrendRun], out: Path) -> Path:
    guards = ordered_guards([g for r in runs for g in (r.summary.get("guards") or {})])
    n_panels = len(guards) + 1
    fig = Figure(figsize=(9.0, 1.2 + 1.9 * n_panels))
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_panels, 1, sharex=True, squeeze=False)[:, 0]
    xs = list(range(len(runs)))
    for ax, guard in zip(axes, guards):
        pts = [(i, r.summary["guards"][guard]) for i, r in enumerate(runs) if guard in (r.summary.get("guards") or {})
               and r.summary["guards"][guard].get("rate") is not None]
        color = plots.guard_color(guard)
        if pts:
            x = [i for i, _ in pts]
            y = [g["rate"] for _, g in pts]
            err = [[g["rate"] - g["ci_low"] for _, g in pts], [g["ci_high"] - g["rate"] for _, g in pts]]
            ax.errorbar(x, y, yerr=err, fmt="o-", color=color, capsize=3, label="race rate (95% Wilson interval)")
        # The gate judges each threshold's worst bin: its anytime-valid bound against the limit.
        keys = dict.fromkeys(r["key"] for run in runs for r in _threshold_rows(run) if r["guard"] == guard)
        for key, marker in zip(keys, "v^<>"):
            pts_b = [(i, r) for i, run in enumerate(runs) for r in _threshold_rows(run)
                     if r["key"] == key and r["bound"] is not None]
            if not pts_b:
                continue
            limit, side = pts_b[-1][1]["limit"], pts_b[-1][1]["side"]
            ax.plot([i for i, _ in pts_b], [r["bound"] for _, r in pts_b], linestyle="none", marker=marker,
                    color="#333333", markerfacecolor="none", label=f"worst bin's anytime 95% {side} bound")
            if limit is not None:
                ax.axhline(limit, color="#333333", linestyle=":", linewidth=1,
                           label=f"threshold {'max' if side == 'upper' else 'min'} {limit:g}")
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("race rate")
        ax.set_title(guard, fontsize=9, loc="left")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=7)
    ax = axes[-1]
    p99 = [(r.summary.get("timing") or {}).get("server_abs_error_p99_ms") for r in runs]
    tol = [(r.summary.get("timing") or {}).get("tolerance_ms") for r in runs]
    ax.plot([i for i, v in zip(xs, p99) if v is not None], [v for v in p99 if v is not None], "s-", color="#000000",
            label="server-side |offset error| p99 (ms)")
    ax.plot([i for i, v in zip(xs, tol) if v is not None], [v for v in tol if v is not None], "--", color="#D55E00",
            label="timing tolerance (ms)")
    ax.set_ylabel("ms")
    ax.set_title("timing quality", fontsize=9, loc="left")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=7)
    ax.set_xticks(xs, [f"{r.label}\n{r.verdict.upper()}" for r in runs], fontsize=7, rotation=30, ha="right")
    ax.set_xlabel("run (oldest first): label and gate verdict")
    fig.suptitle("Race rate per guard across runs", fontsize=10)
    return plots.save_figure(fig, out)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{border:1px solid #ccc;padding:.25rem .5rem;font-size:.85rem;text-align:left}
th{background:#f3f3f3}tr.regressed td{background:#fde2e1}img{max-width:100%;border:1px solid #eee}
.pass{color:#11772d;font-weight:bold}.fail{color:#b00020;font-weight:bold}.inconclusive{color:#a60;font-weight:bold}
.findings{border:2px solid #333;border-radius:6px;padding:.5rem 1.25rem;margin:1rem 0;font-size:1.05rem;background:#fafafa}
"""


def _h(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _f(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _verdict(v: str) -> str:
    return f'<span class="{_h(v)}">{_h(v.upper())}</span>'


def _render(runs: Sequence[TrendRun], regressions: Mapping[int, list[str]], png: Path) -> str:
    last = runs[-1]
    head = [f"{len(runs)} run(s), oldest {_h(runs[0].label)} ({_h(runs[0].started_at)}), newest {_h(last.label)} "
            f"({_h(last.started_at)}): gate {_verdict(last.verdict)}."]
    if regressions:
        head += [f"Regression at {_h(runs[i].label)}: {_h('; '.join(found))}." for i, found in regressions.items()]
    else:
        head.append("No regression: no verdict got worse, no race rate rose above the previous run's 95% upper "
                    "bound, timing did not newly degrade.")
    out = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Race harness trend</title>",
           f"<style>{_CSS}</style></head><body><h1>Race harness trend</h1>",
           '<section class="findings" id="findings"><h2>Findings</h2><ul>'
           + "".join(f"<li>{line}</li>" for line in head) + "</ul></section>"]
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    out.append(f'<img src="data:image/png;base64,{data}" alt="race rate per guard across runs">')
    out.append("<h2>Runs</h2><table><thead><tr><th>run</th><th>started</th><th>scenario</th><th>gate</th>"
               "<th>late trials</th><th>|offset error| p99 (ms)</th><th>tolerance (ms)</th><th>regressions</th>"
               "</tr></thead><tbody>")
    for i, r in enumerate(runs):
        t = r.summary.get("timing") or {}
        cls = ' class="regressed"' if i in regressions else ""
        out.append(f"<tr{cls}><td>{_h(r.label)}</td><td>{_h(r.started_at)}</td><td>{_h(r.summary.get('scenario'))}"
                   f"</td><td>{_verdict(r.verdict)}</td><td>{_h(t.get('late'))} of {_h(t.get('trials'))}</td>"
                   f"<td>{_h(_f(t.get('server_abs_error_p99_ms'), 2))}</td><td>{_h(_f(t.get('tolerance_ms'), 1))}</td>"
                   f"<td>{_h('; '.join(regressions.get(i, [])))}</td></tr>")
    out.append("</tbody></table><h2>Thresholds</h2><table><thead><tr><th>run</th><th>guard</th><th>threshold</th>"
               "<th>verdict</th><th>pooled rate</th><th>worst bin's bound</th><th>limit</th></tr></thead><tbody>")
    for i, r in enumerate(runs):
        for t in _threshold_rows(r):
            cls = ' class="regressed"' if i in regressions else ""
            out.append(f"<tr{cls}><td>{_h(r.label)}</td><td>{_h(t['guard'])}</td><td>{_h(t['key'])}</td>"
                       f"<td>{_verdict(t['verdict'])}</td><td>{_h(_f(t['rate']))}</td>"
                       f"<td>{_h(t['side'])} {_h(_f(t['bound']))}</td><td>{_h(_f(t['limit']))}</td></tr>")
    out.append("</tbody></table><h2>Race rate per guard</h2><table><thead><tr><th>run</th><th>guard</th>"
               "<th>races / judged</th><th>rate</th><th>95% CI</th></tr></thead><tbody>")
    for i, r in enumerate(runs):
        for guard, g in (r.summary.get("guards") or {}).items():
            out.append(f"<tr><td>{_h(r.label)}</td><td>{_h(guard)}</td><td>{_h(g.get('races'))} / "
                       f"{_h(g.get('trials'))}</td><td>{_h(_f(g.get('rate')))}</td>"
                       f"<td>[{_h(_f(g.get('ci_low')))}, {_h(_f(g.get('ci_high')))}]</td></tr>")
    out.append("</tbody></table></body></html>\n")
    return "\n".join(out)


def build_trend(dirs: Sequence[Path | str], out: Path | str, *, label: str | None = None) -> Trend:
    """Read the runs under `dirs` and write `out`/trend.html and `out`/trend.png (+ trend@2x.png)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = sorted((_read(d, label) for d in find_runs([Path(d) for d in dirs])),
                  key=lambda r: (r.started_at, r.run_dir.name))
    regressions = _regressions(runs)
    png = _plot(runs, out / "trend.png")
    page = out / "trend.html"
    page.write_text(_render(runs, regressions, png), encoding="utf-8")
    return Trend(page, png, tuple(runs), tuple(f"{runs[i].label}: {line}" for i, found in regressions.items()
                                               for line in found))


__all__ = ["Trend", "TrendRun", "build_trend", "find_runs"]
