"""The token endpoint, token verification, expiry, key rotation and client revocation."""

from __future__ import annotations

import base64
import datetime as dt

import pytest

from hub.security import clients
from hub.security import tokens
from hub.security.services import Security
from hub.storage.db import writing


@pytest.fixture
def app_config(app_config):
    app_config["CLIENT_STATUS_SECONDS"] = 0  # revocation visible at once
    return app_config


@pytest.fixture
def site_client(hub):
    with writing(hub.engine) as conn:
        client, secret = clients.add_client(
            conn, "his-1", "system/Patient.cruds system/Observation.rs", "his1", ["veteran-status"]
        )
    return client, secret


def _basic(cid: str, secret: str) -> dict:
    raw = base64.b64encode(f"{cid}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def test_client_secret_basic(anon_client, site_client):
    client, secret = site_client
    resp = anon_client.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "scope": "system/Patient.rs"},
        headers=_basic(client.client_id, secret),
    )
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["token_type"] == "Bearer" and body["scope"] == "system/Patient.rs"
    assert resp.headers["Cache-Control"] == "no-store"
    token = body["access_token"]
    ok = anon_client.get("/fhir/Patient/_history", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    denied = anon_client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert denied.status_code == 403  # the token has only the requested subset


def test_client_secret_post_gets_all_granted_scopes(anon_client, site_client):
    client, secret = site_client
    resp = anon_client.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": secret,
        },
    )
    assert resp.status_code == 200
    assert resp.get_json()["scope"] == "system/Patient.cruds system/Observation.rs"


@pytest.mark.parametrize(
    "form,status,error",
    [
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"grant_type": "client_credentials", "scope": "system/*.cruds"}, 400, "invalid_scope"),
        ({"grant_type": "client_credentials", "scope": "system/Patient.rsd"}, 400, "invalid_scope"),
        ({"grant_type": "client_credentials", "scope": "user/Patient.rs"}, 400, "invalid_scope"),
    ],
)
def test_token_request_errors(anon_client, site_client, form, status, error):
    client, secret = site_client
    resp = anon_client.post("/auth/token", data=form, headers=_basic(client.client_id, secret))
    assert resp.status_code == status
    assert resp.get_json()["error"] == error


def test_wrong_secret_and_unknown_client(anon_client, site_client):
    client, _ = site_client
    for cid, secret in ((client.client_id, "wrong"), ("nobody", "x")):
        resp = anon_client.post(
            "/auth/token", data={"grant_type": "client_credentials"}, headers=_basic(cid, secret)
        )
        assert resp.status_code == 401
        assert resp.get_json()["error"] == "invalid_client"
        assert resp.headers["WWW-Authenticate"].startswith("Basic")


def test_secret_is_stored_only_as_a_hash(hub, site_client):
    _, secret = site_client
    from sqlalchemy import select

    from hub.storage import schema as s

    with hub.engine.connect() as conn:
        stored = conn.execute(select(s.oauth_client.c.secret_hash)).scalar_one()
    assert secret not in stored and stored.startswith("scrypt$")


def test_revoked_client_is_refused(hub, anon_client, site_client):
    client, secret = site_client
    token = anon_client.post(
        "/auth/token",
        data={"grant_type": "client_credentials"},
        headers=_basic(client.client_id, secret),
    ).get_json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert anon_client.get("/fhir/Patient/_history", headers=bearer).status_code == 200
    with writing(hub.engine) as conn:
        assert clients.revoke_client(conn, "his-1")
    resp = anon_client.get("/fhir/Patient/_history", headers=bearer)
    assert resp.status_code == 401
    assert "revoked" in resp.get_json()["issue"][0]["diagnostics"]
    again = anon_client.post(
        "/auth/token",
        data={"grant_type": "client_credentials"},
        headers=_basic(client.client_id, secret),
    )
    assert again.status_code == 401


def test_expired_token(hub, anon_client):
    token = hub.security.mint("someone", "system/*.rs", kind="user", lifetime=-60)
    resp = anon_client.get("/fhir/Patient/_history", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401
    assert "expired" in resp.get_json()["issue"][0]["diagnostics"]
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


def test_token_signed_with_another_key_is_refused(hub, anon_client):
    import jwt

    forged = jwt.encode(
        {"sub": "x", "scope": "system/*.cruds", "iss": "fhirhub", "iat": 0, "exp": 2**40},
        b"a guessed key of thirty-two bytes!!",
        algorithm="HS256",
        headers={"kid": hub.security.keys.signing_key()[0]},
    )
    resp = anon_client.get("/fhir/Patient/_history", headers={"Authorization": f"Bearer {forged}"})
    assert resp.status_code == 401


def test_key_rotation_and_retirement(hub, anon_client):
    old_token = hub.security.mint("u", "system/*.rs", kind="user")
    old_kid = hub.security.keys.signing_key()[0]
    # Another process (its own cache) learns the rotated key on first sight of its kid.
    other = Security(hub.engine, hub.config)
    other.keys.signing_key()
    new_kid = hub.security.keys.rotate()
    assert new_kid != old_kid
    new_token = hub.security.mint("u", "system/*.rs", kind="user")
    assert tokens.decode(other.keys, new_token)["sub"] == "u"
    for token in (old_token, new_token):
        headers = {"Authorization": f"Bearer {token}"}
        assert anon_client.get("/fhir/Patient/_history", headers=headers).status_code == 200
    assert hub.security.keys.retire(old_kid)
    old = anon_client.get(
        "/fhir/Patient/_history", headers={"Authorization": f"Bearer {old_token}"}
    )
    assert old.status_code == 401
    new = anon_client.get(
        "/fhir/Patient/_history", headers={"Authorization": f"Bearer {new_token}"}
    )
    assert new.status_code == 200


def test_verification_needs_no_database(hub):
    """A token is checked with the cached keys alone: no connection per request."""
    from sqlalchemy import event

    token = hub.security.mint("u", "system/*.rs", kind="user", grants=["*"])
    header = f"Bearer {token}"
    hub.security.authenticate(header, None)  # warm the key cache
    checkouts = []

    def count(*_args):
        checkouts.append(1)

    event.listen(hub.engine, "checkout", count)
    try:
        for _ in range(50):
            assert hub.security.authenticate(header, None) is not None
    finally:
        event.remove(hub.engine, "checkout", count)
    assert checkouts == []


def test_cli_clients_and_token(database_url, tmp_path, app, anon_client):
    import orjson
    from click.testing import CliRunner

    from hub.cli import cli

    runner = CliRunner(
        env={
            "HUB_DATABASE_URL": database_url,
            "HUB_INSTANCE_PATH": str(tmp_path),
            "HUB_LOAD_ENTRY_POINTS": "false",
        }
    )
    result = runner.invoke(
        cli, ["clients", "add", "lab-1", "--site", "lab1", "--scopes", "system/Observation.cruds"]
    )
    assert result.exit_code == 0, result.output
    added = orjson.loads(result.output)
    assert added["client_secret"] and added["site"] == "lab1"
    listed = orjson.loads(runner.invoke(cli, ["clients", "list"]).output)
    assert [c["name"] for c in listed] == ["lab-1"] and "client_secret" not in listed[0]
    token = runner.invoke(cli, ["token", "lab-1", "--scopes", "system/Observation.rs"]).output
    resp = anon_client.get(
        "/fhir/Observation/_history", headers={"Authorization": f"Bearer {token.strip()}"}
    )
    assert resp.status_code == 200
    too_much = runner.invoke(cli, ["token", "lab-1", "--scopes", "system/*.rs"])
    assert too_much.exit_code != 0
    assert runner.invoke(cli, ["clients", "revoke", "lab-1"]).exit_code == 0
    assert runner.invoke(cli, ["token", "lab-1"]).exit_code != 0


@pytest.fixture
def wildcard_client(hub):
    with writing(hub.engine) as conn:
        return clients.add_client(conn, "operator", "system/*.cruds", None, ["*"])


def _token(anon_client, client, secret, scope):
    return anon_client.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        headers=_basic(client.client_id, secret),
    )


def test_wildcard_grant_cannot_be_escalated_to_the_audit_trail(anon_client, wildcard_client):
    client, secret = wildcard_client
    resp = _token(anon_client, client, secret, "system/AuditEvent.rs")
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_scope"
    mixed = _token(anon_client, client, secret, "system/AuditEvent.rs system/Patient.rs")
    assert mixed.status_code == 200 and mixed.get_json()["scope"] == "system/Patient.rs"
    bearer = {"Authorization": f"Bearer {mixed.get_json()['access_token']}"}
    assert anon_client.get("/fhir/AuditEvent", headers=bearer).status_code == 403
    assert anon_client.get("/fhir/Patient", headers=bearer).status_code == 200


def test_scopes_do_not_cross_contexts(hub, anon_client):
    with writing(hub.engine) as conn:
        client, secret = clients.add_client(conn, "mixed", "patient/*.rs system/Patient.c")
    resp = _token(anon_client, client, secret, "system/Observation.rs")
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_scope"
    assert _token(anon_client, client, secret, "system/Patient.c").status_code == 200


def test_unknown_scopes_are_left_out_and_the_issued_scope_says_so(hub, anon_client, site_client):
    client, secret = site_client
    resp = _token(anon_client, client, secret, "launch/patient openid system/Patient.rs profile")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["scope"] == "system/Patient.rs"
    bearer = {"Authorization": f"Bearer {resp.get_json()['access_token']}"}
    assert anon_client.get("/fhir/Patient", headers=bearer).status_code == 200
    nothing = _token(anon_client, client, secret, "openid launch/patient")
    assert nothing.status_code == 400 and nothing.get_json()["error"] == "invalid_scope"
    assert any(
        "(not granted: launch/patient openid profile)" in e.get("outcomeDesc", "")
        for e in _login_events(hub)
    )


def test_fhirclient_client_credentials_with_launch_scope(live_server, hub):
    """The ``fhirclient`` library adds ``launch/patient`` to what it asks for."""
    from fhirclient import client as smart_client
    from fhirclient.auth import FHIROAuth2Auth
    from fhirclient.models.patient import Patient

    with writing(hub.engine) as conn:
        client, secret = clients.add_client(conn, "smart-app", "system/Patient.rs")
    smart = smart_client.FHIRClient(
        settings={
            "app_id": client.client_id,
            "app_secret": secret,
            "api_base": live_server.fhir + "/",
            "scope": "system/Patient.rs openid",
        }
    )
    assert smart.desired_scope.split()[0] == "launch/patient"
    # The hub offers client credentials only: the library's OAuth2 auth, given the token URL.
    smart.server.auth = FHIROAuth2Auth(
        state={
            "app_id": client.client_id,
            "app_secret": secret,
            "token_uri": live_server.url + "/auth/token",
        }
    )
    smart.authorize()
    assert smart.ready
    live_server.session().put(
        live_server.fhir + "/Patient/smart-1", json={"resourceType": "Patient", "id": "smart-1"}
    ).raise_for_status()
    assert Patient.read("smart-1", smart.server).id == "smart-1"


def _login_events(hub) -> list[dict]:
    import orjson
    from sqlalchemy import select

    from hub.storage import schema as s

    t = s.audit_event
    with hub.engine.connect() as conn:
        rows = conn.execute(select(t.c.content).where(t.c.interaction == "login").order_by(t.c.seq))
        return [orjson.loads(content) for (content,) in rows]


def test_cli_token_negotiates_like_the_endpoint(database_url, tmp_path, app, anon_client):
    from click.testing import CliRunner

    from hub.cli import cli

    runner = CliRunner(
        env={
            "HUB_DATABASE_URL": database_url,
            "HUB_INSTANCE_PATH": str(tmp_path),
            "HUB_LOAD_ENTRY_POINTS": "false",
        }
    )
    added = runner.invoke(cli, ["clients", "add", "ops", "--scopes", "system/*.cruds"])
    assert added.exit_code == 0, added.output
    refused = runner.invoke(cli, ["token", "ops", "--scopes", "system/AuditEvent.rs"])
    assert refused.exit_code != 0 and "none of the scopes" in refused.output
    partial = runner.invoke(cli, ["token", "ops", "--scopes", "system/AuditEvent.rs openid"])
    assert partial.exit_code != 0
    mixed = runner.invoke(
        cli, ["token", "ops", "--scopes", "system/AuditEvent.rs system/Patient.rs"]
    )
    assert mixed.exit_code == 0, mixed.output
    assert "left out: system/AuditEvent.rs" in mixed.stderr
    bearer = {"Authorization": f"Bearer {mixed.stdout.strip()}"}
    assert anon_client.get("/fhir/AuditEvent", headers=bearer).status_code == 403
    assert anon_client.get("/fhir/Patient", headers=bearer).status_code == 200


def test_a_remembered_token_is_still_refused_once_expired_or_revoked(hub, anon_client):
    """Tokens verified once are not verified again, but expiry and revocation still hold."""
    import time

    from hub.storage.accounts import ClientStore

    with writing(hub.engine) as conn:
        client, _secret = clients.add_client(conn, "cached", "system/*.rs", None, ["*"])
    token = hub.security.mint(client.client_id, "system/*.rs", grants=["*"], lifetime=600)
    bearer = {"Authorization": f"Bearer {token}"}
    remembered = hub.security.verified_tokens
    assert anon_client.get("/fhir/Patient", headers=bearer).status_code == 200
    assert remembered.get(token) is not None
    # A later use does not check the signature again: a forged copy would not be in the cache.
    assert anon_client.get("/fhir/Patient", headers=bearer).status_code == 200
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert remembered.get(tampered) is None
    assert anon_client.get("/fhir/Patient", headers=headers(tampered)).status_code == 401

    # Expiry is checked on every use (the clock moved past exp + leeway).
    remembered.clock = lambda: time.time() + 600 + 6
    resp = anon_client.get("/fhir/Patient", headers=bearer)
    assert resp.status_code == 401
    assert "expired" in resp.get_json()["issue"][0]["diagnostics"]
    assert remembered.get(token) is None
    remembered.clock = time.time

    # So is the client's status (CLIENT_STATUS_SECONDS is 0 here).
    assert anon_client.get("/fhir/Patient", headers=bearer).status_code == 200
    assert remembered.get(token) is not None
    with writing(hub.engine) as conn:
        ClientStore.set(conn, client.client_id, revoked_at=dt.datetime.now(dt.UTC))
    resp = anon_client.get("/fhir/Patient", headers=bearer)
    assert resp.status_code == 401
    assert "revoked" in resp.get_json()["issue"][0]["diagnostics"]


def headers(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_remembered_tokens_are_bounded():
    cache = tokens.VerifiedTokens(size=3)
    for n in range(5):
        cache.put(f"t{n}", {"exp": 2**40}, "kid")
    assert len(cache) == 3
    assert cache.get("t0") is None and cache.get("t1") is None
    assert cache.get("t4") is not None
    off = tokens.VerifiedTokens(size=0)
    off.put("t", {"exp": 2**40}, "kid")
    assert off.get("t") is None
