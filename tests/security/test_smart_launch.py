"""SMART App Launch for a person's app: authorize, login, consent, code, PKCE, tokens, compartment.

The app is driven as a browser and an app would drive it: a real HTTP client walks
``/auth/authorize`` -> the login form (with its CSRF token) -> the consent page -> the redirect
with ``code`` and ``state``, and fhirclient exchanges the code with its PKCE verifier and reads
the person's records over HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import urllib.parse

import jwt
import pytest
import requests
from fhirclient import client as fhirclient
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient
from fhirclient.server import FHIRNotFoundException

from hub.codesystems import OAUTH_CLIENT
from hub.security import clients
from hub.security import users
from hub.storage.db import writing

REDIRECT = "https://app.example/junxiu/callback"
APP_SCOPES = "patient/*.rs patient/*.read launch/patient openid fhirUser offline_access"
PASSWORD = "correct horse battery"


@pytest.fixture
def app_config(app_config):
    app_config["CLIENT_STATUS_SECONDS"] = 0
    return app_config


@pytest.fixture
def people(client):
    """Wang (two linked records), Li (someone else), their observations, an appointment."""

    def post(resource):
        resp = client.post(f"/fhir/{resource['resourceType']}", json=resource)
        assert resp.status_code == 201, resp.get_json()
        return resp.get_json()["id"]

    wang = post({"resourceType": "Patient", "name": [{"family": "王", "given": ["军"]}]})
    wang_old = post(
        {
            "resourceType": "Patient",
            "name": [{"family": "王", "given": ["军"]}],
            "link": [{"other": {"reference": f"Patient/{wang}"}, "type": "seealso"}],
        }
    )
    li = post({"resourceType": "Patient", "name": [{"family": "李", "given": ["华"]}]})

    def obs(patient, value):
        return post(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": f"Patient/{patient}"},
                "valueQuantity": {"value": value, "unit": "/min"},
            }
        )

    ids = {
        "wang": wang,
        "wang_old": wang_old,
        "li": li,
        "wang_obs": obs(wang, 70),
        "wang_old_obs": obs(wang_old, 72),
        "li_obs": obs(li, 90),
    }
    ids["appointment"] = post(
        {
            "resourceType": "Appointment",
            "status": "booked",
            "start": "2026-12-20T09:00:00+08:00",
            "end": "2026-12-20T09:30:00+08:00",
            "participant": [{"actor": {"reference": f"Patient/{wang}"}, "status": "accepted"}],
        }
    )
    ids["careplan"] = post(
        {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "subject": {"reference": f"Patient/{wang}"},
        }
    )
    return ids


@pytest.fixture
def junxiu_app(hub):
    with writing(hub.engine) as conn:
        client, secret = clients.add_client(
            conn, "军休互联网+医养", APP_SCOPES, redirect_uris=[REDIRECT], public=True
        )
    assert secret is None
    return client


@pytest.fixture
def person(hub, people):
    with writing(hub.engine) as conn:
        return users.create_user(conn, "wang.jun", PASSWORD, (), patient=people["wang"])


def _field(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no {name} in the page"
    return m.group(1)


def sign_in_and_approve(browser: requests.Session, authorize_url: str, decision="approve"):
    """The person's part: the login form, then the consent page. Returns the redirect URL."""
    page = browser.get(authorize_url, allow_redirects=False)
    assert page.status_code == 200, page.text
    assert "军休互联网+医养" in page.text
    login = browser.post(
        urllib.parse.urljoin(authorize_url, "/auth/login"),
        data={
            "csrf_token": _field(page.text, "csrf_token"),
            "rid": _field(page.text, "rid"),
            "username": "wang.jun",
            "password": PASSWORD,
        },
        allow_redirects=False,
    )
    assert login.status_code == 303, login.text
    consent_page = browser.get(urllib.parse.urljoin(authorize_url, login.headers["Location"]))
    assert consent_page.status_code == 200
    assert 'id="approve"' in consent_page.text and "军休互联网+医养" in consent_page.text
    assert consent_page.headers["X-Frame-Options"] == "DENY"  # no clickjacking of consent
    done = browser.post(
        urllib.parse.urljoin(authorize_url, "/auth/consent"),
        data={
            "csrf_token": _field(consent_page.text, "csrf_token"),
            "rid": _field(consent_page.text, "rid"),
            "decision": decision,
        },
        allow_redirects=False,
    )
    assert done.status_code == 302, done.text
    return done.headers["Location"]


@pytest.fixture
def launch(live_server, junxiu_app):
    """``launch()``: fhirclient starts the launch, the person approves, fhirclient exchanges
    the code; the clients' connections are closed after the test."""
    made = []

    def start():
        smart = _launch(live_server, junxiu_app)
        made.append(smart)
        return smart

    yield start
    for smart in made:
        smart.server.session.close()


def _launch(live_server, junxiu_app):
    smart = fhirclient.FHIRClient(
        settings={
            "app_id": junxiu_app.client_id,
            "api_base": live_server.fhir,
            "redirect_uri": REDIRECT,
            "scope": "patient/*.rs openid fhirUser offline_access",
        }
    )
    authorize_url = smart.authorize_url
    assert authorize_url.startswith(live_server.url + "/auth/authorize?")
    with requests.Session() as browser:
        callback = sign_in_and_approve(browser, authorize_url)
    assert callback.startswith(REDIRECT + "?")
    smart.handle_callback(callback)
    return smart


def test_standalone_launch_reads_own_records_only(live_server, junxiu_app, person, people, launch):
    smart = launch()
    assert smart.patient_id == people["wang"]
    context = smart.launch_context
    assert set(context["scope"].split()) == {
        "patient/*.rs",
        "openid",
        "fhirUser",
        "offline_access",
        "launch/patient",
    }
    # The ID token: signed by the hub's published key, naming the person's Patient.
    keys = requests.get(live_server.url + "/auth/jwks").json()["keys"]
    claims = jwt.decode(
        context["id_token"],
        jwt.PyJWK(keys[0]).key,
        algorithms=["RS256"],
        audience=junxiu_app.client_id,
        issuer=live_server.url,
    )
    assert claims["fhirUser"] == f"Patient/{people['wang']}" and claims["sub"] == "wang.jun"

    server = smart.server
    assert Patient.read(people["wang"], server).name[0].family == "王"
    # Searches are the compartment of the person's records, the linked one included.
    found = list(Observation.where({"code": "8867-4"}).perform_resources_iter(server))
    assert {o.id for o in found} == {people["wang_obs"], people["wang_old_obs"]}
    assert Observation.read(people["wang_old_obs"], server).subject.reference.endswith(
        people["wang_old"]
    )
    # Nobody else's: another patient's records are absent, by read and by search.
    with pytest.raises(FHIRNotFoundException):
        Observation.read(people["li_obs"], server)
    with pytest.raises(FHIRNotFoundException):
        Patient.read(people["li"], server)
    others = Observation.where({"subject": f"Patient/{people['li']}"})
    assert list(others.perform_resources_iter(server)) == []
    # The lifetime file, the appointment and the care plan.
    bundle = server.request_json(f"Patient/{people['wang']}/$everything")
    got = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"]}
    assert ("Appointment", people["appointment"]) in got
    assert ("CarePlan", people["careplan"]) in got
    assert ("Observation", people["wang_old_obs"]) in got
    assert ("Observation", people["li_obs"]) not in got
    appointments = server.request_json("Appointment")
    assert [e["resource"]["id"] for e in appointments["entry"]] == [people["appointment"]]
    assert server.request_json(f"Appointment/{people['appointment']}")["status"] == "booked"
    with pytest.raises(FHIRNotFoundException):  # another person's lifetime file
        server.request_json(f"Patient/{people['li']}/$everything")
    # Read-only: patient/ scopes never write.
    token = smart.server.auth.access_token
    resp = requests.post(
        live_server.fhir + "/Observation",
        json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
    )
    assert resp.status_code == 403
    # The refresh token works once and is replaced.
    refresh = smart.server.auth.refresh_token
    assert smart.reauthorize()
    assert smart.server.auth.refresh_token != refresh
    again = requests.post(
        live_server.url + "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": junxiu_app.client_id,
        },
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_consent_recorded_and_enforced(
    live_server, junxiu_app, person, people, client, auth_headers, launch
):
    smart = launch()
    token = smart.server.auth.access_token
    consents = client.get(f"/fhir/Consent?patient=Patient/{people['wang']}").get_json()
    assert consents["total"] == 1
    consent = consents["entry"][0]["resource"]
    assert consent["status"] == "active"
    assert consent["scope"]["coding"][0]["code"] == "patient-privacy"
    assert consent["provision"]["type"] == "permit"
    actor = consent["provision"]["actor"][0]["reference"]
    assert actor["identifier"] == {"system": OAUTH_CLIENT, "value": junxiu_app.client_id}
    assert actor["display"] == "军休互联网+医养"
    assert consent["provision"]["period"]["end"] > consent["provision"]["period"]["start"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{live_server.fhir}/Patient/{people['wang']}", headers=bearer).ok

    # The person withdraws: the Consent becomes inactive, the app is stopped at once.
    consent["status"] = "inactive"
    assert client.put(f"/fhir/Consent/{consent['id']}", json=consent).status_code == 200
    denied = requests.get(f"{live_server.fhir}/Patient/{people['wang']}", headers=bearer)
    assert denied.status_code == 401
    assert "consent" in denied.json()["issue"][0]["diagnostics"]
    refreshed = requests.post(
        live_server.url + "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": smart.server.auth.refresh_token,
            "client_id": junxiu_app.client_id,
        },
    )
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"

    # Every step is in the audit trail: login, the Consent, the token, each read, the refusal.
    auditor = auth_headers("system/AuditEvent.rs")
    trail = client.get("/fhir/AuditEvent?_count=200", headers=auditor).get_json()["entry"]
    events = [
        (
            e["resource"]["subtype"][0]["code"],
            e["resource"]["agent"][0]["who"]["display"],
            e["resource"]["outcome"],
            e["resource"].get("outcomeDesc", ""),
        )
        for e in trail
    ]
    assert ("login", "wang.jun", "0", "") in [(a, b, c, "") for a, b, c, _ in events]
    assert any(i == "create" and who == "wang.jun" for i, who, _, _ in events)
    assert any(
        i == "login" and who == "wang.jun" and "token issued" in d for i, who, _, d in events
    )
    assert any(i == "read" and who == "wang.jun" and o == "0" for i, who, o, _ in events)
    assert any(i == "login" and o == "4" and "consent" in d for i, _, o, d in events)


def test_ended_or_deleted_consent_stops_the_app(
    live_server, junxiu_app, person, people, client, launch
):
    smart = launch()
    bearer = {"Authorization": f"Bearer {smart.server.auth.access_token}"}
    consent = client.get("/fhir/Consent").get_json()["entry"][0]["resource"]
    consent["provision"]["period"]["end"] = "2020-01-01T00:00:00+00:00"
    consent["provision"]["period"]["start"] = "2019-01-01T00:00:00+00:00"
    assert client.put(f"/fhir/Consent/{consent['id']}", json=consent).status_code == 200
    assert requests.get(f"{live_server.fhir}/Observation", headers=bearer).status_code == 401
    # A fresh approval makes a new Consent; deleting it stops that token too.
    smart = launch()
    bearer = {"Authorization": f"Bearer {smart.server.auth.access_token}"}
    assert requests.get(f"{live_server.fhir}/Observation", headers=bearer).status_code == 200
    newest = [
        e["resource"]
        for e in client.get("/fhir/Consent").get_json()["entry"]
        if e["resource"]["id"] != consent["id"]
    ][0]
    assert client.delete(f"/fhir/Consent/{newest['id']}").status_code in (200, 204)
    assert requests.get(f"{live_server.fhir}/Observation", headers=bearer).status_code == 401


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _authorize_params(app, live_server, **changes) -> dict:
    _verifier, challenge = _pkce()
    params = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT,
        "scope": "launch/patient patient/*.rs openid fhirUser",
        "state": "s-123",
        "aud": live_server.fhir,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(changes)
    return {k: v for k, v in params.items() if v is not None}


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None, "code_challenge": None}, "invalid_request"),
        ({"aud": "https://other.example/fhir"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "user/*.cruds system/*.rs"}, "invalid_scope"),
        ({"state": None}, "invalid_request"),
    ],
)
def test_authorize_refusals_go_back_to_the_app(live_server, junxiu_app, changes, error):
    params = _authorize_params(junxiu_app, live_server, **changes)
    resp = requests.get(live_server.url + "/auth/authorize", params=params, allow_redirects=False)
    assert resp.status_code == 302
    back = urllib.parse.urlsplit(resp.headers["Location"])
    query = dict(urllib.parse.parse_qsl(back.query))
    assert f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT
    assert query["error"] == error and "code" not in query
    assert query.get("state") == params.get("state")


@pytest.mark.parametrize(
    "changes",
    [
        {"client_id": "no-such-app"},
        {"redirect_uri": "https://evil.example/steal"},
        {"redirect_uri": REDIRECT + "/extra"},
    ],
)
def test_authorize_never_redirects_to_an_unregistered_uri(live_server, junxiu_app, changes):
    params = _authorize_params(junxiu_app, live_server, **changes)
    resp = requests.get(live_server.url + "/auth/authorize", params=params, allow_redirects=False)
    assert resp.status_code == 400
    assert "Location" not in resp.headers


def _code(live_server, app, browser=None, **changes) -> tuple[str, str, dict]:
    verifier, challenge = _pkce()
    params = _authorize_params(app, live_server, code_challenge=challenge, **changes)
    url = live_server.url + "/auth/authorize?" + urllib.parse.urlencode(params)
    if browser is None:
        with requests.Session() as own:
            back = sign_in_and_approve(own, url)
    else:
        back = sign_in_and_approve(browser, url)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(back).query))
    assert query["state"] == "s-123"
    return query["code"], verifier, params


def _exchange(live_server, app, code, verifier, **changes):
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": REDIRECT,
        "client_id": app.client_id,
    }
    data.update(changes)
    return requests.post(live_server.url + "/auth/token", data=data)


def test_code_exchange_checks_pkce_and_is_single_use(live_server, junxiu_app, person, people):
    code, verifier, _ = _code(live_server, junxiu_app)
    wrong = _exchange(live_server, junxiu_app, code, secrets.token_urlsafe(48))
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    # The failed attempt spent the code: a stolen code cannot be retried with guesses.
    assert _exchange(live_server, junxiu_app, code, verifier).json()["error"] == "invalid_grant"

    code, verifier, _ = _code(live_server, junxiu_app)
    other = _exchange(live_server, junxiu_app, code, verifier, redirect_uri=REDIRECT + "x")
    assert other.json()["error"] == "invalid_grant"

    code, verifier, _ = _code(live_server, junxiu_app)
    ok = _exchange(live_server, junxiu_app, code, verifier)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["patient"] == people["wang"] and body["token_type"] == "Bearer"
    assert "refresh_token" not in body  # no offline_access asked
    assert ok.headers["Cache-Control"] == "no-store"
    replay = _exchange(live_server, junxiu_app, code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # Only a public app may leave out client authentication.
    nobody = _exchange(live_server, junxiu_app, code, verifier, client_id="someone-else")
    assert nobody.status_code == 401 and nobody.json()["error"] == "invalid_client"


def test_login_form_needs_csrf_and_a_persons_account(live_server, junxiu_app, person, hub, request):
    with writing(hub.engine) as conn:
        users.create_user(conn, "staff.zhang", PASSWORD, ("archive-manager",))
    params = _authorize_params(junxiu_app, live_server)
    browser = requests.Session()
    request.addfinalizer(browser.close)
    page = browser.get(live_server.url + "/auth/authorize", params=params)
    form = {"rid": _field(page.text, "rid"), "username": "wang.jun", "password": PASSWORD}
    no_csrf = browser.post(live_server.url + "/auth/login", data=form, allow_redirects=False)
    assert no_csrf.status_code == 400
    form["csrf_token"] = _field(page.text, "csrf_token")
    staff = browser.post(
        live_server.url + "/auth/login",
        data={**form, "username": "staff.zhang"},
        allow_redirects=False,
    )
    assert staff.status_code == 401 and "login-error" in staff.text
    wrong = browser.post(
        live_server.url + "/auth/login",
        data={**form, "password": "not the password"},
        allow_redirects=False,
    )
    assert wrong.status_code == 401
    # A consent post without the CSRF token is refused too.
    ok = browser.post(live_server.url + "/auth/login", data=form, allow_redirects=False)
    assert ok.status_code == 303
    forged = browser.post(
        live_server.url + "/auth/consent",
        data={"rid": form["rid"], "decision": "approve"},
        allow_redirects=False,
    )
    assert forged.status_code == 400


def test_denying_sends_access_denied(live_server, junxiu_app, person, client):
    params = _authorize_params(junxiu_app, live_server)
    url = live_server.url + "/auth/authorize?" + urllib.parse.urlencode(params)
    with requests.Session() as browser:
        back = sign_in_and_approve(browser, url, decision="deny")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(back).query))
    assert query["error"] == "access_denied" and query["state"] == "s-123"
    assert client.get("/fhir/Consent").get_json()["total"] == 0


def test_revoked_app_stops(live_server, junxiu_app, person, people, hub):
    code, verifier, _ = _code(live_server, junxiu_app)
    token = _exchange(live_server, junxiu_app, code, verifier).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{live_server.fhir}/Patient/{people['wang']}", headers=bearer).ok
    with writing(hub.engine) as conn:
        assert clients.revoke_client(conn, junxiu_app.client_id)
    assert (
        requests.get(f"{live_server.fhir}/Patient/{people['wang']}", headers=bearer).status_code
        == 401
    )


def test_discovery_documents(live_server):
    config = requests.get(live_server.fhir + "/.well-known/smart-configuration").json()
    assert config["authorization_endpoint"] == live_server.url + "/auth/authorize"
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert {"authorization_code", "refresh_token", "client_credentials"} <= set(
        config["grant_types_supported"]
    )
    assert {
        "launch-standalone",
        "client-public",
        "client-confidential-asymmetric",
        "context-standalone-patient",
        "permission-patient",
        "permission-v1",
        "permission-v2",
        "sso-openid-connect",
    } <= set(config["capabilities"])
    oidc = requests.get(live_server.url + "/.well-known/openid-configuration").json()
    assert oidc["jwks_uri"] == live_server.url + "/auth/jwks"
    statement = requests.get(live_server.fhir + "/metadata").json()
    uris = statement["rest"][0]["security"]["extension"][0]
    assert {e["url"]: e["valueUri"] for e in uris["extension"]} == {
        "authorize": live_server.url + "/auth/authorize",
        "token": live_server.url + "/auth/token",
    }


def test_cli_registers_a_public_app_and_a_persons_account(
    tmp_path, database_url, monkeypatch, people
):
    from click.testing import CliRunner

    from hub.cli import cli

    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_INSTANCE_PATH", str(tmp_path))
    runner = CliRunner()
    out = runner.invoke(
        cli,
        [
            "clients",
            "add",
            "荣军康养",
            "--scopes",
            "patient/*.rs launch/patient openid fhirUser",
            "--redirect-uri",
            REDIRECT,
            "--public",
        ],
    )
    assert out.exit_code == 0, out.output
    assert '"public": true' in out.output and "client_secret" not in out.output
    no_uri = runner.invoke(cli, ["clients", "add", "x", "--scopes", "patient/*.rs", "--public"])
    assert no_uri.exit_code != 0 and "redirect-uri" in no_uri.output
    unknown = runner.invoke(
        cli,
        ["users", "add", "li.hua", "--patient", "no-such-patient", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert unknown.exit_code != 0 and "no Patient/no-such-patient" in unknown.output
    added = runner.invoke(
        cli,
        ["users", "add", "li.hua", "--patient", people["li"], "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert added.exit_code == 0, added.output
    assert f'"patient": "{people["li"]}"' in added.output
    both = runner.invoke(
        cli,
        ["users", "add", "x.y", "--patient", people["li"], "--role", "admin", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert both.exit_code != 0
