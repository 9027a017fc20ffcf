"""Fuzzing the API over HTTP: no input may get a 5xx answer.

Two bounded, deterministic runs (a budget of examples, not of time; derandomised
hypothesis, no example database), on SQLite and on PostgreSQL:

* schemathesis, from the OpenAPI document, on the operations of a few types and
  of the system level, with valid and invalid inputs;
* hypothesis over what the schema cannot describe: search values, ids, version
  numbers and resource bodies holding any character (NUL and the other control
  characters included), deeply nested and oversize elements.

Every 5xx answer seen is collected and fails the test, listed with its request.
"""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from tests.fixtures import mint_token

pytestmark = pytest.mark.fuzz

# The operations schemathesis fuzzes: every interaction of two types, the audit trail,
# the system level and the Patient operations (the others are the same routes).
FUZZED_PATHS = re.compile(
    r"^/(Patient|Observation|Binary)(/.*)?$|^/AuditEvent$|^/(_history|_search|\$ingest|metadata)?$"
)
EXAMPLES_PER_OPERATION = 5
HYPOTHESIS_EXAMPLES = 30
TOKEN_SCOPES = "system/*.cruds user/AuditEvent.rs"
FUZZ_SETTINGS = settings(
    max_examples=HYPOTHESIS_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


class Findings:
    """5xx answers seen in a run: there must be none."""

    def __init__(self, backend: str):
        self.backend = backend
        self.answers: list[str] = []

    def record(self, status: int, request_text: str, answer: str = "") -> None:
        if status < 500:
            return
        shown = request_text if len(request_text) < 400 else request_text[:300] + "..."
        self.answers.append(f"{status} {shown} -> {answer[:300]}")

    def check(self) -> None:
        assert self.answers == [], f"5xx answers on {self.backend}"


@pytest.fixture
def session(live_server, app):
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {mint_token(app, TOKEN_SCOPES)}"
    s.headers["Accept"] = "application/fhir+json"
    return s


def _send(session, findings: Findings, method: str, url: str, **kw) -> requests.Response:
    resp = session.request(method, url, timeout=60, **kw)
    body = kw.get("data") or kw.get("json") or ""
    text = (
        urllib.parse.unquote(resp.request.url)
        + " "
        + (body if isinstance(body, str) else json.dumps(body))
    )
    findings.record(resp.status_code, f"{method} {text}", resp.text)
    return resp


# -- the OpenAPI document -------------------------------------------------------------


def test_openapi_document_is_served_without_a_token(anon_client):
    doc = anon_client.get("/fhir/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "/Patient/{id}" in doc["paths"]
    assert doc["paths"]["/metadata"]["get"]["security"] == []


def test_openapi_lists_what_the_capability_statement_lists(client):
    doc = client.get("/fhir/openapi.json").get_json()
    statement = client.get("/fhir/metadata").get_json()["rest"][0]
    paths = doc["paths"]
    verbs = {
        "read": ("/{id}", "get"),
        "update": ("/{id}", "put"),
        "patch": ("/{id}", "patch"),
        "delete": ("/{id}", "delete"),
        "vread": ("/{id}/_history/{vid}", "get"),
        "history-instance": ("/{id}/_history", "get"),
        "history-type": ("/_history", "get"),
        "create": ("", "post"),
        "search-type": ("", "get"),
    }
    documented = set()
    for entry in statement["resource"]:
        t = entry["type"]
        for interaction in entry["interaction"]:
            suffix, verb = verbs[interaction["code"]]
            assert verb in paths[f"/{t}{suffix}"], (t, interaction["code"])
        for suffix, verb in verbs.values():
            if verb in paths.get(f"/{t}{suffix}", {}):
                documented.add((t, suffix, verb))
        search = paths.get(f"/{t}", {}).get("get", {"parameters": []})
        query = {p["name"] for p in search["parameters"] if "name" in p}
        assert {p["name"] for p in entry.get("searchParam", ())} <= query, t
        for op in entry.get("operation", ()):
            assert f"/{t}/${op['name']}" in paths or f"/{t}/{{id}}/${op['name']}" in paths
    for op in statement["operation"]:
        assert f"/${op['name']}" in paths
    # Nothing more: each documented interaction is claimed.
    claimed = {
        (e["type"], *verbs[i["code"]]) for e in statement["resource"] for i in e["interaction"]
    }
    assert documented == claimed
    assert "/EffectEvidenceSynthesis" not in paths
    assert "/AuditEvent/{id}" in paths and "put" not in paths["/AuditEvent/{id}"]


@pytest.mark.parametrize("value", ["²", "٣", "-1", "1e3"])
def test_non_ascii_digits_are_400_not_500(client, value):
    assert client.get(f"/fhir/_history?_count={value}").status_code == 400
    assert client.get(f"/fhir/Patient/x/_history/{value}").status_code in (400, 404)


# -- schemathesis ---------------------------------------------------------------------


def test_schemathesis_finds_no_server_errors(live_server, session, backend):
    schema = schemathesis.openapi.from_dict(session.get(f"{live_server.fhir}/openapi.json").json())
    operations = [r.ok() for r in schema.get_all_operations()]
    chosen = [op for op in operations if FUZZED_PATHS.match(op.path)]
    assert len(chosen) >= 20
    findings = Findings(backend)
    auth = {"Authorization": session.headers["Authorization"]}
    for op in chosen:
        strategy = st.one_of(
            op.as_strategy(schemathesis.GenerationMode.POSITIVE),
            op.as_strategy(schemathesis.GenerationMode.NEGATIVE),
        )

        @given(case=strategy)
        @settings(FUZZ_SETTINGS, max_examples=EXAMPLES_PER_OPERATION)
        def run(case):
            resp = case.call(base_url=live_server.fhir, headers=auth, timeout=60)
            findings.record(resp.status_code, case.as_curl_command(), resp.text)

        run()
    findings.check()


# -- hypothesis: what the schema cannot describe ----------------------------------------

# Any character, the control characters (NUL first) made likely.
CONTROL = st.sampled_from(["\x00", "\x01", "\x08", "\x0b", "\x1b", "\x7f", "\u2028", "\ufffe"])
TEXT = st.lists(st.one_of(st.characters(), CONTROL), max_size=12).map("".join)
SEARCHES = st.sampled_from(
    [
        "name",
        "family",
        "identifier",
        "birthdate",
        "gender",
        "_id",
        "_lastUpdated",
        "_tag",
        "_profile",
        "general-practitioner",
        "name:contains",
        "identifier:of-type",
        "_has:Observation:subject:code",
        "general-practitioner.name",
        "_sort",
        "_include",
        "_count",
        "_elements",
    ]
)


def test_search_values_with_any_character(live_server, session, backend):
    findings = Findings(backend)

    # The known cases are always tried, whatever the generator draws.
    @given(name=SEARCHES, value=TEXT, audit=st.sampled_from(["agent", "entity", "date"]))
    @example(name="name", value="a\x00b", audit="agent")
    @example(name="_id", value="\x01\x1b\x7f", audit="entity")
    @FUZZ_SETTINGS
    def run(name, value, audit):
        _send(session, findings, "GET", f"{live_server.fhir}/Patient", params={name: value})
        _send(session, findings, "GET", f"{live_server.fhir}/AuditEvent", params={audit: value})
        _send(
            session,
            findings,
            "POST",
            f"{live_server.fhir}/Patient/_search",
            data={name: value},
        )

    run()
    findings.check()


def test_ids_and_versions_with_any_character(live_server, session, backend):
    findings = Findings(backend)
    created = _send(
        session, findings, "POST", f"{live_server.fhir}/Patient", json={"resourceType": "Patient"}
    )
    pid = created.json()["id"]
    versions = st.one_of(TEXT, st.integers(min_value=-(2**70), max_value=2**70).map(str))

    @given(res_id=TEXT.filter(lambda t: t not in ("", ".", "..")), version=versions)
    @example(res_id="a\x00b", version="1")
    @example(res_id="\x01", version=str(2**64))
    @example(res_id="x", version="9" * 30)
    @FUZZ_SETTINGS
    def run(res_id, version):
        quoted = urllib.parse.quote(res_id, safe="")
        _send(session, findings, "GET", f"{live_server.fhir}/Patient/{quoted}")
        _send(session, findings, "DELETE", f"{live_server.fhir}/Patient/{quoted}")
        _send(
            session,
            findings,
            "PUT",
            f"{live_server.fhir}/Patient/{quoted}",
            json={"resourceType": "Patient", "id": res_id},
        )
        v = urllib.parse.quote(version, safe="")
        _send(session, findings, "GET", f"{live_server.fhir}/Patient/{pid}/_history/{v}")

    run()
    findings.check()


def _patient_json(text: str, depth: int, size: int) -> str:
    """A Patient with ``text`` in its elements (repeated to ``size`` characters) and an
    extension nested ``depth`` deep, as JSON text (too deep for ``json.dumps``)."""
    long = json.dumps((text * (size // len(text) + 1))[:size])
    inner = '{"url":"http://example.org/x","valueString":' + json.dumps(text) + "}"
    nested = '{"url":"http://example.org/x","extension":[' * depth + inner + "]}" * depth
    return (
        '{"resourceType":"Patient","name":[{"family":' + long + ',"given":[' + json.dumps(text)
        + ']}],"identifier":[{"system":"urn:fuzz","value":' + long + '}],"extension":['
        + nested + "]}"
    )  # fmt: skip


def test_bodies_with_any_character_depth_and_size(live_server, session, backend):
    findings = Findings(backend)
    bodies = st.builds(
        _patient_json,
        TEXT.filter(bool),
        st.one_of(st.integers(0, 5), st.sampled_from([100, 200, 5000])),
        st.one_of(st.just(1), st.sampled_from([3000, 300_000])),
    )

    @given(body=bodies)
    @example(body=_patient_json("a\x00b", 1, 1))
    @example(body=_patient_json("\x01\x1b", 200, 1))
    @example(body=_patient_json("c", 0, 3000))
    @example(body=_patient_json("d", 0, 300_000))
    @FUZZ_SETTINGS
    def run(body):
        data = body
        headers = {"Content-Type": "application/fhir+json"}
        _send(session, findings, "POST", f"{live_server.fhir}/Patient", data=data, headers=headers)
        _send(
            session,
            findings,
            "POST",
            f"{live_server.fhir}/Patient/$validate",
            data=data,
            headers=headers,
        )

    run()
    findings.check()
