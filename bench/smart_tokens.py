"""SMART costs: private_key_jwt token requests, and a patient app's read against a system token's.

    python bench/smart_tokens.py [--db URL] [--repeat N]

In process (the Flask test client, no network): the token endpoint answering a client assertion
signed RS384 and ES384 (signature check, ``jti`` stored), the client-secret grant for
comparison (its scrypt hash check), and ``GET /fhir/Patient/ID`` with a patient-facing app's
token (the Consent read and the linked records resolved on every request) against the same read
with a ``system/`` token. Prints p50/p95 in milliseconds. Default database: a temporary SQLite
file; with ``--db postgresql+psycopg://...`` the tables of that database are dropped first.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import secrets
import statistics
import tempfile
import time
import urllib.parse
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa

from hub.app import create_app
from hub.app import get_hub
from hub.security import clients
from hub.security import users
from hub.storage import schema as S

REDIRECT = "https://app.example/callback"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _times(fn, repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def _field(html: str, name: str) -> str:
    return re.search(rf'name="{name}" value="([^"]*)"', html).group(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default=None)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    folder = tempfile.mkdtemp()
    url = args.db or f"sqlite:///{folder}/bench.db"
    if args.db:
        import sqlalchemy as sa

        engine = sa.create_engine(args.db)
        S.metadata.drop_all(engine)
        engine.dispose()
    app = create_app(
        {
            "DATABASE_URL": url,
            "INSTANCE_PATH": folder,
            "LOAD_ENTRY_POINTS": False,
            "RATE_LIMIT_PER_SECOND": 0,
        }
    )
    hub = get_hub(app)
    web = app.test_client()
    base = "http://localhost"
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP384R1())
    jwks = {
        "keys": [
            {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key())), "kid": "r"},
            {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key())), "kid": "e"},
        ]
    }
    system_token = hub.security.mint("bench", "system/*.rs", "user")
    admin = {"Authorization": f"Bearer {hub.security.mint('admin', 'system/*.cruds', 'user')}"}
    pid = web.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=admin).get_json()[
        "id"
    ]
    with hub.engine.begin() as conn:
        service, _ = clients.add_client(conn, "service", "system/*.rs", jwks=jwks)
        secret_client, secret = clients.add_client(conn, "secret", "system/*.rs")
        app_client, _ = clients.add_client(
            conn, "app", "patient/*.rs", redirect_uris=[REDIRECT], public=True
        )
        users.create_user(conn, "person", "a long password", (), patient=pid)

    def assertion_request(key, kid, alg):
        claims = {
            "iss": service.client_id,
            "sub": service.client_id,
            "aud": f"{base}/auth/token",
            "exp": int(time.time()) + 240,
            "jti": str(uuid.uuid4()),
        }
        signed = jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})
        resp = web.post(
            "/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": signed,
            },
        )
        assert resp.status_code == 200, resp.get_json()

    def secret_request():
        resp = web.post(
            "/auth/token",
            data={"grant_type": "client_credentials"},
            headers={
                "Authorization": "Basic "
                + base64.b64encode(f"{secret_client.client_id}:{secret}".encode()).decode()
            },
        )
        assert resp.status_code == 200

    # A patient app's token, through the pages as a browser would go.
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    )
    query = {
        "response_type": "code",
        "client_id": app_client.client_id,
        "redirect_uri": REDIRECT,
        "scope": "patient/*.rs",
        "state": "s",
        "aud": f"{base}/fhir",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page = web.get("/auth/authorize?" + urllib.parse.urlencode(query)).get_data(as_text=True)
    rid = _field(page, "rid")
    form = {"csrf_token": _field(page, "csrf_token"), "rid": rid}
    web.post("/auth/login", data={**form, "username": "person", "password": "a long password"})
    back = web.post("/auth/consent", data={**form, "decision": "approve"}).headers["Location"]
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(back).query))["code"]
    app_token = web.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": REDIRECT,
            "client_id": app_client.client_id,
        },
    ).get_json()["access_token"]

    def read(token):
        resp = web.get(f"/fhir/Patient/{pid}", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200

    rows = [
        ("token, private_key_jwt RS384", lambda: assertion_request(rsa_key, "r", "RS384")),
        ("token, private_key_jwt ES384", lambda: assertion_request(ec_key, "e", "ES384")),
        ("token, client_secret_basic", secret_request),
        ("read Patient, system/ token", lambda: read(system_token)),
        ("read Patient, patient app token (consent + links)", lambda: read(app_token)),
    ]
    backend = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"{backend}, {args.repeat} requests each (ms, including signing the assertion):")
    for name, fn in rows:
        fn()  # warm-up
        p50, p95 = _times(fn, args.repeat)
        print(f"  {name:52s} p50 {p50:7.2f}  p95 {p95:7.2f}")
    hub.close()


if __name__ == "__main__":
    main()
