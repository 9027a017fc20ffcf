"""Web-page accounts: roles and scopes, password hashing, lockout, the CLI."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
from sqlalchemy import select

from hub.security import users
from hub.storage import schema as s
from hub.storage.db import writing

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch):
    """argon2 at its lowest cost: these tests are about the account logic, not the hash."""
    from argon2 import PasswordHasher

    from hub.security import hashing

    monkeypatch.setattr(hashing, "_PASSWORDS", PasswordHasher(time_cost=1, memory_cost=64))


@pytest.fixture
def alice(hub):
    with writing(hub.engine) as conn:
        return users.create_user(conn, "alice", PASSWORD, ["archive-manager"], "330102")


def test_password_is_hashed_with_argon2(hub, alice):
    with hub.engine.connect() as conn:
        stored = conn.execute(select(s.users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_roles_give_scopes(alice):
    assert alice.scopes == "user/*.cruds"
    principal = alice.principal()
    assert principal.can("Patient", "c") and principal.jurisdiction == "330102"
    auditor = users.User("a", ("auditor",), frozenset(), None)
    assert auditor.scopes == "user/AuditEvent.rs"
    assert not auditor.principal().can("Patient", "r")


def test_verify_password(hub, alice):
    with writing(hub.engine) as conn:
        assert users.verify_password(conn, "alice", PASSWORD).username == "alice"
        with pytest.raises(users.InvalidLogin):
            users.verify_password(conn, "alice", "wrong password")
        with pytest.raises(users.InvalidLogin):
            users.verify_password(conn, "nobody", PASSWORD)


def test_lockout_after_repeated_failures(hub, alice):
    now = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
    lockout = dt.timedelta(minutes=15)
    with writing(hub.engine) as conn:
        for _ in range(4):
            with pytest.raises(users.InvalidLogin):
                users.verify_password(conn, "alice", "bad", 5, lockout, now)
        with pytest.raises(users.LockedOut) as err:
            users.verify_password(conn, "alice", "bad", 5, lockout, now)
        assert err.value.until == now + lockout
        # Locked: even the right password is refused until the lock ends.
        with pytest.raises(users.LockedOut):
            users.verify_password(
                conn, "alice", PASSWORD, 5, lockout, now + dt.timedelta(minutes=14)
            )
        later = now + dt.timedelta(minutes=16)
        assert users.verify_password(conn, "alice", PASSWORD, 5, lockout, later).username == "alice"


def test_success_resets_the_failure_count(hub, alice):
    with writing(hub.engine) as conn:
        for _ in range(4):
            with pytest.raises(users.InvalidLogin):
                users.verify_password(conn, "alice", "bad")
        users.verify_password(conn, "alice", PASSWORD)
        for _ in range(4):
            with pytest.raises(users.InvalidLogin):
                users.verify_password(conn, "alice", "bad")


def test_login_commits_failures_and_audits(hub, alice):
    for _ in range(2):
        with pytest.raises(users.InvalidLogin):
            users.login(hub.engine, "alice", "bad", max_failures=3)
    with pytest.raises(users.LockedOut):
        users.login(hub.engine, "alice", "bad", max_failures=3)
    with writing(hub.engine) as conn:
        assert users.unlock(conn, "alice")
    assert users.login(hub.engine, "alice", PASSWORD).username == "alice"
    with hub.engine.connect() as conn:
        rows = conn.execute(
            select(s.audit_event.c.content).where(s.audit_event.c.interaction == "login")
        ).all()
    outcomes = [orjson.loads(r.content)["outcome"] for r in rows]
    assert outcomes == ["4", "4", "4", "0"]


def test_create_user_rejects_bad_input(hub, alice):
    with writing(hub.engine) as conn:
        with pytest.raises(ValueError, match="exists"):
            users.create_user(conn, "alice", PASSWORD, ["admin"])
        with pytest.raises(ValueError, match="role"):
            users.create_user(conn, "bob", PASSWORD, ["superuser"])
        with pytest.raises(ValueError, match="10 characters"):
            users.create_user(conn, "bob", "short", ["admin"])
        with pytest.raises(ValueError, match="grants"):
            users.create_user(conn, "bob", PASSWORD, ["admin"], grants=["everything"])


def test_cli_users(database_url, tmp_path, app):
    from click.testing import CliRunner

    from hub.cli import cli

    runner = CliRunner(
        env={
            "HUB_DATABASE_URL": database_url,
            "HUB_INSTANCE_PATH": str(tmp_path),
            "HUB_LOAD_ENTRY_POINTS": "false",
        }
    )
    added = runner.invoke(
        cli,
        ["users", "add", "zhao", "--role", "auditor", "--jurisdiction", "3301", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert added.exit_code == 0, added.output
    listed = orjson.loads(runner.invoke(cli, ["users", "list"]).output)
    assert listed[0]["username"] == "zhao" and listed[0]["scopes"] == "user/AuditEvent.rs"
    assert "password" not in "".join(listed[0])
    assert runner.invoke(cli, ["users", "unlock", "zhao"]).exit_code == 0
    assert runner.invoke(cli, ["users", "unlock", "nobody"]).exit_code != 0
