"""``hub conformance check-endpoint`` against the running hub (a bounded set of types)."""

from __future__ import annotations

import urllib.parse
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from hub.cli import cli
from hub.conformance.endpoint import EndpointChecker
from hub.conformance.endpoint import FhirHttp
from hub.conformance.endpoint import search_values
from hub.conformance.runner import FAILED
from hub.conformance.runner import PASSED
from hub.conformance.runner import SKIPPED
from tests.fixtures import LiveServer

TYPES = "Patient,Observation,Encounter,Condition"


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


def test_the_hub_passes_its_own_capability_statement(live_server, tmp_path, token):
    token_file = tmp_path / "token"
    token_file.write_text(f"{token or ''}\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli,
        [
            "conformance",
            "check-endpoint",
            live_server.fhir,
            "--types",
            TYPES,
            "--junit",
            str(tmp_path / "endpoint.xml"),
            "--html",
            str(tmp_path / "endpoint.html"),
            *(["--token-file", str(token_file)] if token else []),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "failed" not in result.output
    suites = ET.parse(tmp_path / "endpoint.xml").getroot()
    assert [s.get("name") for s in suites] == ["server", *TYPES.split(",")]
    names = {(s.get("name"), c.get("name")) for s in suites for c in s if c.find("skipped") is None}
    for interaction in ("create", "read", "vread", "update", "patch", "delete"):
        assert ("Patient", interaction) in names
    for check in ("history-instance", "history-type", "search-type"):
        assert ("Observation", check) in names
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
        assert check in names
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


def test_unknown_and_ungenerated_types_are_skipped(live_server):
    results = by_id(
        EndpointChecker(FhirHttp(live_server.fhir), types=["Basic", "NoSuchType"]).run()
    )
    assert results["server/metadata"].status == PASSED
    assert results["Basic/all"].status == SKIPPED
    assert results["NoSuchType/declared"].status == SKIPPED


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
