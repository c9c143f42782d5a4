"""Reporting scenario results: one block per scenario (describe), the totals line
(summary) and the JUnit XML file (write_junit)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from ivr.qa.result import Result


def describe(result: Result) -> str:
    if result.skipped is not None:
        return f"SKIP  {result.name}  [{result.target}]: {result.skipped}"
    status = "PASS" if result.passed else "FAIL"
    line = f"{status}  {result.name}  [{result.target}, {result.seconds:.1f} s]"
    if result.passed:
        return line
    heard = result.heard if len(result.heard) <= 30 else ["...", *result.heard[-30:]]
    return (f"{line}\n      {result.step}: {result.message}\n"
            f"      heard: {', '.join(heard) or 'nothing'}\n      file: {result.scenario.file}")


def summary(results: Sequence[Result]) -> str:
    failed = sum(not r.passed for r in results)
    skipped = sum(r.skipped is not None for r in results)
    return f"{len(results) - failed - skipped} passed, {failed} failed" + (
        f", {skipped} skipped" if skipped else "")


def write_junit(results: Sequence[Result], path: str | Path, target: str) -> None:
    failed = sum(not r.passed for r in results)
    suite = ET.Element("testsuite", name=f"starpay-scenarios.{target}",
                       tests=str(len(results)), failures=str(failed), errors="0",
                       skipped=str(sum(r.skipped is not None for r in results)),
                       time=f"{sum(r.seconds for r in results):.3f}")
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=f"scenarios.{r.target}",
                             name=r.name, time=f"{r.seconds:.3f}", file=str(r.scenario.file))
        if r.skipped is not None:
            ET.SubElement(case, "skipped", message=r.skipped)
        elif not r.passed:
            fail = ET.SubElement(case, "failure", message=f"{r.step}: {r.message}")
            fail.text = describe(r)
        out = ET.SubElement(case, "system-out")
        out.text = "heard: " + ", ".join(r.heard)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
