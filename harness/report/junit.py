"""junit.xml: the gate as a test suite, so CI systems show each threshold as a test.

A FAIL verdict is a <failure> (the threshold is proven broken); an INCONCLUSIVE one is an
<error> carrying its reason (the run could not decide: more trials, or fewer not-judged ones,
are needed), so CI never shows it as green. Accounting checks (failed / not-judged trials)
are testcases of their own.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any, Mapping

from harness.analysis.gate import GateReport
from harness.analysis.stats import json_safe


def _mark(case: ET.Element, verdict: str, reason: str, detail: Mapping[str, Any] | None) -> None:
    if verdict == "pass":
        ET.SubElement(case, "system-out").text = reason
        return
    tag, kind = ("failure", "ThresholdFailed") if verdict == "fail" else ("error", "Inconclusive")
    el = ET.SubElement(case, tag, message=reason, type=kind)
    if detail is not None:
        el.text = json.dumps(json_safe(detail), sort_keys=True)


def junit_xml(gate: GateReport, summary: Mapping[str, Any]) -> bytes:
    """One testcase per threshold, then one per accounting reason; a non-passing threshold
    carries its per-bin detail as JSON."""
    name = f"race-gate.{summary.get('scenario') or 'run'}"
    cases: list[tuple[str, str, str, Mapping[str, Any] | None]] = [
        (t.threshold.describe(), t.verdict, t.reason, t.as_dict()) for t in gate.thresholds]
    cases += [(f"outcomes: {r.split(':', 1)[0]}", "fail" if r.startswith("FAIL") else "inconclusive", r, None)
              for r in gate.reasons]
    failures = str(sum(v == "fail" for _, v, _, _ in cases))
    errors = str(sum(v == "inconclusive" for _, v, _, _ in cases))
    suites = ET.Element("testsuites", name="race-harness", tests=str(len(cases)), failures=failures, errors=errors)
    suite = ET.SubElement(suites, "testsuite", name=name, tests=str(len(cases)), failures=failures,
                          errors=errors, skipped="0")
    props = ET.SubElement(suite, "properties")
    for key in ("scenario", "seed"):
        ET.SubElement(props, "property", name=key, value=str(summary.get(key)))
    ET.SubElement(props, "property", name="verdict", value=gate.verdict)
    for i, (title, verdict, reason, detail) in enumerate(cases):
        case = ET.SubElement(suite, "testcase", classname=name, name=f"[{i}] {title}")
        _mark(case, verdict, reason, detail)
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"


__all__ = ["junit_xml"]
