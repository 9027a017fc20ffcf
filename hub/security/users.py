"""People who sign in to the web pages: accounts, roles, passwords and lockout.

Roles and the scopes they give (a user's effective scopes; label grants are
given per user with ``--grant-label``, never by a role):

=======================  ======================  ==============================================
role                     scopes                  for
=======================  ======================  ==============================================
``archive-manager``      ``user/*.cruds``        keeping residents' health files
``integration-engineer`` ``user/*.rs``           site onboarding, mappings, message replay
``auditor``              ``user/AuditEvent.rs``  reading the audit trail (and nothing else)
``admin``                ``user/*.cruds``        accounts, clients and configuration
=======================  ======================  ==============================================

The audit trail is readable only with a scope naming ``AuditEvent``; ``*``
does not cover it, which keeps the administrator and auditor duties apart
(classified protection level 3 separates system, security and audit
administration).

A person's own account (``hub users add NAME --patient ID``) has no role: it names the
person's Patient and serves only to sign in to SMART patient-facing apps
(:mod:`hub.security.smart`), which then read that person's records and nothing else.

After ``max_failures`` wrong passwords in a row an account is locked for
``lockout`` (``LOGIN_MAX_FAILURES``, ``LOGIN_LOCKOUT_MINUTES``); ``hub users
unlock`` lifts it early.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from hub.security import hashing
from hub.security import labels as lbl
from hub.security.principal import Principal
from hub.security.scopes import compile_scopes
from hub.storage.accounts import UserStore
from hub.storage.db import writing

ROLE_SCOPES = {
    "archive-manager": "user/*.cruds",
    "integration-engineer": "user/*.rs",
    "auditor": "user/AuditEvent.rs",
    "admin": "user/*.cruds",
}
ROLES = tuple(ROLE_SCOPES)
DEFAULT_MAX_FAILURES = 5
DEFAULT_LOCKOUT = dt.timedelta(minutes=15)


class InvalidLogin(Exception):
    """Unknown user, wrong password or disabled account (deliberately not told apart)."""


class LockedOut(Exception):
    """Too many failed logins; the account is locked until ``until``."""

    def __init__(self, until: dt.datetime):
        self.until = until
        super().__init__(f"account locked until {until.isoformat(timespec='seconds')}")


@dataclasses.dataclass(frozen=True)
class User:
    username: str
    roles: tuple[str, ...]
    grants: frozenset[str]
    jurisdiction: str | None
    locked_until: dt.datetime | None = None
    failed_logins: int = 0
    disabled: bool = False
    patient: str | None = None  # a person's own Patient (SMART patient-facing apps)

    @property
    def scopes(self) -> str:
        """The effective scopes: the union of the roles' scopes."""
        return " ".join(dict.fromkeys(ROLE_SCOPES[r] for r in self.roles if r in ROLE_SCOPES))

    def principal(self, purpose: str = "TREAT", client_id: str | None = None) -> Principal:
        """The :class:`Principal` the web pages act as for this user."""
        return Principal(
            self.username,
            "user",
            compile_scopes(self.scopes),
            self.grants,
            purpose=purpose,
            roles=self.roles,
            jurisdiction=self.jurisdiction,
            client_id=client_id,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "roles": list(self.roles),
            "scopes": self.scopes,
            "grants": sorted(self.grants),
            "jurisdiction": self.jurisdiction,
            "locked_until": self.locked_until.isoformat() if self.locked_until else None,
            "disabled": self.disabled,
            "patient": self.patient,
        }


def _from_row(row) -> User:
    return User(
        row.username,
        tuple(row.roles.split()),
        frozenset((row.grants or "").split()),
        row.jurisdiction,
        row.locked_until,
        row.failed_logins,
        row.disabled,
        row.patient,
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_user(
    conn,
    username: str,
    password: str,
    roles: list[str] | tuple[str, ...] | str,
    jurisdiction: str | None = None,
    grants: list[str] | None = None,
    patient: str | None = None,
) -> User:
    """Add an account; raises ``ValueError`` for an unknown role, a taken name or a weak password.

    A person's own account names its Patient (``patient``) and has no role.
    """
    roles = tuple(roles.split()) if isinstance(roles, str) else tuple(roles)
    unknown = [r for r in roles if r not in ROLE_SCOPES]
    if patient is not None:
        if roles or grants:
            raise ValueError("a person's account (--patient) has no role and no label grant")
        if not patient or len(patient) > 64 or "/" in patient:
            raise ValueError("--patient takes a Patient id (without 'Patient/')")
    elif not roles or unknown:
        raise ValueError(f"unknown role(s) {unknown or roles!r}; roles are {', '.join(ROLES)}")
    bad = lbl.validate_grants(grants or ())
    if bad:
        raise ValueError(f"unknown label grants: {' '.join(bad)}")
    if not username or len(username) > 100:
        raise ValueError("a username is 1-100 characters")
    if len(password) < 10:
        raise ValueError("a password needs at least 10 characters")
    if get_user(conn, username) is not None:
        raise ValueError(f"user {username!r} exists already")
    UserStore.add(
        conn,
        username=username,
        password_hash=hashing.hash_password(password),
        roles=" ".join(roles),
        grants=" ".join(sorted(grants or ())),
        jurisdiction=jurisdiction,
        failed_logins=0,
        created_at=_now(),
        disabled=False,
        patient=patient,
    )
    return User(username, roles, frozenset(grants or ()), jurisdiction, patient=patient)


def get_user(conn, username: str) -> User | None:
    row = UserStore.get(conn, username)
    return _from_row(row) if row else None


def list_users(conn) -> list[User]:
    return [_from_row(r) for r in UserStore.all(conn)]


def verify_password(
    conn,
    username: str,
    password: str,
    max_failures: int = DEFAULT_MAX_FAILURES,
    lockout: dt.timedelta = DEFAULT_LOCKOUT,
    now: dt.datetime | None = None,
) -> User:
    """The user whose password this is; raises :class:`LockedOut` or :class:`InvalidLogin`.

    The failure counter and lock are written on ``conn``: the caller must commit
    even when this raises (:func:`login` does it, and audits the attempt).
    """
    now = now or _now()
    row = UserStore.get(conn, username)
    if row is None:
        hashing.check_password(hashing.DUMMY_PASSWORD_HASH, password)
        raise InvalidLogin("invalid username or password")
    if row.locked_until is not None and _aware(row.locked_until) > now:
        raise LockedOut(_aware(row.locked_until))
    if row.disabled or not hashing.check_password(row.password_hash, password):
        failures = (row.failed_logins or 0) + 1
        if failures >= max_failures:
            until = now + lockout
            UserStore.set(conn, username, failed_logins=0, locked_until=until)
            raise LockedOut(until)
        UserStore.set(conn, username, failed_logins=failures)
        raise InvalidLogin("invalid username or password")
    values: dict[str, Any] = {"failed_logins": 0, "locked_until": None, "last_login_at": now}
    if hashing.password_needs_rehash(row.password_hash):
        values["password_hash"] = hashing.hash_password(password)
    UserStore.set(conn, username, **values)
    return _from_row(row)


def login(
    engine,
    username: str,
    password: str,
    max_failures: int = DEFAULT_MAX_FAILURES,
    lockout: dt.timedelta = DEFAULT_LOCKOUT,
    address: str | None = None,
) -> User:
    """:func:`verify_password` in a transaction of its own, audited (success or not)."""
    from hub import audit

    with writing(engine) as conn:
        try:
            user = verify_password(conn, username, password, max_failures, lockout)
        except (InvalidLogin, LockedOut) as err:
            audit.record(
                conn,
                audit.build_event(
                    interaction="login",
                    outcome="4",
                    who=username[:100],
                    description=str(err),
                    address=address,
                ),
            )
            failure = err
        else:
            audit.record(
                conn, audit.build_event(interaction="login", who=username, address=address)
            )
            failure = None
    if failure is not None:
        raise failure
    return user


def unlock(conn, username: str) -> bool:
    return UserStore.set(conn, username, failed_logins=0, locked_until=None)


def set_password(conn, username: str, password: str) -> bool:
    if len(password) < 10:
        raise ValueError("a password needs at least 10 characters")
    return UserStore.set(conn, username, password_hash=hashing.hash_password(password))


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
