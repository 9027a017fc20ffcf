"""Reports of conformance results: console summary, JUnit XML, one self-contained HTML page.

Results are :class:`~hub.conformance.runner.CheckResult` objects grouped by
``group`` (the site for kits, the resource type for endpoint checks). JUnit
gets one ``testsuite`` per group and one ``testcase`` per result, so CI
systems show kit cases by site; the HTML page has one section per group and
inlines its style (no external assets), so it can be mailed or archived.
"""

from __future__ import annotations

import datetime as dt
import html
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from hub.conformance.runner import ERROR
from hub.conformance.runner import FAILED
from hub.conformance.runner import PASSED
from hub.conformance.runner import SKIPPED
from hub.conformance.runner import UPDATED
from hub.conformance.runner import CheckResult
from hub.testing import short_json

# How many differing paths a console summary shows per failed result.
CONSOLE_DIFF_LINES = 12
STATUS_ORDER = (PASSED, UPDATED, FAILED, ERROR, SKIPPED)


def grouped(results: Iterable[CheckResult]) -> dict[str, list[CheckResult]]:
    """Results by group, groups in first-seen order."""
    out: dict[str, list[CheckResult]] = {}
    for result in results:
        out.setdefault(result.group, []).append(result)
    return out


def counts(results: Iterable[CheckResult]) -> dict[str, int]:
    out: dict[str, int] = {}
    for result in results:
        out[result.status] = out.get(result.status, 0) + 1
    return {s: out[s] for s in STATUS_ORDER if s in out}


def _counts_text(results: list[CheckResult]) -> str:
    return ", ".join(f"{n} {status}" for status, n in counts(results).items()) or "no cases"


def console_summary(
    results: list[CheckResult], noun: str = "cases", *, show_skipped: bool = False
) -> str:
    """Per group a line of counts; under it each failure with its differing paths.

    Skipped checks are listed only with ``show_skipped`` (the reports always have them).
    """
    lines = []
    groups = grouped(results)
    width = max((len(g) for g in groups), default=0) + 2
    for group, members in groups.items():
        lines.append(f"{group:<{width}}{_counts_text(members)}")
        for result in members:
            if result.status in (FAILED, ERROR):
                lines.append(f"  {result.status.upper()} {result.name}: {result.message}".rstrip())
                for diff in result.differences[:CONSOLE_DIFF_LINES]:
                    lines.append(f"      {diff}")
                if len(result.differences) > CONSOLE_DIFF_LINES:
                    more = len(result.differences) - CONSOLE_DIFF_LINES
                    lines.append(f"      ... and {more} more (see the HTML report)")
            elif result.status == SKIPPED and show_skipped:
                lines.append(f"  skipped {result.name}: {result.message}")
    lines.append(f"{len(results)} {noun}: {_counts_text(results)}")
    return "\n".join(lines)


def _detail(result: CheckResult) -> str:
    parts = [result.message] if result.message else []
    parts.extend(str(d) for d in result.differences)
    return "\n".join(parts)


def junit_xml(results: list[CheckResult], name: str = "fhirhub conformance") -> bytes:
    """JUnit XML: a ``testsuite`` per group, a ``testcase`` per result."""
    root = ET.Element("testsuites", name=name)
    total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    elapsed = 0.0
    for group, members in grouped(results).items():
        c = counts(members)
        suite_time = sum(r.duration for r in members)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=group,
            tests=str(len(members)),
            failures=str(c.get(FAILED, 0)),
            errors=str(c.get(ERROR, 0)),
            skipped=str(c.get(SKIPPED, 0)),
            time=f"{suite_time:.3f}",
        )
        total["tests"] += len(members)
        total["failures"] += c.get(FAILED, 0)
        total["errors"] += c.get(ERROR, 0)
        total["skipped"] += c.get(SKIPPED, 0)
        elapsed += suite_time
        for result in members:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"conformance.{group}",
                name=result.name,
                time=f"{result.duration:.3f}",
            )
            if result.status == FAILED:
                ET.SubElement(case, "failure", message=result.message).text = _detail(result)
            elif result.status == ERROR:
                ET.SubElement(case, "error", message=result.message).text = _detail(result)
            elif result.status == SKIPPED:
                ET.SubElement(case, "skipped", message=result.message)
            elif result.message:
                ET.SubElement(case, "system-out").text = result.message
    for key, value in total.items():
        root.set(key, str(value))
    root.set("time", f"{elapsed:.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}code{font:12px ui-monospace,monospace;word-break:break-all}
.passed,.updated{color:#1a7f37}.failed,.error{color:#cf222e}.skipped{color:#9a6700}
.status{font-weight:600;white-space:nowrap}.diff td{font:12px ui-monospace,monospace}
.summary span{margin-right:1.2em}
"""


def html_report(
    results: list[CheckResult], title: str = "fhirhub conformance", item: str = "case"
) -> str:
    """One HTML page: totals, then a section per group with each result and its differences."""
    esc = html.escape
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="summary">{when} &middot; {len(results)} checks: '
        + "".join(f'<span class="{s}">{n} {s}</span>' for s, n in counts(results).items())
        + "</p>",
    ]
    for group, members in grouped(results).items():
        out.append(f'<section id="{esc(group)}"><h2>{esc(group)}</h2>')
        out.append(f"<p>{esc(_counts_text(members))}</p>")
        out.append(f"<table><tr><th>{esc(item)}</th><th>status</th><th>details</th></tr>")
        for result in members:
            out.append(
                f"<tr><td><code>{esc(result.name)}</code></td>"
                f'<td class="status {result.status}">{result.status}</td>'
                f"<td>{esc(result.message)}{_diff_table(result)}</td></tr>"
            )
        out.append("</table></section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _diff_table(result: CheckResult) -> str:
    if not result.differences:
        return ""
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(d.path or '(root)')}</td><td>{esc(short_json(d.expected, 400))}</td>"
        f"<td>{esc(short_json(d.actual, 400))}</td></tr>"
        for d in result.differences
    )
    return (
        f'<table class="diff"><tr><th>path</th><th>expected</th><th>actual</th></tr>{rows}</table>'
    )


def write_reports(
    results: list[CheckResult],
    junit: Path | None,
    html_path: Path | None,
    title: str,
    item: str = "case",
) -> None:
    """Write the JUnit and HTML files that were asked for."""
    if junit:
        Path(junit).write_bytes(junit_xml(results, title))
    if html_path:
        Path(html_path).write_text(html_report(results, title, item), encoding="utf-8")
