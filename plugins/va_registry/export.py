"""``hub export veterans-report``: the report to the veterans bureau, read from the database.

The beneficiaries are the patients with a ``veteran-entitlement`` Observation
(ended ones too: :func:`.report.build_veterans_report` decides); their records
are read in batches through the plugin API, so memory stays bounded by the
batch, not the county.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import click

from fhirhub_plugins.va_registry.report import build_veterans_report
from fhirhub_plugins.va_registry.report import write_csv
from fhirhub_plugins.va_registry.report import write_xlsx
from hub.plugin_api import codesystems as cs
from hub.plugin_api import current_hub
from hub.plugin_api import patients_with_code
from hub.plugin_api import read_in_batches

if TYPE_CHECKING:
    from hub.plugin_api import Hub

_TYPES = ("Patient", "Observation", "Encounter", "Flag", "Condition")


def veteran_ids(conn: Any) -> list[str]:
    """Patients with a veterans-registry entitlement."""
    return patients_with_code(conn, "Observation", cs.VETERAN_STATUS, "veteran-entitlement")


def veterans_report(
    the_hub: Hub,
    since: dt.date,
    until: dt.date,
    *,
    unmask: bool = False,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, str]]:
    """The report rows for ``since <= date <= until``; ``progress(n)`` after each batch."""
    with the_hub.repo.reading() as conn:
        ids = veteran_ids(conn)
    rows: list[dict[str, str]] = []
    for resources in read_in_batches(the_hub, ids, _TYPES, progress=progress):
        rows.extend(build_veterans_report(resources, since, until, unmask=unmask))
    rows.sort(key=lambda r: (r["日期"], r["身份证号"], r["事件"], r["五色分类"]))
    return rows


@click.group()
def export():
    """Reports and exports read from the database."""


@export.command("veterans-report")
@click.option("--since", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First day.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Last day (default: today).")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "xlsx"]), default="csv", show_default=True
)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), help="File.")
@click.option("--unmask", is_flag=True, help="Full resident ID numbers (only for entitled staff).")
def export_veterans_report(since, until, fmt, out_path, unmask):
    """The report to the veterans bureau: admissions, rounds and consultations, and five-colour
    changes of beneficiaries."""
    first = since.date()
    last = until.date() if until else dt.date.today()
    if last < first:
        raise click.BadParameter("--until is before --since", param_hint="--until")
    the_hub = current_hub()
    try:
        out_path = out_path or Path(f"veterans-report-{first}-{last}.{fmt}")
        with the_hub.repo.reading() as conn:
            total = len(veteran_ids(conn))
        with click.progressbar(
            length=total, label="beneficiaries", file=sys.stderr, show_pos=True
        ) as bar:
            rows = veterans_report(the_hub, first, last, unmask=unmask, progress=bar.update)
        (write_xlsx if fmt == "xlsx" else write_csv)(rows, out_path)
        click.echo(f"{len(rows)} row(s) for {total} beneficiary(ies) written to {out_path}")
    finally:
        the_hub.close()


COMMANDS = [export]
