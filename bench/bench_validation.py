"""Time the structural check and full validation per resource (figures in docs/validation.md).

usage: python bench/bench_validation.py [repetitions] [--cpu]

``--cpu`` times the process's CPU time instead of the wall clock: on a busy shared machine it
compares two versions far more steadily.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from hub.validation.definitions import Definitions
from hub.validation.structure import check_structure
from hub.validation.structure import model_issues
from hub.validation.validator import Validator

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "tests" / "validation" / "suites" / "fhirpath-r4" / "input-json"
SD = "http://fhirhub.org/fhir/StructureDefinition/"


CLOCK = time.process_time if "--cpu" in sys.argv else time.perf_counter


def per_call_us(fn, arg, n: int) -> float:
    fn(arg)
    best = float("inf")
    for _ in range(3):
        t = CLOCK()
        for _ in range(n):
            fn(arg)
        best = min(best, (CLOCK() - t) / n)
    return best * 1e6


def main(n: int) -> None:
    t = time.perf_counter()
    validator = Validator(Definitions.default(), unknown_extensions="warning")
    check_structure({"resourceType": "Patient"})  # builds the shared element trees once
    print(f"definitions load: {(time.perf_counter() - t) * 1000:.0f} ms")
    patient = json.loads((EXAMPLES / "patient-example.json").read_text())
    observation = json.loads((EXAMPLES / "observation-example.json").read_text())
    sys.path.insert(0, str(ROOT))
    from tests.validation.test_profiles import PATIENT  # the cn-resident-patient example

    rows = [
        ("Patient (official example)", "R4B model check (fhir.resources)", model_issues, patient),
        ("Patient (official example)", "structure check", check_structure, patient),
        ("Patient (official example)", "full validation, base", validator.validate, patient),
        (
            "Observation (official example)",
            "R4B model check (fhir.resources)",
            model_issues,
            observation,
        ),
        ("Observation (official example)", "structure check", check_structure, observation),
        (
            "Observation (official example)",
            "full validation, base + vitalsigns/bodyweight",
            validator.validate,
            observation,
        ),
        (
            "Patient (cn-resident-patient)",
            "R4B model check (fhir.resources)",
            model_issues,
            PATIENT,
        ),
        ("Patient (cn-resident-patient)", "structure check", check_structure, PATIENT),
        (
            "Patient (cn-resident-patient)",
            "full validation, base + profile",
            validator.validate,
            PATIENT,
        ),
    ]
    for what, check, fn, res in rows:
        print(f"{what:34} {check:48} {per_call_us(fn, res, n):8.0f} µs")


if __name__ == "__main__":
    counts = [a for a in sys.argv[1:] if a.isdigit()]
    main(int(counts[0]) if counts else 200)
