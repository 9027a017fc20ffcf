"""CSRF protection for the web pages' forms: a token in the session, checked on POST.

Usage in a page blueprint::

    from hub.security import csrf
    bp.before_request(csrf.protect)          # every POST/PUT/PATCH/DELETE checked
    # in templates: <input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
    app.jinja_env.globals["csrf_token"] = csrf.token   # done by hub.security.web.init_app

Requests may also send the token in an ``X-CSRF-Token`` header (scripts, fetch).
"""

from __future__ import annotations

import hmac
import secrets

from flask import abort
from flask import request
from flask import session

SESSION_KEY = "_csrf"
FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "TRACE"))


def token() -> str:
    """This session's CSRF token (created on first use)."""
    value = session.get(SESSION_KEY)
    if not value:
        value = secrets.token_urlsafe(32)
        session[SESSION_KEY] = value
    return value


def valid(given: str | None) -> bool:
    expected = session.get(SESSION_KEY)
    return bool(expected and given) and hmac.compare_digest(str(expected), str(given))


def protect() -> None:
    """A ``before_request`` handler: 400 for an unsafe request without the session's token."""
    if request.method in SAFE_METHODS:
        return
    given = request.form.get(FIELD) or request.headers.get(HEADER)
    if not valid(given):
        abort(400, description="The form has expired or did not come from this site; reload it")
