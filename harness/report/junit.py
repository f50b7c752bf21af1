"""junit.xml: the gate as a test suite, so CI systems show each threshold as a test."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from typing import Any, Mapping, Sequence

from harness.analysis.gate import GateResult


def junit_xml(results: Sequence[GateResult], summary: Mapping[str, Any]) -> bytes:
    """One testcase per gate threshold; a failed threshold carries its measured window as JSON."""
    name = f"race-gate.{summary.get('scenario') or 'run'}"
    failures = sum(not r.passed for r in results)
    suites = ET.Element("testsuites", name="race-harness", tests=str(len(results)), failures=str(failures))
    suite = ET.SubElement(suites, "testsuite", name=name, tests=str(len(results)), failures=str(failures),
                          errors="0", skipped="0")
    props = ET.SubElement(suite, "properties")
    for key in ("scenario", "seed"):
        ET.SubElement(props, "property", name=key, value=str(summary.get(key)))
    for i, r in enumerate(results):
        case = ET.SubElement(suite, "testcase", classname=name, name=f"[{i}] {r.threshold.describe()}")
        if not r.passed:
            fail = ET.SubElement(case, "failure", message=r.reason, type="ThresholdFailed")
            fail.text = json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                                    for k, v in r.measured.items()}, sort_keys=True)
        else:
            ET.SubElement(case, "system-out").text = r.reason
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"


__all__ = ["junit_xml"]
