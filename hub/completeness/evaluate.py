"""Completeness rules applied to one person and one period (pure).

:func:`evaluate` returns a :class:`PersonResult`: for every rule set whether it
applies, whether it is met, and the exact missing items (:class:`Gap`) with
their due dates; :func:`cohorts_of` says which populations the person is in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from hub.completeness import periods
from hub.completeness.facts import Facts
from hub.completeness.periods import Period
from hub.completeness.rulebook import Cohort
from hub.completeness.rulebook import Rule
from hub.completeness.rulebook import RuleBook
from hub.completeness.rulebook import Service


@dataclasses.dataclass
class Gap:
    """One missing item: ``rule``/``item``, the ``slot`` (3 for "the 3rd of 4"), due date."""

    rule: str
    item: str
    slot: int = 1
    due: dt.date | None = None
    overdue: bool = False

    @property
    def code(self) -> str:
        return f"{self.rule}/{self.item}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "item": self.item,
            "slot": self.slot,
            "due": self.due.isoformat() if self.due else None,
            "overdue": self.overdue,
        }


@dataclasses.dataclass
class Outcome:
    rule: str
    applies: bool
    met: bool = True
    gaps: list[Gap] = dataclasses.field(default_factory=list)
    counts: dict[str, list[int]] = dataclasses.field(default_factory=dict)  # item: [done, due]
    controlled: bool | None = None  # latest face-to-face follow-up on target

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "applies": self.applies,
            "met": self.met,
            "counts": self.counts,
            "controlled": self.controlled,
            "gaps": [g.as_dict() for g in self.gaps],
        }


@dataclasses.dataclass
class PersonResult:
    patient_id: str
    facts: Facts
    period: Period
    age: int | None
    cohorts: set[str]
    outcomes: dict[str, Outcome]
    has_contract: bool
    in_use: bool  # a clinical entry dated in the period (dynamic record)

    @property
    def gaps(self) -> list[Gap]:
        return [g for o in self.outcomes.values() for g in o.gaps]

    def as_dict(self) -> dict[str, Any]:
        return {
            "patient": self.patient_id,
            "period": self.period.key,
            "age": self.age,
            "cohorts": sorted(self.cohorts),
            "has_contract": self.has_contract,
            "in_use": self.in_use,
            "outcomes": {k: o.as_dict() for k, o in self.outcomes.items() if o.applies},
        }


def evaluate(
    facts: Facts, period: Period, book: RuleBook, as_of: dt.date | None = None
) -> PersonResult:
    """Apply every rule set of ``book`` to one person for ``period``.

    ``as_of`` (default today) decides which missing items are overdue.
    """
    as_of = as_of or dt.date.today()
    age = periods.age_on(facts.birth, period.end) if facts.birth else None
    since = cohorts_of(facts, period, book, age)
    outcomes: dict[str, Outcome] = {}
    for rule in book.rules.values():
        applies = rule.applies_to == "everyone" or rule.applies_to in since
        if not applies:
            outcomes[rule.id] = Outcome(rule.id, False)
            continue
        if rule.kind == "required-fields":
            outcome = _required_fields(rule, facts, period, as_of)
        elif rule.kind == "services":
            outcome = _services(rule, facts, period, as_of, since.get(rule.applies_to), age, book)
        elif rule.kind == "contract":
            outcome = _contract(rule, facts, period, as_of, since, age)
        else:
            outcome = _screening(rule, facts, as_of)
        outcome.met = not outcome.gaps
        outcomes[rule.id] = outcome
    has_contract = any(period.overlap(c.start, c.end) for c in facts.contracts)
    in_use = any(period.start <= d <= period.end for d in facts.entry_days)
    return PersonResult(
        facts.patient_id, facts, period, age, set(since), outcomes, has_contract, in_use
    )


def cohorts_of(
    facts: Facts, period: Period, book: RuleBook, age: int | None = None
) -> dict[str, dt.date | None]:
    """The cohorts the person is in during ``period``, each with the date it applies from.

    The date is the earliest diagnosis or enrolment start (``None`` when
    unknown or for age cohorts); rules that pro-rate use it.
    """
    if age is None and facts.birth:
        age = periods.age_on(facts.birth, period.end)
    out: dict[str, dt.date | None] = {}
    for cohort in book.cohorts.values():
        if cohort.any_of:
            continue
        found, since = _member(cohort, facts, period, age)
        if found:
            out[cohort.id] = since
    for cohort in book.cohorts.values():
        if cohort.any_of and any(c in out for c in cohort.any_of):
            out[cohort.id] = None
    return out


def _member(cohort: Cohort, facts: Facts, period: Period, age: int | None):
    if cohort.min_age is not None or cohort.max_age is not None:
        if age is None:
            return False, None
        if cohort.min_age is not None and age < cohort.min_age:
            return False, None
        if cohort.max_age is not None and age > cohort.max_age:
            return False, None
        if not (cohort.icd10 or cohort.programmes):
            return True, None
    starts: list[dt.date | None] = []
    for code, since in facts.diagnoses:
        if (since is None or since <= period.end) and any(r.matches(code) for r in cohort.icd10):
            starts.append(since)
    for code, start, end in facts.programmes:
        if code in cohort.programmes and period.overlap(start, end):
            starts.append(start)
    if not starts:
        return False, None
    known = [s for s in starts if s is not None]
    return True, (min(known) if known and len(known) == len(starts) else None)


def _required_fields(rule: Rule, facts: Facts, period: Period, as_of: dt.date) -> Outcome:
    outcome = Outcome(rule.id, True)
    present = 0
    for field in rule.fields:
        if any(_reaches(facts.patient, steps) for steps in field.paths):
            present += 1
        else:
            outcome.gaps.append(Gap(rule.id, field.id))
    outcome.counts["fields"] = [present, len(rule.fields)]
    return outcome


def _reaches(node: Any, steps) -> bool:
    """Whether the path ``steps`` reaches a non-empty value under ``node``."""
    if not steps:
        return node not in (None, "", [], {})
    (name, key, value), rest = steps[0], steps[1:]
    items = node.get(name) if isinstance(node, dict) else None
    if items is None:
        return False
    if not isinstance(items, list):
        items = [items]
    for item in items:
        if key is not None and not (isinstance(item, dict) and str(item.get(key)) == value):
            continue
        if _reaches(item, rest):
            return True
    return False


def _count_slots(
    rule_id: str,
    service: Service,
    window: Period,
    whole: Period,
    facts: Facts,
    as_of: dt.date,
    outcome: Outcome,
) -> None:
    """Count distinct days of evidence in ``window``; add a gap per missing slot."""
    required = periods.required_count(service.per_year, window, whole)
    days = {h.day for h in facts.evidence.get(service.evidence, ()) if window.contains(h.day)}
    done = len(days)
    previous = outcome.counts.get(service.id)
    outcome.counts[service.id] = [
        done + (previous[0] if previous else 0),
        required + (previous[1] if previous else 0),
    ]
    if done >= required:
        return
    dues = periods.due_dates(service.per_year, required, window)
    for slot in range(done + 1, required + 1):
        due = dues[slot - 1]
        outcome.gaps.append(Gap(rule_id, service.id, slot, due, due < as_of))


def _services(
    rule: Rule,
    facts: Facts,
    period: Period,
    as_of: dt.date,
    since: dt.date | None,
    age: int | None,
    book: RuleBook,
) -> Outcome:
    outcome = Outcome(rule.id, True)
    window = period
    if rule.prorate_from_diagnosis and since is not None and since > period.start:
        window = Period(since, period.end)
    window = _until_death(window, facts)
    if window is None:
        return outcome  # died before the services were due: nothing is owed
    for service in rule.services:
        _count_slots(rule.id, service, window, period, facts, as_of, outcome)
    if rule.control:
        outcome.controlled = _controlled(rule, facts, window, age, book)
    return outcome


def _until_death(window: Period, facts: Facts) -> Period | None:
    """``window`` cut at the date of death: a record ends with the death (档案终止, DOMAIN 2.1).

    Services are owed for the part of the window the person was alive (pro
    rata, as from a diagnosis); ``None`` when the death came before the window.
    A death without a date (``deceasedBoolean``) leaves the window as it is.
    """
    death = facts.deceased
    if not isinstance(death, dt.date) or death >= window.end:
        return window
    if death < window.start:
        return None
    return Period(window.start, death)


def _controlled(rule: Rule, facts: Facts, window: Period, age: int | None, book: RuleBook):
    """On target at the latest face-to-face follow-up of the window (None: no follow-up)."""
    follow_up = next((s for s in rule.services if s.id == "follow-up"), None)
    if follow_up is None:
        return None
    hits = [h for h in facts.evidence.get(follow_up.evidence, ()) if window.contains(h.day)]
    if not hits:
        return None  # lost to follow-up: counted as not on target by the indicators
    latest = max(hits, key=lambda h: h.day)
    control = rule.control
    kind = control["kind"]
    readings = [
        r
        for r in facts.readings
        if r.kind == kind
        and (r.encounter == latest.ref or (r.encounter is None and r.day == latest.day))
    ]
    if not readings:
        return False
    reading = readings[-1]
    if kind == "blood-pressure":
        limits = control
        if age is not None and age >= 65 and control.get("from_age_65"):
            limits = {**control, **control["from_age_65"]}
        sbp, dbp = reading.values.get("systolic"), reading.values.get("diastolic")
        if sbp is None or dbp is None:
            return False
        return sbp < limits["systolic_below"] and dbp < limits["diastolic_below"]
    return reading.values["value"] < float(control["below"])


def _contract(
    rule: Rule,
    facts: Facts,
    period: Period,
    as_of: dt.date,
    cohorts: dict[str, dt.date | None],
    age: int | None,
) -> Outcome:
    outcome = Outcome(rule.id, True)
    active = [(c, period.overlap(c.start, c.end)) for c in facts.contracts]
    active = [(c, w) for c, w in active if w is not None]
    if not active:
        if rule.contract_required_for in cohorts or rule.contract_required_for == "everyone":
            outcome.gaps.append(Gap(rule.id, "contract", 1, period.end, period.end < as_of))
        return outcome
    for contract, overlap in active:
        window = _until_death(overlap, facts)
        if window is None:
            continue
        due: dict[str, Service] = {}
        for package in contract.packages:
            for service in rule.packages.get(package, ()):
                if service.only_for and service.only_for not in cohorts:
                    continue
                if service.min_age is not None and (age is None or age < service.min_age):
                    continue
                if service.id not in due or service.per_year > due[service.id].per_year:
                    due[service.id] = service
        for service in due.values():
            _count_slots(rule.id, service, window, period, facts, as_of, outcome)
    return outcome


def _screening(rule: Rule, facts: Facts, as_of: dt.date) -> Outcome:
    outcome = Outcome(rule.id, True)
    birth = facts.birth
    for screen in rule.services:
        hits = [
            h for h in facts.evidence.get(screen.evidence, ()) if birth is None or h.day >= birth
        ]
        outcome.counts[screen.id] = [min(len(hits), 1), 1]
        if not hits:
            due = (
                birth + dt.timedelta(days=screen.due_days_after_birth)
                if birth and screen.due_days_after_birth is not None
                else None
            )
            outcome.gaps.append(Gap(rule.id, screen.id, 1, due, bool(due and due < as_of)))
    return outcome
