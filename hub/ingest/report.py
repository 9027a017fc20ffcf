"""What became of one ingested item, in words: the summary ``hub ingest`` prints and
``$ingest`` answers with.

One line for the item (status, resources written, how many errors and warnings),
then one line per error or warning with its location (row number, segment,
XPath, FHIRPath) as the outcome's ``expression`` gives it.
"""

from __future__ import annotations

from typing import Any

# Issues worth a line of their own; information (what was not mapped, counts) stays in the outcome.
REPORTED = ("fatal", "error", "warning")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def reported_issues(outcome: dict | None) -> list[dict[str, Any]]:
    """The outcome's errors and warnings, in order."""
    return [i for i in (outcome or {}).get("issue") or () if i.get("severity") in REPORTED]


def summary(item: Any, duplicate: bool = False) -> str:
    """``inbox item 7 partial: 12 written, 1 error, 2 warnings`` (``item``: an InboxItem)."""
    issues = reported_issues(item.outcome)
    errors = sum(1 for i in issues if i.get("severity") in ("fatal", "error"))
    warnings = len(issues) - errors
    parts = []
    written = (item.result or {}).get("written")
    if written is not None:
        parts.append(f"{written} written")
    if errors:
        parts.append(_plural(errors, "error"))
    if warnings:
        parts.append(_plural(warnings, "warning"))
    status = f"{item.status}, duplicate" if duplicate else item.status
    text = f"inbox item {item.id} {status}"
    return f"{text}: {', '.join(parts)}" if parts else text


def issue_line(issue: dict[str, Any]) -> str:
    """``error [value] PID-3: check character is '1', expected '7'``."""
    where = ", ".join(issue.get("expression") or issue.get("location") or ())
    text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or ""
    if where and text.startswith(f"{where}: "):
        text = text[len(where) + 2 :]  # the adapter already put the location in front
    head = f"{issue.get('severity')} [{issue.get('code')}]"
    return f"{head} {where}: {text}" if where else f"{head} {text}"


def lines(item: Any, duplicate: bool = False) -> list[str]:
    """The summary, then one line per error or warning."""
    return [summary(item, duplicate)] + [issue_line(i) for i in reported_issues(item.outcome)]
