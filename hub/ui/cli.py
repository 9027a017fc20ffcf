"""``hub ui``: dashboard accounts (until ``hub.security`` provides user management)."""

from __future__ import annotations

import click


@click.group("ui")
def ui():
    """The web dashboard at /ui."""


@ui.command("create-user")
@click.argument("username")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(["archive-manager", "integration-engineer", "admin"]),
)
@click.option("--jurisdiction", default="", help="Division code or Organization/ID ('' = all).")
@click.password_option()
def create_user(username, roles, jurisdiction, password):
    """Create or replace a dashboard account."""
    from hub.cli import _hub
    from hub.completeness import jurisdiction as juris
    from hub.ui import accounts

    with _hub().engine.begin() as conn:
        try:
            accounts.backend().create_user(
                conn, username, password, list(roles), juris.check(jurisdiction)
            )
        except ValueError as err:
            raise click.UsageError(str(err)) from None
    click.echo(f"user {username} ({', '.join(roles)}) saved")
