"""A small crafted population whose indicators are computed by hand in the tests."""

from __future__ import annotations

from tests.completeness import people as p

COUNTY = "370203"


def residents() -> list[dict]:
    """Five people in county 370203 (townships 001 and 002); see test_audit.py for the sums."""
    out: list[dict] = []
    # A: 75, hypertension, 4 face-to-face follow-ups, health check, contract; complete record.
    out += [
        p.patient("pa", "1950-03-01", "37020300100100001"),
        p.condition("pa", "I10", "2015-01-01"),
    ]
    out += [p.follow_up("pa", "hypertension", f"2025-{m:02d}-10") for m in (2, 5, 8, 11)]
    out += [
        p.health_check("pa", "2025-04-01"),
        p.contract("pa", "2025-01-01", "2025-12-31", "basic"),
    ]
    # B: 75, hypertension, 2 follow-ups, no check, no contract, no phone.
    b = p.patient("pb", "1950-06-01", "37020300100100002")
    del b["telecom"]
    out += [b, p.condition("pb", "I10", "2016-01-01")]
    out += [p.follow_up("pb", "hypertension", d) for d in ("2025-03-01", "2025-06-01")]
    # C: 35, healthy, contract, nothing in 2025.
    out += [p.patient("pc", "1990-01-01", "37020300210100003")]
    out += [p.contract("pc", "2025-01-01", "2025-12-31", "basic")]
    # D: 70, type 2 diabetes, fully managed, contract.
    out += [
        p.patient("pd", "1955-01-01", "37020300210100004"),
        p.condition("pd", "E11.9", "2012-01-01"),
    ]
    out += [p.follow_up("pd", "diabetes", f"2025-{m:02d}-15") for m in (1, 4, 7, 10)]
    out += [
        p.health_check("pd", "2025-05-05"),
        p.contract("pd", "2024-07-01", "2025-06-30", "basic"),
    ]
    # E: 45, type 2 diabetes, never seen in 2025.
    out += [
        p.patient("pe", "1980-01-01", "37020300210200005"),
        p.condition("pe", "E11", "2018-01-01"),
    ]
    return out


def load(hub) -> None:
    resources = residents()
    hub.repo.write(lambda w: [w.create(r, r["id"]) for r in resources])
