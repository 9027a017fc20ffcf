import pytest

from hub import codesystems as cs
from hub.identity import HEALTH_RECORD_SYSTEM
from hub.identity.households import InvalidHealthRecordNumber
from hub.identity.households import household_groups
from hub.identity.households import parse_record_number
from hub.identity.households import village_groups


def test_parse_record_number_parts():
    n = parse_record_number("37021200110100023")
    assert (n.county, n.township, n.village, n.sequence) == ("370212", "001", "101", "00023")
    assert n.village_code == "370212001101"
    assert n.township_code == "370212001"
    assert n.committee_kind == "village"
    assert parse_record_number("３７０２１２００１００５００００１").committee_kind == "residents"


@pytest.mark.parametrize(
    "text", ["3702120011010002", "37021200110100023X", "37021200100000023", ""]
)
def test_parse_record_number_rejects(text):
    with pytest.raises(InvalidHealthRecordNumber):
        parse_record_number(text)


def person(pid, record=None, household=None, active=True):
    idents = []
    if record:
        idents.append({"system": HEALTH_RECORD_SYSTEM, "value": record})
    if household:
        idents.append({"system": cs.HOUSEHOLD_NUMBER, "value": household})
    return {"resourceType": "Patient", "id": pid, "identifier": idents, "active": active}


RESOURCES = [
    person("p3", "37021200110100003", "H1"),
    person("p1", "37021200110100001", "H1"),
    person("p2", "37021200110200001", "H2"),
    person("p4", "bad", None),
    person("p5", "37021200110100005", "H3", active=False),
    {"resourceType": "Observation", "id": "o1"},
]


def test_village_groups():
    groups = village_groups(RESOURCES, names={"370212001101": "某村"})
    assert [g["identifier"][0]["value"] for g in groups] == ["370212001101", "370212001102"]
    first = groups[0]
    assert first["name"] == "某村"
    assert first["quantity"] == 2
    assert [m["entity"]["reference"] for m in first["member"]] == ["Patient/p1", "Patient/p3"]
    assert first["type"] == "person" and first["actual"] is True
    assert village_groups(RESOURCES)[0]["id"] == first["id"]


def test_household_groups():
    groups = household_groups(RESOURCES)
    assert [(g["identifier"][0]["value"], g["quantity"]) for g in groups] == [("H1", 2), ("H2", 1)]
    assert groups[0]["code"]["coding"][0]["code"] == "household"
