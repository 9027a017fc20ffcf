"""``hub conformance check-endpoint`` against the running hub (a bounded set of types)."""

from __future__ import annotations

import json
import urllib.parse
import xml.etree.ElementTree as ET

import pytest
import requests
from click.testing import CliRunner

from hub.app import create_app
from hub.app import get_hub
from hub.cli import cli
from hub.conformance.endpoint import EndpointChecker
from hub.conformance.endpoint import FhirHttp
from hub.conformance.endpoint import search_values
from hub.conformance.runner import FAILED
from hub.conformance.runner import PASSED
from hub.conformance.runner import SKIPPED
from tests.fixtures import LiveServer
from tests.fixtures import mint_token

AUDITOR = "system/*.cruds user/AuditEvent.rs"


@pytest.fixture
def backend():
    # One backend is enough: the checks exercise the HTTP API, which tests/test_api_*.py
    # run on both.
    return "sqlite"


@pytest.fixture
def token(request) -> str | None:
    """The bearer token the live server accepts, when the suite provides one (``auth_token``)."""
    try:
        return request.getfixturevalue("auth_token")
    except pytest.FixtureLookupError:
        return None


def by_id(results):
    return {r.id: r for r in results}


def test_the_hub_passes_its_own_capability_statement(tmp_path):
    """The whole statement walked over HTTP: every type, interaction, search parameter and
    operation it claims, with the installed plugins, as deployed."""
    application = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'hub.db'}",
            "LOAD_ENTRY_POINTS": True,
            "INSTANCE_PATH": str(tmp_path),
            "RATE_LIMIT_PER_SECOND": 0,
        }
    )
    token_file = tmp_path / "token"
    # The audit trail needs a scope naming AuditEvent.
    token_file.write_text(mint_token(application, AUDITOR) + "\n", encoding="utf-8")
    try:
        with LiveServer(application) as server:
            statement = requests.get(f"{server.fhir}/metadata", timeout=30).json()
            result = CliRunner().invoke(
                cli,
                [
                    "conformance",
                    "check-endpoint",
                    server.fhir,
                    "--junit",
                    str(tmp_path / "endpoint.xml"),
                    "--html",
                    str(tmp_path / "endpoint.html"),
                    "--token-file",
                    str(token_file),
                ],
            )
    finally:
        get_hub(application).close()
    assert result.exit_code == 0, result.output
    suites = ET.parse(tmp_path / "endpoint.xml").getroot()
    failures = [
        (s.get("name"), c.get("name"), c.find("failure").get("message"))
        for s in suites
        for c in s
        if c.find("failure") is not None
    ]
    assert failures == []
    rest = statement["rest"][0]
    claimed = {r["type"]: r for r in rest["resource"]}
    assert [s.get("name") for s in suites] == ["server", *sorted(claimed)]
    ran = {(s.get("name"), c.get("name")) for s in suites for c in s if c.find("skipped") is None}
    # Every claimed type was searched and every claimed parameter exercised.
    for res_type, declared in claimed.items():
        assert (res_type, "search-type") in ran
        for param in declared.get("searchParam", ()):
            assert (res_type, f"search {param['name']}") in ran, (res_type, param["name"])
    # Every claimed interaction of every type but the audit trail (the kit cannot make events).
    for res_type, declared in claimed.items():
        if res_type == "AuditEvent":
            continue
        for interaction in declared["interaction"]:
            assert (res_type, interaction["code"]) in ran, (res_type, interaction["code"])
        assert (res_type, "patch (FHIRPath Patch)") in ran
        assert {(res_type, "conditional create"), (res_type, "conditional update")} <= ran
    # Every claimed operation: its definition, and a call at each level it declares.
    for op in rest["operation"]:
        assert ("server", f"${op['name']} definition") in ran
        assert ("server", f"${op['name']} system") in ran
    for res_type, declared in claimed.items():
        for op in declared.get("operation", ()):
            assert (res_type, f"${op['name']} definition") in ran
            assert {(res_type, f"${op['name']} {lv}") for lv in ("type", "instance")} & ran
    for name in ("everything", "colours", "lifetime-file", "cda-document", "meta"):
        assert ("Patient", f"${name} instance") in ran
    assert ("Patient", "$match type") in ran
    # Search parameters of each kind were exercised with values from the created resources.
    for check in [
        ("Patient", "search birthdate"),  # date
        ("Patient", "search family"),  # string
        ("Patient", "search identifier"),  # token
        ("Observation", "search subject"),  # reference
        ("Observation", "search value-quantity"),  # quantity
        ("Encounter", "search date"),  # date over a Period
        ("Condition", "search _tag"),
    ]:
        assert check in ran
    assert "<section" in (tmp_path / "endpoint.html").read_text(encoding="utf-8")


class Tamper:
    """WSGI middleware: records Authorization headers and drops one search parameter."""

    def __init__(self, wsgi_app, drop: str):
        self.wsgi_app, self.drop = wsgi_app, drop
        self.authorization: set[str | None] = set()

    def __call__(self, environ, start_response):
        self.authorization.add(environ.get("HTTP_AUTHORIZATION"))
        query = urllib.parse.parse_qsl(environ.get("QUERY_STRING", ""))
        environ["QUERY_STRING"] = urllib.parse.urlencode(
            [(k, v) for k, v in query if k != self.drop]
        )
        return self.wsgi_app(environ, start_response)


def test_an_ignored_search_parameter_fails_and_the_token_is_sent(app, token):
    token = token or "s3cret"
    tamper = Tamper(app.wsgi_app, drop="gender")
    app.wsgi_app = tamper
    with LiveServer(app) as server:
        results = by_id(
            EndpointChecker(FhirHttp(server.fhir, token=token), types=["Patient"]).run()
        )
    gender = results["Patient/search gender"]
    assert gender.status == FAILED
    assert "gender=nomatch-" in gender.message and "should not match" in gender.message
    assert results["Patient/search birthdate"].status == PASSED
    assert tamper.authorization == {f"Bearer {token}"}


def test_unknown_types_are_skipped_and_others_made_from_their_definition(live_server):
    results = by_id(
        EndpointChecker(
            FhirHttp(live_server.fhir, token=live_server.token), types=["Basic", "NoSuchType"]
        ).run()
    )
    assert results["server/metadata"].status == PASSED
    assert results["NoSuchType/declared"].status == SKIPPED
    # Basic has no hand-written generator: its minimal instance comes from its definition.
    for check in ("create", "read", "update", "patch (FHIRPath Patch)", "delete", "search code"):
        assert results[f"Basic/{check}"].status == PASSED, check
    assert results["Basic/$validate definition"].status == PASSED
    assert results["Basic/$meta instance"].status == PASSED


def test_a_type_whose_minimal_instance_is_refused_is_probed(app, token):
    refuse = Refuse(app.wsgi_app, "/fhir/Basic")
    app.wsgi_app = refuse
    with LiveServer(app) as server:
        results = by_id(EndpointChecker(FhirHttp(server.fhir, token=token), types=["Basic"]).run())
    assert results["Basic/create"].status == SKIPPED
    assert "minimal instance" in results["Basic/create"].message
    assert results["Basic/search-type"].status == PASSED
    assert results["Basic/search code"].status == PASSED


class Refuse:
    """WSGI middleware: every POST to ``path`` is answered 422."""

    def __init__(self, wsgi_app, path: str):
        self.wsgi_app, self.path = wsgi_app, path

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"] == self.path:
            body = json.dumps(
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "invariant", "diagnostics": "no"}],
                }
            ).encode()
            start_response(
                "422 Unprocessable Entity",
                [("Content-Type", "application/fhir+json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return self.wsgi_app(environ, start_response)


class Boast:
    """WSGI middleware: the statement claims a parameter and an operation the hub lacks."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        if not environ["PATH_INFO"].endswith("/metadata"):
            return self.wsgi_app(environ, start_response)
        captured = {}

        def keep(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers

        body = json.loads(b"".join(self.wsgi_app(environ, keep)))
        for entry in body["rest"][0]["resource"]:
            if entry["type"] == "Basic":
                entry["searchParam"].append({"name": "_content", "type": "string"})
                entry["operation"].append(
                    {"name": "frobnicate", "definition": entry["operation"][0]["definition"]}
                )
                entry["operation"].append(
                    {
                        "name": "vanish",
                        "definition": environ["HTTP_HOST"].join(
                            ("http://", "/fhir/OperationDefinition/vanish")
                        ),
                    }
                )
        data = json.dumps(body).encode()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(data)))])
        return [data]


def test_claims_the_server_does_not_honour_fail(app, token):
    app.wsgi_app = Boast(app.wsgi_app)
    with LiveServer(app) as server:
        results = by_id(EndpointChecker(FhirHttp(server.fhir, token=token), types=["Basic"]).run())
    assert results["Basic/search _content"].status == FAILED
    assert "strict" in results["Basic/search _content"].message
    # A definition of another operation, and one that is not there.
    assert results["Basic/$frobnicate definition"].status == FAILED
    assert "$validate" in results["Basic/$frobnicate definition"].message
    assert results["Basic/$vanish definition"].status == FAILED
    assert "404" in results["Basic/$vanish definition"].message
    assert results["Basic/search code"].status == PASSED


def test_an_unreachable_server_is_a_failed_check_not_a_crash():
    results = EndpointChecker(FhirHttp("http://127.0.0.1:9/fhir", timeout=2)).run()
    assert [(r.id, r.status) for r in results] == [("server/metadata", FAILED)]


@pytest.mark.parametrize(
    ("kind", "element", "values"),
    [
        ("token", {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
         ("http://loinc.org|8867-4", "http://loinc.org|nomatch-r")),
        ("token", {"system": "phone", "value": "123", "use": "home"}, ("123", "nomatch-r")),
        ("token", True, ("true", "false")),
        ("string", {"family": "Kit", "given": ["A"]}, ("Kit", "zzqr")),
        ("date", "2024-03-01", ("2024-03-01", "1801-01-01")),
        ("date", {"start": "2024-03-01T08:00:00+08:00"},
         ("ge2024-03-01T08:00:00+08:00", "lt2024-03-01T08:00:00+08:00")),
        ("reference", {"reference": "Patient/p1"}, ("Patient/p1", "Patient/nomatch-r")),
        ("quantity", {"value": 72, "system": "http://unitsofmeasure.org", "code": "/min"},
         ("72|http://unitsofmeasure.org|/min", "12417|http://unitsofmeasure.org|/min")),
        ("composite", "x", None),
    ],
)  # fmt: skip
def test_search_values_from_elements(kind, element, values):
    assert search_values(kind, element, "r") == values


def test_the_command_sends_the_token_from_option_or_file(app, tmp_path):
    tamper = Tamper(app.wsgi_app, drop="")
    app.wsgi_app = tamper
    (tmp_path / "token").write_text("from-file\n", encoding="utf-8")
    with LiveServer(app) as server:
        for args in (["--token", "from-option"], ["--token-file", str(tmp_path / "token")]):
            CliRunner().invoke(
                cli,
                ["conformance", "check-endpoint", server.fhir, "--types", "Organization", *args],
            )
    assert tamper.authorization == {"Bearer from-option", "Bearer from-file"}
