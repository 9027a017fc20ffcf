"""Who is signed in to the dashboard.

Accounts, passwords and lockout live in :mod:`hub.security.users` (``hub users
add``); the forms' CSRF tokens in :mod:`hub.security.csrf`. The dashboard
keeps only the signed-in user's name, roles and jurisdiction in its session.
"""

from __future__ import annotations

import dataclasses

from hub.security import csrf
from hub.security.users import InvalidLogin
from hub.security.users import LockedOut
from hub.security.users import verify_password

__all__ = ["CSRF_FIELD", "InvalidLogin", "LockedOut", "User", "verify_password"]

CSRF_FIELD = csrf.FIELD


@dataclasses.dataclass(frozen=True)
class User:
    username: str
    roles: tuple[str, ...]
    jurisdiction: str  # "" = every jurisdiction
