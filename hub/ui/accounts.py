"""Dashboard accounts: a stand-in for ``hub.security.users`` with the same functions.

``create_user(conn, username, password, roles, jurisdiction)`` and
``verify_password(conn, username, password)`` (raising :class:`LoginError` on
a wrong password, an unknown user or a locked account) over the ``ui_user``
table, with Argon2id password hashes. When ``hub.security.users`` is present
its functions are used instead (see :func:`backend`), so switching over is one
import. ``csrf_token`` / ``check_csrf`` protect the dashboard's POST forms.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError
from argon2.exceptions import VerificationError
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.engine import Connection

from hub.storage import schema as s

MAX_FAILURES = 5  # consecutive wrong passwords before the account locks
LOCK_MINUTES = 15
ROLES = ("archive-manager", "integration", "admin")
_hasher = PasswordHasher()
# Verified against when the user does not exist, so that both cases take as long.
_DUMMY_HASH = _hasher.hash("not a password")


class LoginError(Exception):
    """Login refused; ``reason`` is ``invalid`` or ``locked`` (never says which part was wrong)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class User:
    username: str
    roles: tuple[str, ...]
    jurisdiction: str  # "" = every jurisdiction


def create_user(
    conn: Connection, username: str, password: str, roles, jurisdiction: str = ""
) -> User:
    """Create (or replace) an account; ``roles`` from :data:`ROLES`."""
    roles = tuple(roles.split() if isinstance(roles, str) else roles)
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise ValueError(f"unknown roles {unknown or roles!r}; known: {', '.join(ROLES)}")
    if len(password) < 8:
        raise ValueError("passwords have at least 8 characters")
    conn.execute(delete(s.ui_user).where(s.ui_user.c.username == username))
    conn.execute(
        insert(s.ui_user).values(
            username=username,
            password_hash=_hasher.hash(password),
            roles=" ".join(roles),
            jurisdiction=jurisdiction or "",
            failed_logins=0,
            created_at=dt.datetime.now(dt.UTC),
        )
    )
    return User(username, roles, jurisdiction or "")


def verify_password(conn: Connection, username: str, password: str) -> User:
    """The user, or :class:`LoginError`; failures count towards a temporary lock."""
    t = s.ui_user
    row = conn.execute(select(t).where(t.c.username == username)).first()
    now = dt.datetime.now(dt.UTC)
    if row is None:
        try:
            _hasher.verify(_DUMMY_HASH, password)
        except VerificationError:
            pass
        raise LoginError("invalid")
    if row.locked_until is not None and row.locked_until > now:
        raise LoginError("locked")
    try:
        _hasher.verify(row.password_hash, password)
    except (VerificationError, InvalidHashError):
        failures = row.failed_logins + 1
        values = {"failed_logins": failures}
        if failures >= MAX_FAILURES:
            values = {"failed_logins": 0, "locked_until": now + dt.timedelta(minutes=LOCK_MINUTES)}
        conn.execute(update(t).where(t.c.username == username).values(**values))
        raise LoginError("locked" if failures >= MAX_FAILURES else "invalid") from None
    conn.execute(
        update(t).where(t.c.username == username).values(failed_logins=0, locked_until=None)
    )
    return User(row.username, tuple(row.roles.split()), row.jurisdiction)


def csrf_token(session) -> str:
    """The session's CSRF token (created on first use)."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf(session, value: str | None) -> bool:
    token = session.get("csrf")
    return bool(token and value and hmac.compare_digest(token, value))


def backend():
    """``(create_user, verify_password, LoginError)`` of hub.security.users, else these."""
    try:
        from hub.security import users  # noqa: PLC0415 - optional until it lands

        return users.create_user, users.verify_password, users.LoginError
    except (ImportError, AttributeError):
        return create_user, verify_password, LoginError
