"""The examples of docs/smart.md run: the assertion code, and the curl requests, against a server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.parse
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from hub.security import clients
from hub.storage.db import writing
from tests.security.test_smart_launch import REDIRECT
from tests.security.test_smart_launch import _authorize_params
from tests.security.test_smart_launch import _pkce
from tests.security.test_smart_launch import junxiu_app  # noqa: F401 - a fixture
from tests.security.test_smart_launch import people  # noqa: F401 - a fixture
from tests.security.test_smart_launch import person  # noqa: F401 - a fixture
from tests.security.test_smart_launch import sign_in_and_approve

DOC = Path(__file__).resolve().parents[2] / "docs" / "smart.md"
EXAMPLE_HOST = "https://hub.example"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def _curl(marker: str) -> str:
    """The ``$ curl ...`` command (with its continuation lines) of the block naming ``marker``."""
    for block in _blocks("console"):
        lines = [line.strip() for line in block.splitlines()]
        start = next((i for i, line in enumerate(lines) if line.startswith("$ curl")), None)
        if start is None or marker not in block:
            continue
        command = []
        for line in lines[start:]:
            command.append(line.removeprefix("$ ").removesuffix("\\").strip())
            if not line.endswith("\\"):
                break
        return " ".join(command)
    raise AssertionError(f"docs/smart.md has no curl example with {marker}")


def _run(command: str, live_server, **env: str) -> dict:
    command = command.replace(EXAMPLE_HOST, live_server.url)
    done = subprocess.run(
        ["bash", "-c", command],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


@pytest.fixture
def app_config(app_config):
    app_config["CLIENT_STATUS_SECONDS"] = 0
    return app_config


def test_backend_services_example(live_server, hub):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    with writing(hub.engine) as conn:
        client, _ = clients.add_client(
            conn, "county-platform", "system/*.rs", jwks={"keys": [{**public, "kid": "rsa-1"}]}
        )
    [code] = [b for b in _blocks("python") if "def client_assertion" in b]
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - the documented example
    assertion = namespace["client_assertion"](
        client.client_id, pem, "rsa-1", live_server.url + "/auth/token"
    )
    command = _curl("client_assertion_type")
    body = _run(command, live_server, ASSERTION=assertion)
    assert body["scope"] == "system/Patient.rs" and body["token_type"] == "Bearer"
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert requests.get(live_server.fhir + "/Patient", headers=bearer).status_code == 200
    # The same assertion again: the documented replay refusal.
    with pytest.raises(subprocess.CalledProcessError):
        _run(command + " --fail", live_server, ASSERTION=assertion)


def test_code_exchange_example(live_server, junxiu_app, person, people):  # noqa: F811
    verifier, challenge = _pkce()
    params = _authorize_params(junxiu_app, live_server, code_challenge=challenge)
    with requests.Session() as browser:
        back = sign_in_and_approve(
            browser, live_server.url + "/auth/authorize?" + urllib.parse.urlencode(params)
        )
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(back).query))["code"]
    command = _curl("grant_type=authorization_code")
    assert REDIRECT in command
    body = _run(command, live_server, CODE=code, VERIFIER=verifier, CLIENT_ID=junxiu_app.client_id)
    assert body["patient"] == people["wang"] and body["token_type"] == "Bearer"
