"""Run conformance kit cases through a hub's ingestion pipeline.

Each case is mapped with :meth:`hub.ingest.pipeline.Pipeline.map` (the
adapter's Bundle, compared with the golden files by :mod:`hub.testing`) and,
when ``store`` is on, also ingested, to show that the hub accepts what the
golden says it should (a Bundle stored as ``done``/``partial``) and refuses
what it should (``failed``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from hub.outcomes import OperationOutcomeError
from hub.sites import MANIFEST
from hub.testing import EXPECTED
from hub.testing import Case
from hub.testing import Difference
from hub.testing import Kit
from hub.testing import KitError
from hub.testing import MappingResult
from hub.testing import development_identity_key
from hub.testing import golden_differences
from hub.testing import read_input
from hub.testing import write_golden

if TYPE_CHECKING:
    from hub.kernel import Hub

PASSED, FAILED, ERROR, UPDATED, SKIPPED = "passed", "failed", "error", "updated", "skipped"


@dataclasses.dataclass
class CheckResult:
    """One case's (or one endpoint check's) verdict; shared by every report."""

    group: str  # the site (kits) or the resource type (endpoint checks)
    name: str
    status: str
    message: str = ""
    differences: list[Difference] = dataclasses.field(default_factory=list)
    duration: float = 0.0

    @property
    def id(self) -> str:
        return f"{self.group}/{self.name}"

    @property
    def ok(self) -> bool:
        return self.status in (PASSED, UPDATED, SKIPPED)


def map_case(pipeline: Any, kit: Kit, case: Case) -> MappingResult:
    """The adapter's result for the case's input (a rejection is a result, not an error)."""
    site = _site(pipeline, kit)
    try:
        bundle, issues = pipeline.map(site, read_input(case), kit.content_type(case))
    except OperationOutcomeError as err:
        return MappingResult.from_error(err)
    return MappingResult(bundle, list(issues))


def run_case(
    pipeline: Any, kit: Kit, case: Case, *, update: bool = False, store: bool = False
) -> CheckResult:
    """Map (and optionally store) one case and compare it with its golden files."""
    started = time.perf_counter()
    try:
        result = map_case(pipeline, kit, case)
        if update:
            written = write_golden(result, case.folder)
            status, message, differences = UPDATED, "wrote " + ", ".join(written or ["nothing"]), []
        else:
            differences = golden_differences(result, case.folder)
            status = FAILED if differences else PASSED
            message = (
                f"{len(differences)} difference(s) from the golden files" if differences else ""
            )
        if store and status != FAILED:
            problem = store_problem(pipeline, kit, case)
            if problem:
                status, message = FAILED, problem
    except (KitError, OSError) as err:
        status, message, differences = ERROR, str(err), []
    except Exception as err:  # noqa: BLE001 - one broken adapter case must not stop the run
        status, message, differences = ERROR, f"{type(err).__name__}: {err}", []
    return CheckResult(
        kit.name, case.name, status, message, differences, time.perf_counter() - started
    )


def run_kits(
    pipeline: Any,
    kits: list[Kit],
    *,
    update: bool = False,
    store: bool = False,
    progress: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Every case of every kit, in kit and case order."""
    results = []
    for kit in kits:
        if not kit.cases:
            empty = CheckResult(kit.name, "(no cases)", SKIPPED, "add cases/<case>/input.<ext>")
            if progress:
                progress(empty)
            results.append(empty)
        for case in kit.cases:
            result = run_case(pipeline, kit, case, update=update, store=store)
            if progress:
                progress(result)
            results.append(result)
    return results


@contextlib.contextmanager
def scratch_hub(sites_dirs: list[Path] | None = None) -> Iterator[Any]:
    """A hub on a throw-away SQLite database, configured like the real one otherwise.

    Settings come from the defaults, the instance ``config.py`` and ``HUB_*``
    variables, as for ``hub serve``, but nothing is written to the configured
    database, and ids are derived with the development identity key (the one
    golden files are made with). ``sites_dirs`` replace the configured site
    folders; each may be a folder of sites or one site folder.
    """
    from hub import config as settings
    from hub.kernel import Hub

    config = settings.load(settings.instance_path())
    if sites_dirs:
        folders = [p.parent if (p / MANIFEST).is_file() else p for p in map(Path, sites_dirs)]
        config["LOAD_EXAMPLE_SITES"] = False
        config["SITES_DIR"] = os.pathsep.join(str(f.resolve()) for f in dict.fromkeys(folders))
    with (
        development_identity_key(),
        tempfile.TemporaryDirectory(prefix="hub-conformance-") as tmp,
    ):
        config["DATABASE_URL"] = f"sqlite:///{Path(tmp) / 'conformance.db'}"
        config["AUTO_MIGRATE"] = True
        the_hub = Hub(config, tmp)
        try:
            yield the_hub
        finally:
            the_hub.close()


def site_folders(the_hub: Hub) -> list[Path]:
    """The folders the hub read its sites from (where their kits are)."""
    return sorted({Path(s.folder) for s in the_hub.sites.values() if s.folder})


def _site(pipeline: Any, kit: Kit) -> Any:
    # The hub's own Site when it knows the kit's site, so mapping and storing agree.
    sites = getattr(pipeline.hub, "sites", {}) or {}
    return sites.get(kit.name, kit.site)


def store_problem(pipeline: Any, kit: Kit, case: Case) -> str | None:
    """Why storing the case went otherwise than its golden files say (None: as expected)."""
    if kit.name not in (getattr(pipeline.hub, "sites", {}) or {}):
        return None  # the hub does not serve this site; mapping alone was checked
    result = pipeline.ingest(kit.name, read_input(case), content_type=kit.content_type(case))
    accepted = (Path(case.folder) / EXPECTED).exists()
    status = result.status
    if accepted and status in ("done", "partial"):
        return None
    if not accepted and status == "failed":
        return None
    first = next(iter((result.outcome or {}).get("issue") or []), {})
    where = ",".join(first.get("expression") or [])
    said = f"{first.get('diagnostics', '')} {where}".strip()
    want = "stored (done or partial)" if accepted else "refused (failed)"
    return f"the hub's ingestion gave status {status!r}, expected {want}: {said}"
