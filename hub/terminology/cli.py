"""``hub terminology``: load a site's local code table, list the codes it sends unmapped.

Registered on the ``hub`` command in :mod:`hub.cli` (docs/terminology.md).
"""

from __future__ import annotations

from pathlib import Path

import click
import orjson


def _hub():
    from hub.cli_context import make_hub

    return make_hub()


@click.group("terminology")
def terminology():
    """Code systems, value sets and the sites' code maps (docs/terminology.md)."""


@terminology.command("load")
@click.argument("site_name", metavar="SITE")
@click.argument("path", metavar="FILE", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--map",
    "map_id",
    default="hl7v2-local-lab",
    show_default=True,
    help="The code map the table overrides for the site.",
)
@click.option("--system", help="The URL of the site's local code system (default: see docs).")
def terminology_load(site_name, path, map_id, system):
    """Load FILE (CSV or XLSX: code, display, target code [, target system]) as SITE's
    local CodeSystem and its ConceptMap override of --map."""
    from hub.outcomes import OperationOutcomeError
    from hub.terminology.authoring import load_table

    the_hub = _hub()
    try:
        counts = load_table(the_hub, site_name, map_id, Path(path), system)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except OperationOutcomeError as err:
        text = "; ".join(i.get("diagnostics", "") for i in err.outcome.get("issue", []))
        raise click.UsageError(text) from None
    finally:
        the_hub.close()
    click.echo(
        f"{site_name}: {counts['codes']} local code(s), {counts['mapped']} mapped by {map_id}"
        f" ({counts['codes'] - counts['mapped']} still unmapped)"
    )


@terminology.command("unmapped")
@click.argument("site_name", metavar="SITE")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def terminology_unmapped(site_name, as_json):
    """The local codes SITE sent that no code map holds, most frequent first."""
    from hub.terminology.authoring import unmapped

    the_hub = _hub()
    try:
        found = unmapped(the_hub, site_name)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    finally:
        the_hub.close()
    if as_json:
        for u in found:
            line = {"map": u.map_id, "system": u.system, "code": u.code, "count": u.count}
            click.echo(orjson.dumps(line | {"last_item": u.last_item}).decode())
        return
    if not found:
        click.echo(f"{site_name}: no unmapped codes")
        return
    click.echo(f"{'count':>6}  {'map':<28} {'code':<16} system")
    for u in found:
        click.echo(f"{u.count:>6}  {u.map_id or '-':<28} {u.code:<16} {u.system or '-'}")
