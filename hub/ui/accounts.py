"""Dashboard accounts: a stand-in for ``hub.security.users`` with the same functions.

``create_user(conn, username, password, roles, jurisdiction)`` and
``verify_password(conn, username, password)`` (raising :class:`InvalidLogin` on
a wrong password or an unknown user, :class:`LockedOut` on a locked account)
over the ``ui_user`` table, with Argon2id password hashes. When
``hub.security.users`` is present its functions and exceptions are used instead
(see :func:`backend`), so switching over needs no change here.
``csrf_token`` / ``check_csrf`` protect the dashboard's POST forms; they use the
same session key and form field as ``hub.security.csrf``.
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
# The roles of hub.security.users that the dashboard knows.
ROLES = ("archive-manager", "integration-engineer", "auditor", "admin")
CSRF_SESSION_KEY = "_csrf"
CSRF_FIELD = "csrf_token"
_hasher = PasswordHasher()
# Verified against when the user does not exist, so that both cases take as long.
_DUMMY_HASH = _hasher.hash("not a password")


class InvalidLogin(Exception):
    """Unknown user or wrong password (deliberately not told apart)."""


class LockedOut(Exception):
    """Too many failed logins; the account is locked until ``until``."""

    def __init__(self, until: dt.datetime):
        self.until = until
        super().__init__(f"account locked until {until.isoformat(timespec='seconds')}")


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
    if len(password) < 10:
        raise ValueError("a password needs at least 10 characters")
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
    """The user, or :class:`InvalidLogin` / :class:`LockedOut`.

    Failures count towards a temporary lock, written on ``conn``: the caller
    commits even when this raises.
    """
    t = s.ui_user
    row = conn.execute(select(t).where(t.c.username == username)).first()
    now = dt.datetime.now(dt.UTC)
    if row is None:
        try:
            _hasher.verify(_DUMMY_HASH, password)
        except VerificationError:
            pass
        raise InvalidLogin("invalid username or password")
    if row.locked_until is not None and row.locked_until > now:
        raise LockedOut(row.locked_until)
    try:
        _hasher.verify(row.password_hash, password)
    except (VerificationError, InvalidHashError):
        failures = row.failed_logins + 1
        if failures >= MAX_FAILURES:
            until = now + dt.timedelta(minutes=LOCK_MINUTES)
            conn.execute(
                update(t)
                .where(t.c.username == username)
                .values(failed_logins=0, locked_until=until)
            )
            raise LockedOut(until) from None
        conn.execute(update(t).where(t.c.username == username).values(failed_logins=failures))
        raise InvalidLogin("invalid username or password") from None
    conn.execute(
        update(t).where(t.c.username == username).values(failed_logins=0, locked_until=None)
    )
    return User(row.username, tuple(row.roles.split()), row.jurisdiction)


def csrf_token(session) -> str:
    """The session's CSRF token (created on first use)."""
    token = session.get(CSRF_SESSION_KEY)
    if not token:
        token = session[CSRF_SESSION_KEY] = secrets.token_urlsafe(32)
    return token


def check_csrf(session, value: str | None) -> bool:
    token = session.get(CSRF_SESSION_KEY)
    return bool(token and value and hmac.compare_digest(str(token), str(value)))


@dataclasses.dataclass(frozen=True)
class Backend:
    """The account functions in use and the exceptions a refused login raises."""

    create_user: object
    verify_password: object
    invalid: type[Exception]
    locked: type[Exception]


def backend() -> Backend:
    """``hub.security.users`` when it is installed, else this module."""
    try:
        from hub.security import users
    except ImportError:
        return Backend(create_user, verify_password, InvalidLogin, LockedOut)
    return Backend(users.create_user, users.verify_password, users.InvalidLogin, users.LockedOut)
