"""Who owns a bulk job. The caller's principal itself is kept with the job
(:func:`hub.security.principal.to_record`), so the worker exports as the caller: the scopes,
label grants, jurisdiction and patient context that filter a search filter every line too.
"""

from __future__ import annotations

from hub.security.principal import Principal


def owner(p: Principal | None) -> str:
    """Who owns a job: only the same client (or user) may poll it and read its files."""
    return "" if p is None else f"{p.kind}:{p.subject}"
