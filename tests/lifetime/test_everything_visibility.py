"""``$everything`` filters the stored JSON unparsed: the same answer as parsing every resource.

:func:`hub.lifetime.visibility.for_principal` applies labels and jurisdiction in SQL and the
other rules over the stored text (``entries``); the parsed path (``visible``) is the rule it
must match, for every kind of caller: label grants (categories, the R/V levels alone),
scopes limited to some types, ``patient/`` scopes, a jurisdiction, and a caller who sees all.
"""

from __future__ import annotations

import pytest

from hub.identity import HEALTH_RECORD_SYSTEM
from hub.lifetime import everything as everything_mod
from hub.lifetime.visibility import EVERYTHING
from hub.lifetime.visibility import Visibility
from hub.lifetime.visibility import for_principal
from hub.security import guard
from hub.security import labels
from hub.security.principal import Principal
from hub.security.principal import acting_as
from hub.security.scopes import compile_scopes
from tests.lifetime.conftest import condition
from tests.lifetime.conftest import observation
from tests.lifetime.conftest import patient

SENSITIVITY = "urn:fhirhub:codesystem:sensitivity"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
TOWNSHIP = "370203001"


def _meta(*labels_):
    return {"security": [{"system": system, "code": code} for system, code in labels_]}


@pytest.fixture
def records(fhir):
    record_no = {"identifier": [{"system": HEALTH_RECORD_SYSTEM, "value": TOWNSHIP + "00100001"}]}
    fhir.put(patient("a", **record_no))
    fhir.put(patient("b", link=[{"other": {"reference": "Patient/a"}, "type": "seealso"}]))
    fhir.put({"resourceType": "Practitioner", "id": "doc"})
    fhir.put(
        {"resourceType": "Practitioner", "id": "hidden-doc", "meta": _meta((SENSITIVITY, "hiv"))}
    )
    doctors = [{"reference": "Practitioner/doc"}, {"reference": "Practitioner/hidden-doc"}]
    fhir.put(observation("plain", "a", "2021-05-01", performer=doctors))
    fhir.put(observation("mental", "a", "2021-05-02", meta=_meta((SENSITIVITY, "mental-health"))))
    fhir.put(observation("restricted", "b", "2021-05-03", meta=_meta((CONFIDENTIALITY, "R"))))
    both = _meta((CONFIDENTIALITY, "R"), (SENSITIVITY, "hiv"))
    fhir.put(observation("r-and-hiv", "a", "2021-05-04", meta=both))
    fhir.put(condition("cond", "b", "I10"))
    return fhir


PRINCIPALS = {
    "all": Principal("all", "client", compile_scopes("system/*.cruds"), labels.ALL),
    "no-grants": Principal("bare", "client", compile_scopes("system/*.rs")),
    "mental-health": Principal(
        "mh", "client", compile_scopes("system/*.rs"), frozenset(["mental-health"])
    ),
    "level-r": Principal("r", "client", compile_scopes("system/*.rs"), frozenset(["R"])),
    "some-types": Principal(
        "some", "client", compile_scopes("user/Patient.rs user/Observation.r"), labels.ALL
    ),
    "patient-a": Principal(
        "app", "client", compile_scopes("patient/*.rs"), labels.ALL, patient="a"
    ),
    "patient-b-linked": Principal(
        "app",
        "client",
        compile_scopes("patient/*.rs"),
        labels.ALL,
        patient="b",
        linked=frozenset(["a"]),
    ),
    "jurisdiction": Principal(
        "nurse", "user", compile_scopes("user/*.rs"), labels.ALL, jurisdiction=TOWNSHIP
    ),
    "other-jurisdiction": Principal(
        "far", "user", compile_scopes("user/*.rs"), labels.ALL, jurisdiction="370203002"
    ),
}


def _parsed_rule(hub, principal) -> Visibility:
    """The rule as the parsed path applies it: labels in SQL, the rest on every resource."""
    return Visibility(
        hidden_labels=labels.hidden_labels(principal.grants),
        visible=lambda resources: hub.service.within_jurisdiction(
            guard.filter_visible(resources, principal)
        ),
    )


def _answer(hub, patient_id, visibility):
    try:
        with hub.repo.reading() as conn:
            page = everything_mod.everything(conn, patient_id, [], base="", visibility=visibility)
    except Exception as exc:  # an OperationOutcome error: compare its status
        return getattr(exc, "status", type(exc).__name__)
    return page.total, [(e.res_type, e.res_id, e.mode, e.content) for e in page.entries]


@pytest.mark.parametrize("who", sorted(PRINCIPALS))
@pytest.mark.parametrize("patient_id", ["a", "b"])
def test_the_unparsed_filter_answers_as_the_parsed_one(records, hub, who, patient_id):
    principal = PRINCIPALS[who]
    with acting_as(principal):
        fast = _answer(hub, patient_id, for_principal(principal, hub.service.within_jurisdiction))
        slow = _answer(hub, patient_id, _parsed_rule(hub, principal))
    if isinstance(slow, tuple) and isinstance(fast, tuple):
        # The SQL jurisdiction clause counts only what is returned; the parsed filter counted
        # before filtering. The entries must be the same.
        assert fast[1] == slow[1]
    else:
        assert fast == slow


def test_what_each_caller_sees(records, hub):
    def ids(who, patient_id="a"):
        principal = PRINCIPALS[who]
        with acting_as(principal):
            answer = _answer(
                hub, patient_id, for_principal(principal, hub.service.within_jurisdiction)
            )
        return answer if not isinstance(answer, tuple) else {i for _, i, _, _ in answer[1]}

    assert {"plain", "mental", "restricted", "r-and-hiv", "hidden-doc", "cond"} <= ids("all")
    assert {"plain", "doc", "cond"} <= ids("no-grants")
    assert not {"mental", "restricted", "r-and-hiv", "hidden-doc"} & ids("no-grants")
    assert "mental" in ids("mental-health") and "r-and-hiv" not in ids("mental-health")
    # R alone opens what carries only the level, not what a category labels too.
    assert "restricted" in ids("level-r") and "r-and-hiv" not in ids("level-r")
    assert "cond" not in ids("some-types") and "doc" not in ids("some-types")
    assert "plain" in ids("some-types")
    # A patient/ token sees its own compartment only: b's condition is not a's.
    assert "cond" not in ids("patient-a") and "plain" in ids("patient-a")
    assert ids("patient-b-linked", "b") >= {"cond", "plain"}
    assert "plain" in ids("jurisdiction")
    assert ids("other-jurisdiction") == 404


def test_only_a_caller_who_sees_everything_skips_the_filter():
    assert for_principal(PRINCIPALS["all"], list) is EVERYTHING
    assert for_principal(None, list) is EVERYTHING
    for who in sorted(set(PRINCIPALS) - {"all"}):
        visibility = for_principal(PRINCIPALS[who], list)
        assert visibility.entries is not None and visibility.visible is not None, who
