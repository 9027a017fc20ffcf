"""Authorization checks at the points every interaction passes through.

* :func:`check_read` / :func:`require` - the FHIR service's reads, vreads,
  history and searches;
* :func:`check_write` - the repository's :class:`~hub.storage.repository.Writer`
  calls it before staging any create, update or delete, so REST, batch and
  transaction entries, operations and ingestion are all checked in one place;
* :func:`filter_visible`, :func:`visible_entries` - what searches, includes,
  history, ``$everything`` and exports return.

Every check reads the request's principal (:func:`hub.security.principal.current`);
without one (the hub's own jobs) everything is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from hub import outcomes
from hub.security.principal import SITE_SOURCE_PREFIX
from hub.security.principal import Principal
from hub.security.principal import current


def require(res_type: str, letter: str, what: str | None = None) -> None:
    """403 unless the current principal holds ``letter`` on ``res_type``."""
    p = current()
    if p is not None:
        p.require(res_type, letter, what)


def check_read(res_type: str, res_id: str, content: str | None, letter: str = "r") -> None:
    """Scope, then labels: a resource the principal may not see is reported as absent (404)."""
    p = current()
    if p is None:
        return
    p.require(res_type, letter)
    if not p.sees_json(content):
        raise outcomes.not_found(f"{res_type}/{res_id} is not known")


def visible_content(res_type: str, content: str | None, principal: Principal | None = None) -> bool:
    """Whether stored ``content`` of ``res_type`` may be returned (read scope and labels)."""
    p = principal or current()
    if p is None:
        return True
    return (p.can(res_type, "r") or p.can(res_type, "s")) and p.sees_json(content)


def filter_visible(resources: Iterable[Any], principal: Principal | None = None) -> list[Any]:
    """The items of ``resources`` the principal may see, in order.

    Items may be resource dicts, JSON text, or objects with ``res_type`` and
    ``content`` (``Stored`` rows); anything the principal lacks the scope or a
    label grant for is dropped. Used by searches (matches and ``_include`` /
    ``_revinclude``), history, ``$everything`` and exports.
    """
    p = principal or current()
    items = list(resources)
    if p is None:
        return items
    out = []
    for item in items:
        if isinstance(item, dict):
            res_type = item.get("resourceType", "")
            ok = (p.can(res_type, "r") or p.can(res_type, "s")) and p.sees(item)
        elif isinstance(item, (str, bytes)):
            resource = orjson.loads(item)
            res_type = resource.get("resourceType", "")
            ok = (p.can(res_type, "r") or p.can(res_type, "s")) and p.sees(resource)
        else:
            ok = visible_content(item.res_type, item.content, p)
        if ok:
            out.append(item)
    return out


def visible_entries(entries: list, principal: Principal | None = None) -> list:
    """The search entries (``hub.search.engine.SearchEntry``) the principal may see."""
    p = principal or current()
    if p is None:
        return entries
    return [e for e in entries if visible_content(e.res_type, e.content, p)]


def sees_everything(principal: Principal) -> bool:
    """Whether nothing is hidden from ``principal``: every label, no jurisdiction, no patient
    context, and a read or search scope on every type (``filter_visible`` keeps all)."""
    p = principal
    every_type = p.scopes.perms.get("*", frozenset())
    return (
        p.all_labels
        and not p.jurisdiction
        and not p.patient_only
        and ("r" in every_type or "s" in every_type)
    )


def search_access(principal: Principal | None = None):
    """What searches may read for the principal (``hub.search.access.Access``), or ``None``.

    Label categories without a grant, the user's jurisdiction and the patient of
    ``patient/`` scopes filter every row in SQL; ``can_search`` refuses chains,
    ``_has`` and ``_list`` into types the token may not search.
    """
    from hub.search.access import Access
    from hub.security.labels import hidden_labels

    p = principal or current()
    if p is None:
        return None
    return Access(
        hidden_labels=hidden_labels(p.grants),
        can_search=lambda res_type: p.can(res_type, "s"),
        jurisdiction=p.jurisdiction or None,
        patient=(p.patient or "") if p.patient_only else None,
        linked_patients=tuple(sorted(p.linked)) if p.patient_only else (),
    )


def view_key(principal: Principal | None = None) -> str:
    """What limits the principal's view, as text ('' when it sees everything)."""
    from hub.security.labels import hidden_labels

    p = principal or current()
    if p is None:
        return ""
    parts = [f"{system}|{code}" for system, code in hidden_labels(p.grants)]
    if p.jurisdiction:
        parts.append(f"jurisdiction={p.jurisdiction}")
    if p.patient_only:
        parts.append(f"patient={','.join(sorted(p.compartment)) or ''}")
    return ",".join(parts)


def check_write(op: str, resource: dict[str, Any] | None, existing: Any, res_type: str) -> None:
    """The write guard: scope, labels of what is overwritten, and the site rule.

    ``op`` is ``create``, ``update`` or ``delete``; ``existing`` the current
    stored version (``None`` or a deletion tombstone when absent). Site-bound
    principals get ``meta.source`` stamped on what they write (module docs of
    :mod:`hub.security`).
    """
    p = current()
    if p is None:
        return
    if res_type == "AuditEvent":
        raise outcomes.error(
            405, "not-supported", "AuditEvents are recorded by the hub and cannot be written"
        )
    if p.patient_only:
        raise outcomes.error(
            403, "forbidden", "patient/ scopes are read-only here; writes need user/ or system/"
        )
    present = existing is not None and not existing.deleted
    if op == "delete":
        p.require(res_type, "d")
    elif op == "update" and present:
        p.require(res_type, "u")
    else:
        p.require(res_type, "c")
    if present and op != "create":
        if not p.sees_json(existing.content):
            raise outcomes.not_found(f"{res_type}/{existing.res_id} is not known")
        if p.site is not None and _site_of(existing.content) != p.site:
            raise outcomes.error(
                403,
                "forbidden",
                f"{res_type}/{existing.res_id} was not written by site {p.site!r};"
                " a site client changes only its own site's resources",
            )
    if resource is not None and p.site is not None:
        stamp_site(resource, p.site)


def stamp_site(resource: dict[str, Any], site: str) -> None:
    """Set ``meta.source`` to the site's URI; a different source is refused (403)."""
    source_uri = SITE_SOURCE_PREFIX + site
    meta = resource.get("meta")
    if not isinstance(meta, dict):
        meta = {}
        resource["meta"] = meta
    given = meta.get("source")
    if given is None:
        meta["source"] = source_uri
    elif not isinstance(given, str) or _site_of_source(given) != site:
        raise outcomes.error(
            403,
            "forbidden",
            f"meta.source {given!r} is not this client's site ({source_uri})",
            f"{resource.get('resourceType', 'Resource')}.meta.source",
        )


def check_site(site_name: str | None) -> None:
    """403 unless the current principal may ingest for ``site_name`` (its own site, or any)."""
    p = current()
    if p is None or p.site is None:
        return
    if site_name != p.site:
        raise outcomes.error(
            403, "forbidden", f"This client ingests only for site {p.site!r}, not {site_name!r}"
        )


def check_ingest(site_name: str) -> None:
    """``$ingest`` for ``site_name``: a client bound to that site with a create scope, or an
    unbound principal allowed to create every type (hub operators)."""
    p = current()
    if p is None:
        return
    if p.site is not None:
        check_site(site_name)
        if not any("c" in letters for letters in p.scopes.perms.values()):
            raise outcomes.error(403, "forbidden", "$ingest needs a scope that allows creating")
        return
    p.require("*", "c", "ingesting payloads that create any resource type, i.e.")
    p.require("*", "u", "ingesting payloads that update any resource type, i.e.")


def require_operator(write: bool) -> None:
    """The operator APIs (``/api/inbox``, ``/api/deliveries``) handle raw payloads of any
    type and label: they need ``*`` scopes (``r``, plus ``c`` and ``u`` to replay) and
    every label grant."""
    p = current()
    if p is None:
        return
    for letter in ("c", "u") if write else ("r",):
        if letter not in p.scopes.perms.get("*", ()):
            raise outcomes.error(
                403, "forbidden", f"This operator API needs the scope */*.{letter} (any context)"
            )
    if not p.all_labels:
        raise outcomes.error(
            403, "forbidden", "Raw payloads may hold any sensitive data: this API needs the * grant"
        )


def _site_of_source(source: str) -> str | None:
    if not source.startswith(SITE_SOURCE_PREFIX):
        return None
    return source[len(SITE_SOURCE_PREFIX) :].split("#", 1)[0]


def _site_of(content: str | None) -> str | None:
    if not content or SITE_SOURCE_PREFIX not in content:
        return None
    meta = orjson.loads(content).get("meta") or {}
    source = meta.get("source")
    return _site_of_source(source) if isinstance(source, str) else None
