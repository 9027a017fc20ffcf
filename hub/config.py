"""Configuration: defaults, then ``instance/config.py``, then ``HUB_*`` variables.

Every setting can be given in the environment with the ``HUB_`` prefix
(``HUB_DATABASE_URL=postgresql+psycopg://127.0.0.1/test``); values are parsed
as JSON when they look like JSON (numbers, ``true``), else taken as text.
"""

from __future__ import annotations

DEFAULTS = {
    # sqlite:///instance/hub.db is resolved against the Flask instance folder.
    "DATABASE_URL": "sqlite:///instance/hub.db",
    # Public base URL of the FHIR endpoint (fullUrl, Location, paging links).
    # Empty: derived from each request.
    "BASE_URL": "",
    # Time zone for dates and times given without one (FHIR search, HL7 v2 defaults).
    "TIMEZONE": "Asia/Shanghai",
    # Largest request body accepted, in bytes (413 above it).
    "MAX_CONTENT_LENGTH": 64 * 1024 * 1024,
    # Request bodies (docs/validation.md): deepest nesting of JSON objects / XML elements,
    # and longest string in characters (FHIR's own limit; base64Binary data is exempt).
    "MAX_NESTING_DEPTH": 64,
    "MAX_STRING_LENGTH": 1024 * 1024,
    # Search page size when the client gives no _count, and the largest allowed.
    "DEFAULT_COUNT": 20,
    "MAX_COUNT": 1000,
    # Links one search parameter may chain or nest (subject:Patient.name is one,
    # _has:A:x:_has:B:y:code two); deeper searches get a 400 (docs/search.md).
    "SEARCH_MAX_CHAIN_DEPTH": 3,
    # Seconds one search statement may run before it is stopped (503 too-costly); 0 = no limit.
    "SEARCH_TIMEOUT": 30,
    # Create or migrate the schema when the app starts (set false for several
    # processes sharing one PostgreSQL; run ``hub db upgrade`` once instead).
    "AUTO_MIGRATE": True,
    # Plugin loading: comma-separated entry-point names, or empty for all.
    "LOAD_PLUGINS": "",
    "TRACE_PLUGINS": False,
    # Extra folders of site manifests (colon-separated), added to conformance/sites.
    "SITES_DIR": "",
    # Load the example sites in conformance/sites (switch off in production).
    "LOAD_EXAMPLE_SITES": True,
    # Extra folders of code maps, added to mappings/.
    "MAPPINGS_DIR": "",
    # Extra folders of profiles, added to profiles/.
    "PROFILES_DIR": "",
    # Security (docs/security.md): token lifetime and caches, rate limits, login lockout and
    # audit retention; see hub.security.services.DEFAULTS for the values used when unset.
    "TOKEN_LIFETIME": 3600,
    "KEY_CACHE_SECONDS": 60,
    "CLIENT_STATUS_SECONDS": 30,
    "RATE_LIMIT_PER_SECOND": 100,
    "RATE_LIMIT_BURST": 200,
    "LOGIN_MAX_FAILURES": 5,
    "LOGIN_LOCKOUT_MINUTES": 15,
    "AUDIT_RETENTION_DAYS": 183,
    # Token endpoint lockout (hub.security.lockout): failed client authentications allowed
    # per client id and per network address (0: no limit), first lockout, longest lockout.
    "CLIENT_AUTH_MAX_FAILURES": 10,
    "CLIENT_AUTH_MAX_FAILURES_PER_ADDRESS": 50,
    "CLIENT_AUTH_LOCKOUT_SECONDS": 60,
    "CLIENT_AUTH_LOCKOUT_MAX_SECONDS": 3600,
    # The audit chain's anchors (docs/security.md#audit): checkpoints of its head every
    # this many events or seconds, to this file (empty: <instance>/audit-checkpoints.jsonl)
    # and, if set, POSTed to this URL. Its HMAC key: HUB_AUDIT_KEY, else AUDIT_KEY_FILE
    # (empty: <instance>/audit_key, generated on first use); never in the database.
    "AUDIT_CHECKPOINT_EVENTS": 1000,
    "AUDIT_CHECKPOINT_SECONDS": 300,
    "AUDIT_CHECKPOINT_FILE": "",
    "AUDIT_CHECKPOINT_URL": "",
    "AUDIT_KEY_FILE": "",
    # Ingestion (docs/ingestion.md): a worker's claim on an inbox item expires
    # after this many seconds (a killed worker's messages are taken over);
    # outbound deliveries become dead letters after this many attempts.
    "INBOX_LEASE_SECONDS": 300,
    "OUTBOUND_MAX_ATTEMPTS": 8,
    # Group commit: up to this many inbox items of one site are stored in one
    # database transaction (``hub ingest``, the MLLP listener, ``hub worker``).
    # A message that fails is taken out and handled alone; 1 turns grouping off.
    "INGEST_GROUP_SIZE": 50,
    # Inbound limits (docs/ingestion.md#limits): a payload over INGEST_MAX_BYTES is refused
    # (413, MLLP AR) and kept only as its digest and the reason; an HL7 v2 message with more
    # segments, or a field of more characters, than these is refused before it is mapped.
    "INGEST_MAX_BYTES": 16 * 1024 * 1024,
    "HL7V2_MAX_SEGMENTS": 5000,
    "HL7V2_MAX_FIELD_LENGTH": 1024 * 1024,
    # The MLLP listener stores a message of more segments than this in a lane of its own,
    # so that a slow large message never holds up other senders' small ones.
    "MLLP_LARGE_MESSAGE_SEGMENTS": 200,
    # Recompute five colours and household groups right after each ingested
    # message (else only ``hub worker`` does, from the change feed).
    "LIFETIME_INLINE": True,
    # $everything page size when the client gives no _count.
    "EVERYTHING_COUNT": 1000,
    # Identity matching thresholds (docs/ingestion.md): auto-link at or above,
    # queue for an archive manager's review at or above.
    "MATCH_AUTO_LINK": 0.90,
    "MATCH_REVIEW": 0.70,
}
# Set in the environment only: HUB_IDENTITY_KEY (the key of the Patient ids
# derived from resident ID numbers; never change it once data is stored),
# HUB_SECRET_KEY (web sessions; generated into the instance folder when unset),
# HUB_AUDIT_KEY (the audit chain's HMAC key; else AUDIT_KEY_FILE),
# HUB_POOL_SIZE (database connections per process, default 8),
# HUB_INSTANCE_PATH (the instance folder).
