"""The hub's default ``validate_resource``: profile validation for resources that claim one.

Registered like any plugin (listed in ``DEFAULT_PLUGINS``). Structure is checked before the
hook runs (:func:`hub.validation.structure.check_structure`); this adds the StructureDefinition
checks of every profile named in ``meta.profile`` and of the profiles the writing site's
manifest demands for the resource type (:func:`site_profiles`). Other resources cost nothing.

:func:`validate_operation` is the body of the ``$validate`` operation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.hookspecs import hookimpl
from hub.outcomes import issue
from hub.outcomes import outcome
from hub.validation.structure import structure_issues
from hub.validation.validator import Validator
from hub.validation.validator import default_validator

if TYPE_CHECKING:
    from hub.sites import Site

VALIDATE_MODES = ("create", "update", "delete", "profile")


def validator() -> Validator:
    """The shared validator over core definitions and ``profiles/`` (built once)."""
    return default_validator()


def site_profiles(site: Site, resource_type: str) -> list[str]:
    """Profiles a site's manifest demands for a resource type.

    ``plugins: {validation: {profiles: {Patient: [url, ...]}}}`` in ``site.yaml``: every
    Patient the site writes is validated against those profiles, claimed or not.
    """
    config = getattr(site, "plugin_config", None)
    if site is None or config is None:
        return []
    wanted = (config("validation") or {}).get("profiles", {}).get(resource_type, [])
    return [wanted] if isinstance(wanted, str) else list(wanted)


@hookimpl
def validate_resource(resource: dict, site: Site) -> list | None:
    return profile_issues(validator(), resource, site)


class HubValidation:
    """This module's hook bound to one hub's validator (a hub whose plugins or
    ``PROFILES_DIR`` add definitions registers it in place of the module)."""

    def __init__(self, bound: Validator):
        self.validator = bound

    @hookimpl
    def validate_resource(self, resource: dict, site: Site) -> list | None:
        return profile_issues(self.validator, resource, site)


def profile_issues(checker: Validator, resource: dict, site: Site | None) -> list | None:
    """The issues of every profile ``resource`` claims or ``site`` demands; ``None``: none."""
    if not isinstance(resource, dict):
        return None
    meta = resource.get("meta")
    claimed = isinstance(meta, dict) and bool(meta.get("profile"))
    demanded = site_profiles(site, resource.get("resourceType"))
    if not claimed and not demanded:
        return None
    return checker.validate(resource, demanded)


def validate_operation(
    resource: dict | None,
    mode: str | None = None,
    profile: str | None = None,
    checker: Validator | None = None,
) -> dict:
    """``$validate``: an OperationOutcome for ``resource`` (never raises for invalid input).

    ``mode`` is the FHIR ``$validate`` mode (``create``, ``update``, ``delete``, ``profile``);
    ``delete`` has nothing to check in the content. ``profile`` is a canonical URL to validate
    against in addition to ``meta.profile``.
    """
    if mode is not None and mode not in VALIDATE_MODES:
        return outcome(
            issue("error", "invalid", f"unknown $validate mode '{mode}'", "Parameters.mode")
        )
    if mode == "delete":
        return outcome(issue("information", "informational", "nothing to validate for delete"))
    if not isinstance(resource, dict):
        return outcome(issue("error", "required", "no resource to validate", "Parameters.resource"))
    issues = structure_issues(resource)
    if not any(i["code"] == "not-supported" for i in issues):
        full = (checker or validator()).validate(resource, [profile] if profile else None)
        seen = {(i.get("expression", [None])[0], i["severity"]) for i in full}
        # the structural check's messages are kept only where the validator saw nothing
        issues = full + [
            i for i in issues if (i.get("expression", [None])[0], i["severity"]) not in seen
        ]
    if mode == "update" and not resource.get("id"):
        issues.append(issue("error", "required", "an update needs the resource id", "id"))
    if not any(i["severity"] in ("error", "fatal") for i in issues):
        issues.append(issue("information", "informational", "validation successful"))
    return outcome(*issues)


def validate_request(
    body: dict | None,
    mode: str | None = None,
    profile: str | None = None,
    checker: Validator | None = None,
) -> dict:
    """``$validate`` from an HTTP request: ``body`` is the resource itself, or a ``Parameters``
    with ``resource``, ``mode`` and ``profile`` parts (FHIR R4 Resource-validate); ``mode`` and
    ``profile`` from the query string win over the parts."""
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        parts = {p.get("name"): p for p in body.get("parameter", ()) if isinstance(p, dict)}
        resource = (parts.get("resource") or {}).get("resource")
        mode = mode or (parts.get("mode") or {}).get("valueCode")
        profile = (
            profile
            or (parts.get("profile") or {}).get("valueUri")
            or (parts.get("profile") or {}).get("valueCanonical")
        )
        return validate_operation(resource, mode, profile, checker)
    return validate_operation(body, mode, profile, checker)
