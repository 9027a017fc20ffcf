"""Search behaviour on SQLite and PostgreSQL: every parameter type, modifier and prefix."""

from __future__ import annotations

from urllib.parse import parse_qsl

import orjson
import pytest

from hub.outcomes import OperationOutcomeError


def run(conn, engine, res_type, query, **kw):
    kw.setdefault("base_url", "http://hub.test/fhir")
    return engine.search(conn, res_type, parse_qsl(query, keep_blank_values=True), **kw)


def ids(conn, engine, res_type, query, **kw):
    """The ids of the matches (not includes), over all pages."""
    result = run(conn, engine, res_type, query + "&_count=1000", **kw)
    return {e.res_id for e in result.entries if e.mode == "match"}


def mine(found: set) -> set:
    """Only the hand-written sample ids (Synthea ids are UUIDs)."""
    return {i for i in found if len(i) < 20}


# --- string -------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, expected",
    [
        ("name=张", {"zs"}),  # prefix on the family name
        ("name=张三", {"zs"}),  # family+given written together
        ("name=欧阳娜", {"oy"}),  # prefix of the full Chinese name
        ("name:contains=小", {"wxm"}),
        ("name:contains=娜娜", {"oy"}),
        ("family=muller", {"mu"}),  # case and accent folded
        ("name=JÜRGEN", {"mu"}),
        ("family:exact=Müller", {"mu"}),
        ("family:exact=muller", set()),
        ("address-city=sao", {"mu"}),
        ("name=王,欧阳", {"wxm", "oy"}),  # comma = OR
        ("name=张&gender=female", set()),  # repeated = AND
        ("phonetic=zhang", {"zs"}),  # pinyin of Chinese names
        ("phonetic=ouyang na", {"oy"}),
        ("phonetic=wang xiaoming", {"wxm"}),
        ("phonetic=xm", set()),
        ("phonetic=wxm", {"wxm"}),  # initials
        ("phonetic=jurgen", {"mu"}),
    ],
)
def test_string(conn, engine, query, expected):
    assert mine(ids(conn, engine, "Patient", query)) == expected


def test_string_on_synthea(conn, engine):
    assert len(ids(conn, engine, "Patient", "family=conn")) == 1
    assert len(ids(conn, engine, "Patient", "given:contains=esmo")) == 1


# --- token ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "res_type, query, expected",
    [
        ("Patient", "gender=female", {"oy"}),
        ("Patient", "identifier=urn:oid:2.16.156.10011.1.3|11010519491231002X", {"zs"}),
        ("Patient", "identifier=11010519491231002X", {"zs"}),
        ("Patient", "identifier=urn:oid:2.16.156.10011.1.3|", {"zs"}),
        ("Patient", "identifier:text=居民", {"zs"}),
        (
            "Patient",
            "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|NI|11010519491231002X",
            {"zs"},
        ),
        ("Patient", "phone=13800000001", {"zs"}),
        ("Patient", "_tag=http://example.org/tags|vip", {"zs"}),
        ("Patient", "_security=R", {"zs"}),
        ("Patient", "deceased=true", {"wxm"}),
        ("Observation", "code=http://loinc.org|8310-5", {"obs-temp"}),
        ("Observation", "code=|8310-5", set()),  # a system is present
        ("Observation", "code:text=body temp", {"obs-temp"}),
        ("Observation", "value-concept=http://snomed.info/sct|449868002", {"obs-smoke"}),
        ("Observation", "value-concept:text=current every", {"obs-smoke"}),
        ("Observation", "status=preliminary", {"obs-str", "obs-nosubj"}),
        (
            "Observation",
            "code:in=http://example.org/fhir/ValueSet/vitals",
            {"obs-bp", "obs-wt", "obs-wt-g"},
        ),
        ("Observation", "_id=obs-bp,obs-wt", {"obs-bp", "obs-wt"}),
    ],
)
def test_token(conn, engine, res_type, query, expected):
    assert mine(ids(conn, engine, res_type, query)) == expected


def test_token_not_and_not_in(conn, engine):
    everything = mine(ids(conn, engine, "Observation", "_id:not=nothing"))
    assert mine(ids(conn, engine, "Observation", "status:not=final")) == {"obs-str", "obs-nosubj"}
    vitals = {"obs-bp", "obs-wt", "obs-wt-g"}
    not_in = mine(
        ids(conn, engine, "Observation", "code:not-in=http://example.org/fhir/ValueSet/vitals")
    )
    assert not_in == everything - vitals


@pytest.mark.parametrize(
    "query, expected",
    [
        ("code:below=http://example.org/fhir/CodeSystem/diagnoses|HTN", {"cond-htn1"}),
        (
            "code:below=http://example.org/fhir/CodeSystem/diagnoses|CIRC",
            {"cond-htn1", "cond-circ"},
        ),
        ("code:below=http://example.org/fhir/CodeSystem/diagnoses|RESP", set()),
        (
            "code:above=http://example.org/fhir/CodeSystem/diagnoses|HTN-1",
            {"cond-htn1", "cond-circ"},
        ),
        ("code:above=http://example.org/fhir/CodeSystem/diagnoses|IHD", {"cond-circ"}),
        ("code:below=http://example.org/fhir/CodeSystem/diagnoses|NOPE", set()),
    ],
)
def test_token_hierarchy(conn, engine, query, expected):
    assert mine(ids(conn, engine, "Condition", query)) == expected


# --- date -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, expected",
    [
        ("date=2024-03-01", {"obs-bp"}),  # the Period of obs-wt reaches into 03-02
        ("date=2024-03", {"obs-bp", "obs-wt", "obs-temp"}),
        ("date=2024-03-01T00:30:00Z", {"obs-bp"}),  # +08:00 in the resource
        ("date=2024-03-01T08:30:00+08:00", {"obs-bp"}),
        ("date=lt2024-03-01T08:00:00+08:00", {"obs-wt-g"}),  # obs-wt starts at 00:00Z
        ("date=gt2024-03-02", {"obs-temp"}),
        ("date=ge2024-03-02", {"obs-wt", "obs-temp"}),
        ("date=le2024-02-10", {"obs-wt-g"}),
        ("date=sa2024-03-02", {"obs-temp"}),
        ("date=eb2024-03-01", {"obs-wt-g"}),
        ("date=ne2024-03", {"obs-wt-g"}),
        ("date=ap2020-01-01", set()),  # "approximately" scales with the distance to now
        ("date=ge2024-03-01&date=lt2024-03-05", {"obs-bp", "obs-wt"}),
    ],
)
def test_date(conn, engine, query, expected):
    assert mine(ids(conn, engine, "Observation", query + "&date=gt2020")) == expected


def test_birthdate_partial_dates(conn, engine):
    assert mine(ids(conn, engine, "Patient", "birthdate=1990")) == {"wxm"}
    assert mine(ids(conn, engine, "Patient", "birthdate=1990-07")) == set()  # 1990 is wider
    assert mine(ids(conn, engine, "Patient", "birthdate=le1980-12-31")) == {"zs", "mu"}


def test_last_updated(conn, engine):
    # the samples were stored on consecutive days from 2024-01-02
    assert ids(conn, engine, "Organization", "_lastUpdated=2024-01-02") == {"org-cn"}
    assert mine(ids(conn, engine, "Patient", "_lastUpdated=gt2024-01-04")) == {"wxm", "mu"}


# --- number and quantity --------------------------------------------------------


@pytest.mark.parametrize(
    "query, expected",
    [
        ("probability=0.25", {"risk-1"}),
        ("probability=0.3", {"risk-1"}),  # 0.3 means [0.25, 0.35)
        ("probability=0.4", set()),
        ("probability=gt0.2", {"risk-1"}),
        ("probability=lt0.2", set()),
        ("probability=ap0.24", {"risk-1"}),
        ("probability=ne0.25", set()),
        ("probability=ge0.25", {"risk-1"}),
        ("probability=le0.25", {"risk-1"}),
        ("probability=le0.24", set()),
        ("probability=sa0.2", {"risk-1"}),
        ("probability=eb0.2", set()),
        ("probability:missing=false", {"risk-1"}),
    ],
)
def test_number(conn, engine, query, expected):
    assert ids(conn, engine, "RiskAssessment", query) == expected


@pytest.mark.parametrize(
    "query, expected",
    [
        ("value-quantity=72.5|http://unitsofmeasure.org|kg", {"obs-wt", "obs-wt-g"}),  # g = kg
        ("value-quantity=72500|http://unitsofmeasure.org|g", {"obs-wt", "obs-wt-g"}),
        ("value-quantity=72.5||kg", {"obs-wt", "obs-wt-g"}),
        ("value-quantity=gt37|http://unitsofmeasure.org|Cel", {"obs-temp"}),
        ("value-quantity=gt99|http://unitsofmeasure.org|[degF]", {"obs-temp"}),  # 37.5 Cel
        ("value-quantity=lt99|http://unitsofmeasure.org|[degF]", set()),
        ("value-quantity=37.5", {"obs-temp"}),
        ("value-quantity=ap72", {"obs-wt"}),
    ],
)
def test_quantity(conn, engine, query, expected):
    assert mine(ids(conn, engine, "Observation", query)) == expected


# --- reference, uri, composite ------------------------------------------------------


@pytest.mark.parametrize(
    "query, expected",
    [
        ("subject=Patient/zs", {"obs-bp", "obs-wt", "obs-temp"}),
        ("subject=zs", {"obs-bp", "obs-wt", "obs-temp"}),
        ("subject:Patient=zs", {"obs-bp", "obs-wt", "obs-temp"}),
        ("patient=Patient/oy", {"obs-wt-g", "obs-smoke"}),
        ("subject=http://hub.test/fhir/Patient/wxm", {"obs-str"}),
        ("subject:missing=true", {"obs-nosubj"}),
        ("encounter=Encounter/enc-1", {"obs-bp"}),
    ],
)
def test_reference(conn, engine, query, expected):
    assert mine(ids(conn, engine, "Observation", query)) == expected


def test_reference_identifier(conn, engine):
    found = ids(conn, engine, "Observation", "performer:identifier=urn:oid:2.16.156.10011.1.4|D042")
    assert found == {"obs-smoke"}
    assert ids(conn, engine, "Observation", "performer:identifier=D042") == {"obs-smoke"}
    assert ids(conn, engine, "Observation", "performer:identifier=x|D042") == set()


def test_missing_false(conn, engine):
    assert "obs-nosubj" not in ids(conn, engine, "Observation", "subject:missing=false")
    assert "obs-bp" in ids(conn, engine, "Observation", "subject:missing=false")


def test_reference_identifier_and_uri(conn, engine):
    # Synthea claims refer to their patient by reference; uri search on ValueSet.url
    url = "http://example.org/fhir/ValueSet/vitals"
    assert ids(conn, engine, "ValueSet", f"url={url}") == {"vs-vitals"}
    assert ids(conn, engine, "ValueSet", "url:below=http://example.org/fhir/") == {"vs-vitals"}
    assert ids(conn, engine, "ValueSet", f"url:above={url}/extra/part") == {"vs-vitals"}
    assert ids(conn, engine, "ValueSet", "url=http://example.org/fhir") == set()
    assert mine(
        ids(conn, engine, "Patient", "_profile=http://example.org/StructureDefinition/cn-patient")
    ) == {"zs"}


@pytest.mark.parametrize(
    "query, expected",
    [
        ("code-value-quantity=http://loinc.org|29463-7$gt70", {"obs-wt", "obs-wt-g"}),
        ("code-value-quantity=29463-7$lt70", set()),
        ("component-code-value-quantity=http://loinc.org|8480-6$ge140", {"obs-bp"}),
        ("component-code-value-quantity=8480-6$gt140", set()),
        ("component-code-value-quantity=8462-4$90|http://unitsofmeasure.org|mm[Hg]", {"obs-bp"}),
        ("code-value-concept=72166-2$http://snomed.info/sct|449868002", {"obs-smoke"}),
        ("code-value-string=5778-6$淡黄", {"obs-str"}),
    ],
)
def test_composite(conn, engine, query, expected):
    assert mine(ids(conn, engine, "Observation", query)) == expected


# --- chains, _has, _list, compartments --------------------------------------------------


@pytest.mark.parametrize(
    "res_type, query, expected",
    [
        ("Observation", "subject:Patient.name=张", {"obs-bp", "obs-wt", "obs-temp"}),
        ("Observation", "patient.gender=female", {"obs-wt-g", "obs-smoke"}),
        (
            "Observation",
            "subject:Patient.organization.name=北京协和",
            {"obs-bp", "obs-wt", "obs-temp", "obs-wt-g", "obs-smoke"},
        ),
        (
            "Observation",
            "subject:Patient.organization:Organization.identifier=PUMCH",
            {"obs-bp", "obs-wt", "obs-temp", "obs-wt-g", "obs-smoke"},
        ),
        ("Patient", "_has:Observation:subject:code=8310-5", {"zs"}),
        (
            "Patient",
            "_has:Observation:patient:_has:Provenance:target:agent=Organization/org-cn",
            {"zs"},
        ),
        ("Patient", "_has:Observation:subject:status=preliminary", {"wxm"}),
        ("Patient", "_list=list-1", {"zs", "oy"}),
        ("Encounter", "subject.birthdate=1980-05-04", {"enc-1"}),
    ],
)
def test_chains(conn, engine, res_type, query, expected):
    assert mine(ids(conn, engine, res_type, query)) == expected


def test_untyped_three_level_chain_runs(conn, engine):
    assert ids(conn, engine, "Observation", "subject.organization.partof.name=x") == set()
    found = mine(ids(conn, engine, "Observation", "subject.organization.name=北京"))
    assert found == {"obs-bp", "obs-wt", "obs-temp", "obs-wt-g", "obs-smoke"}


def test_compartment_search(conn, engine):
    found = ids(conn, engine, "Observation", "", compartment=("Patient", "zs"))
    assert found == {"obs-bp", "obs-wt", "obs-temp"}
    found = ids(conn, engine, "Observation", "code=8310-5", compartment=("Patient", "oy"))
    assert found == set()
    result = run(conn, engine, "Observation", "_count=1", compartment=("Patient", "zs"))
    assert result.next_link.startswith("Patient/zs/Observation?")


def test_system_search(conn, engine):
    found = mine(ids(conn, engine, None, "_tag=http://example.org/tags|vip"))
    assert found == {"zs"}
    found = mine(ids(conn, engine, None, "_id=zs,org-cn&_type=Patient,Organization"))
    assert found == {"zs", "org-cn"}
    # a parameter of the listed types (not common to all resources)
    found = mine(ids(conn, engine, None, "_type=Patient,Organization&name=北京,欧阳"))
    assert found == {"org-cn", "oy"}
    result = run(conn, engine, None, "name=x")
    assert "at system level" in result.issues[0]["diagnostics"]


# --- _include / _revinclude -------------------------------------------------------------


def entries(result):
    return {(e.res_type, e.res_id, e.mode) for e in result.entries}


def test_include_and_revinclude(conn, engine):
    result = run(
        conn,
        engine,
        "Observation",
        "_id=obs-bp&_include=Observation:subject&_include=Observation:encounter:Encounter"
        "&_revinclude=Provenance:target",
    )
    assert entries(result) == {
        ("Observation", "obs-bp", "match"),
        ("Patient", "zs", "include"),
        ("Encounter", "enc-1", "include"),
        ("Provenance", "prov-1", "include"),
    }
    assert result.total == 1  # includes are not counted


def test_include_iterate_and_wildcard(conn, engine):
    plain = run(
        conn,
        engine,
        "Observation",
        "_id=obs-bp&_include=Observation:subject&_include=Patient:organization",
    )
    assert ("Organization", "org-cn", "include") not in entries(plain)
    it = run(
        conn,
        engine,
        "Observation",
        "_id=obs-bp&_include=Observation:subject&_include:iterate=Patient:organization",
    )
    assert ("Organization", "org-cn", "include") in entries(it)
    star = run(conn, engine, "Observation", "_id=obs-bp&_include=*")
    assert {("Patient", "zs", "include"), ("Encounter", "enc-1", "include")} <= entries(star)
    rev = run(
        conn,
        engine,
        "Patient",
        "_id=zs&_revinclude:iterate=Observation:subject&_revinclude:iterate=Provenance:target",
    )
    assert ("Provenance", "prov-1", "include") in entries(rev)


# --- sorting, paging, totals --------------------------------------------------------------


def test_sort(conn, engine):
    result = run(conn, engine, "Patient", "_id=zs,oy,wxm,mu&_sort=birthdate")
    assert [e.res_id for e in result.entries] == ["mu", "zs", "wxm", "oy"]
    result = run(conn, engine, "Patient", "_id=zs,oy,wxm,mu&_sort=-birthdate")
    assert [e.res_id for e in result.entries] == ["oy", "wxm", "zs", "mu"]
    result = run(conn, engine, "Patient", "_id=zs,oy,wxm,mu&_sort=gender,-_id")
    assert [e.res_id for e in result.entries] == ["oy", "zs", "wxm", "mu"]
    result = run(conn, engine, "Patient", "_id=zs,oy,wxm,mu&_sort=-_lastUpdated")
    assert [e.res_id for e in result.entries] == ["mu", "wxm", "oy", "zs"]


def _all_pages(conn, engine, res_type, query, between=None):
    got, result = [], run(conn, engine, res_type, query)
    pages = 0
    while True:
        got += [e.res_id for e in result.entries]
        pages += 1
        if between:
            between(pages)
        if not result.next_link:
            return got
        assert result.next_link.startswith(f"{res_type}?")
        result = run(conn, engine, res_type, result.next_link.split("?", 1)[1])


SORTS = ["", "&_sort=-date", "&_sort=date,-_id", "&_sort=-value-quantity"]


@pytest.mark.parametrize("sort", SORTS)
def test_paging_is_stable_under_concurrent_writes(conn, engine, indexer, sort):
    from search_helpers import delete
    from search_helpers import insert
    from search_samples import _obs

    query = "code=http://loinc.org|29463-7" + sort + "&_count=3"
    before = _all_pages(conn, engine, "Observation", query)
    assert len(before) == len(set(before)) == 11
    unsorted = _all_pages(conn, engine, "Observation", "code=http://loinc.org|29463-7&_count=100")
    assert set(before) == set(unsorted)

    def write(page):
        if page == 1:  # after the first page: a new match, and a match not yet seen deleted
            insert(conn, indexer, _obs("obs-new", ("29463-7", "Body weight"), "Patient/zs"))
            delete(conn, "Observation", before[-1])

    during = _all_pages(conn, engine, "Observation", query, write)
    assert len(during) == len(set(during))  # nothing twice
    assert set(during) - {"obs-new"} == set(before) - {before[-1]}  # nothing skipped
    assert during[:3] == before[:3]


@pytest.mark.parametrize("sort", SORTS)
def test_previous_link(conn, engine, sort):
    query = "code=http://loinc.org|29463-7&_count=4" + sort
    first = run(conn, engine, "Observation", query)
    assert first.prev_link is None
    second = run(conn, engine, "Observation", first.next_link.split("?", 1)[1])
    third = run(conn, engine, "Observation", second.next_link.split("?", 1)[1])
    back = run(conn, engine, "Observation", third.prev_link.split("?", 1)[1])
    assert [e.res_id for e in back.entries] == [e.res_id for e in second.entries]
    back = run(conn, engine, "Observation", back.prev_link.split("?", 1)[1])
    assert [e.res_id for e in back.entries] == [e.res_id for e in first.entries]
    assert back.prev_link is None


def test_a_sorted_page_reads_the_json_of_its_rows_only(conn, engine):
    """Both backends order the matches' pks (and sort values) first and read the JSON of
    the page's rows after the LIMIT: no sort carries every match's JSON."""
    result = run(
        conn, engine, "Observation", "patient=Patient/zs&_sort=-date&_count=3&_explain=true"
    )
    assert len([e for e in result.entries if e.mode == "match"]) == 3
    sql = result.explain["sql"]
    page, _, outer = sql.rpartition(") AS page")
    assert "content" not in page.split("FROM (", 1)[1], sql
    assert "JOIN resource AS rc" in outer, sql


def test_two_index_parameters_meet_before_the_resource_rows(conn, engine):
    """``code`` and ``patient``: one list of pks, intersected among the index rows."""
    query = "code=http://loinc.org|29463-7&patient=Patient/zs&_explain=true"
    result = run(conn, engine, "Observation", query)
    matches = {e.res_id for e in result.entries if e.mode == "match"}
    assert matches == ids(conn, engine, "Observation", "code=http://loinc.org|29463-7") & ids(
        conn, engine, "Observation", "patient=Patient/zs"
    )
    assert matches
    assert result.explain["sql"].count("r.pk IN") == 1, result.explain["sql"]


def test_sort_puts_missing_values_last(conn, engine):
    query = "_id=obs-bp,obs-wt,obs-smoke,obs-temp&_count=2"
    for sort in ("value-quantity", "-value-quantity"):
        got = _all_pages(conn, engine, "Observation", f"{query}&_sort={sort}")
        assert got[-1] == "obs-smoke" and len(got) == 4 and got[-2] == "obs-bp"


def test_total_modes(conn, engine):
    assert run(conn, engine, "Observation", "code=29463-7").total == 11  # one page: free
    assert run(conn, engine, "Observation", "code=29463-7&_count=2").total is None
    assert run(conn, engine, "Observation", "code=29463-7&_count=2&_total=accurate").total == 11
    assert run(conn, engine, "Observation", "code=29463-7&_count=2&_total=none").total is None
    estimate = run(conn, engine, "Observation", "code=29463-7&_count=2&_total=estimate").total
    assert isinstance(estimate, int) and estimate >= 0
    counted = run(conn, engine, "Observation", "code=29463-7&_summary=count")
    assert counted.total == 11 and counted.entries == []
    zero = run(conn, engine, "Observation", "code=29463-7&_count=0")
    assert zero.total == 11 and zero.entries == [] and zero.next_link is None


def test_summary_and_elements(conn, engine):
    result = run(conn, engine, "Patient", "_id=zs&_summary=true")
    doc = orjson.loads(result.entries[0].content)
    assert "name" in doc and "telecom" in doc and "text" not in doc
    assert any(t["code"] == "SUBSETTED" for t in doc["meta"]["tag"])
    result = run(conn, engine, "Patient", "_id=zs&_elements=gender")
    doc = orjson.loads(result.entries[0].content)
    assert set(doc) == {"resourceType", "id", "meta", "gender"}
    result = run(conn, engine, "Observation", "_id=obs-bp&_elements=status")
    doc = orjson.loads(result.entries[0].content)
    assert "code" in doc  # mandatory elements stay


# --- errors and warnings ----------------------------------------------------------------------


def test_unknown_parameter_lenient_and_strict(conn, engine):
    result = run(conn, engine, "Patient", "nonsense=1&gender=female")
    assert mine({e.res_id for e in result.entries}) == {"oy"}
    assert result.issues and result.issues[0]["severity"] == "warning"
    assert "nonsense" in result.issues[0]["diagnostics"]
    with pytest.raises(OperationOutcomeError) as err:
        run(conn, engine, "Patient", "nonsense=1", strict=True)
    assert err.value.status == 400
    assert err.value.issues[0]["expression"] == ["http.nonsense"]


@pytest.mark.parametrize(
    "res_type, query, param",
    [
        ("Patient", "birthdate=yesterday", "birthdate"),
        ("Patient", "birthdate=2020-13-45", "birthdate"),
        ("RiskAssessment", "probability=abc", "probability"),
        ("Observation", "value-quantity=12|x", "value-quantity"),
        ("Observation", "subject:missing=maybe", "subject:missing"),
        ("Patient", "_count=many", "_count"),
        ("Patient", "_cursor=garbage", "_cursor"),
        ("Patient", "name:sounds-like=x", "name:sounds-like"),
        ("Observation", "code-value-quantity=nodollar", "code-value-quantity"),
        ("Observation", "subject=Practitioner/x&subject:Patient=Practitioner/x", "subject:Patient"),
        ("Observation", "_include=Observation:nonsense", "_include"),
        ("Observation", "code:in=http://example.org/unknown-vs", "code:in"),
        ("Patient", "_has:Observation:code:status=final", "_has:Observation:code:status"),
        ("Observation", "subject.organization.partof.partof.name=x", "subject.organization"),
        ("Patient", "_list=", "_list"),
        ("Condition", "code:below=http://example.org/unknown|x", "code:below"),
        ("Condition", "code:below=HTN", "code:below"),
    ],
)
def test_malformed_values_are_400_naming_the_parameter(conn, engine, res_type, query, param):
    with pytest.raises(OperationOutcomeError) as err:
        run(conn, engine, res_type, query)
    assert err.value.status == 400
    assert param in err.value.issues[0]["diagnostics"]


def test_explain(conn, engine):
    result = run(conn, engine, "Observation", "code=8310-5&_explain=true")
    assert "sp_token" in result.explain["sql"]
    assert result.explain["plan"] and "no plan" not in result.explain["plan"][0]


def test_hidden_security_labels(conn, engine):
    restricted = [("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R")]
    query = "_id=zs,oy"
    assert ids(conn, engine, "Patient", query) == {"zs", "oy"}
    assert ids(conn, engine, "Patient", query, hidden_labels=restricted) == {"oy"}
    result = run(
        conn,
        engine,
        "Observation",
        "_id=obs-bp&_include=Observation:subject",
        hidden_labels=restricted,
    )
    assert entries(result) == {("Observation", "obs-bp", "match")}
