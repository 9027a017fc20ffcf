"""SMART on FHIR scopes: parsing and the permission check every request makes.

A scope is ``context/Type.permissions``: the context is ``system`` (a
backend client), ``user`` (a person signed in) or ``patient`` (one patient's
compartment); the type is a resource type or ``*``; the permissions are SMART
v2 letters in the order ``c r u d s`` (create, read, update, delete, search)
or the v1 words ``read`` (= ``rs``), ``write`` (= ``cud``) and ``*`` (all).

Granular v2 scopes with a query (``patient/Observation.rs?category=...``)
are not supported and grant nothing, rather than more than they say.
Scopes that name no resource (``openid``, ``launch``, ``offline_access``)
are kept in the scope string and grant no data access.
"""

from __future__ import annotations

import functools
import re

LETTERS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE_RE = re.compile(r"^(system|user|patient)/([A-Za-z]+|\*)\.([a-z*]+)$")
_EMPTY: frozenset[str] = frozenset()


class ScopeSet:
    """The permissions granted by a scope string, compiled for a dictionary lookup per check.

    ``perms[type]`` holds the letters granted on ``type``; ``perms["*"]`` those on every type.
    ``contexts`` holds the contexts that granted anything (``patient`` limits reads to the
    token's patient compartment).
    """

    __slots__ = ("text", "perms", "contexts", "granted")

    def __init__(self, text: str):
        self.text = " ".join(text.split())
        perms: dict[str, set[str]] = {}
        contexts: set[str] = set()
        granted: list[str] = []
        for scope in self.text.split(" "):
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            context, res_type, letters = parsed
            perms.setdefault(res_type, set()).update(letters)
            contexts.add(context)
            granted.append(scope)
        self.perms = {t: frozenset(v) for t, v in perms.items()}
        self.contexts = frozenset(contexts)
        self.granted = tuple(granted)

    def allows(self, res_type: str, letter: str) -> bool:
        """Whether ``letter`` (one of ``cruds``) is granted on ``res_type``."""
        return letter in self.perms.get(res_type, _EMPTY) or letter in self.perms.get("*", _EMPTY)

    def __repr__(self) -> str:
        return f"ScopeSet({self.text!r})"


def parse_scope(scope: str) -> tuple[str, str, frozenset[str]] | None:
    """``user/Patient.rs`` -> ``("user", "Patient", {"r", "s"})``; ``None`` if no data scope."""
    m = _SCOPE_RE.match(scope)
    if not m:
        return None
    context, res_type, perms = m.groups()
    letters = _V1.get(perms)
    if letters is None:
        # v2: a non-empty subset of c r u d s, in that order, each once.
        if any(ch not in LETTERS for ch in perms) or perms != "".join(
            ch for ch in LETTERS if ch in perms
        ):
            return None
        letters = perms
    return context, res_type, frozenset(letters)


# Scopes with a slash that name no resource: the patient context of a standalone launch.
LAUNCH_SCOPES = frozenset(("launch/patient",))


def is_valid_scope_string(text: str) -> list[str]:
    """The data scopes in ``text`` that do not parse (an empty list when all do)."""
    bad = []
    for scope in text.split():
        if "/" in scope and scope not in LAUNCH_SCOPES and parse_scope(scope) is None:
            bad.append(scope)
    return bad


# Types a ``*`` grant does not cover when scopes are requested (separation of duties).
UNCOVERED_BY_WILDCARD = frozenset(("AuditEvent",))


def covered(scope: str, granted: str) -> bool:
    """Whether the scopes ``granted`` cover the one requested ``scope``.

    A data scope is covered when scopes of the same context grant each of its letters on its
    type, by naming the type or ``*``; a requested ``*`` is covered only by ``*`` grants, and
    ``AuditEvent`` only by grants naming it, since wildcards never cover the audit trail
    (:mod:`hub.security.audit_search`). A scope that names no resource (``openid``,
    ``launch/patient``) is covered only by the same scope in the grant.
    """
    parsed = parse_scope(scope)
    if parsed is None:
        return scope in granted.split()
    context, res_type, letters = parsed
    held: set[str] = set()
    for grant in granted.split():
        g = parse_scope(grant)
        if g is None or g[0] != context:
            continue
        if g[1] == res_type or (g[1] == "*" and res_type not in UNCOVERED_BY_WILDCARD):
            held |= g[2]
    return letters <= held


def negotiate(requested: str, granted: str) -> tuple[str, list[str]]:
    """``(scope string to issue, requested scopes left out)`` for a token request.

    Each requested scope is issued whole when :func:`covered` by the grant, else left out
    (RFC 6749 section 3.3: the issued ``scope`` tells the client what it got). An empty first
    element means nothing of the request is grantable (``invalid_scope``).
    """
    issued: list[str] = []
    refused: list[str] = []
    for scope in dict.fromkeys(requested.split()):
        (issued if covered(scope, granted) else refused).append(scope)
    return " ".join(issued), refused


@functools.lru_cache(maxsize=1024)
def compile_scopes(text: str) -> ScopeSet:
    """A cached :class:`ScopeSet`: tokens repeat their scope string on every request."""
    return ScopeSet(text)


# The interaction -> permission letter table (SMART v2: history and vread are reads).
INTERACTION_LETTER = {
    "read": "r",
    "vread": "r",
    "history": "r",
    "search": "s",
    "create": "c",
    "update": "u",
    "patch": "u",
    "delete": "d",
}
