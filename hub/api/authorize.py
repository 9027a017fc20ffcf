"""The pages of SMART App Launch: authorization request, a person's login, consent.

``GET`` or ``POST /auth/authorize`` checks the app's request
(:func:`hub.security.smart.check_request`) and keeps it in the person's session under a
random id; the person signs in (``POST /auth/login``, their own account, CSRF-protected,
locked out after failed attempts like every account), then sees which app asks for what
and decides (``POST /auth/consent``): approving records a Consent and sends the browser back
to the app with a one-time ``code`` and the app's ``state``; refusing sends
``error=access_denied``. A request that names an unknown app or an unregistered redirect URI
is answered here, never redirected (RFC 6749 4.1.2.1).
"""

from __future__ import annotations

import secrets
import urllib.parse

from flask import Blueprint
from flask import abort
from flask import redirect
from flask import render_template
from flask import request
from flask import session

from hub import audit
from hub.api.auth import fhir_base
from hub.api.context import get_hub
from hub.security import csrf
from hub.security import smart
from hub.security import users
from hub.security.scopes import parse_scope
from hub.storage.db import reading

bp = Blueprint("smart", __name__, template_folder="templates")

PENDING = "smart_requests"  # session: request id -> the checked authorization request
PERSON = "smart_person"  # session: the username of the person signed in for apps
MAX_PENDING = 3  # requests kept at once (the session is a cookie of at most 4 KB)


@bp.route("/auth/authorize", methods=["GET", "POST"])
def authorize():
    params = {k: v for k, v in request.values.items()}
    hub = get_hub()
    try:
        with reading(hub.engine) as conn:
            checked = smart.check_request(conn, params, fhir_base())
    except smart.AuthorizeError as err:
        _record("operation", "4", f"authorization request refused: {err.description}", params)
        if err.redirect and err.redirect_uri:
            return _back(
                err.redirect_uri,
                params.get("state"),
                error=err.error,
                error_description=err.description,
            )
        return render_template("smart_error.html", message=err.description), 400
    rid = secrets.token_urlsafe(16)
    pending = dict(session.get(PENDING) or {})
    while len(pending) >= MAX_PENDING:
        pending.pop(next(iter(pending)))
    pending[rid] = checked.as_dict()
    session[PENDING] = pending
    return _page(rid)


@bp.post("/auth/login")
def login():
    csrf.protect()
    rid = request.form.get("rid", "")
    pending = _pending(rid)
    hub = get_hub()
    username = request.form.get("username", "")[:100]
    error = None
    try:
        user = users.login(
            hub.engine,
            username,
            request.form.get("password", ""),
            hub.security.max_failures,
            hub.security.lockout,
            address=request.remote_addr,
        )
    except users.LockedOut:
        error = "账户已暂时锁定，请稍后再试。 The account is locked for a while; try again later."
    except users.InvalidLogin:
        error = "用户名或密码不正确。 Wrong username or password."
    else:
        if user.patient is None:
            error = "此账户不是个人账户。 This is not a person's own account."
            _record("login", "4", "refused for apps: not a person's own account", who=username)
        else:
            session[PERSON] = user.username
            return redirect(f"/auth/consent?rid={urllib.parse.quote(rid)}", 303)
    return render_template("smart_login.html", rid=rid, app=pending, error=error), 401


@bp.route("/auth/consent", methods=["GET", "POST"])
def consent():
    if request.method == "GET":
        rid = request.args.get("rid", "")
        _pending(rid)
        return _page(rid)
    csrf.protect()
    rid = request.form.get("rid", "")
    pending = _pending(rid)
    hub = get_hub()
    username = session.get(PERSON)
    user = None
    if username:
        with reading(hub.engine) as conn:
            user = users.get_user(conn, username)
    if user is None or user.patient is None or user.disabled:
        session.pop(PERSON, None)
        return render_template("smart_login.html", rid=rid, app=pending, error=None), 401
    checked = smart.AuthorizationRequest(**pending)
    remaining = dict(session.get(PENDING) or {})
    remaining.pop(rid, None)
    session[PENDING] = remaining
    # Signed in for this decision only: the next app, or the next person on a shared
    # device, signs in again.
    session.pop(PERSON, None)
    if request.form.get("decision") != "approve":
        _record(
            "operation",
            "4",
            f"{user.username} refused app {checked.client_name}",
            who=user.username,
            client=checked.client_id,
        )
        return _back(
            checked.redirect_uri,
            checked.state,
            error="access_denied",
            error_description="The person did not approve the app",
        )
    code = smart.approve(hub, user, checked, request.remote_addr)
    _record(
        "operation",
        "0",
        f"{user.username} approved app {checked.client_name} for {checked.scope}",
        who=user.username,
        client=checked.client_id,
    )
    return _back(checked.redirect_uri, checked.state, code=code)


def _pending(rid: str) -> dict:
    pending = (session.get(PENDING) or {}).get(rid)
    if not rid or pending is None:
        abort(400, description="This authorization request has expired; start again from the app")
    return pending


def _page(rid: str):
    """The login page, or the consent page when the person is signed in."""
    pending = _pending(rid)
    username = session.get(PERSON)
    if not username:
        return render_template("smart_login.html", rid=rid, app=pending, error=None)
    return render_template(
        "smart_consent.html",
        rid=rid,
        app=pending,
        person=username,
        scopes=[_describe(s) for s in pending["scope"].split()],
        days=get_hub().security.smart_consent_days,
    )


_LETTERS = {"r": "读取 read", "s": "查询 search"}
_NON_DATA = {
    "openid": "确认您的身份 confirm who you are",
    "fhirUser": "确认您的身份 confirm who you are",
    "profile": "确认您的身份 confirm who you are",
    "launch/patient": "知道您是谁的档案 know whose record this is",
    "offline_access": "在您离开后继续访问 keep access after you leave",
    "online_access": "在您使用期间保持访问 keep access while you use it",
}


def _describe(scope: str) -> str:
    parsed = parse_scope(scope)
    if parsed is None:
        return _NON_DATA.get(scope, scope)
    _context, res_type, letters = parsed
    what = "全部记录 all your records" if res_type == "*" else res_type
    return f"{what}: " + ", ".join(_LETTERS[ch] for ch in "rs" if ch in letters)


def _back(redirect_uri: str, state: str | None, **values: str):
    """A redirect to the app with ``values`` and ``state`` added to its query."""
    if state:
        values["state"] = state
    parts = urllib.parse.urlsplit(redirect_uri)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(values.items())
    return redirect(urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query))))


def _record(
    interaction: str,
    outcome: str,
    text: str,
    params: dict | None = None,
    who: str | None = None,
    client: str | None = None,
) -> None:
    client = client or ((params or {}).get("client_id") or "")[:100] or None
    audit.record_now(
        get_hub().engine,
        audit.build_event(
            interaction=interaction,
            outcome=outcome,
            who=who or "anonymous",
            client=client,
            description=text[:2000],
            address=request.remote_addr,
        ),
    )
