"""The curl examples of docs/subscriptions.md, run against a live hub."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.subscriptions.conftest import drain
from tests.subscriptions.conftest import observation

DOC = Path(__file__).resolve().parents[2] / "docs" / "subscriptions.md"
PARTNER = "https://partner.example/fhir-hook"


def _examples() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return [b for b in blocks if b.lstrip().startswith("curl ")]


@pytest.fixture
def app_config(app_config, receiver):
    app_config["SUBSCRIPTION_ENDPOINTS"] = receiver.url + "/fhir-hook/"
    return app_config


def _run(example: str, live_server, receiver) -> dict:
    script = example.replace(PARTNER, receiver.url + "/fhir-hook")
    env = {**os.environ, "FHIR": live_server.fhir, "TOKEN": live_server.token}
    done = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(done.stdout)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_documented_examples(live_server, hub, receiver, client):
    created, refused = _examples()
    sub = _run(created, live_server, receiver)
    assert sub["resourceType"] == "Subscription" and sub["status"] == "active"
    oo = _run(refused, live_server, receiver)
    assert oo["resourceType"] == "OperationOutcome"
    assert oo["issue"][0]["expression"] == ["Subscription.channel.endpoint"]

    obs = client.post("/fhir/Observation", json=observation()).get_json()
    assert drain(hub)["sent"] == 1
    [post] = receiver.wait_for(1)
    assert post["path"] == "/fhir-hook/ward-3"
    assert post["headers"]["Authorization"] == "Bearer partner-secret"
    assert json.loads(post["body"])["id"] == obs["id"]
