"""The ``hub`` command.

Configuration comes from the environment (``HUB_DATABASE_URL`` ...) and the
instance config file, exactly as for the web app. Long jobs show progress bars.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import orjson

import hub as hub_pkg
from hub.cli_context import make_app as _app
from hub.cli_context import make_hub as _hub
from hub.config import instance_path as _instance_path
from hub.config import setting
from hub.storage.db import writing


class _HubGroup(click.Group):
    """The ``hub`` group; the plugins' commands (``register_cli_commands``) join it when first asked."""

    _plugins_added = False

    def _add_plugin_commands(self) -> None:
        if self._plugins_added:
            return
        self._plugins_added = True
        from hub.plugins import get_plugin_manager

        only = [p.strip() for p in os.environ.get("HUB_LOAD_PLUGINS", "").split(",") if p.strip()]
        pm = get_plugin_manager(only=only or None)
        for commands in pm.hook.register_cli_commands():
            for command in commands or ():
                _add_command(self, command)

    def list_commands(self, ctx):
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        if command is not None and not isinstance(command, click.Group):
            return command  # the hub's own (``hub db upgrade``): no plugin needs importing
        self._add_plugin_commands()
        return super().get_command(ctx, cmd_name)


def _add_command(group: click.Group, command: click.Command) -> None:
    """Add ``command`` to ``group``; a group of an existing group's name adds its subcommands."""
    existing = group.commands.get(command.name)
    if isinstance(existing, click.Group) and isinstance(command, click.Group):
        for name, sub in command.commands.items():
            existing.add_command(sub, name)
    else:
        group.add_command(command)


@click.group(cls=_HubGroup)
@click.version_option(hub_pkg.__version__, prog_name="fhirhub")
def cli():
    """fhirhub: one lifetime health file per person, exchanged over FHIR, HL7 v2, CDA and CSV."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--gunicorn", "use_gunicorn", is_flag=True, help="Serve with gunicorn (production).")
@click.option(
    "--workers", default=2, show_default=True, type=int, help="gunicorn worker processes."
)
@click.option("--threads", default=8, show_default=True, type=int, help="Threads per worker.")
@click.option("--debug", is_flag=True, help="Flask debug mode (development only).")
def serve(host, port, use_gunicorn, workers, threads, debug):
    """Serve the hub: the FHIR API at http://HOST:PORT/fhir."""
    if use_gunicorn:
        argv = [
            "gunicorn",
            "--bind",
            f"{host}:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--worker-class",
            "gthread",
            "hub.wsgi:app",
        ]
        # glibc gives each thread that allocates its own malloc arena (up to 8 per core),
        # and a threaded worker's freed memory then stays spread over them; two arenas
        # keep a threaded worker's resident memory closer to what it actually uses.
        os.environ.setdefault("MALLOC_ARENA_MAX", "2")
        os.execvp(argv[0], argv)
    app = _app()
    click.echo(f"fhirhub {hub_pkg.__version__} serving http://{host}:{port}/fhir", err=True)
    app.run(host=host, port=port, debug=debug, threaded=True, use_reloader=False)


@cli.group()
def db():
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision):
    """Create or migrate the database to the latest schema (Alembic)."""
    from hub.config import DEFAULTS
    from hub.storage import db as storage_db

    url = os.environ.get("HUB_DATABASE_URL", DEFAULTS["DATABASE_URL"])
    engine = storage_db.make_engine(url, _instance_path())
    storage_db.upgrade(engine, revision)
    click.echo(f"database at revision {storage_db.current_revision(engine)}")


@db.command("current")
def db_current():
    """Print the database's schema revision."""
    from hub.config import DEFAULTS
    from hub.storage import db as storage_db

    url = os.environ.get("HUB_DATABASE_URL", DEFAULTS["DATABASE_URL"])
    click.echo(
        storage_db.current_revision(storage_db.make_engine(url, _instance_path())) or "empty"
    )


@db.command("analyze")
def db_analyze():
    """Refresh PostgreSQL's planner statistics (run after bulk loads; upgrade runs it too)."""
    from hub.config import DEFAULTS
    from hub.storage import db as storage_db

    url = os.environ.get("HUB_DATABASE_URL", DEFAULTS["DATABASE_URL"])
    done = storage_db.analyze(storage_db.make_engine(url, _instance_path()))
    click.echo(f"analysed {len(done)} tables" if done else "nothing to analyse on SQLite")


def _analyze_after_load(the_hub) -> None:
    """Bulk loads change the tables' statistics wholesale: refresh them for the planner."""
    from hub.storage import db as storage_db

    storage_db.analyze(the_hub.engine)


@cli.command()
@click.option(
    "--if-empty", is_flag=True, help="Do nothing when the database already holds patients."
)
def demo(if_empty):
    """Load the demo data: Chinese resident files and Synthea patients (all synthetic)."""
    from hub.demo import load_demo

    the_hub = _hub()
    if if_empty and the_hub.repo.history_count("Patient") > 0:
        click.echo("demo data already present")
        return
    counts = load_demo(the_hub, progress=_progress)
    _analyze_after_load(the_hub)
    click.echo(", ".join(f"{n} {t}" for t, n in sorted(counts.items())) + " loaded")
    _demo_manager(the_hub)


def _demo_manager(the_hub) -> None:
    """An archive-manager account for the demo, with a random password kept in the instance folder."""
    import secrets

    from hub.demo import COUNTY
    from hub.security.users import create_user
    from hub.security.users import get_user

    path = Path(_instance_path()) / "demo-login.txt"
    with writing(the_hub.engine) as conn:
        if get_user(conn, "manager") is not None:
            return
        password = secrets.token_urlsafe(12)
        create_user(conn, "manager", password, ["archive-manager"], jurisdiction=COUNTY)
    path.write_text(f"web pages /ui: user manager, password {password}\n", encoding="utf-8")
    path.chmod(0o600)
    click.echo(f"archive manager for /ui: manager / {password} (also in {path})")


def _progress(items, label: str):
    return click.progressbar(items, label=label, file=sys.stderr, show_pos=True)


@cli.command()
def plugins():
    """List loaded plugins with their versions and hooks (JSON)."""
    from hub.plugins import plugin_info

    the_hub = _hub()
    click.echo(orjson.dumps(plugin_info(the_hub.pm), option=orjson.OPT_INDENT_2).decode())


@cli.command("load")
@click.argument("files", nargs=-1, type=click.Path(exists=True, path_type=Path))
def load(files):
    """Load FHIR Bundles (transaction/batch JSON files) through the FHIR API's code path."""
    from hub.fhir import bundles
    from hub.fhir.service import WriteOptions

    the_hub = _hub()
    paths = [p for f in files for p in (sorted(f.glob("*.json")) if f.is_dir() else [f])]
    with click.progressbar(paths, label="bundles", file=sys.stderr, show_pos=True) as bar:
        for path in bar:
            bundle = orjson.loads(path.read_bytes())
            bundles.process(the_hub.service, bundle, "", WriteOptions(prefer_return="minimal"))
    _analyze_after_load(the_hub)
    click.echo(f"{len(paths)} bundle(s) loaded")


@cli.command()
@click.option("--site", "site_name", required=True, help="The site the files come from.")
@click.option("--format", "fmt", default=None, help="Payload format (default: the site adapter's).")
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="Print only the totals line (failures are still named on stderr); for scripts.",
)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def ingest(site_name, fmt, quiet, paths):
    """Ingest files (or every file in folders) for a site through the pipeline.

    Prints, per file, its inbox status and each error and warning with its
    location (row, segment, XPath), then the totals (``6 done, 1 partial``).
    Exit status 1 when any file failed or was quarantined.

    Files are stored and processed in groups (``INGEST_GROUP_SIZE`` per
    database transaction); the results are those of one file at a time.
    """
    the_hub = _hub()
    try:
        failures = _ingest_files(the_hub, site_name, fmt, quiet, paths)
    finally:
        the_hub.close()
    if failures:
        sys.exit(1)


def _ingest_files(the_hub, site_name: str, fmt: str | None, quiet: bool, paths) -> list:
    """Ingest the files below ``paths``; prints the report and returns the failures."""
    from hub.ingest import report
    from hub.ingest.pipeline import runs

    files = [
        p
        for path in paths
        for p in (sorted(x for x in path.rglob("*") if x.is_file()) if path.is_dir() else [path])
    ]
    statuses: dict[str, int] = {}
    failures = []
    details: list[str] = []
    size = max(1, int(setting(the_hub.config, "INGEST_GROUP_SIZE")))
    with click.progressbar(
        length=len(files),
        label=f"ingesting for {site_name}",
        file=sys.stderr,
        show_pos=True,
        hidden=quiet,
    ) as bar:
        for group in runs(files, _content_type, size):
            results = the_hub.pipeline.ingest_many(
                site_name,
                [path.read_bytes() for path in group],
                fmt=fmt,
                content_type=_content_type(group[0]),
            )
            for path, result in zip(group, results, strict=True):
                status = "duplicate" if result.duplicate else result.status
                statuses[status] = statuses.get(status, 0) + 1
                if result.status in ("failed", "quarantined"):
                    failures.append((path, result.item))
                first, *issues = report.lines(result.item, result.duplicate)
                details += [f"{path}: {first}", *(f"  {line}" for line in issues)]
            bar.update(len(group))
    _analyze_after_load(the_hub)
    if not quiet:
        for line in details:
            click.echo(line)
    click.echo(", ".join(f"{n} {status}" for status, n in sorted(statuses.items())))
    for path, item in failures:
        first = next(iter((item.outcome or {}).get("issue", [])), {})
        where = ",".join(first.get("expression", []))
        click.echo(
            f"{path}: inbox item {item.id} {item.status}: {first.get('diagnostics')} {where}".rstrip(),
            err=True,
        )
    return failures


def _content_type(path: Path) -> str | None:
    return {
        ".hl7": "application/hl7-v2",
        ".xml": "application/xml",
        ".csv": "text/csv",
        ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ".json": "application/fhir+json",
    }.get(path.suffix.lower())


@cli.group()
def inbox():
    """Inbound messages: list, show, replay."""


@inbox.command("list")
@click.option(
    "--status",
    multiple=True,
    type=click.Choice(["pending", "done", "partial", "failed", "quarantined"]),
)
@click.option("--pending", is_flag=True, help="Only messages not processed yet.")
@click.option("--failed", is_flag=True, help="Only failed and quarantined messages.")
@click.option("--site", default=None)
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def inbox_list(status, pending, failed, site, limit, as_json):
    """List inbox items, newest first."""
    statuses = (
        list(status)
        + (["pending"] if pending else [])
        + (["failed", "quarantined"] if failed else [])
    )
    items = _hub().pipeline.inbox.list(status=statuses or None, site=site, limit=limit)
    if as_json:
        click.echo(orjson.dumps([i.summary() for i in items], option=orjson.OPT_INDENT_2).decode())
        return
    for i in items:
        first = (
            next(iter((i.outcome or {}).get("issue", [])), {})
            if i.status in ("failed", "quarantined")
            else {}
        )
        click.echo(
            f"{i.id:>8}  {i.status:<11} {i.site:<22} {i.source_key[:30]:<30} {i.received_at:%Y-%m-%d %H:%M:%S}  {first.get('diagnostics', '')}"
        )


@inbox.command("show")
@click.argument("item_id", type=int)
@click.option("--body", is_flag=True, help="Print the raw payload instead.")
def inbox_show(item_id, body):
    """Show one inbox item with its outcome (or its raw payload)."""
    item = _hub().pipeline.inbox.get(item_id, with_body=body)
    if item is None:
        raise click.ClickException(f"inbox item {item_id} does not exist")
    if body:
        sys.stdout.buffer.write(item.body or b"")
        return
    click.echo(orjson.dumps(item.summary(), option=orjson.OPT_INDENT_2).decode())


@inbox.command("replay")
@click.argument("item_ids", type=int, nargs=-1)
@click.option("--failed", is_flag=True, help="Replay every failed and quarantined item.")
@click.option("--site", default=None)
def inbox_replay(item_ids, failed, site):
    """Process items again (after fixing a mapping or a site manifest)."""
    pipeline = _hub().pipeline
    if failed:
        item_ids = [
            i.id
            for i in reversed(
                pipeline.inbox.list(status=["failed", "quarantined"], site=site, limit=100000)
            )
        ]
    if not item_ids:
        raise click.UsageError("name inbox item ids or give --failed")
    items = []
    with click.progressbar(item_ids, label="replaying", file=sys.stderr, show_pos=True) as bar:
        for item_id in bar:
            items.extend(pipeline.replay([item_id]))
    counts: dict[str, int] = {}
    for i in items:
        counts[i.status] = counts.get(i.status, 0) + 1
    click.echo(", ".join(f"{n} {k}" for k, n in sorted(counts.items())))


@cli.group()
def site():
    """Partner sites (declared as folders)."""


@site.command("new")
@click.argument("name")
@click.option("--adapter", required=True, help="Any installed adapter (`hub plugins` lists them).")
@click.option(
    "--dir",
    "target",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to create the site folder (default: conformance/sites).",
)
def site_new(name, adapter, target):
    """Scaffold a site folder: manifest, README and a first passing case."""
    from hub.paths import SITES_DIR
    from hub.scaffold import scaffold_site
    from hub.sites import SiteError

    try:
        folder = scaffold_site(name, adapter, target or SITES_DIR)
    except SiteError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"created {folder}; read {folder / 'README.md'} next")


@site.command("replay")
@click.argument("name")
@click.option(
    "--type", "res_types", multiple=True, required=True, help="A resource type (repeatable)."
)
def site_replay(name, res_types):
    """Queue for site NAME what every stored resource of each TYPE means to it, as if new.

    The first load of a site connected (or opted into more, e.g. the green channel's
    entitlements: --type Observation) after the data arrived; `hub worker` sends it.
    """
    from hub import outbound

    the_hub = _hub()
    try:
        target = the_hub.sites.get(name)
        if target is None or not target.outbound:
            raise click.ClickException(f"site {name!r} is unknown or has no outbound endpoint")
        for res_type in res_types:
            count = outbound.replay(the_hub, target, res_type)
            click.echo(f"{res_type}: {count} message(s) queued for {name}")
    finally:
        the_hub.close()


@site.command("list")
def site_list():
    """The sites this hub knows."""
    for s in _hub().sites.values():
        click.echo(f"{s.name:<24} {s.adapter:<12} {s.description}")


@cli.group()
def conformance():
    """Site conformance kits and FHIR endpoint checks."""


@conformance.command("run")
@click.argument("site_names", metavar="[SITE]...", nargs=-1)
@click.option(
    "--sites-dir",
    "sites_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Run the kits in this folder of sites (or this site folder) instead of the configured ones.",
)
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Write JUnit XML.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write an HTML report.",
)
@click.option(
    "--update",
    is_flag=True,
    envvar="HUB_REGEN_GOLDEN",
    help="Rewrite the golden files from what the adapter produces now (review the diff!).",
)
@click.option(
    "--no-store", is_flag=True, help="Only compare mappings; do not also ingest each case."
)
@click.option(
    "--show",
    "show_case",
    metavar="CASE",
    help="Print what the adapter makes of this case of SITE (the Bundle and every issue, "
    "information included) instead of comparing; writes nothing.",
)
def conformance_run(site_names, sites_dirs, junit, html_path, update, no_store, show_case):
    """Run site conformance kits: each case's input against its golden files.

    Every case is mapped by the site's adapter and compared with expected.json /
    expected-outcome.json, then ingested into a throw-away database to check the
    hub stores (or refuses) it. Exit status 1 when any case fails.
    """
    from hub.conformance import reports
    from hub.conformance.runner import run_kits
    from hub.conformance.runner import scratch_hub
    from hub.conformance.runner import site_folders
    from hub.sites import SiteError
    from hub.testing import KitError
    from hub.testing import discover_kits

    try:
        with scratch_hub(list(sites_dirs) or None) as the_hub:
            kits = discover_kits(site_folders(the_hub), the_hub.code_maps)
            if site_names:
                known = {k.name for k in kits}
                unknown = [n for n in site_names if n not in known]
                if unknown:
                    raise click.UsageError(
                        f"unknown site(s) {', '.join(unknown)}; known: {', '.join(sorted(known)) or 'none'}"
                    )
                kits = [k for k in kits if k.name in site_names]
            if show_case is not None:
                _show_case(the_hub, kits, site_names, show_case)
                return
            results = run_kits(the_hub.pipeline, kits, update=update, store=not no_store)
    except (SiteError, KitError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(reports.console_summary(results))
    reports.write_reports(results, junit, html_path, "fhirhub site conformance")
    if not all(r.ok for r in results):
        sys.exit(1)


@conformance.command("check-endpoint")
@click.argument("url")
@click.option(
    "--token",
    default=None,
    envvar="FHIR_BEARER_TOKEN",
    help="Bearer token sent with every request.",
)
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the bearer token from this file.",
)
@click.option(
    "--types",
    default=None,
    help="Only these resource types, comma-separated (e.g. Patient,Observation).",
)
@click.option("--timeout", default=30.0, show_default=True, help="Seconds per request.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Write JUnit XML.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write an HTML report.",
)
def conformance_check_endpoint(url, token, token_file, types, timeout, junit, html_path):
    """Test a FHIR R4 server against its own CapabilityStatement.

    For each resource type it claims (and this kit can generate) the claimed
    interactions are exercised on created test resources, and every claimed
    search parameter is searched with a value taken from one. The test
    resources are deleted afterwards when the server supports delete.
    """
    from hub.conformance import reports
    from hub.conformance.endpoint import EndpointChecker
    from hub.conformance.endpoint import FhirHttp

    if token_file:
        token = token_file.read_text(encoding="utf-8").strip()
    only = [t.strip() for t in types.split(",") if t.strip()] if types else None
    checker = EndpointChecker(FhirHttp(url, token=token, timeout=timeout), types=only)
    results = checker.run()
    click.echo(reports.console_summary(results, noun="checks"))
    reports.write_reports(
        results, junit, html_path, f"FHIR endpoint conformance: {url}", item="check"
    )
    if not all(r.ok for r in results):
        sys.exit(1)


def _show_case(the_hub, kits, site_names, case_name: str) -> None:
    """``conformance run SITE --show CASE``: the mapped Bundle, then every issue."""
    from hub.conformance.runner import map_case

    if len(site_names) != 1:
        raise click.UsageError("--show needs exactly one SITE")
    (kit,) = kits
    cases = {c.name: c for c in kit.cases}
    if case_name not in cases:
        known = ", ".join(sorted(cases)) or "none"
        raise click.UsageError(f"site {kit.name} has no case {case_name!r}; cases: {known}")
    result = map_case(the_hub.pipeline, kit, cases[case_name])
    if result.rejected:
        click.echo(f"rejected (HTTP {result.status}): no Bundle")
    else:
        click.echo(orjson.dumps(result.bundle, option=orjson.OPT_INDENT_2).decode())
    oo = {"resourceType": "OperationOutcome", "issue": result.issues}
    click.echo(orjson.dumps(oo, option=orjson.OPT_INDENT_2).decode())


@cli.command()
@click.option("--type", "res_types", multiple=True, help="Only these resource types (repeatable).")
def reindex(res_types):
    """Recompute the search indexes (after adding custom SearchParameters); safe while serving."""
    from hub.search.reindex import reindex as run_reindex

    the_hub = _hub()
    bar = click.progressbar(length=1, label="reindexing", file=sys.stderr, show_pos=True)

    def progress(done: int, total: int) -> None:
        bar.length = max(total, 1)
        bar.update(done - bar.pos)

    with bar:
        count = run_reindex(
            the_hub.engine, the_hub.indexer, list(res_types) or None, progress=progress
        )
    click.echo(f"{count} resource(s) reindexed")


@cli.command()
@click.option("--once", is_flag=True, help="One round, then exit (for cron and tests).")
@click.option(
    "--interval", default=1.0, show_default=True, help="Seconds between rounds when idle."
)
def worker(once, interval):
    """Process pending inbox items, keep colours and groups current, deliver outbound messages."""
    from hub.subscriptions import notify

    the_hub = _hub()
    websocket = notify.start_websocket(the_hub)
    try:
        _work(the_hub, once, interval)
    finally:
        if websocket is not None:
            websocket.stop()
        the_hub.close()


def _work(the_hub, once: bool, interval: float) -> None:
    import time

    from hub import outbound
    from hub.bulk import status as bulk_jobs
    from hub.lifetime import consumer
    from hub.subscriptions import notify as subscriptions

    while True:
        processed = the_hub.pipeline.process_pending()
        derived = consumer.run(the_hub)
        queued = outbound.dispatch(the_hub)
        counts = outbound.deliver(the_hub)
        exports = bulk_jobs.run_due(the_hub)
        if once and exports:
            click.echo(f"{exports} bulk job(s) run")
        notified = subscriptions.run(the_hub)  # match the feed, deliver notifications
        if once:
            click.echo(
                f"{processed} processed, {queued} queued, {counts['sent']} sent, {counts['retry']} to retry, {counts['dead']} dead, {derived} change(s) checked for colours and groups"
            )
            return
        if exports:
            continue  # more bulk jobs may be waiting
        if not (processed or queued or counts["sent"] or derived or notified["queued"]):
            time.sleep(interval)


@cli.group()
def groups():
    """Household (一户一档) and village (一村一卷) Groups."""


@groups.command("rebuild")
def groups_rebuild():
    """Recompute every household and village Group from the Patients."""
    from hub.lifetime import groups as lifetime_groups

    the_hub = _hub()
    try:
        counts = the_hub.repo.write(lifetime_groups.rebuild)
    finally:
        the_hub.close()
    click.echo(
        f"{counts['household']} household and {counts['village']} village group(s), "
        f"{counts['deleted']} stale group(s) deleted"
    )


@cli.group()
def export():
    """Reports and exports read from the database."""


@export.command("list")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def export_list(limit, as_json):
    """Bulk jobs ($export, asynchronous searches), newest first."""
    from hub.storage.jobs import JobStore

    the_hub = _hub()
    try:
        jobs = JobStore(the_hub.engine).list(limit=limit)
    finally:
        the_hub.close()
    if as_json:
        click.echo(orjson.dumps([j.summary() for j in jobs], option=orjson.OPT_INDENT_2).decode())
        return
    for j in jobs:
        click.echo(
            f"{j.id}  {j.kind:<10} {j.status:<9} {j.created_at:%Y-%m-%d %H:%M:%S}  "
            f"{j.owner or 'hub'}  {j.progress or ''}"
        )


@export.command("show")
@click.argument("job_id")
def export_show(job_id):
    """One bulk job: its request, progress, files (with counts) and errors."""
    from hub.storage.jobs import JobStore

    the_hub = _hub()
    try:
        job = JobStore(the_hub.engine).get(job_id)
    finally:
        the_hub.close()
    if job is None:
        raise click.ClickException(f"bulk job {job_id} does not exist (finished jobs expire)")
    click.echo(orjson.dumps(job.summary(), option=orjson.OPT_INDENT_2).decode())


@cli.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--errors",
    "errors_path",
    default="import-errors.ndjson",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="OperationOutcome NDJSON, one line per refused line (appended).",
)
@click.option("--restart", is_flag=True, help="Start each file from its top again.")
def import_ndjson(paths, errors_path, restart):
    """Import NDJSON files (or the *.ndjson in folders) through the FHIR write path.

    Resumable: a file imported before continues after its last stored line.
    Refused lines are reported in --errors and the import goes on; exit status 1
    when any line was refused.
    """
    from hub.bulk import importer

    the_hub = _hub()
    files = importer.files_of(list(paths))
    total = sum(f.stat().st_size for f in files)
    results = []
    try:
        with (
            open(errors_path, "ab") as errors_out,
            click.progressbar(length=max(total, 1), label="importing", file=sys.stderr) as bar,
        ):
            for path in files:
                results.append(
                    importer.import_file(
                        the_hub, path, errors_out, restart=restart, progress=bar.update
                    )
                )
        _analyze_after_load(the_hub)
    finally:
        the_hub.close()
    for r in results:
        resumed = f" (resumed at line {r.resumed_at + 1})" if r.resumed_at else ""
        click.echo(f"{r.path}: {r.stored} stored, {r.errors} refused{resumed}")
    if any(r.errors for r in results):
        click.echo(f"refused lines are described in {errors_path}", err=True)
        sys.exit(1)


def _register_groups() -> None:
    from hub.completeness.cli import audit

    existing = cli.commands.get("audit")
    if isinstance(existing, click.Group):  # one ``hub audit`` group shared with other parts
        for name, command in audit.commands.items():
            existing.add_command(command, name)
    else:
        cli.add_command(audit)


_register_groups()


def _add_security_commands() -> None:
    from hub.security.cli import COMMANDS

    for command in COMMANDS:
        # One group per name (``hub audit`` is shared with other parts): merge subcommands.
        _add_command(cli, command)


_add_security_commands()


def _add_terminology_commands() -> None:
    from hub.terminology.cli import terminology

    _add_command(cli, terminology)


_add_terminology_commands()


if __name__ == "__main__":  # ``python -m hub.cli``
    cli()
