"""Lockout of the token endpoint after failed client authentications (per client, per address)."""

from __future__ import annotations

import base64
import concurrent.futures
import datetime as dt

import orjson
import pytest
import requests
from sqlalchemy import select

from hub import audit
from hub.security import clients
from hub.security import lockout
from hub.storage import schema as s
from hub.storage.db import writing

FORM = {"grant_type": "client_credentials"}


@pytest.fixture
def registered(hub):
    with writing(hub.engine) as conn:
        return clients.add_client(conn, "his-lock", "system/Patient.rs")


def _basic(cid: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()}


def _events(hub, outcome: str) -> list[dict]:
    t = s.audit_event
    with hub.engine.connect() as conn:
        rows = conn.execute(
            select(t.c.content).where(t.c.interaction == "login", t.c.outcome == outcome)
        )
        return [orjson.loads(content) for (content,) in rows]


def test_concurrent_wrong_secrets_lock_the_client_out(live_server, hub, registered):
    client, secret = registered
    url = live_server.url + "/auth/token"

    def attempt(_):
        resp = requests.post(url, data=FORM, headers=_basic(client.client_id, "wrong"), timeout=30)
        return resp.status_code, resp.headers.get("Retry-After"), resp.json()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(attempt, range(300)))
    statuses = [a[0] for a in answers]
    assert set(statuses) == {401, 429}
    limit = hub.security.client_lockout.max_failures
    assert limit <= statuses.count(401) < limit + 8  # the few already past the check when it locked
    for status, retry_after, body in answers:
        if status == 429:
            assert 1 <= int(retry_after) <= 60
            assert body["error"] == "invalid_client" and "retry in" in body["error_description"]
    right = requests.post(url, data=FORM, headers=_basic(client.client_id, secret), timeout=30)
    assert right.status_code == 429  # the right secret does not end a lockout
    lockouts = _events(hub, "8")
    assert len(lockouts) == 1
    assert lockouts[0]["outcomeDesc"].startswith(f"client {client.client_id} locked out for 60 s")
    assert lockouts[0]["agent"][0]["network"]["address"] == "127.0.0.1"
    # Every attempt is audited: the failures and the refusals.
    assert len(_events(hub, "4")) == 301


@pytest.fixture
def app_config(app_config, request):
    """The app's configuration, with a test's ``indirect`` settings on top."""
    app_config.update(getattr(request, "param", {}))
    return app_config


@pytest.mark.parametrize("app_config", [{"CLIENT_AUTH_MAX_FAILURES_PER_ADDRESS": 3}], indirect=True)
def test_an_address_guessing_client_ids_is_locked_out(anon_client, hub, registered):
    client, secret = registered
    for n in range(3):
        resp = anon_client.post("/auth/token", data=FORM, headers=_basic(f"guess-{n}", "x"))
        assert resp.status_code == 401
    refused = anon_client.post("/auth/token", data=FORM, headers=_basic(client.client_id, secret))
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.get_json()["error"] == "invalid_client"
    assert [e["outcomeDesc"].split(" locked")[0] for e in _events(hub, "8")] == [
        "address 127.0.0.1"
    ]


def test_a_success_clears_the_failures(anon_client, hub, registered):
    client, secret = registered
    for _ in range(2):
        bad = anon_client.post("/auth/token", data=FORM, headers=_basic(client.client_id, "x"))
        assert bad.status_code == 401
    ok = anon_client.post("/auth/token", data=FORM, headers=_basic(client.client_id, secret))
    assert ok.status_code == 200
    with hub.engine.connect() as conn:
        assert conn.execute(select(s.auth_failure)).all() == []
    for _ in range(2):  # counted from zero again: not locked at the third failure overall
        bad = anon_client.post("/auth/token", data=FORM, headers=_basic(client.client_id, "x"))
        assert bad.status_code == 401


def test_lockouts_in_a_row_back_off_up_to_the_cap(hub):
    policy = lockout.Policy(max_failures=2, max_per_address=0, base=60, cap=200)
    keys = policy.keys("c1", "10.0.0.1")
    assert keys == {"client c1": 2}
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    who = {"who": "client c1", "client": "c1"}

    def fail(at):
        event = audit.build_event(interaction="login", outcome="4", at=at, **who)
        return lockout.failed(hub.engine, keys, policy, event, who, now=at)

    assert fail(t0) == []
    assert fail(t0) == [("client c1", 60)]
    assert lockout.check(hub.engine, keys, t0 + dt.timedelta(seconds=30)).retry_after == 30
    assert fail(t0 + dt.timedelta(seconds=30)) == []  # raced the lock: not counted
    t1 = t0 + dt.timedelta(seconds=61)
    assert lockout.check(hub.engine, keys, t1).retry_after == 0
    assert fail(t1) == [] and fail(t1) == [("client c1", 120)]
    t2 = t1 + dt.timedelta(seconds=121)
    assert fail(t2) == [] and fail(t2) == [("client c1", 200)]  # capped
    lockout.clear(hub.engine, keys)
    t3 = t2 + dt.timedelta(seconds=201)
    assert fail(t3) == [] and fail(t3) == [("client c1", 60)]  # a success resets the backoff


@pytest.mark.parametrize("app_config", [{"CLIENT_AUTH_MAX_FAILURES": 2}], indirect=True)
def test_cli_unlock_lifts_a_lockout(anon_client, registered, database_url, tmp_path):
    from click.testing import CliRunner

    from hub.cli import cli

    client, secret = registered
    for _ in range(2):
        anon_client.post("/auth/token", data=FORM, headers=_basic(client.client_id, "x"))
    good = _basic(client.client_id, secret)
    assert anon_client.post("/auth/token", data=FORM, headers=good).status_code == 429
    env = {
        "HUB_DATABASE_URL": database_url,
        "HUB_INSTANCE_PATH": str(tmp_path),
        "HUB_LOAD_ENTRY_POINTS": "false",
    }
    result = CliRunner(env=env).invoke(cli, ["clients", "unlock", "his-lock"])
    assert result.exit_code == 0, result.output
    assert anon_client.post("/auth/token", data=FORM, headers=good).status_code == 200
