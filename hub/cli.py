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


def _app():
    from hub.app import create_app

    return create_app()


def _hub():
    from hub.app import get_hub

    return get_hub(_app())


@click.group()
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


def _instance_path() -> str:
    from flask import Flask

    return (
        os.environ.get("HUB_INSTANCE_PATH")
        or Flask("hub", instance_relative_config=True).instance_path
    )


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
    click.echo(", ".join(f"{n} {t}" for t, n in sorted(counts.items())) + " loaded")


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
    click.echo(f"{len(paths)} bundle(s) loaded")


def _add_security_commands() -> None:
    from hub.security.cli import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


_add_security_commands()


if __name__ == "__main__":  # ``python -m hub.cli``
    cli()
