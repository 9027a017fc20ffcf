"""Scaffolding a new site folder (``hub site new``).

A module of its own because it maps the example case with the ingestion
pipeline and writes golden files with :mod:`hub.testing`, which itself reads
:mod:`hub.sites`; keeping this here leaves ``hub.sites`` a leaf.
"""

from __future__ import annotations

from pathlib import Path

from hub.mapping import CodeMap
from hub.mapping import load_code_maps
from hub.paths import MAPPINGS_DIR
from hub.sites import ADAPTERS
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
  mrn: urn:oid:2.16.156.10011.0.99.{name}.mrn     # FILL-IN: the hospital's MRN assigning authority OID
  visit: urn:oid:2.16.156.10011.0.99.{name}.visit
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

_MATCH_STEPS = {
    "hl7v2": (
        "`match.sending_application` (MSH-3) and\n"
        "   `match.sending_facility` (MSH-4) are what the site's interface engine puts\n"
        "   in every message header; the hub routes MLLP messages to this site by them.\n"
        "   Put the same values in the example case's `input.hl7` MSH segment."
    ),
}
_DEFAULT_MATCH_STEP = (
    "This adapter does not route by message header; files\n"
    "   are sent to the site by name (`POST /fhir/$ingest?site=NAME`, `hub ingest --site`)."
)
_INPUT_EXTENSIONS = {"hl7v2": "hl7", "va_registry": "csv", "cda": "xml", "fhir": "json"}

_EXAMPLE_HL7 = (
    "MSH|^~\\&|FILL_IN_APP|FILL_IN_FACILITY|FHIRHUB|HUB|20240101080000||ADT^A28^ADT_A05|{name}-0001|P|2.5|||||CHN|UNICODE UTF-8\r"
    "EVN|A28|20240101080000\r"
    "PID|1||000001^^^FILL_IN_FACILITY^MR||测试^患者||19800101|2\r"
)
# One synthetic registry row (the person is invented; the ID number's check character is valid).
_EXAMPLE_REGISTRY_CSV = (
    "姓名,性别,身份证号,出生日期,优抚类别,伤残等级,伤残性质,户籍地址,联系电话,所属区市,"
    "入伍时间,退役时间,抚恤定补标准(元/月),状态\r\n"
    "王建国,男,370202195003120834,1950-03-12,残疾军人,六级,因战,山东省青岛市市南区香港中路1号,"
    "13800000001,市南区,1968-03,1975-12,2150,正常\r\n"
)
_EXAMPLES = {
    "hl7v2": ("register-person", "input.hl7", _EXAMPLE_HL7),
    "va_registry": ("register-veteran", "input.csv", _EXAMPLE_REGISTRY_CSV),
}


def scaffold_site(name: str, adapter: str, target_dir: Path) -> Path:
    """Write a new site folder ``target_dir/name`` and return it.

    The folder holds a manifest with FILL-IN markers, a README for the
    integration engineer and, for adapters with an example (HL7 v2, the
    veterans registry), one case whose golden files are what the adapter makes
    of it now, so ``hub conformance run NAME`` passes at once.
    """
    if not SITE_NAME.match(name):
        raise SiteError(f"site name {name!r}: lower-case letters, digits and '-' only")
    if adapter not in ADAPTERS:
        raise SiteError(f"adapter {adapter!r}: one of {', '.join(ADAPTERS)}")
    folder = Path(target_dir) / name
    if folder.exists():
        raise SiteError(f"{folder}: already exists")
    (folder / "mappings").mkdir(parents=True)
    match = ""
    if adapter == "hl7v2":
        match = "match:\n  sending_application: FILL_IN_APP     # MSH-3\n  sending_facility: FILL_IN_FACILITY  # MSH-4\n"
    (folder / MANIFEST).write_text(
        _MANIFEST_TEMPLATE.format(name=name, adapter=adapter, match=match), encoding="utf-8"
    )
    readme = _README_TEMPLATE.format(
        name=name,
        adapter=adapter,
        ext=_INPUT_EXTENSIONS.get(adapter, "<ext>"),
        match_step=_MATCH_STEPS.get(adapter, _DEFAULT_MATCH_STEP),
    )
    (folder / "README.md").write_text(readme, encoding="utf-8")
    (folder / "mappings" / ".keep").write_text("", encoding="utf-8")
    if adapter in _EXAMPLES:
        case_name, file_name, text = _EXAMPLES[adapter]
        case = folder / "cases" / case_name
        case.mkdir(parents=True)
        body = text.format(name=name).encode("utf-8")
        (case / file_name).write_bytes(body)
        code_maps = load_code_maps([MAPPINGS_DIR]) if MAPPINGS_DIR.is_dir() else {}
        _write_expected(load_site(folder, code_maps), body, case, code_maps)
    return folder


def _write_expected(site: Site, body: bytes, case: Path, code_maps: dict[str, CodeMap]) -> None:
    """Map the example input with the site's adapter and write its golden files.

    Uses the pipeline's mapping step and the kit's golden writer, so the new
    case compares exactly as ``hub conformance run`` will compare it.
    """
    from hub.ingest.pipeline import ADAPTER_FORMATS
    from hub.ingest.pipeline import map_payload
    from hub.outcomes import OperationOutcomeError
    from hub.plugins import get_plugin_manager
    from hub.testing import MappingResult
    from hub.testing import development_identity_key
    from hub.testing import write_golden

    pm = get_plugin_manager(only=[site.adapter])
    fmt = site.format or ADAPTER_FORMATS.get(site.adapter, site.adapter)
    try:
        with development_identity_key():
            bundle, issues = map_payload(pm, code_maps, site, body, fmt=fmt)
        result = MappingResult(bundle, list(issues))
    except OperationOutcomeError as err:
        if err.status == 415:
            return  # the adapter is not installed: the engineer writes the golden files
        result = MappingResult.from_error(err)
    write_golden(result, case)
