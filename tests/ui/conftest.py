"""Dashboard fixtures: a crafted population, an audit run, users and a logged-in client."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from hub.completeness import batch
from hub.completeness import denominators
from hub.completeness.periods import Period
from hub.storage.db import writing
from tests.completeness import population

PASSWORD = "correct horse"


def login(client, username: str, password: str = PASSWORD):
    page = client.get("/ui/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return client.post(
        "/ui/login", data={"username": username, "password": password, "csrf_token": token}
    )


def csrf_of(client) -> str:
    page = client.get("/ui/login")
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch):
    """Argon2 at its smallest cost: the tests check the logic, not the hash's strength."""
    from argon2 import PasswordHasher

    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    from hub.security import hashing

    monkeypatch.setattr(hashing, "_PASSWORDS", cheap)


@pytest.fixture
def audited_hub(hub):
    population.load(hub)
    batch.run_audit(hub.engine, Period.year(2024), "370203", as_of=dt.date(2025, 1, 10))
    batch.run_audit(hub.engine, Period.year(2025), "370203", as_of=dt.date(2025, 12, 1))
    with writing(hub.engine) as conn:
        denominators.set_value(conn, "370203", 2025, "resident-population", 10, "yearbook 2025")
        from hub.security.users import create_user

        create_user(conn, "admin", PASSWORD, ["admin"], "")
        create_user(conn, "township", PASSWORD, ["archive-manager"], "370203001")
        create_user(conn, "engineer", PASSWORD, ["integration-engineer"], "")
    return hub


@pytest.fixture
def admin(client, audited_hub):
    assert login(client, "admin").status_code == 302
    return client
