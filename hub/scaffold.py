"""Scaffolding a new site folder (``hub site new``).

A module of its own because it maps the example case with the ingestion
pipeline and writes golden files with :mod:`hub.testing`, which itself reads
:mod:`hub.sites`; keeping this here leaves ``hub.sites`` a leaf.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hub.mapping import CodeMap
from hub.mapping import load_code_maps
from hub.paths import MAPPINGS_DIR
from hub.sites import MANIFEST
from hub.sites import SITE_NAME
from hub.sites import Site
from hub.sites import SiteError
from hub.sites import load_site

__all__ = ["scaffold_site"]

_MANIFEST_TEMPLATE = """\
# Site manifest: every key is described in docs/sites.md.
name: {name}
adapter: {adapter}
description: FILL-IN one line saying which system this is
organization:
  id: {name}
  name: FILL-IN the institution's name
  identifier:
    system: urn:oid:2.16.156.10011.1.5     # FILL-IN: organisation code system
    value: FILL-IN-organisation-code
{match}identifier_systems:
  # FILL-IN: the OIDs of the site's MRN and visit-number assigning authorities
  # (these placeholders are well-formed but name no real authority).
  mrn: urn:oid:2.16.156.10011.0.99.1.1     # FILL-IN
  visit: urn:oid:2.16.156.10011.0.99.1.2   # FILL-IN
encoding: utf-8
timezone: Asia/Shanghai
name_style: auto
code_maps: mappings/
validation: reject
plugins:
  {adapter}: {{}}
"""

_README_TEMPLATE = """\
# Site `{name}` ({adapter})

This folder declares one partner system and holds its conformance kit: real
(de-identified) messages the site sends, each with the FHIR the hub must make
of it. The kit passes as created, with one example case; make it describe the
real site step by step. Every `site.yaml` key is documented in `docs/sites.md`.

1. **Say who the site is.** In `site.yaml`, replace every `FILL-IN`:
   `description`, `organization.name` and `organization.identifier` (the
   institution's organisation code).
2. **Set the match keys.** {match_step}
3. **Set the identifier systems.** `identifier_systems.mrn` and `.visit` are
   the OIDs or URIs of the site's MRN and visit-number assigning authorities
   (ask the site; MRNs are unique only within it). Add `lab`, `order`,
   `practitioner` when the site sends those, and `codesystem` (the system of
   its local codes, CWE.3 `L`/`99zzz`) when it has an OID for them. Also check
   `encoding` (e.g. `gb18030` when messages do not name their character set),
   `timezone` and `name_style`.
4. **Add a real message as a case.** Create `cases/<what-it-shows>/` with the
   message as `input.{ext}` (exactly as received: bytes, encoding and line
   endings matter). Replace names and ID numbers by synthetic ones. Copy the
   example case's `expected.json` there as a starting point, or leave it out.
5. **Run the kit:** `hub conformance run {name}` (add `--sites-dir DIR` while
   the folder is outside `conformance/sites` and the hub's `SITES_DIR`; the
   run uses a throw-away database). Each failed case lists the
   JSON paths where the hub's result differs from the golden files, e.g.
   `entry[Patient/…].resource.gender: expected "female", got "unknown"`, and
   `--html report.html` writes them all to one page.
6. **Read the diff and fix the cause**, not the golden file: local codes that
   do not translate go in code-map overrides in this folder's `mappings/`
   (the manifest's `code_maps`; without that key the hub looks in
   `mappings/sites/{name}/`), one file per shared map it overrides, named
   like it (unmapped codes show as warnings in `expected-outcome.json`);
   settings the adapter reads go under `plugins.{adapter}` in `site.yaml`.
7. **Accept the result** once every path in the diff is what the site's data
   means: `hub conformance run {name} --update` rewrites `expected.json` (the
   Bundle) and `expected-outcome.json` (warnings and errors, or the rejection
   of a message the hub must refuse). Review the change in version control
   before committing it: the golden files are the contract.

A message the hub must refuse gets only `expected-outcome.json`; list in it
the issues' `severity`, `code` and `expression` (and `diagnostics` only when
the exact wording matters). See `conformance/README.md` for the kit layout.
"""

_DEFAULT_MATCH_STEP = (
    "This adapter does not route by message header; files\n"
    "   are sent to the site by name (`POST /fhir/$ingest?site=NAME`, `hub ingest --site`)."
)


def scaffold_site(name: str, adapter: str, target_dir: Path, pm: Any = None) -> Path:
    """Write a new site folder ``target_dir/name`` and return it.

    The folder holds a manifest with FILL-IN markers, a README for the
    integration engineer and, for adapters that describe an example (HL7 v2,
    the veterans registry), one case whose golden files are what the adapter
    makes of it now, so ``hub conformance run NAME`` passes at once. Any
    installed adapter is accepted (``register_adapters``); ``pm`` is the plugin
    manager to ask (default: every installed plugin).
    """
    from hub.plugins import adapters
    from hub.plugins import get_plugin_manager

    if not SITE_NAME.match(name):
        raise SiteError(f"site name {name!r}: lower-case letters, digits and '-' only")
    pm = pm or get_plugin_manager()
    known = adapters(pm)
    if adapter not in known:
        raise SiteError(
            f"adapter {adapter!r} is not installed; installed: {', '.join(sorted(known))}"
        )
    info = known[adapter]
    folder = Path(target_dir) / name
    if folder.exists():
        raise SiteError(f"{folder}: already exists")
    (folder / "mappings").mkdir(parents=True)
    (folder / MANIFEST).write_text(
        _MANIFEST_TEMPLATE.format(name=name, adapter=adapter, match=info.match), encoding="utf-8"
    )
    readme = _README_TEMPLATE.format(
        name=name,
        adapter=adapter,
        ext=info.input_extension,
        match_step=info.match_step or _DEFAULT_MATCH_STEP,
    )
    (folder / "README.md").write_text(readme, encoding="utf-8")
    (folder / "mappings" / ".keep").write_text("", encoding="utf-8")
    if info.example is not None:
        case_name, file_name, text = info.example
        case = folder / "cases" / case_name
        case.mkdir(parents=True)
        body = text.replace("{name}", name).encode("utf-8")
        (case / file_name).write_bytes(body)
        # The hub's maps and the plugins' (the example may use the adapter's own maps).
        folders = [MAPPINGS_DIR, *(Path(f) for x in pm.hook.register_code_maps() for f in x or ())]
        code_maps = load_code_maps([f for f in folders if f.is_dir()])
        _write_expected(load_site(folder, code_maps), body, case, code_maps, info.format, pm)
    return folder


def _write_expected(
    site: Site, body: bytes, case: Path, code_maps: dict[str, CodeMap], fmt: str, pm: Any
) -> None:
    """Map the example input with the site's adapter and write its golden files.

    Uses the pipeline's mapping step and the kit's golden writer, so the new
    case compares exactly as ``hub conformance run`` will compare it.
    """
    from hub.ingest.pipeline import map_payload
    from hub.outcomes import OperationOutcomeError
    from hub.testing import MappingResult
    from hub.testing import development_identity_key
    from hub.testing import write_golden

    fmt = site.format or fmt
    try:
        with development_identity_key():
            bundle, issues = map_payload(pm, code_maps, site, body, fmt=fmt)
        result = MappingResult(bundle, list(issues))
    except OperationOutcomeError as err:
        if err.status == 415:
            return  # the adapter is not installed: the engineer writes the golden files
        result = MappingResult.from_error(err)
    write_golden(result, case)
