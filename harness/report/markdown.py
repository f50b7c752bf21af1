"""report.md: render a `Document` as Markdown (plots linked by file name, next to the report).

Markdown passes raw HTML through to renderers, so every value is HTML-escaped
here too, and table cells escape `|`, `\\` and newlines.
"""

from __future__ import annotations

import html
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


def _text(value: Any) -> str:
    # Markdown passes raw HTML through to renderers: neutralise it like the HTML report does.
    return html.escape(str(value), quote=False)


def _cell(value: str) -> str:
    return _text(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _fence(text: str) -> str:
    # A fence longer than any backtick run inside, so the JSON cannot close it.
    n = 3
    while "`" * n in text:
        n += 1
    return "`" * n


def _block(b: Block) -> list[str]:
    """The block's lines (each block is followed by one blank line); [] when Markdown leaves it out."""
    if isinstance(b, Text):
        if not b.markdown:
            return []
        return ["".join(_text(p.text if isinstance(p, Code) else p) for p in b.parts)]
    if isinstance(b, Heading):
        return [f"### {_text(b.text)}"]
    if isinstance(b, Table):
        return [_table(b.headers, b.rows)]
    if isinstance(b, Image):
        return [f"![{b.alt}]({b.path.name})"]
    if isinstance(b, Json):
        fence = _fence(b.text)
        return [f"{fence}json", b.text, fence]
    if isinstance(b, Verdicts):
        return [f"- {_text(reason)}" for _, reason in b.items] or ["No thresholds configured."]
    if isinstance(b, RateDetail):
        return [f"Rate per offset: [{b.file_name}]({b.file_name})."]
    if isinstance(b, CalibrationNote):
        return [f"{_text(b.verdict)} (per-bin detail in calibration.html)."]
    raise TypeError(f"no Markdown for {type(b).__name__}")


def _section(s: Section) -> list[str]:
    verdict = f": {s.verdict.upper()}" if s.verdict is not None else ""
    out = [f"## {_text(s.title)}{verdict}", ""]
    for b in s.blocks:
        lines = _block(b)
        out += [*lines, ""] if lines else []
    return out


def render(doc: Document) -> str:
    """The whole document."""
    out = [f"# {_text(doc.title)}", ""]
    if doc.findings:
        out += ["## Findings", "", *[f"- {_text(f)}" for f in doc.findings], ""]
    if doc.description:
        out += [_text(doc.description), ""]
    if doc.interrupted is not None:
        out += [f"> **Interrupted run**: figures cover the {doc.interrupted.trials} trials that finished "
                f"(of {doc.interrupted.planned} planned).", ""]
    out += [f"> {_text(w)}" for w in doc.warnings] + ([""] if doc.warnings else [])
    out += [_table(doc.facts.headers, doc.facts.rows), ""]
    for s in doc.sections:
        out += _section(s)
    return "\n".join(out)


__all__ = ["render"]
