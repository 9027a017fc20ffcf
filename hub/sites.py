"""Sites: the partner systems the hub talks to, declared as data.

A site is one folder ``<sites_dir>/<site>/`` holding a manifest ``site.yaml``
and its conformance cases (``cases/<case>/input.<ext>`` with ``expected.json``
or ``expected-outcome.json``). Every manifest key is documented in
``docs/sites.md``; :data:`SiteSchema` checks them and every error names the
file and the key (``site.yaml: organization.identifier.system: ...``).

Adding a hospital adds a folder, never Python: adapters read their settings
with ``site.plugin_config("hl7v2")``. A leaf module: ``hub site new`` (the
scaffold, which maps an example with the conformance kit) is :mod:`hub.scaffold`.
"""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from typing import Any

import yaml
from marshmallow import RAISE
from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import validate
from marshmallow import validates
from marshmallow import validates_schema

from hub.mapping import CodeMap
from hub.mapping import load_code_maps
from hub.mapping import load_site_overrides
from hub.paths import MAPPINGS_DIR
from hub.paths import SITES_DIR

__all__ = ["Site", "SiteError", "load_site", "load_sites"]

MANIFEST = "site.yaml"
VALIDATION_POLICIES = ("reject", "quarantine", "accept-with-warnings")
NAME_STYLES = ("split", "single", "auto")
SITE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class SiteError(ValueError):
    """A manifest that cannot be used; the message names the file and the key."""


# ---------------------------------------------------------------------------
# Manifest schema
# ---------------------------------------------------------------------------


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class IdentifierSchema(_Strict):
    system = fields.String(required=True, validate=validate.Length(min=1))
    value = fields.String(required=True, validate=validate.Length(min=1))


class OrganizationSchema(_Strict):
    id = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9\-.]{1,64}$"))
    name = fields.String(required=True, validate=validate.Length(min=1))
    identifier = fields.Nested(IdentifierSchema, required=True)


class MatchSchema(_Strict):
    # MSH-3 / MSH-4 (HL7 v2); other adapters may match on other keys later.
    sending_application = fields.String(load_default=None)
    sending_facility = fields.String(load_default=None)

    @validates_schema
    def _one_key(self, data: dict, **_: Any) -> None:
        if not data.get("sending_application") and not data.get("sending_facility"):
            raise ValidationError(
                "give sending_application (MSH-3), sending_facility (MSH-4) or both"
            )


class OutboundSchema(_Strict):
    kind = fields.String(required=True, validate=validate.OneOf(("mllp", "http")))
    host = fields.String(load_default=None)
    port = fields.Integer(load_default=None, validate=validate.Range(min=1, max=65535))
    url = fields.Url(load_default=None, schemes={"http", "https"}, require_tld=False)
    events = fields.List(fields.String(), load_default=list)
    timeout = fields.Float(load_default=10.0, validate=validate.Range(min=0.1, max=600))

    @validates_schema
    def _endpoint(self, data: dict, **_: Any) -> None:
        if data["kind"] == "mllp":
            missing = [k for k in ("host", "port") if not data.get(k)]
            if missing:
                raise ValidationError({k: ["required when kind is mllp"] for k in missing})
        elif not data.get("url"):
            raise ValidationError({"url": ["required when kind is http"]})


class SiteSchema(_Strict):
    name = fields.String(required=True)
    # The built-in adapters or any plugin's (a plain identifier).
    adapter = fields.String(required=True, validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,62}$"))
    description = fields.String(load_default="")
    organization = fields.Nested(OrganizationSchema, required=True)
    match = fields.Nested(MatchSchema, load_default=None)
    identifier_systems = fields.Dict(
        keys=fields.String(),
        values=fields.String(validate=validate.Length(min=1)),
        load_default=dict,
    )
    encoding = fields.String(load_default="utf-8")
    timezone = fields.String(load_default="Asia/Shanghai")
    name_style = fields.String(load_default="auto", validate=validate.OneOf(NAME_STYLES))
    code_maps = fields.String(load_default=None)
    validation = fields.String(load_default="reject", validate=validate.OneOf(VALIDATION_POLICIES))
    outbound = fields.Nested(OutboundSchema, load_default=None)
    plugins = fields.Dict(keys=fields.String(), values=fields.Dict(), load_default=dict)
    # The payload format when the adapter maps several (default: the adapter's own).
    format = fields.String(load_default=None)
    # Kit inputs' media types by file extension (csv: text/csv), for the kit runner.
    content_types = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)

    @validates("name")
    def _name(self, value: str, **_: Any) -> None:
        if not SITE_NAME.match(value):
            raise ValidationError("lower-case letters, digits and '-', at most 63 characters")

    @validates("encoding")
    def _encoding(self, value: str, **_: Any) -> None:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValidationError(f"unknown encoding {value!r}") from None

    @validates("timezone")
    def _timezone(self, value: str, **_: Any) -> None:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValidationError(f"unknown IANA time zone {value!r}") from None


_SCHEMA = SiteSchema()


def _flatten(messages: Any, prefix: str = "") -> list[str]:
    """marshmallow's nested error dict as ``key.sub: message`` lines."""
    if isinstance(messages, dict):
        out = []
        for key, value in messages.items():
            where = key if key != "_schema" else ""
            out += _flatten(value, f"{prefix}.{where}".strip(".") if where else prefix)
        return out
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [f"{prefix or '(manifest)'}: {m}" for m in messages]
    return [f"{prefix}: {messages}"]


# ---------------------------------------------------------------------------
# Site
# ---------------------------------------------------------------------------


class Site:
    """One partner system instance, read from ``<folder>/site.yaml``."""

    def __init__(self, data: dict[str, Any], folder: Path | None = None):
        self.folder = folder
        self.name: str = data["name"]
        self.adapter: str = data["adapter"]
        self.description: str = data.get("description", "")
        self.organization: dict[str, Any] = data["organization"]
        self.match: dict[str, str | None] = data.get("match") or {}
        self.identifier_systems: dict[str, str] = data.get("identifier_systems") or {}
        self.encoding: str = data.get("encoding", "utf-8")
        self.timezone: str = data.get("timezone", "Asia/Shanghai")
        self.name_style: str = data.get("name_style", "auto")
        self.code_maps: str | None = data.get("code_maps")
        self.validation: str = data.get("validation", "reject")
        self.outbound: dict[str, Any] | None = data.get("outbound")
        self._plugins: dict[str, dict] = data.get("plugins") or {}
        self.format: str | None = data.get("format")
        self.content_types: dict[str, str] = data.get("content_types") or {}
        self.code_map_overrides: dict[str, CodeMap] = {}

    def __repr__(self) -> str:
        return f"<Site {self.name} ({self.adapter})>"

    @property
    def cases_dir(self) -> Path | None:
        return self.folder / "cases" if self.folder else None

    def plugin_config(self, adapter: str) -> dict[str, Any]:
        """The manifest's ``plugins.<adapter>`` section (empty when absent)."""
        return dict(self._plugins.get(adapter) or {})

    def code_maps_folder(self) -> Path | None:
        """Where this site's code-map overrides live, if anywhere."""
        if self.code_maps and self.folder:
            return (self.folder / self.code_maps).resolve()
        candidate = MAPPINGS_DIR / "sites" / self.name
        return candidate if candidate.is_dir() else None

    def load_overrides(self, code_maps: dict[str, CodeMap]) -> None:
        """Apply the site's override files to the shared ``code_maps``."""
        folder = self.code_maps_folder()
        if folder is None:
            return
        if self.code_maps and not folder.is_dir():
            raise SiteError(
                f"{self.folder / MANIFEST}: code_maps: folder {self.code_maps!r} does not exist"
            )
        try:
            self.code_map_overrides = load_site_overrides(folder, code_maps)
        except yaml.YAMLError as exc:
            raise SiteError(f"{folder}: a code-map override is not valid YAML: {exc}") from None
        except ValueError as exc:
            raise SiteError(str(exc)) from None

    def accepts(self, sending_application: str | None, sending_facility: str | None) -> bool:
        """True when MSH-3 / MSH-4 identify this site (each given key must match)."""
        if not self.match:
            return False
        app, fac = self.match.get("sending_application"), self.match.get("sending_facility")
        if app and app != (sending_application or ""):
            return False
        if fac and fac != (sending_facility or ""):
            return False
        return bool(app or fac)


def load_site(folder: Path, code_maps: dict[str, CodeMap] | None = None) -> Site:
    """Read and check ``folder/site.yaml``; raises :class:`SiteError`."""
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SiteError(f"{path}: no manifest") from None
    except yaml.YAMLError as exc:
        raise SiteError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SiteError(f"{path}: the manifest must be a mapping of keys")
    try:
        data = _SCHEMA.load(raw, unknown=RAISE)
    except ValidationError as exc:
        lines = _flatten(exc.messages)
        raise SiteError(f"{path}: " + "; ".join(lines)) from None
    if data["name"] != folder.name:
        raise SiteError(
            f"{path}: name: {data['name']!r} differs from the folder name {folder.name!r}"
        )
    if data["adapter"] == "hl7v2" and not data.get("match"):
        raise SiteError(f"{path}: match: required for an hl7v2 site (MSH-3 / MSH-4)")
    site = Site(data, folder)
    if code_maps is not None:
        site.load_overrides(code_maps)
    return site


def load_sites(
    folders: list[Path] | None = None, code_maps: dict[str, CodeMap] | None = None
) -> dict[str, Site]:
    """Every site under ``folders`` (default ``conformance/sites``), keyed by name.

    ``code_maps`` are the shared maps overrides apply to; by default those in
    ``mappings/``. A site name used twice is an error.
    """
    if code_maps is None:
        code_maps = load_code_maps([MAPPINGS_DIR]) if MAPPINGS_DIR.is_dir() else {}
    sites: dict[str, Site] = {}
    for base in folders or [SITES_DIR]:
        for manifest in sorted(Path(base).glob(f"*/{MANIFEST}")):
            site = load_site(manifest.parent, code_maps)
            if site.name in sites:
                raise SiteError(
                    f"{manifest}: site {site.name!r} already declared in {sites[site.name].folder}"
                )
            sites[site.name] = site
    return sites
