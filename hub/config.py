"""Configuration: every setting declared once, with its default, type and help.

Values come from the defaults below, then ``instance/config.py``, then ``HUB_*``
environment variables (``HUB_DATABASE_URL=postgresql+psycopg://127.0.0.1/test``;
values are parsed as JSON when they look like JSON, numbers or ``true``, else
taken as text). Code reads a setting with :func:`setting`, never with a default
of its own. ``docs/settings.md`` is generated from :data:`SETTINGS`
(``python tools/settings_reference.py``); a test keeps the two equal.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import types
from pathlib import Path
from typing import Any

MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting: its name (``HUB_`` + name in the environment), default, type and help."""

    name: str
    default: Any
    type: type
    help: str
    # Read from the environment only (a secret, or needed before the configuration loads).
    env_only: bool = False


SETTINGS: tuple[Setting, ...] = (
    # -- storage and the instance -------------------------------------------------------
    Setting(
        "INSTANCE_PATH",
        "",
        str,
        "The instance folder (config.py, the SQLite database, keys); "
        "empty: Flask's default `instance/`.",
        env_only=True,
    ),
    Setting(
        "DATABASE_URL",
        "sqlite:///instance/hub.db",
        str,
        "SQLAlchemy URL of the database; `sqlite:///instance/hub.db` is resolved against "
        "the instance folder.",
    ),
    Setting(
        "READ_DATABASE_URL",
        "",
        str,
        "SQLAlchemy URL of a streaming replica of the PostgreSQL database: reads and searches "
        "go there, writes and reads after the client's own write stay on the primary "
        "(docs/scaling.md#read-replicas); empty: everything on `DATABASE_URL`.",
    ),
    Setting("POOL_SIZE", 8, int, "Database connections per process (PostgreSQL).", env_only=True),
    Setting(
        "SQLITE_CACHE_MIB",
        16,
        int,
        "Page cache of each SQLite connection (MiB); emptied whenever another connection"
        " has written, so a large one buys little.",
        env_only=True,
    ),
    Setting(
        "SQLITE_MMAP_MIB",
        64,
        int,
        "How much of the SQLite file each process reads through a memory map (MiB); mapped"
        " pages count in the web worker's resident memory. 0: plain reads.",
        env_only=True,
    ),
    Setting(
        "POOL_RECYCLE",
        1800,
        int,
        "Seconds after which a pooled database connection is replaced (PostgreSQL).",
        env_only=True,
    ),
    Setting(
        "AUTO_MIGRATE",
        True,
        bool,
        "Create or migrate the schema when the app starts (set false for several processes "
        "sharing one PostgreSQL; run `hub db upgrade` once instead).",
    ),
    # -- the FHIR API -------------------------------------------------------------------
    Setting(
        "BASE_URL",
        "",
        str,
        "Public base URL of the FHIR endpoint (fullUrl, Location, "
        "paging links); empty: derived from each request.",
    ),
    Setting(
        "TIMEZONE",
        "Asia/Shanghai",
        str,
        "Time zone of dates and times given without one (FHIR search, HL7 v2 defaults).",
    ),
    Setting(
        "MAX_CONTENT_LENGTH",
        64 * MiB,
        int,
        "Largest request body accepted, in bytes (413 above it).",
    ),
    Setting(
        "MAX_NESTING_DEPTH",
        64,
        int,
        "Deepest nesting of JSON objects / XML elements in a request body (docs/validation.md).",
    ),
    Setting(
        "MAX_STRING_LENGTH",
        MiB,
        int,
        "Longest string in a request body, in characters "
        "(FHIR's own limit; base64Binary data is exempt).",
    ),
    Setting("DEFAULT_COUNT", 20, int, "Search page size when the client gives no `_count`."),
    Setting("MAX_COUNT", 1000, int, "Largest search page size allowed."),
    Setting(
        "SEARCH_MAX_CHAIN_DEPTH",
        3,
        int,
        "Links one search parameter may chain or nest (`subject:Patient.name` is one, "
        "`_has:A:x:_has:B:y:code` two); deeper searches get a 400 (docs/search.md).",
    ),
    Setting(
        "SEARCH_TIMEOUT",
        30,
        float,
        "Seconds one search may run, all its statements together, before it is stopped "
        "(503 too-costly); 0: no limit.",
    ),
    Setting(
        "SEARCH_ANALYZE_INTERVAL",
        10,
        float,
        "PostgreSQL with autovacuum off: every this many seconds a search looks for search "
        "tables changed by over 10 % since their last ANALYZE and analyses them in the "
        "background, so the planner picks the right indexes; 0: never (run `hub db analyze`).",
    ),
    Setting(
        "EVERYTHING_COUNT", 1000, int, "`$everything` page size when the client gives no `_count`."
    ),
    Setting(
        "BINARY_MAX_SIZE",
        32 * MiB,
        int,
        "Largest content of one Binary, in bytes (413 above it; docs/binary.md).",
    ),
    Setting(
        "ATTACHMENT_INLINE_MAX",
        64 * 1024,
        int,
        "Largest DocumentReference attachment kept inline as base64, in bytes; larger ones "
        "are stored as a Binary and the attachment points at it (docs/binary.md).",
    ),
    Setting(
        "CORS_ORIGINS",
        "",
        str,
        "Browser origins allowed to call the API, comma-separated "
        "(`https://app.example.org`); empty: none (docs/security.md#cors).",
    ),
    Setting("CORS_MAX_AGE", 600, int, "Seconds a browser may cache a CORS preflight answer."),
    Setting(
        "TRUSTED_PROXY_HOPS",
        0,
        int,
        "Reverse proxies in front of the hub whose `X-Forwarded-*` headers are trusted; "
        "0: forwarded headers are ignored (docs/security.md#behind-a-reverse-proxy).",
    ),
    # -- plugins, sites, code maps, profiles --------------------------------------------
    Setting(
        "LOAD_PLUGINS",
        "",
        str,
        "Plugins to load: comma-separated entry-point names; empty: all installed.",
    ),
    Setting("TRACE_PLUGINS", False, bool, "Log every plugin hook call."),
    Setting(
        "SITES_DIR",
        "",
        str,
        "Extra folders of site manifests (colon-separated), added to `conformance/sites`.",
    ),
    Setting(
        "LOAD_EXAMPLE_SITES",
        True,
        bool,
        "Load the example sites in `conformance/sites` (switch off in production).",
    ),
    Setting("MAPPINGS_DIR", "", str, "Extra folders of code maps, added to `mappings/`."),
    Setting("PROFILES_DIR", "", str, "Extra folders of profiles, added to `profiles/`."),
    # -- security (docs/security.md) ----------------------------------------------------
    Setting(
        "SECRET_KEY",
        "",
        str,
        "Key of the web sessions; generated into the instance folder when unset.",
        env_only=True,
    ),
    Setting(
        "IDENTITY_KEY",
        "",
        str,
        "Key of the Patient ids derived from resident ID numbers; "
        "never change it once data is stored.",
        env_only=True,
    ),
    Setting("TOKEN_LIFETIME", 3600, int, "Access tokens live this long (seconds)."),
    Setting(
        "KEY_CACHE_SECONDS",
        60,
        float,
        "How long a process trusts its cached copy of the signing keys (seconds).",
    ),
    Setting(
        "TOKEN_CACHE_SIZE",
        1024,
        int,
        "Access tokens whose signature each process remembers having verified, so a client's"
        " next requests skip the check; expiry, key retirement and the client's status are"
        " still checked on every request. 0 turns the cache off.",
    ),
    Setting(
        "CLIENT_STATUS_SECONDS",
        30,
        float,
        "How long a process trusts its cached copy of a client's status (seconds).",
    ),
    Setting(
        "RATE_LIMIT_PER_SECOND",
        100,
        float,
        "Requests per second per client (token bucket per process); 0 turns it off.",
    ),
    Setting("RATE_LIMIT_BURST", 200, float, "Burst of requests a client may make at once."),
    Setting(
        "LOGIN_MAX_FAILURES",
        5,
        int,
        "Web-page logins: lock the account after this many failures in a row.",
    ),
    Setting("LOGIN_LOCKOUT_MINUTES", 15, float, "How long a locked web account stays locked."),
    Setting(
        "CLIENT_AUTH_MAX_FAILURES",
        10,
        int,
        "Token endpoint: failed authentications "
        "allowed per client id before a lockout (0: no limit).",
    ),
    Setting(
        "CLIENT_AUTH_MAX_FAILURES_PER_ADDRESS",
        50,
        int,
        "Token endpoint: failed "
        "authentications allowed per network address before a lockout (0: no limit).",
    ),
    Setting(
        "CLIENT_AUTH_LOCKOUT_SECONDS",
        60,
        float,
        "First token-endpoint lockout (seconds), doubled at each lockout in a row.",
    ),
    Setting(
        "CLIENT_AUTH_LOCKOUT_MAX_SECONDS", 3600, float, "Longest token-endpoint lockout (seconds)."
    ),
    Setting(
        "JWKS_URI_ALLOWED",
        "",
        str,
        "URL prefixes (space-separated) of client jwks_uri the hub fetches although they are"
        " plain http or on a private network; every other jwks_uri must be public https.",
    ),
    Setting(
        "JWKS_CACHE_SECONDS", 300, float, "How long a fetched client JWK Set is trusted (seconds)."
    ),
    Setting(
        "SMART_CODE_SECONDS", 60, int, "SMART authorization codes are valid this long (seconds)."
    ),
    Setting(
        "SMART_REFRESH_DAYS",
        30,
        int,
        "Refresh tokens (scope offline_access) of patient apps are valid this long (days).",
    ),
    Setting(
        "SMART_CONSENT_DAYS",
        365,
        int,
        "A person's consent to share with an app (a Consent resource) lasts this long (days).",
    ),
    Setting(
        "AUDIT_RETENTION_DAYS",
        183,
        int,
        "Audit events younger than this may not be "
        "pruned (classified protection: at least 6 months).",
    ),
    Setting(
        "AUDIT_KEY",
        "",
        str,
        "The audit chain's HMAC key (never in the database); empty: read from AUDIT_KEY_FILE.",
    ),
    Setting(
        "AUDIT_KEY_FILE",
        "",
        str,
        "File of the audit chain's HMAC key; empty: "
        "`<instance>/audit_key`, generated on first use.",
    ),
    Setting(
        "AUDIT_CHECKPOINT_EVENTS",
        1000,
        int,
        "A checkpoint of the audit chain's head every this many events.",
    ),
    Setting(
        "AUDIT_CHECKPOINT_SECONDS",
        300,
        float,
        "A checkpoint of the audit chain's head every this many seconds.",
    ),
    Setting(
        "AUDIT_CHECKPOINT_FILE",
        "",
        str,
        "File the checkpoints are appended to; empty: `<instance>/audit-checkpoints.jsonl`.",
    ),
    Setting("AUDIT_CHECKPOINT_URL", "", str, "If set, each checkpoint is also POSTed here."),
    Setting(
        "AUDIT_FLUSH_INTERVAL",
        0.005,
        float,
        "Seconds the audit events of reads wait to be appended together in one transaction, "
        "off the request path; 0: each is appended before its answer (docs/security.md).",
    ),
    # -- ingestion (docs/ingestion.md) --------------------------------------------------
    Setting(
        "INBOX_LEASE_SECONDS",
        300,
        float,
        "A worker's claim on an inbox item expires "
        "after this many seconds (a killed worker's messages are taken over).",
    ),
    Setting(
        "OUTBOUND_MAX_ATTEMPTS",
        8,
        int,
        "Outbound deliveries become dead letters after this many attempts.",
    ),
    Setting(
        "INGEST_GROUP_SIZE",
        50,
        int,
        "Group commit: up to this many inbox items of one "
        "site are stored in one transaction; a message that fails is handled alone; "
        "1 turns grouping off.",
    ),
    Setting(
        "INGEST_MAX_BYTES",
        16 * MiB,
        int,
        "A payload over this is refused (413, MLLP AR) "
        "and kept only as its digest and the reason (docs/ingestion.md#limits).",
    ),
    Setting(
        "HL7V2_MAX_SEGMENTS",
        5000,
        int,
        "An HL7 v2 message of more segments is refused before it is mapped.",
    ),
    Setting(
        "HL7V2_MAX_FIELD_LENGTH",
        MiB,
        int,
        "An HL7 v2 message with a longer field (characters) is refused before it is mapped.",
    ),
    Setting(
        "MLLP_LARGE_MESSAGE_SEGMENTS",
        200,
        int,
        "The MLLP listener stores a message of "
        "more segments in a lane of its own, so a slow large message never holds up other "
        "senders' small ones.",
    ),
    Setting(
        "LIFETIME_INLINE",
        True,
        bool,
        "Recompute five colours and household groups right "
        "after each ingested message (else only `hub worker` does, from the change feed).",
    ),
    Setting("MATCH_AUTO_LINK", 0.90, float, "Identity matching: auto-link at or above this score."),
    Setting(
        "MATCH_REVIEW",
        0.70,
        float,
        "Identity matching: queue for an archive manager's review at or above this score.",
    ),
    Setting(
        "TERMINOLOGY_EXPANSION_LIMIT",
        10000,
        int,
        "Most codes `ValueSet/$expand` returns without `count`; a larger expansion is a 422 "
        "too-costly asking for `count`/`offset` or a `filter` (docs/terminology.md).",
    ),
    # -- bulk data (docs/bulk.md) -------------------------------------------------------
    Setting(
        "BULK_DIR",
        "",
        str,
        "Folder of the bulk export files (`$export`, asynchronous requests); "
        "empty: `<instance>/bulk`.",
    ),
    Setting(
        "BULK_FILE_MAX_BYTES",
        64 * MiB,
        int,
        "An export's NDJSON file is split into another file of the same type past this size.",
    ),
    Setting(
        "BULK_EXPIRE_HOURS",
        24.0,
        float,
        "A finished export's files and job are deleted this many hours after it finished.",
    ),
    Setting(
        "BULK_LEASE_SECONDS",
        120,
        float,
        "A worker's claim on a bulk job expires after this many seconds without progress "
        "(a killed worker's job is taken over and started again).",
    ),
    Setting(
        "BULK_PAGE_SIZE",
        1000,
        int,
        "Resources read per query while exporting (the export's memory is about one page).",
    ),
    Setting(
        "BULK_RETRY_AFTER",
        5,
        int,
        "Seconds a client polling an unfinished bulk job is told to wait (`Retry-After`).",
    ),
    Setting(
        "BULK_IMPORT_BATCH",
        200,
        int,
        "`hub import`: NDJSON lines written per database transaction.",
    ),
    # -- subscriptions (docs/subscriptions.md) ------------------------------------------
    Setting(
        "SUBSCRIPTION_ENDPOINTS",
        "",
        str,
        "Comma-separated URL prefixes a rest-hook Subscription's `channel.endpoint` must start "
        "with (checked on create/update and again before each delivery). Empty: no rest-hook "
        "endpoint is allowed, so the hub never posts to an address its operator did not name.",
    ),
    Setting(
        "SUBSCRIPTION_MAX_ATTEMPTS",
        5,
        int,
        "Delivery attempts of one notification before the Subscription's status becomes "
        "`error` (with the reason in `Subscription.error`).",
    ),
    Setting(
        "SUBSCRIPTION_RETRY_SECONDS",
        2.0,
        float,
        "Wait before the first retry of a failed notification; doubled at each further "
        "attempt (at most one hour).",
    ),
    Setting(
        "SUBSCRIPTION_TIMEOUT",
        10.0,
        float,
        "Seconds one rest-hook POST may take before it counts as failed.",
    ),
    Setting(
        "SUBSCRIPTION_WEBSOCKET_PORT",
        0,
        int,
        "Port of the websocket endpoint `hub worker` serves for websocket Subscriptions "
        "(0: none, and websocket Subscriptions are refused). Run it in one worker only.",
    ),
    Setting(
        "SUBSCRIPTION_WEBSOCKET_HOST",
        "127.0.0.1",
        str,
        "Address the websocket endpoint of `hub worker` listens on.",
    ),
    Setting(
        "SUBSCRIPTION_WEBSOCKET_URL",
        "",
        str,
        "The websocket endpoint's public URL, announced in the CapabilityStatement "
        "(empty: `ws://<host>:<port>/` from the two settings above).",
    ),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}

# The values a fresh app starts from (the environment-only settings are read where used).
DEFAULTS: dict[str, Any] = {s.name: s.default for s in SETTINGS if not s.env_only}


def setting(config: Any, name: str) -> Any:
    """``config[name]``, or the declared default when it is unset or empty."""
    value = config.get(name)
    if value is None or value == "":
        return BY_NAME[name].default
    return value


def instance_path() -> str:
    """``HUB_INSTANCE_PATH``, else the folder Flask would choose for the ``hub`` package.

    ``instance/`` beside the source tree, or ``<prefix>/var/hub-instance`` for an
    installed hub; the CLI and the conformance runner use it without Flask.
    """
    if os.environ.get("HUB_INSTANCE_PATH"):
        return os.environ["HUB_INSTANCE_PATH"]
    source = Path(__file__).resolve().parent.parent
    prefix = Path(sys.prefix).resolve()
    if source.is_relative_to(prefix):
        return str(prefix / "var" / "hub-instance")
    if source.name.lower() == "site-packages":
        parent = source.parent
        if parent.name.lower() == "lib":
            return str(parent.parent / "var" / "hub-instance")
        if parent.parent.name.lower() == "lib":
            return str(parent.parent.parent / "var" / "hub-instance")
        return str(parent / "var" / "hub-instance")
    return str(source / "instance")


def load(instance: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The defaults, then ``<instance>/config.py`` and ``HUB_*`` variables, or ``overrides``.

    ``overrides`` (the tests' configuration) replace the file and the environment.
    """
    values = dict(DEFAULTS)
    if overrides is not None:
        values.update(overrides)
        return values
    path = Path(instance) / "config.py"
    if path.is_file():
        module = types.ModuleType("config")
        module.__file__ = str(path)
        exec(compile(path.read_bytes(), str(path), "exec"), module.__dict__)
        values.update((k, v) for k, v in vars(module).items() if k.isupper())
    for key in sorted(os.environ):
        if key.startswith("HUB_"):
            values[key[len("HUB_") :]] = parse_value(os.environ[key])
    return values


def parse_value(value: str) -> Any:
    """A ``HUB_*`` variable's value: JSON when it parses as JSON, else the text."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def reference() -> str:
    """``docs/settings.md``: every setting with its default and help."""
    lines = [
        "# Settings",
        "",
        "Generated from `hub/config.py` by `python tools/settings_reference.py`; do not edit.",
        "",
        "Each setting is read from the defaults below, then `instance/config.py`, then the",
        "environment variable `HUB_<NAME>` (parsed as JSON when it looks like JSON). Settings",
        "marked *environment* are read from the environment only.",
        "",
        "| Setting | Default | Type | Meaning |",
        "|---|---|---|---|",
    ]
    for s in SETTINGS:
        where = " *(environment)*" if s.env_only else ""
        default = f"`{s.default!r}`" if s.default != "" else "(empty)"
        lines.append(f"| `HUB_{s.name}`{where} | {default} | {s.type.__name__} | {s.help} |")
    return "\n".join(lines) + "\n"
