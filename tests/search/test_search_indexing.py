"""The indexer, registry, reindex and the searchset Bundle."""

from __future__ import annotations

from urllib.parse import parse_qsl

import orjson
import pytest
import sqlalchemy as sa
from search_helpers import SYNTHEA
from search_helpers import synthea_resources
from search_samples import SAMPLES

from hub.search.bundle import searchset_bytes
from hub.search.data import official_search_parameters
from hub.search.elements import apply_elements
from hub.search.elements import apply_summary
from hub.search.engine import SearchResult
from hub.search.fhirpath import compile_extractor
from hub.search.fhirpath import is_fast
from hub.search.indexer import Indexer
from hub.search.registry import SearchRegistry
from hub.search.registry import stored_search_parameters
from hub.search.reindex import reindex
from hub.search.values import normalise
from hub.storage import schema as S

ALL = [r for p in SYNTHEA for r in synthea_resources(p)] + SAMPLES


def test_registry_parses_the_official_set_once_and_knows_it(registry):
    from hub.search import registry as registry_module

    before = registry_module._official.cache_info()
    again = SearchRegistry.load()
    after = registry_module._official.cache_info()
    assert after.misses == before.misses  # the official Bundle is parsed once per process
    params = again.params_for("Observation")
    assert params["code"].type == "token"
    assert params["code"].url == "http://hl7.org/fhir/SearchParameter/clinical-code"
    assert "exact" in again.params_for("Patient")["name"].modifiers
    assert {"_id", "_lastUpdated", "_tag", "_profile", "_security"} <= set(params)
    assert "Observation" in again.all_types() and "Patient" in again.all_types()
    assert again.get(None, "_id") is not None and again.get(None, "code") is None


def test_most_official_expressions_get_the_fast_extractor():
    fast = slow = 0
    for sp in official_search_parameters():
        for base in sp.get("base", ()):
            if sp.get("expression") and base not in ("Resource", "DomainResource"):
                if is_fast(sp["expression"], base):
                    fast += 1
                else:
                    slow += 1
    assert fast / (fast + slow) > 0.97


@pytest.mark.parametrize(
    "expression, resource, expected",
    [
        ("Patient.name.family", {"name": [{"family": "张"}, {"family": "Li"}]}, ["张", "Li"]),
        ("(Observation.value as Quantity)", {"valueQuantity": {"value": 1}}, [{"value": 1}]),
        ("Observation.value.as(Quantity)", {"valueString": "x"}, []),
        ("Observation.effective", {"effectivePeriod": {"start": "2020"}}, [{"start": "2020"}]),
        (
            "Observation.subject.where(resolve() is Patient)",
            {"subject": {"reference": "Group/1"}},
            [],
        ),
        (
            "Observation.subject.where(resolve() is Patient)",
            {"subject": {"reference": "http://x/fhir/Patient/1/_history/2"}},
            [{"reference": "http://x/fhir/Patient/1/_history/2"}],
        ),
        (
            "Patient.telecom.where(system='phone')",
            {"telecom": [{"system": "email", "value": "a"}, {"system": "phone", "value": "1"}]},
            [{"system": "phone", "value": "1"}],
        ),
        (
            "Patient.deceased.exists() and Patient.deceased != false",  # via fhirpathpy
            {"deceasedBoolean": True},
            [True],
        ),
    ],
)
def test_extractors(expression, resource, expected):
    res_type = expression.lstrip("(").split(".", 1)[0]
    extract = compile_extractor(expression, res_type)
    assert extract({"resourceType": res_type, **resource}) == expected


@pytest.mark.parametrize(
    "deceased",
    [
        {},
        {"deceasedBoolean": True},
        {"deceasedBoolean": False},
        {"deceasedDateTime": "2020-01-02T10:00:00+08:00"},
        {"deceasedDateTime": ""},
        {"deceasedBoolean": 0},
        {"deceasedBoolean": "false"},
        {"deceasedBoolean": [False]},
        {"deceasedBoolean": False, "_deceasedBoolean": {"id": "x"}},
        {"deceased": True},
        {"deceasedString": "x"},
        {"deceasedDateTime": 5},
    ],
)
def test_deceased_answers_as_fhirpathpy_does(deceased):
    from hub.search.fhirpath import _DECEASED
    from hub.search.fhirpath import _build_general

    patient = {"resourceType": "Patient", "id": "p", **deceased}
    assert compile_extractor(_DECEASED, "Patient")(patient) == _build_general(_DECEASED)(patient)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Müller", "muller"),
        ("ÅNGSTRÖM ﬁ", "angstrom fi"),
        ("王小明", "王小明"),
        ("王 Wang 明", "王 wang 明"),
        ("\uf900", "\u8c48"),  # a compatibility ideograph decomposes
        ("Tab\tAnd\nNewline\x7f", "tab\tand\nnewline\x7f"),  # ASCII: only lower case
        ("X" * 600, "x" * 512),
    ],
)
def test_normalise(text, expected):
    assert normalise(text) == expected


def test_normalise_shortcut_for_han_is_exact():
    import unicodedata

    for c in map(chr, [*range(0x80), *range(0x4E00, 0xA000)]):
        assert unicodedata.normalize("NFKD", c) == c and not unicodedata.combining(c)


def test_indexer_never_raises_and_rows_are_uniform(indexer):
    for res in ALL:
        result = indexer.index(res)
        for table, rows in result.rows.items():
            keys = {tuple(sorted(r)) for r in rows}
            assert len(keys) == 1, table  # one executemany per table
            assert set(next(iter(keys))) <= set(S.INDEX_TABLES[table].c.keys())
    odd = {
        "resourceType": "Observation",
        "code": {"coding": ["oops", {"code": 5}]},
        "subject": 5,
        "effectiveDateTime": "not a date",
        "valueQuantity": {"value": "abc"},
        "component": [{"code": "x", "valueQuantity": None}],
    }
    assert "sp_date" not in indexer.index(odd).rows
    assert indexer.index({"no": "type"}).rows == {}


def test_patient_compartment(indexer):
    by_id = {r["id"]: r for r in SAMPLES}
    assert indexer.index(by_id["zs"]).patient_id == "zs"
    assert indexer.index(by_id["obs-bp"]).patient_id == "zs"
    assert indexer.index(by_id["obs-nosubj"]).patient_id is None
    comps = indexer.index(by_id["obs-bp"]).rows["compartment"]
    assert {"res_type": "Observation", "comp_type": "Patient", "comp_id": "zs"} in comps
    assert {"res_type": "Observation", "comp_type": "Encounter", "comp_id": "enc-1"} in comps


def test_common_parameters_use_the_direct_extractor(registry):
    """Simple paths skip FHIRPath evaluation (speed is measured in bench/search_index.py)."""
    from hub.search.fhirpath import is_fast

    common = {
        "Observation": ("code", "subject", "date", "category", "value-quantity", "status"),
        "Patient": ("name", "identifier", "birthdate", "gender", "family", "phonetic"),
        "Encounter": ("subject", "date", "class", "type", "status"),
        "Condition": ("code", "subject", "clinical-status", "onset-date"),
    }
    for res_type, names in common.items():
        params = registry.params_for(res_type)
        assert [n for n in names if not is_fast(params[n].expression, res_type)] == [], res_type
        fast = [n for n, p in params.items() if p.expression and is_fast(p.expression, res_type)]
        assert len(fast) >= 0.9 * len([p for p in params.values() if p.expression]), res_type


def test_custom_parameter_after_reindex(db, conn):
    custom = {
        "resourceType": "SearchParameter",
        "id": "patient-nickname",
        "url": "http://example.org/SearchParameter/patient-nickname",
        "code": "nickname",
        "base": ["Patient"],
        "type": "string",
        "status": "active",
        "expression": "Patient.name.where(use='nickname').given",
    }
    from hub.search.engine import SearchEngine

    conn.execute(
        S.resource.update()
        .where(S.resource.c.res_id == "mu")
        .values(
            content=orjson.dumps(
                {
                    "resourceType": "Patient",
                    "id": "mu",
                    "name": [{"family": "Müller"}, {"use": "nickname", "given": ["Jogi"]}],
                }
            ).decode()
        )
    )
    from search_helpers import insert

    insert(conn, Indexer(SearchRegistry.load()), custom)
    registry = SearchRegistry.load(stored_search_parameters(conn))
    assert registry.get("Patient", "nickname").type == "string"
    engine = SearchEngine(registry)
    search = [("nickname", "jog")]
    assert engine.search(conn, "Patient", search, base_url="").entries == []
    seen = []
    n = reindex(conn, Indexer(registry), ["Patient"], progress=lambda d, t: seen.append((d, t)))
    assert n == seen[-1][0] == seen[-1][1] > 4
    found = engine.search(conn, "Patient", search, base_url="").entries
    assert [e.res_id for e in found] == ["mu"]
    pid = conn.execute(sa.select(S.resource.c.patient_id).where(S.resource.c.res_id == "zs"))
    assert pid.scalar() == "zs"


def test_searchset_bundle_splices_contents(conn, engine):
    result = engine.search(
        conn,
        "Observation",
        parse_qsl("_id=obs-bp&_include=Observation:subject&bogus=1&_count=1"),
        base_url="http://hub.test/fhir",
    )
    raw = searchset_bytes(result, "http://hub.test/fhir/")
    bundle = orjson.loads(raw)
    assert bundle["type"] == "searchset" and bundle["total"] == 1
    assert bundle["link"][0] == {
        "relation": "self",
        "url": "http://hub.test/fhir/Observation?_id=obs-bp&_include=Observation%3Asubject&bogus=1&_count=1",
    }
    modes = [(e.get("fullUrl"), e["search"]["mode"]) for e in bundle["entry"]]
    assert modes == [
        ("http://hub.test/fhir/Observation/obs-bp", "match"),
        ("http://hub.test/fhir/Patient/zs", "include"),
        (None, "outcome"),
    ]
    assert bundle["entry"][0]["resource"]["id"] == "obs-bp"
    assert bundle["entry"][2]["resource"]["issue"][0]["severity"] == "warning"


def test_searchset_bundle_links():
    result = SearchResult(
        entries=[],
        total=None,
        self_link="Patient?name=x",
        next_link="Patient?name=x&_cursor=abc",
        prev_link="Patient?name=x&_cursor=def",
    )
    bundle = orjson.loads(searchset_bytes(result, "http://h/fhir"))
    assert "total" not in bundle and "entry" not in bundle
    assert [link["relation"] for link in bundle["link"]] == ["self", "next", "previous"]
    assert bundle["link"][1]["url"] == "http://h/fhir/Patient?name=x&_cursor=abc"


def test_summary_and_elements_helpers():
    obs = next(r for r in SAMPLES if r["id"] == "obs-bp")
    obs = {**obs, "text": {"status": "generated", "div": "<div/>"}, "note": [{"text": "n"}]}
    summary = apply_summary(obs, "true")
    assert "note" not in summary and "text" not in summary
    assert "effectiveDateTime" in summary  # effective[x] is a summary element
    assert "text" not in apply_summary(obs, "data") and "note" in apply_summary(obs, "data")
    text = apply_summary(obs, "text")
    assert set(text) == {"resourceType", "id", "meta", "text", "status", "code"}
    assert apply_summary(obs, "false") is obs
    elements = apply_elements(obs, ["Observation.subject", "component"])
    assert {"subject", "component", "status", "code"} <= set(elements)
    assert "note" not in elements


def test_explain_on_both_backends(conn, engine):
    result = engine.search(conn, "Patient", [("name", "张"), ("_explain", "true")], base_url="")
    assert "sp_string" in result.explain["sql"]
    assert not result.explain["plan"][0].startswith("(no plan")
    raw = searchset_bytes(result, "http://h/fhir")
    assert b"Plan:" in raw


def test_reindex_with_an_engine_commits_in_batches(db, indexer, engine):
    calls = []
    n = reindex(
        db, indexer, ["Organization"], progress=lambda d, t: calls.append((d, t)), batch_size=2
    )
    assert n >= 1 and calls[-1] == (n, n) and len(calls) == (n + 1) // 2
    with db.connect() as c:
        found = engine.search(c, "Organization", [("name", "北京")], base_url="")
    assert [e.res_id for e in found.entries] == ["org-cn"]
