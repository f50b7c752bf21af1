"""report.html: render a `Document` as one self-contained page (images inlined as base64).

Every value taken from the run folder is escaped here.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Sequence

from harness.report.sections import (
    Block,
    CalibrationNote,
    Code,
    Document,
    Heading,
    Image,
    Json,
    RateDetail,
    Section,
    Table,
    Text,
    Verdicts,
)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{border:1px solid #ccc;padding:.25rem .5rem;font-size:.9rem;text-align:left}
th{background:#f3f3f3}pre{background:#f7f7f7;border:1px solid #ddd;padding:.75rem;overflow:auto}
.pass{color:#11772d;font-weight:bold}.fail{color:#b00020;font-weight:bold}.inconclusive{color:#a60;font-weight:bold}
.banner{background:#fff3cd;border:1px solid #e0c060;padding:.5rem 1rem}.evidence{border-left:4px solid #b00020;padding-left:1rem}
img{max-width:100%;border:1px solid #eee}
.findings{border:2px solid #333;border-radius:6px;padding:.5rem 1.25rem;margin:1rem 0;font-size:1.05rem;background:#fafafa}
.findings li{margin:.35rem 0}.findings h2{margin:.25rem 0;font-size:1.2rem}
"""


def _h(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{_h(c)}</th>" for c in headers)
    body = "".join("<tr>" + "".join(f"<td>{_h(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_h(alt)}">'


def _verdict(verdict: str) -> str:
    return f'<span class="{verdict}">{verdict.upper()}</span>'


def _block(b: Block) -> list[str]:
    if isinstance(b, Text):
        return ["<p>" + "".join(f"<code>{_h(p.text)}</code>" if isinstance(p, Code) else _h(p) for p in b.parts)
                + "</p>"]
    if isinstance(b, Heading):
        return [f"<h3>{_h(b.text)}</h3>"]
    if isinstance(b, Table):
        return [_table(b.headers, b.rows)]
    if isinstance(b, Image):
        return [] if b.optional and not b.path.exists() else [_img(b.path, b.alt)]
    if isinstance(b, Json):
        return [f"<pre>{_h(b.text)}</pre>"]
    if isinstance(b, Verdicts):
        if not b.items:
            return ["<p>No thresholds configured in the scenario.</p>"]
        return ["<ul>" + "".join(f"<li>{_verdict(v)} {_h(reason)}</li>" for v, reason in b.items) + "</ul>"]
    if isinstance(b, RateDetail):
        return [f"<details><summary>Rate per offset ({_h(b.file_name)})</summary>"
                + _table(b.table.headers, b.table.rows) + "</details>"]
    if isinstance(b, CalibrationNote):
        return [f"<p>{_h(b.verdict)} (<code>race-harness calibrate</code>; per-bin detail in "
                '<a href="calibration.html">calibration.html</a>).</p>']
    raise TypeError(f"no HTML for {type(b).__name__}")


def _section(s: Section) -> list[str]:
    title = _h(s.title) + (f": {_verdict(s.verdict)}" if s.verdict is not None else "")
    head = f"<h2>{title}</h2>"
    body = [line for b in s.blocks for line in _block(b)]
    if s.boxed:
        return [head + '<div class="evidence">', *body, "</div>"]
    return [head, *body]


def render(doc: Document) -> str:
    """The whole page."""
    out = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_h(doc.title)}</title>",
           f"<style>{_CSS}</style></head><body>", f"<h1>{_h(doc.title)}</h1>"]
    if doc.findings:
        out.append('<section class="findings" id="findings"><h2>Findings</h2><ul>'
                   + "".join(f"<li>{_h(f)}</li>" for f in doc.findings) + "</ul></section>")
    if doc.description:
        out.append(f"<p>{_h(doc.description)}</p>")
    if doc.interrupted is not None:
        out.append('<p class="banner">This run was interrupted: the figures cover the trials that finished '
                   f"({doc.interrupted.trials} of {_h(doc.interrupted.planned)} planned).</p>")
    out += [f'<p class="banner">{_h(w)}</p>' for w in doc.warnings]
    out.append(_table(doc.facts.headers, doc.facts.rows))
    for s in doc.sections:
        out += _section(s)
    out.append("</body></html>\n")
    return "\n".join(out)


__all__ = ["render"]
