"""Runners for the official suites in ``tests/validation/suites/`` (used by the tests and to
measure the figures in ``docs/validation.md``: ``python -m tests.validation.suites``)."""

from __future__ import annotations

import copy
import dataclasses
import json
import signal
import xml.etree.ElementTree as ET
from decimal import Decimal
from decimal import InvalidOperation
from pathlib import Path

from hub.validation import fhirpath
from hub.validation.definitions import Definitions
from hub.validation.validator import Validator
from hub.validation.xml import parse_xml

SUITES = Path(__file__).resolve().parent / "suites"
VALIDATOR_DIR = SUITES / "validator-r4"
FHIRPATH_DIR = SUITES / "fhirpath-r4"


# -- validator cases -----------------------------------------------------------------------------


@dataclasses.dataclass
class CaseResult:
    name: str
    step: str  # "base" or "profile"
    java_errors: int
    hub_errors: int
    hub_messages: list

    @property
    def agrees(self) -> bool:
        return (self.java_errors > 0) == (self.hub_errors > 0)


def _load(path: Path, validator: Validator | None) -> dict:
    data = path.read_bytes()
    if path.suffix == ".xml":
        return parse_xml(data, validator)
    return json.loads(data, parse_float=Decimal)


def _errors(outcome: dict) -> int:
    return sum(1 for i in outcome.get("issue", ()) if i.get("severity") in ("error", "fatal"))


def run_validator_cases() -> list[CaseResult]:
    manifest = json.loads((VALIDATOR_DIR / "manifest.json").read_text())
    results = []
    for case in manifest["test-cases"]:
        if not str(case.get("version", "")).startswith("4.0"):
            continue
        defs = Definitions()
        validator = Validator(defs)
        supporting = list(case.get("supporting", ())) + list(case.get("profiles", ()))
        profile = case.get("profile") or {}
        supporting += list(profile.get("supporting", ()))
        if profile.get("source"):
            supporting.append(profile["source"])
        for name in supporting:
            p = VALIDATOR_DIR / name
            if p.exists():
                res = _load(p, Validator(defs))
                if res.get("resourceType") in ("StructureDefinition", "ValueSet", "CodeSystem"):
                    defs.add(res)
        validator = Validator(
            defs, assume_valid_rest_references=bool(case.get("assumeValidRestReferences"))
        )
        resource = _load(VALIDATOR_DIR / case["file"], validator)
        java = case.get("java")
        if isinstance(java, dict):
            java = java.get("outcome")
        steps = [("base", None, java)]
        if profile.get("source"):
            src = _load(VALIDATOR_DIR / profile["source"], validator)
            pj = profile.get("java")
            if isinstance(pj, dict):
                pj = pj.get("outcome")
            steps.append(("profile", [src.get("url")], pj))
        for step, profiles, expected in steps:
            if not isinstance(expected, str):
                continue
            out_path = VALIDATOR_DIR / "outcomes" / expected
            if not out_path.exists():
                continue
            validator.assume_valid_rest_references = bool(
                (profile if step == "profile" else case).get("assumeValidRestReferences")
            )
            issues = validator.validate(resource, profiles)
            errs = [i for i in issues if i["severity"] in ("error", "fatal")]
            results.append(
                CaseResult(
                    case["name"],
                    step,
                    _errors(json.loads(out_path.read_text())),
                    len(errs),
                    [(i.get("diagnostics"), i.get("expression")) for i in errs],
                )
            )
    return results


# -- FHIRPath suite ------------------------------------------------------------------------------


class _Timeout(Exception):
    pass


def _norm(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (float, Decimal)):
        return v
    return str(v)


def _same(expected_type, expected, actual) -> bool:
    a = _norm(actual)
    if expected_type is None and expected.startswith("@"):
        expected_type = "dateTime"  # a few boundary outputs carry no type attribute
    if expected_type == "decimal" or (expected_type == "integer" and not isinstance(a, str)):
        try:
            return Decimal(str(a)) == Decimal(expected)
        except (InvalidOperation, ValueError):
            return False
    if expected_type in ("date", "dateTime", "time"):
        ea, aa = expected.lstrip("@").lstrip("T"), str(a).lstrip("@").lstrip("T")
        return ea == aa or ea.replace(".000", "") == aa.replace(".000", "")
    if expected_type == "Quantity":
        return str(a).replace('"', "'") == expected
    return str(a) == expected


def run_fhirpath_suite() -> tuple[int, int, list]:
    """(passed, ran, failures) for the official R4 FHIRPath suite through the hub's layer."""
    root = ET.parse(FHIRPATH_DIR / "tests-fhir-r4.xml").getroot()
    cache: dict[str, dict] = {}
    passed = ran = 0
    failures = []

    def alarm(*_):
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, alarm)
    try:
        for group in root.iter("group"):
            for test in group.iter("test"):
                expr_el = test.find("expression")
                expr = expr_el.text or ""
                invalid = expr_el.get("invalid")
                predicate = test.get("predicate") == "true"
                outputs = [(o.get("type"), o.text or "") for o in test.findall("output")]
                inputfile = test.get("inputfile")
                res = {}
                if inputfile:
                    p = FHIRPATH_DIR / "input-json" / (Path(inputfile).stem + ".json")
                    if not p.exists():
                        continue
                    if p.name not in cache:
                        cache[p.name] = json.loads(p.read_text())
                    res = copy.deepcopy(cache[p.name])
                ran += 1
                ok, err = False, None
                signal.alarm(5)
                try:
                    actual = fhirpath.evaluate(res, expr)
                    signal.alarm(0)
                    if predicate:
                        actual = [len(actual) > 0]
                    if invalid:
                        err = f"expected {invalid} error, got {actual!r}"
                    else:
                        ok = len(actual) == len(outputs) and all(
                            _same(t, e, a) for (t, e), a in zip(outputs, actual, strict=False)
                        )
                        if not ok:
                            err = f"expected {outputs!r} got {[_norm(a) for a in actual]!r}"
                except _Timeout:
                    err = "timeout"
                except Exception as exc:  # the engine raises assorted errors; invalid= expects one
                    signal.alarm(0)
                    ok = bool(invalid)
                    err = None if ok else f"{type(exc).__name__}: {exc}"
                if ok:
                    passed += 1
                else:
                    failures.append((test.get("name"), expr.strip(), (err or "")[:200]))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return passed, ran, failures


if __name__ == "__main__":
    results = run_validator_cases()
    for r in results:
        mark = "ok " if r.agrees else "XX "
        print(mark, r.name, r.step, "java", r.java_errors, "hub", r.hub_errors, r.hub_messages[:3])
    agree = sum(r.agrees for r in results)
    invalid = [r for r in results if r.java_errors]
    valid = [r for r in results if not r.java_errors]
    print(
        f"agreement {agree}/{len(results)}; invalid caught {sum(r.hub_errors > 0 for r in invalid)}"
        f"/{len(invalid)}; valid wrongly rejected {sum(r.hub_errors > 0 for r in valid)}/{len(valid)}"
    )
    p, n, f = run_fhirpath_suite()
    print(f"fhirpath {p}/{n} = {100 * p / n:.1f}%")
