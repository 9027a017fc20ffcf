"""SMART Backend Services: private_key_jwt client assertions (RS384, ES384) at the token endpoint."""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa
from fhirclient import client as fhirclient
from fhirclient.models.patient import Patient

from hub.security import assertions
from hub.security import clients
from hub.storage.db import writing

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _ec_key():
    return ec.generate_private_key(ec.SECP384R1())


def public_jwk(private, kid: str, alg: str) -> dict:
    algorithm = jwt.algorithms.RSAAlgorithm if alg == "RS384" else jwt.algorithms.ECAlgorithm
    jwk = json.loads(algorithm.to_jwk(private.public_key()))
    return {**jwk, "kid": kid, "alg": alg}


@pytest.fixture(scope="module")
def keys():
    return {"RS384": _rsa_key(), "ES384": _ec_key(), "other": _rsa_key()}


@pytest.fixture
def app_config(app_config):
    app_config["CLIENT_STATUS_SECONDS"] = 0
    return app_config


@pytest.fixture
def service(hub, keys):
    """A backend service registered with its public JWK Set (RS384 and ES384 keys)."""
    jwks = {
        "keys": [
            public_jwk(keys["RS384"], "rsa-1", "RS384"),
            public_jwk(keys["ES384"], "ec-1", "ES384"),
        ]
    }
    with writing(hub.engine) as conn:
        client, secret = clients.add_client(conn, "county-platform", "system/*.rs", jwks=jwks)
    assert secret is None
    return client


def assertion(client_id, key, kid, alg, aud, **changes) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "exp": now + 240,
        "jti": str(uuid.uuid4()),
    }
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    headers = {"kid": kid, "typ": "JWT"}
    headers.update(changes.pop("_headers", {}) if "_headers" in changes else {})
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def token_request(live_server, signed, scope="system/Patient.rs", **extra):
    data = {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed,
    }
    data.update(extra)
    return requests.post(live_server.url + "/auth/token", data=data)


@pytest.mark.parametrize(("alg", "kid"), [("RS384", "rsa-1"), ("ES384", "ec-1")])
def test_signed_assertion_gets_a_token(live_server, service, keys, alg, kid):
    aud = live_server.url + "/auth/token"
    resp = token_request(live_server, assertion(service.client_id, keys[alg], kid, alg, aud))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["scope"] == "system/Patient.rs" and body["token_type"] == "Bearer"
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert requests.get(live_server.fhir + "/Patient", headers=bearer).status_code == 200


def test_fhirclient_backend_flow(live_server, service, keys, client):
    created = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "male"})
    pid = created.get_json()["id"]
    signed = assertion(
        service.client_id, keys["ES384"], "ec-1", "ES384", live_server.url + "/auth/token"
    )
    smart = fhirclient.FHIRClient(
        settings={
            "app_id": service.client_id,
            "api_base": live_server.fhir,
            "jwt_token": signed,
            "scope": "system/Patient.rs",
        }
    )
    try:
        smart.prepare()
        smart.authorize()
        assert smart.ready
        assert Patient.read(pid, smart.server).gender == "male"
    finally:
        smart.server.session.close()


REPLAY = "was used before"


def test_replayed_assertion_is_refused(live_server, service, keys):
    aud = live_server.url + "/auth/token"
    signed = assertion(service.client_id, keys["RS384"], "rsa-1", "RS384", aud)
    assert token_request(live_server, signed).status_code == 200
    again = token_request(live_server, signed)
    assert again.status_code == 401
    assert again.json()["error"] == "invalid_client" and REPLAY in again.json()["error_description"]


def test_concurrent_replay_gets_one_token(live_server, service, keys):
    aud = live_server.url + "/auth/token"
    signed = assertion(service.client_id, keys["RS384"], "rsa-1", "RS384", aud)
    start = threading.Barrier(6)
    codes: list[int] = []

    def send():
        start.wait()
        codes.append(token_request(live_server, signed).status_code)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200, 401, 401, 401, 401, 401]


@pytest.mark.parametrize(
    ("case", "text"),
    [
        ("wrong-aud", "aud must be the token endpoint"),
        ("exp-too-far", "more than 300 s"),
        ("expired", "expired"),
        ("sub-not-iss", "sub must equal its iss"),
        ("no-jti", "jti"),
        ("other-key", "does not verify"),
        ("unknown-kid", "matches kid"),
        ("rs256", "must be signed with RS384 or ES384"),
        ("hs384", "must be signed with RS384 or ES384"),
        ("jku", "jku"),
        ("unknown-client", "Unknown client"),
        ("not-a-jwt", "not a JWT"),
    ],
)
def test_assertion_failures(live_server, service, keys, case, text):
    cid, aud = service.client_id, live_server.url + "/auth/token"
    now = int(time.time())
    make = {
        "wrong-aud": lambda: assertion(cid, keys["RS384"], "rsa-1", "RS384", live_server.fhir),
        "exp-too-far": lambda: assertion(cid, keys["RS384"], "rsa-1", "RS384", aud, exp=now + 3600),
        "expired": lambda: assertion(cid, keys["RS384"], "rsa-1", "RS384", aud, exp=now - 60),
        "sub-not-iss": lambda: assertion(cid, keys["RS384"], "rsa-1", "RS384", aud, sub="x"),
        "no-jti": lambda: assertion(cid, keys["RS384"], "rsa-1", "RS384", aud, jti=None),
        "other-key": lambda: assertion(cid, keys["other"], "rsa-1", "RS384", aud),
        "unknown-kid": lambda: assertion(cid, keys["RS384"], "nope", "RS384", aud),
        "rs256": lambda: assertion(cid, keys["RS384"], "rsa-1", "RS256", aud),
        "hs384": lambda: jwt.encode(
            {"iss": cid, "sub": cid, "aud": aud, "exp": now + 60, "jti": "h"},
            "a-shared-secret-long-enough-for-hmac-sha-384-signatures!",
            algorithm="HS384",
        ),
        "jku": lambda: jwt.encode(
            {"iss": cid, "sub": cid, "aud": aud, "exp": now + 60, "jti": "j"},
            keys["RS384"],
            algorithm="RS384",
            headers={"kid": "rsa-1", "jku": "https://attacker.example/jwks"},
        ),
        "unknown-client": lambda: assertion("nobody", keys["RS384"], "rsa-1", "RS384", aud),
        "not-a-jwt": lambda: "not.a.jwt",
    }[case]
    resp = token_request(live_server, make())
    assert resp.status_code == 401, resp.text
    body = resp.json()
    assert body["error"] == "invalid_client" and text in body["error_description"]


def test_wrong_assertion_type_and_revoked_client(live_server, service, keys, hub):
    aud = live_server.url + "/auth/token"
    signed = assertion(service.client_id, keys["RS384"], "rsa-1", "RS384", aud)
    wrong = token_request(live_server, signed, client_assertion_type="urn:x")
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_request"
    with writing(hub.engine) as conn:
        clients.revoke_client(conn, service.client_id)
    revoked = token_request(live_server, signed)
    assert revoked.status_code == 401 and revoked.json()["error"] == "invalid_client"


def test_a_client_with_keys_has_no_secret(live_server, service):
    resp = requests.post(
        live_server.url + "/auth/token",
        data={"grant_type": "client_credentials"},
        auth=(service.client_id, "!"),
    )
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"


def test_failed_assertions_lock_the_client_out(live_server, service, keys, app_config):
    aud = live_server.url + "/auth/token"
    for _ in range(10):  # CLIENT_AUTH_MAX_FAILURES
        bad = assertion(service.client_id, keys["other"], "rsa-1", "RS384", aud)
        assert token_request(live_server, bad).status_code == 401
    good = assertion(service.client_id, keys["RS384"], "rsa-1", "RS384", aud)
    locked = token_request(live_server, good)
    assert locked.status_code == 429 and locked.json()["error"] == "invalid_client"


class _JwksServer:
    """A partner's JWK Set over plain HTTP on a loopback port, counting fetches."""

    def __init__(self, jwks: dict):
        owner = self
        self.fetches = 0
        self.jwks = jwks

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server hook
                owner.fetches += 1
                body = json.dumps(owner.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def partner_jwks(keys):
    server = _JwksServer({"keys": [public_jwk(keys["ES384"], "ec-1", "ES384")]})
    yield server
    server.close()


@pytest.fixture
def jwks_allowed(app_config, request):
    # The partner's set is served on loopback: allowed by prefix, as an operator would list it.
    app_config["JWKS_URI_ALLOWED"] = "http://127.0.0.1:"
    return app_config


def test_jwks_uri_fetched_and_cached(jwks_allowed, partner_jwks, live_server, hub, keys):
    with writing(hub.engine) as conn:
        client, _ = clients.add_client(conn, "partner", "system/*.rs", jwks_uri=partner_jwks.url)
    aud = live_server.url + "/auth/token"
    for _ in range(2):
        signed = assertion(client.client_id, keys["ES384"], "ec-1", "ES384", aud)
        assert token_request(live_server, signed).status_code == 200
    assert partner_jwks.fetches == 1  # cached for JWKS_CACHE_SECONDS


def test_jwks_uri_not_allowed_is_never_fetched(partner_jwks, live_server, hub, keys):
    with writing(hub.engine) as conn:
        client, _ = clients.add_client(conn, "partner", "system/*.rs", jwks_uri=partner_jwks.url)
    signed = assertion(
        client.client_id, keys["ES384"], "ec-1", "ES384", live_server.url + "/auth/token"
    )
    resp = token_request(live_server, signed)
    assert resp.status_code == 401 and "only https" in resp.json()["error_description"]
    assert partner_jwks.fetches == 0


def test_https_jwks_uri_on_a_private_address_is_refused():
    cache = assertions.JwksCache(fetch=lambda uri: pytest.fail(f"fetched {uri}"))
    for uri in ("https://127.0.0.1/jwks", "https://10.1.2.3/jwks", "https://[::1]/jwks"):
        with pytest.raises(assertions.InvalidClient, match="non-public address"):
            cache.get(uri)


def test_registration_refuses_private_keys_and_bad_sets(hub, keys):
    private = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(keys["RS384"]))
    with writing(hub.engine) as conn:
        with pytest.raises(ValueError, match="private key"):
            clients.add_client(conn, "leaky", "system/*.rs", jwks={"keys": [private]})
        with pytest.raises(ValueError, match="JWK Set"):
            clients.add_client(conn, "empty", "system/*.rs", jwks={"keys": []})
        with pytest.raises(ValueError, match="https"):
            clients.add_client(conn, "ftp", "system/*.rs", jwks_uri="ftp://x.example/jwks")


def test_cli_registers_a_jwks_file(tmp_path, database_url, monkeypatch, keys):
    from click.testing import CliRunner

    from hub.cli import cli

    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_INSTANCE_PATH", str(tmp_path))
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [public_jwk(keys["RS384"], "rsa-1", "RS384")]}))
    out = CliRunner().invoke(
        cli, ["clients", "add", "county", "--scopes", "system/*.rs", "--jwks", str(path)]
    )
    assert out.exit_code == 0, out.output
    assert '"jwks_kids": [\n    "rsa-1"\n  ]' in out.output and "client_secret" not in out.output


def test_jti_rows_expire_with_their_assertion(hub):
    import datetime as dt

    from hub.storage.accounts import JtiStore

    store = JtiStore(hub.engine)
    now = dt.datetime.now(dt.UTC)
    assert store.first_use("client-1 jti-1", now + dt.timedelta(seconds=60), now)
    assert not store.first_use("client-1 jti-1", now + dt.timedelta(seconds=60), now)
    assert store.first_use("client-2 jti-1", now + dt.timedelta(seconds=60), now)  # per client
    later = now + dt.timedelta(seconds=61)  # the assertion has expired: its row is dropped
    assert store.first_use("client-1 jti-1", later + dt.timedelta(seconds=60), later)
