"""One vocabulary for the hub's own codes (docs/decisions.md, "One vocabulary").

Every hub code system is a CodeSystem resource under profiles/ or mappings/ with a
``urn:fhirhub:codesystem:`` URL. These tests fail when a module or data file names a hub system
that no CodeSystem defines (or the retired ``http://fhirhub.org/fhir/CodeSystem/`` spelling), or
a system + code pair whose code the CodeSystem does not list.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub import codesystems as cs
from hub.paths import MAPPINGS_DIR
from hub.paths import PROFILES_DIR
from hub.paths import PROJECT_DIR

SCANNED = ("hub", "plugins", "mappings", "profiles", "conformance", "docs", "bench")
SUFFIXES = (".py", ".yaml", ".yml", ".json", ".md")
# A hub-scheme system URL, in the chosen and in the retired spelling.
SYSTEM_URL = re.compile(
    r"(?:urn:fhirhub:codesystem:|http://fhirhub\.org/fhir/CodeSystem/)[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*"
)
# "system": "urn:fhirhub:codesystem:x", "code": "y" written together in Python.
PY_PAIR = re.compile(
    r"""["']system["']\s*:\s*["'](urn:fhirhub:codesystem:[^"']+)["']\s*,\s*"""
    r"""["']code["']\s*:\s*["']([^"']+)["']"""
)


def _code_systems() -> dict[str, set[str] | None]:
    """url -> its codes (None when the CodeSystem does not list them: content not-present)."""
    out: dict[str, set[str] | None] = {}
    for folder in (PROFILES_DIR, MAPPINGS_DIR):
        for path in folder.rglob("CodeSystem-*.json"):
            res = json.loads(path.read_text(encoding="utf-8"))
            if not res["url"].startswith("urn:fhirhub:codesystem:"):
                continue
            assert res["url"] not in out, f"{path}: {res['url']} is defined twice"
            if res.get("content") == "not-present":
                out[res["url"]] = None
            else:
                out[res["url"]] = {c["code"] for c in _concepts(res.get("concept", ()))}
    return out


def _concepts(concepts) -> list[dict]:
    out = []
    for c in concepts:
        out.append(c)
        out.extend(_concepts(c.get("concept", ())))
    return out


SYSTEMS = _code_systems()


def _files() -> list[Path]:
    out = []
    for top in SCANNED:
        for path in (PROJECT_DIR / top).rglob("*"):
            if path.suffix in SUFFIXES and path.is_file() and ".venv" not in path.parts:
                out.append(path)
    return sorted(out)


def _pairs(data: Any) -> list[tuple[str, str]]:
    """(system, code) pairs of JSON or YAML data: Codings, and the code maps' targets."""
    out = []
    if isinstance(data, dict):
        system, code = data.get("system"), data.get("code")
        if isinstance(system, str) and isinstance(code, str):
            out.append((system, code))
        # A code map (mappings/**.yaml, hub.mapping): its targets are codes of `target`.
        if isinstance(data.get("target"), str) and isinstance(data.get("map"), dict):
            for value in data["map"].values():
                target = value.get("code") if isinstance(value, dict) else value
                if isinstance(target, str):
                    out.append((data["target"], target))
        for value in data.values():
            out.extend(_pairs(value))
    elif isinstance(data, list):
        for value in data:
            out.extend(_pairs(value))
    return out


def _problems(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    where = path.relative_to(PROJECT_DIR) if path.is_relative_to(PROJECT_DIR) else path.name
    problems = [
        f"{where}: {url} is not a hub CodeSystem"
        for url in sorted(set(SYSTEM_URL.findall(text)))
        if url not in SYSTEMS
    ]
    pairs: list[tuple[str, str]] = []
    if path.suffix == ".json":
        pairs = _pairs(json.loads(text))
    elif path.suffix in (".yaml", ".yml"):
        pairs = [p for doc in yaml.safe_load_all(text) for p in _pairs(doc)]
    elif path.suffix == ".py":
        pairs = PY_PAIR.findall(text)
    for system, code in sorted(set(pairs)):
        codes = SYSTEMS.get(system)  # undefined systems are reported above
        if codes is not None and code not in codes:
            problems.append(f"{where}: {system} has no code {code!r}")
    return problems


def test_every_hub_system_and_code_named_in_modules_and_data_is_defined():
    problems = [p for path in _files() for p in _problems(path)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("system", sorted(cs.CODES))
def test_code_constants_are_codes_of_their_code_system(system):
    assert SYSTEMS.get(system), f"{system} has no CodeSystem listing its codes"
    assert set(cs.CODES[system]) <= SYSTEMS[system]


def test_system_constants_name_defined_code_systems():
    names = {
        name: value
        for name, value in vars(cs).items()
        if isinstance(value, str) and value.startswith("urn:fhirhub:codesystem:")
    }
    assert names and all(value in SYSTEMS for value in names.values()), names


def test_the_scan_catches_undefined_systems_and_codes(tmp_path):
    # The checker itself, on a data file naming a retired spelling, an unknown system, an
    # unknown code and a code map target that its CodeSystem lacks.
    probe = tmp_path / "probe.yaml"
    probe.write_text(
        "a: {system: urn:fhirhub:codesystem:encounter-type, code: checkup}\n"
        "b: {system: http://fhirhub.org/fhir/CodeSystem/encounter-type, code: health-check}\n"
        "c: {system: urn:fhirhub:codesystem:nothing-here, code: x}\n"
        "d: {system: urn:fhirhub:codesystem:content-hash, code: 0a1b}\n"
        "e: {target: urn:fhirhub:codesystem:care-programme, map: {X: {code: asthma}}}\n",
        encoding="utf-8",
    )
    assert _problems(probe) == [
        "probe.yaml: http://fhirhub.org/fhir/CodeSystem/encounter-type is not a hub CodeSystem",
        "probe.yaml: urn:fhirhub:codesystem:nothing-here is not a hub CodeSystem",
        "probe.yaml: urn:fhirhub:codesystem:care-programme has no code 'asthma'",
        "probe.yaml: urn:fhirhub:codesystem:encounter-type has no code 'checkup'",
    ]
    py = tmp_path / "probe.py"
    py.write_text('X = {"system": "urn:fhirhub:codesystem:task-code", "code": "nap"}\n')
    assert _problems(py) == ["probe.py: urn:fhirhub:codesystem:task-code has no code 'nap'"]


def test_programme_codes_of_the_rules_are_care_programme_codes():
    # Rule files name care-programme codes without the system (cohorts, five-colour).
    programmes = SYSTEMS[cs.CARE_PROGRAMME]
    cohorts = yaml.safe_load((MAPPINGS_DIR / "completeness" / "cohorts.yaml").read_text("utf-8"))
    assert cohorts["programme_systems"] == [cs.CARE_PROGRAMME]
    named = {p for c in cohorts["cohorts"].values() for p in c.get("programmes", ())}
    colours = yaml.safe_load((MAPPINGS_DIR / "five-colour" / "rules.yaml").read_text("utf-8"))
    named |= set(colours["programmes"])
    assert named and named <= programmes, named - programmes


def test_package_codes_of_the_contract_rule_are_service_package_codes():
    rule = yaml.safe_load((MAPPINGS_DIR / "completeness" / "family-doctor.yaml").read_text("utf-8"))
    assert set(rule["packages"]) <= SYSTEMS[cs.SERVICE_PACKAGE]
