"""``hub clients``, ``hub token``, ``hub keys``, ``hub users`` and ``hub audit`` commands."""

from __future__ import annotations

import datetime as dt
import sys

import click
import orjson

from hub.storage.db import reading
from hub.storage.db import writing


def _hub():
    """The hub for this command, closed (engine disposed) when the command ends."""
    from hub.cli_context import make_hub as make

    hub = make()
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(hub.close)
    return hub


def _echo_json(value) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


@click.group()
def clients():
    """OAuth2 clients of site systems (client-credentials tokens)."""


@clients.command("add")
@click.argument("name")
@click.option("--site", default=None, help="The site this client writes as (site isolation).")
@click.option(
    "--scopes", required=True, help='Granted scopes, e.g. "system/*.rs system/Observation.c".'
)
@click.option("--grant-label", "grants", multiple=True, help="A security-label grant (repeatable).")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    help="A SMART app's redirect URI, matched exactly (repeatable).",
)
@click.option("--public", is_flag=True, help="A public SMART app: no secret, PKCE instead.")
@click.option(
    "--jwks",
    "jwks_file",
    type=click.File("rb"),
    default=None,
    help="A JWK Set file of the client's public keys (private_key_jwt; no secret).",
)
@click.option("--jwks-uri", default=None, help="The https URL of the client's JWK Set.")
def clients_add(name, site, scopes, grants, redirect_uris, public, jwks_file, jwks_uri):
    """Register a client; prints its id and secret (the secret is shown only now).

    Apps and services with keys get no secret: a public app (--public) proves itself with
    PKCE, a backend service with keys (--jwks or --jwks-uri) with signed assertions.
    """
    from hub.security.clients import add_client

    jwks = None
    if jwks_file is not None:
        try:
            jwks = orjson.loads(jwks_file.read())
        except orjson.JSONDecodeError as err:
            raise click.UsageError(f"--jwks: not JSON ({err})") from None
    hub = _hub()
    try:
        with writing(hub.engine) as conn:
            client, secret = add_client(
                conn,
                name,
                scopes,
                site,
                list(grants),
                redirect_uris=redirect_uris,
                public=public,
                jwks=jwks,
                jwks_uri=jwks_uri,
            )
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    out = client.as_dict()
    if secret is not None:
        out["client_secret"] = secret
    _echo_json(out)


@clients.command("list")
def clients_list():
    """List clients (never their secrets)."""
    from hub.security.clients import list_clients

    with reading(_hub().engine) as conn:
        _echo_json([c.as_dict() for c in list_clients(conn)])


@clients.command("revoke")
@click.argument("client")
def clients_revoke(client):
    """Revoke a client (by id or name): no new tokens; issued ones stop within seconds."""
    from hub.security.clients import revoke_client

    with writing(_hub().engine) as conn:
        if not revoke_client(conn, client):
            raise click.ClickException(f"no active client {client!r}")
    click.echo(f"client {client} revoked")


@clients.command("unlock")
@click.argument("client")
@click.option("--address", default=None, help="Also lift the lockout of this network address.")
def clients_unlock(client, address):
    """Lift a token-endpoint lockout of CLIENT (by id or name) before it expires."""
    from hub.security import lockout
    from hub.security.clients import get_client

    hub = _hub()
    with reading(hub.engine) as conn:
        found = get_client(conn, client)
    client_id = found.client_id if found else client
    keys = [lockout.client_key(client_id), lockout.address_key(address)]
    lockout.clear(hub.engine, [k for k in keys if k])
    click.echo(f"client {client_id} unlocked" + (f", address {address}" if address else ""))


@click.command("token")
@click.argument("client")
@click.option("--scopes", default=None, help="Scopes (a subset of the client's; default all).")
@click.option("--lifetime", type=int, default=None, help="Seconds (default TOKEN_LIFETIME).")
def token(client, scopes, lifetime):
    """Mint an access token for CLIENT (scripts and tests); prints the token."""
    from hub.security.clients import get_client
    from hub.security.scopes import negotiate

    hub = _hub()
    with reading(hub.engine) as conn:
        found = get_client(conn, client)
    if found is None or not found.active:
        raise click.ClickException(f"no active client {client!r}")
    # The token endpoint's rule (docs/security.md, scope negotiation).
    scope, refused = negotiate(scopes, found.scopes) if scopes else (found.scopes, [])
    if not scope:
        raise click.ClickException(f"none of the scopes is granted; the client has {found.scopes}")
    if refused:
        click.echo(f"not granted, left out: {' '.join(refused)}", err=True)
    click.echo(
        hub.security.mint(found.client_id, scope, "client", found.site, found.grants, lifetime)
    )


@click.group()
def keys():
    """Token signing keys: list, rotate, retire."""


@keys.command("list")
def keys_list():
    _echo_json(_hub().security.keys.listing())


@keys.command("rotate")
def keys_rotate():
    """Add a new signing key; tokens signed with older keys verify until those are retired."""
    click.echo(_hub().security.keys.rotate())


@keys.command("retire")
@click.argument("kid")
def keys_retire(kid):
    """Stop accepting tokens signed with KID (all processes within KEY_CACHE_SECONDS)."""
    if not _hub().security.keys.retire(kid):
        raise click.ClickException(f"no active key {kid!r}")
    click.echo(f"key {kid} retired")


@click.group()
def users():
    """Web-page user accounts."""


@users.command("add")
@click.argument("username")
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(["archive-manager", "integration-engineer", "auditor", "admin"]),
    help="A staff role (repeatable); a person's own account has none.",
)
@click.option("--jurisdiction", default=None, help="Administrative division code.")
@click.option("--grant-label", "grants", multiple=True, help="A security-label grant (repeatable).")
@click.option(
    "--patient",
    default=None,
    help="A person's own account: the id of their Patient (SMART patient-facing apps).",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_add(username, roles, jurisdiction, grants, patient, password_stdin):
    """Add a staff user (--role) or a person's own account (--patient); the password is
    asked for, or read from stdin."""
    from hub.security.users import create_user

    if not roles and patient is None:
        raise click.UsageError("give a --role (staff) or --patient (a person's own account)")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    hub = _hub()
    if patient is not None:
        stored = hub.repo.read("Patient", patient)
        if stored is None or stored.deleted:
            raise click.UsageError(f"--patient: there is no Patient/{patient}")
    try:
        with writing(hub.engine) as conn:
            user = create_user(
                conn, username, password, roles, jurisdiction, list(grants), patient=patient
            )
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    _echo_json(user.as_dict())


@users.command("list")
def users_list():
    from hub.security.users import list_users

    with reading(_hub().engine) as conn:
        _echo_json([u.as_dict() for u in list_users(conn)])


@users.command("unlock")
@click.argument("username")
def users_unlock(username):
    """Lift a lockout after failed logins."""
    from hub.security.users import unlock

    with writing(_hub().engine) as conn:
        if not unlock(conn, username):
            raise click.ClickException(f"no user {username!r}")
    click.echo(f"user {username} unlocked")


@click.group("audit")
def audit_group():
    """The audit trail: verify the hash chain, checkpoint it, prune beyond the retention period."""


@audit_group.command("verify")
def audit_verify():
    """Check the whole chain; exit 1 and list every missing, altered or re-chained range."""
    from hub.security.audit_verify import verify

    result = verify(_hub().engine)
    if result.ok:
        matched = f", {result.checkpoints} checkpoints matched" if result.checkpoints else ""
        click.echo(f"audit chain intact: {result.checked} events{matched}")
    else:
        click.echo(f"audit chain BROKEN ({result.checked} events read):", err=True)
        for finding in result.findings:
            click.echo(f"  {finding}", err=True)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if not result.ok:
        sys.exit(1)


@audit_group.command("checkpoint")
def audit_checkpoint():
    """Write a checkpoint of the chain's head now (AUDIT_CHECKPOINT_FILE / _URL)."""
    from hub import audit

    try:
        mark = audit.checkpoint(_hub().engine)
    except OSError as err:
        raise click.ClickException(f"checkpoint not written: {err}") from None
    if mark is None:
        click.echo("the audit chain is empty: nothing to checkpoint")
    else:
        click.echo(f"checkpoint at seq {mark['seq']}: {mark['hash']}")


@audit_group.command("prune")
@click.option(
    "--older-than",
    required=True,
    help="A date (2026-01-31) or an age in days (200d); refused inside the retention period.",
)
def audit_prune(older_than):
    """Delete audit events recorded before a date (never inside AUDIT_RETENTION_DAYS)."""
    from hub import audit

    hub = _hub()
    now = dt.datetime.now(dt.UTC)
    text = older_than.strip()
    try:
        if text.endswith("d") and text[:-1].isascii() and text[:-1].isdigit():
            cutoff = now - dt.timedelta(days=int(text[:-1]))
        else:
            cutoff = dt.datetime.fromisoformat(text)
            if cutoff.tzinfo is None:
                cutoff = cutoff.replace(tzinfo=dt.UTC)
    except ValueError:
        raise click.UsageError(f"--older-than takes a date or Nd, not {older_than!r}") from None
    try:
        n = audit.prune(hub.engine, cutoff, hub.security.retention_days, now)
    except audit.RetentionError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{n} audit events pruned")


COMMANDS = (clients, token, keys, users, audit_group)
