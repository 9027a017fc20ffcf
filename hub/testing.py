"""Conformance-kit helpers: find kits and cases, read inputs, compare with golden files.

A kit is a site folder (``site.yaml``) with ``cases/<case>/``. Each case holds
one ``input.<ext>`` (what the site sends) and its golden files:

``expected.json``
    the FHIR transaction Bundle the site's adapter maps the input to (before
    identity resolution and storage, so ids are the adapter's own);
``expected-outcome.json``
    the OperationOutcome of a rejected input (then there is no
    ``expected.json``), or, beside ``expected.json``, the warnings and errors
    the mapping reported (e.g. registry rows it refused).

Comparison ignores what a server assigns (``meta.versionId``,
``meta.lastUpdated``), matches Bundle entries by their request URL (so an
added entry shows as one difference, not a shifted list) and compares issues
on severity, code and expression, plus diagnostics only where the golden file
gives them. Information issues (what an adapter left unmapped) are not part of
the contract. Every difference carries the JSON path where it lies.

Goldens are rewritten only deliberately: ``update=True`` (``hub conformance
run --update``) or ``HUB_REGEN_GOLDEN=1``. Nothing here imports pytest, so the
``hub conformance`` command and the test suite share it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hub.sites import MANIFEST
from hub.sites import Site
from hub.sites import load_site

__all__ = [
    "Case",
    "Difference",
    "Kit",
    "MappingResult",
    "assert_matches_golden",
    "development_identity_key",
    "discover_kits",
    "golden_differences",
    "json_diff",
    "load_kit",
    "read_input",
    "regenerate_requested",
    "write_golden",
]

EXPECTED = "expected.json"
EXPECTED_OUTCOME = "expected-outcome.json"
# Issue severities a golden outcome states; ``information`` is left out.
COMPARED_SEVERITIES = ("fatal", "error", "warning")
# Issue elements always compared; ``diagnostics`` only when the golden gives it.
ISSUE_KEYS = ("severity", "code", "expression")
# Media types by input file extension, when the site's ``content_types`` is silent.
DEFAULT_CONTENT_TYPES = {
    "hl7": "application/hl7-v2",
    "xml": "application/xml",
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/fhir+json",
}
# Server-assigned metadata, never part of a golden.
SERVER_META = ("versionId", "lastUpdated")


class _Missing:
    """Marks a side of a difference where the element is absent."""

    def __repr__(self) -> str:
        return "(absent)"


MISSING = _Missing()


# ---------------------------------------------------------------------------
# Kits and cases
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    """One conformance case: ``<site>/cases/<name>/``."""

    site: str
    name: str
    folder: Path

    @property
    def id(self) -> str:
        return f"{self.site}/{self.name}"

    @property
    def input_path(self) -> Path:
        inputs = sorted(self.folder.glob("input.*"))
        if len(inputs) != 1:
            found = ", ".join(p.name for p in inputs) or "none"
            raise KitError(f"{self.folder}: needs exactly one input.<ext> file (found {found})")
        return inputs[0]


class KitError(ValueError):
    """A kit folder that cannot be run as laid out (the message names the folder)."""


@dataclasses.dataclass
class Kit:
    """A site folder with its manifest and its cases."""

    site: Site
    folder: Path
    cases: list[Case]

    @property
    def name(self) -> str:
        return self.site.name

    def content_type(self, case: Case) -> str | None:
        """The media type the input is sent with: the site's ``content_types``, then a default."""
        ext = case.input_path.suffix.lstrip(".").lower()
        return self.site.content_types.get(ext) or DEFAULT_CONTENT_TYPES.get(ext)


def load_kit(path: Path, code_maps: dict | None = None) -> Kit:
    """The kit in the site folder ``path`` (or the folder of the manifest ``path``)."""
    folder = Path(path)
    if folder.name == MANIFEST:
        folder = folder.parent
    site = load_site(folder, code_maps)
    cases_dir = folder / "cases"
    cases = [
        Case(site.name, d.name, d)
        for d in (sorted(cases_dir.iterdir()) if cases_dir.is_dir() else [])
        if d.is_dir() and not d.name.startswith(".")
    ]
    return Kit(site, folder, cases)


def discover_kits(folders: list[Path], code_maps: dict | None = None) -> list[Kit]:
    """Every kit below ``folders``: each is a site folder or a folder of site folders."""
    kits: dict[str, Kit] = {}
    for base in folders:
        base = Path(base)
        manifests = (
            [base / MANIFEST] if (base / MANIFEST).is_file() else sorted(base.glob(f"*/{MANIFEST}"))
        )
        for manifest in manifests:
            kit = load_kit(manifest.parent, code_maps)
            kits.setdefault(kit.name, kit)
    return [kits[name] for name in sorted(kits)]


def read_input(case_dir: Path | Case) -> bytes:
    """The raw bytes of the case's ``input.<ext>`` (never decoded: encodings are tested too)."""
    case = case_dir if isinstance(case_dir, Case) else Case("", Path(case_dir).name, Path(case_dir))
    return case.input_path.read_bytes()


# ---------------------------------------------------------------------------
# JSON differences with paths
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Difference:
    """One place where the golden and the actual JSON disagree."""

    path: str
    expected: Any
    actual: Any

    def __str__(self) -> str:
        return f"{self.path or '(root)'}: expected {short_json(self.expected)}, got {short_json(self.actual)}"


def short_json(value: Any, limit: int = 80) -> str:
    if value is MISSING:
        return "(absent)"
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def json_diff(expected: Any, actual: Any, path: str = "") -> list[Difference]:
    """Where ``actual`` differs from ``expected``, as paths like ``entry[Patient/p1].resource.gender``.

    Objects compare key by key; lists index by index, except Bundle entries,
    which are matched by ``request.url`` (else ``fullUrl``) when every entry
    has a distinct one, with an order change reported once at ``entry``.
    """
    if isinstance(expected, dict) and isinstance(actual, dict):
        out: list[Difference] = []
        for key in list(expected) + [k for k in actual if k not in expected]:
            sub = f"{path}.{key}" if path else key
            if key == "entry" and _keyed(expected.get(key)) and _keyed(actual.get(key)):
                out.extend(_entries_diff(expected[key], actual[key], sub))
                continue
            out.extend(json_diff(expected.get(key, MISSING), actual.get(key, MISSING), sub))
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        out = []
        for i in range(max(len(expected), len(actual))):
            out.extend(
                json_diff(
                    expected[i] if i < len(expected) else MISSING,
                    actual[i] if i < len(actual) else MISSING,
                    f"{path}[{i}]",
                )
            )
        return out
    if expected is MISSING and actual is MISSING:
        return []
    if type(expected) is not type(actual) or expected != actual:
        return [Difference(path, expected, actual)]
    return []


def _entry_key(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return None
    return (entry.get("request") or {}).get("url") or entry.get("fullUrl")


def _keyed(entries: Any) -> bool:
    if not isinstance(entries, list) or not entries:
        return False
    keys = [_entry_key(e) for e in entries]
    return all(keys) and len(set(keys)) == len(keys)


def _entries_diff(expected: list, actual: list, path: str) -> list[Difference]:
    want = {_entry_key(e): e for e in expected}
    got = {_entry_key(e): e for e in actual}
    out: list[Difference] = []
    for key in list(want) + [k for k in got if k not in want]:
        out.extend(json_diff(want.get(key, MISSING), got.get(key, MISSING), f"{path}[{key}]"))
    common_want = [k for k in want if k in got]
    common_got = [k for k in got if k in want]
    if not out and common_want != common_got:
        out.append(Difference(path + " (order)", common_want, common_got))
    return out


# ---------------------------------------------------------------------------
# Normalising what is compared
# ---------------------------------------------------------------------------


def normalise_bundle(bundle: dict) -> dict:
    """A copy without server-assigned metadata (``meta.versionId``, ``meta.lastUpdated``)."""
    out = copy.deepcopy(bundle)
    _strip_meta(out)
    for entry in out.get("entry") or []:
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
            _strip_meta(entry["resource"])
    return out


def _strip_meta(resource: dict) -> None:
    meta = resource.get("meta")
    if isinstance(meta, dict):
        for key in SERVER_META:
            meta.pop(key, None)
        if not meta:
            del resource["meta"]


def compared_issues(issues: list[dict]) -> list[dict]:
    """The issues a golden outcome holds: warnings and worse, with the compared elements."""
    out = []
    for issue in issues:
        if issue.get("severity") not in COMPARED_SEVERITIES:
            continue
        kept = {k: issue[k] for k in ISSUE_KEYS if k in issue}
        if "diagnostics" in issue:
            kept["diagnostics"] = issue["diagnostics"]
        out.append(kept)
    return out


def _outcome_diff(expected: dict, actual_issues: list[dict], path: str) -> list[Difference]:
    want = compared_issues(expected.get("issue") or [])
    got = compared_issues(actual_issues)
    for w, g in zip(want, got, strict=False):
        if "diagnostics" not in w:
            g.pop("diagnostics", None)
    for issue in want + got:
        issue.setdefault("expression", [])
    return json_diff({"issue": want}, {"issue": got}, path)


# ---------------------------------------------------------------------------
# Golden files
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class MappingResult:
    """What one input gave: a Bundle and its issues, or a rejection's issues."""

    bundle: dict | None
    issues: list[dict]
    status: int | None = None

    @property
    def rejected(self) -> bool:
        return self.bundle is None

    @classmethod
    def from_error(cls, err: Any) -> MappingResult:
        """From an :class:`~hub.outcomes.OperationOutcomeError`."""
        return cls(None, list(err.outcome.get("issue") or []), err.status)


@contextlib.contextmanager
def development_identity_key() -> Iterator[None]:
    """Derive ids with the development identity key inside the block (golden ids use it).

    ``HUB_IDENTITY_KEY`` is removed from the environment and restored afterwards,
    so a deployment's kits pass with its real key set.
    """
    deployment_key = os.environ.pop("HUB_IDENTITY_KEY", None)
    try:
        yield
    finally:
        if deployment_key is not None:
            os.environ["HUB_IDENTITY_KEY"] = deployment_key


def regenerate_requested() -> bool:
    """True when ``HUB_REGEN_GOLDEN=1`` asks for golden files to be rewritten."""
    return os.environ.get("HUB_REGEN_GOLDEN") == "1"


def golden_differences(result: MappingResult, case_dir: Path) -> list[Difference]:
    """Every way ``result`` departs from the case's golden files (empty: it matches)."""
    case_dir = Path(case_dir)
    bundle_path, outcome_path = case_dir / EXPECTED, case_dir / EXPECTED_OUTCOME
    if not bundle_path.exists() and not outcome_path.exists():
        return [Difference(f"{case_dir.name}/", f"{EXPECTED} or {EXPECTED_OUTCOME}", MISSING)]
    out: list[Difference] = []
    if result.rejected:
        if result.status is not None and not 400 <= result.status < 500:
            # A refusal is the sender's problem (4xx); anything else is a bug in the hub.
            out.append(Difference("(status)", "4xx", result.status))
        if bundle_path.exists():
            out.append(
                Difference(
                    EXPECTED,
                    "a Bundle",
                    f"rejected ({result.status}): "
                    + "; ".join(i.get("diagnostics", i.get("code", "")) for i in result.issues[:2]),
                )
            )
        if outcome_path.exists():
            out.extend(_outcome_diff(_read(outcome_path), result.issues, EXPECTED_OUTCOME))
        return out
    if not bundle_path.exists():
        return [Difference(EXPECTED_OUTCOME, "a rejection", "a Bundle (the input was accepted)")]
    out.extend(json_diff(normalise_bundle(_read(bundle_path)), normalise_bundle(result.bundle), ""))
    expected_outcome = _read(outcome_path) if outcome_path.exists() else {"issue": []}
    out.extend(_outcome_diff(expected_outcome, result.issues, EXPECTED_OUTCOME))
    return out


def write_golden(result: MappingResult, case_dir: Path) -> list[str]:
    """Rewrite the case's golden files from ``result``; returns the names written."""
    case_dir = Path(case_dir)
    bundle_path, outcome_path = case_dir / EXPECTED, case_dir / EXPECTED_OUTCOME
    written = []
    if result.rejected:
        bundle_path.unlink(missing_ok=True)
    else:
        _write(bundle_path, normalise_bundle(result.bundle))
        written.append(EXPECTED)
    issues = compared_issues(result.issues)
    if issues:
        _write(outcome_path, {"resourceType": "OperationOutcome", "issue": issues})
        written.append(EXPECTED_OUTCOME)
    else:
        outcome_path.unlink(missing_ok=True)
    return written


def assert_matches_golden(
    result: MappingResult, case_dir: Path, *, update: bool | None = None
) -> None:
    """Raise ``AssertionError`` listing the differing paths, or rewrite the goldens.

    ``update`` defaults to :func:`regenerate_requested`.
    """
    if update is None:
        update = regenerate_requested()
    if update:
        write_golden(result, case_dir)
        return
    differences = golden_differences(result, case_dir)
    if differences:
        lines = [str(d) for d in differences[:30]]
        if len(differences) > 30:
            lines.append(f"... and {len(differences) - 30} more")
        raise AssertionError(f"{case_dir} differs from its golden files:\n  " + "\n  ".join(lines))


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
