"""The database schema, one SQLAlchemy ``MetaData`` for both backends.

Tables, by concern:

* ``resource`` (current version of every resource, deleted ones kept as
  tombstones) and ``resource_history`` (every version ever written);
* ``change``: the change feed (transactional outbox); one row per write, in the
  same transaction, read with cursors by outbound delivery, subscriptions,
  bulk export and system ``_history``;
* ``conditional_key``: the unique guard that makes conditional create safe
  under concurrency (never search-then-insert);
* ``inbox``: every inbound payload, raw, stored before it is acknowledged;
* ``sp_*`` and ``compartment``: typed search-index tables, filled from the
  search parameters on every write (see ``hub.search``).

Every clinical row carries ``patient_id``, its patient compartment, so the
schema can later be distributed by patient (``docs/scaling.md``).

Resource bodies are stored as JSON text on SQLite and JSONB on PostgreSQL;
reads fetch the text (``content::text``) and send it without re-serialising.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DDL
from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import Column
from sqlalchemy import Float
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import LargeBinary
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy import cast
from sqlalchemy import event
from sqlalchemy import types
from sqlalchemy.dialects import postgresql

naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=naming_convention)

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid).
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class JsonDocument(types.TypeDecorator):
    """A JSON document passed in and out as text.

    JSONB on PostgreSQL (so operators can query it), TEXT on SQLite. Values go
    in as already-serialised ``str`` and come out as ``str``: the hub never
    pays for a parse/serialise round trip it does not need.
    """

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(_RawJsonb())
        return dialect.type_descriptor(Text())

    def bind_expression(self, bindvalue):
        return bindvalue

    def column_expression(self, col):
        return cast(col, Text)


class _RawJsonb(types.UserDefinedType):
    """JSONB without SQLAlchemy's own JSON (de)serialisation."""

    cache_ok = True

    def get_col_spec(self, **kw):
        return "JSONB"

    def bind_expression(self, bindvalue):
        return cast(bindvalue, postgresql.JSONB)


class UTCDateTime(types.TypeDecorator):
    """A timestamp stored as naive UTC, returned timezone-aware (UTC)."""

    impl = types.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):  # defensive: raw SQLite text
            value = dt.datetime.fromisoformat(value)
        return value.replace(tzinfo=dt.UTC)


# ---------------------------------------------------------------------------
# Resources
# ---------------------------------------------------------------------------

resource = Table(
    "resource",
    metadata,
    Column("pk", BigIntPK, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", UTCDateTime, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("patient_id", String(64)),  # patient compartment (distribution key)
    Column("content", JsonDocument),  # NULL for a deleted resource
    UniqueConstraint("res_type", "res_id"),
    Index(None, "res_type", "last_updated"),
    Index(None, "res_type", "pk"),  # unfiltered type searches page in pk order
    Index(None, "patient_id"),
)

resource_history = Table(
    "resource_history",
    metadata,
    Column("res_type", String(64), primary_key=True),
    Column("res_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("resource_pk", BigInteger, nullable=False),
    Column("last_updated", UTCDateTime, nullable=False),
    Column("method", String(8), nullable=False),  # POST, PUT, PATCH, DELETE
    Column("deleted", Boolean, nullable=False, default=False),
    Column("patient_id", String(64)),
    Column("content", JsonDocument),
    Index(None, "last_updated"),
    Index(None, "res_type", "last_updated"),
)

# The change feed. ``seq`` is the cursor; readers remember the last seq seen.
change = Table(
    "change",
    metadata,
    Column("seq", BigIntPK, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("op", String(8), nullable=False),  # create, update, delete
    Column("patient_id", String(64)),
    Column("site", String(64)),  # the writing site, if any (no echo to the sender)
    Index(None, "at"),
)

# Named cursors over the change feed (outbound adapters, subscriptions).
feed_cursor = Table(
    "feed_cursor",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("seq", BigInteger, nullable=False, default=0),
    Column("updated_at", UTCDateTime),
)

# Conditional create: one row per (type, normalised criteria) that created a
# resource. The primary key makes the second of two racing creators fail.
conditional_key = Table(
    "conditional_key",
    metadata,
    Column("res_type", String(64), primary_key=True),
    Column("key_hash", String(64), primary_key=True),
    Column("criteria", Text, nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# The bytes of Binary resources, once per content (the SHA-256 of the bytes). The Binary's
# JSON names its row (hub.fhir.binaries); searches, indexes and history never carry the
# bytes, and every version of a Binary with the same content shares one row.
binary_blob = Table(
    "binary_blob",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# ---------------------------------------------------------------------------
# Inbound messages
# ---------------------------------------------------------------------------

inbox = Table(
    "inbox",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("site", String(64), nullable=False),
    Column("source_key", String(255), nullable=False),  # MSH-10, document id, file name
    Column("payload_hash", String(64), nullable=False),  # sha256 of body
    Column("format", String(32)),
    Column("content_type", String(128)),
    Column("received_at", UTCDateTime, nullable=False),
    Column("body", LargeBinary, nullable=False),
    # pending, done, failed, quarantined
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("processed_at", UTCDateTime),
    Column("outcome", JsonDocument),
    Column("result", JsonDocument),  # transaction-response Bundle summary
    UniqueConstraint("site", "source_key", "payload_hash"),
    Index(None, "status", "id"),
    Index(None, "site", "received_at"),
)

# Per-site state kept between messages (e.g. the Patient ids of a registry's
# previous import), written in the transaction that stores the message's data.
site_state = Table(
    "site_state",
    metadata,
    Column("site", String(64), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", JsonDocument, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Outbound deliveries: one row per message produced for a site from a change.
# Sent with retries and back-off; ``dead`` rows wait for an operator.
delivery = Table(
    "delivery",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("site", String(64), nullable=False),
    Column("change_seq", BigInteger, nullable=False),
    Column("message_key", String(255), nullable=False),
    Column("content_type", String(128)),
    Column("body", LargeBinary, nullable=False),
    Column("description", Text),
    # pending, sent, dead
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("response", LargeBinary),
    UniqueConstraint("site", "change_seq", "message_key"),
    Index(None, "status", "next_attempt_at"),
)

# Subscriptions (hub.subscriptions): what the hub keeps beside each Subscription resource.
# ``owner`` is the principal that last wrote it (its scopes and label grants decide what
# its notifications may carry; NULL: the hub's own); ``from_seq`` the change-feed seq of
# its latest write, set by the matcher: only later changes are notified.
subscription_state = Table(
    "subscription_state",
    metadata,
    Column("res_id", String(64), primary_key=True),
    Column("owner", JsonDocument),
    Column("from_seq", BigInteger),
    Column("updated_at", UTCDateTime, nullable=False),
)

# One row per (Subscription, change) that matched, queued in the transaction that moves
# the ``subscriptions`` feed cursor; delivered with retries and back-off.
subscription_notification = Table(
    "subscription_notification",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("subscription_id", String(64), nullable=False),
    Column("change_seq", BigInteger, nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    # pending, sent, dead (delivery failed every attempt), dropped (subscription not active)
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    UniqueConstraint("subscription_id", "change_seq"),
    Index(None, "status", "subscription_id"),
)

# ---------------------------------------------------------------------------
# Audit (hub.audit): append-only AuditEvents
# ---------------------------------------------------------------------------

audit_event = Table(
    "audit_event",
    metadata,
    # Numbered 1, 2, 3 ... by hub.audit.record, without gaps (a gap means deleted events).
    Column("seq", BigIntPK, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("recorded", UTCDateTime, nullable=False),
    # The AuditEvent as JSON text, exactly the bytes the hash covers (not JSONB,
    # which would re-serialise it).
    Column("content", Text, nullable=False),
    # Search columns, derived from the content (checked by ``hub audit verify``).
    Column("interaction", String(32), nullable=False),
    Column("who", String(200), nullable=False),
    Column("client", String(200)),
    Column("site", String(100)),
    Column("outcome", String(2), nullable=False),
    Column("entity", Text),  # " Type/id Type/id " (space-delimited, for LIKE)
    # Hash chain in seq order: hash = "h1$" + HMAC-SHA256 (key outside the database) of every
    # other column (hub.audit.row_hash); rows of earlier versions: sha256(prev_hash | id |
    # recorded | content), verified with that rule.
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index(None, "recorded"),
    Index(None, "who", "recorded"),
)

# ---------------------------------------------------------------------------
# Security (hub.security): clients, signing keys, users
# ---------------------------------------------------------------------------

oauth_client = Table(
    "oauth_client",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("site", String(100)),  # the site a client writes as (None: not site-bound)
    Column("scopes", Text, nullable=False),  # granted scopes, space-separated
    Column("grants", Text, nullable=False, default=""),  # label grants, space-separated
    Column("secret_hash", String(300), nullable=False),  # scrypt, never the secret
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    # SMART apps and backend services (hub.security.clients): registered redirect URIs
    # (space-separated, matched exactly), a public app (PKCE, no secret), and the public keys
    # of private_key_jwt authentication (a JWK Set, or the https URL it is fetched from).
    Column("redirect_uris", Text, nullable=False, default=""),
    Column("public", Boolean, nullable=False, default=False),
    Column("jwks", Text),
    Column("jwks_uri", String(2000)),
)

signing_key = Table(
    "signing_key",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("algorithm", String(16), nullable=False),
    Column("secret", Text, nullable=False),  # base64url HMAC key
    Column("created_at", UTCDateTime, nullable=False),
    Column("retired_at", UTCDateTime),  # no longer verifies from this instant
)

users = Table(
    "users",
    metadata,
    Column("username", String(100), primary_key=True),
    Column("password_hash", String(300), nullable=False),  # argon2id
    Column("roles", Text, nullable=False),  # space-separated
    Column("grants", Text, nullable=False, default=""),
    Column("jurisdiction", String(32)),  # administrative division code
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_login_at", UTCDateTime),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("patient", String(64)),  # a person's own Patient id (SMART patient-facing apps)
)

# SMART App Launch (hub.security.smart): authorization codes and refresh tokens, each stored
# only as a SHA-256 hash; a code is spent by the one UPDATE that sets ``used_at``.
oauth_grant = Table(
    "oauth_grant",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # "code" or "refresh"
    Column("client_id", String(64), nullable=False),
    Column("username", String(100), nullable=False),
    Column("patient", String(64), nullable=False),
    Column("scope", Text, nullable=False),
    Column("consent", String(64), nullable=False),  # the Consent resource's id
    Column("redirect_uri", String(2000)),
    Column("code_challenge", String(128)),
    Column("nonce", String(300)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime),
    Index(None, "expires_at"),
)

# ``jti`` of private_key_jwt client assertions seen (hub.security.assertions): a replayed
# assertion hits the primary key; rows are dropped once the assertion has expired.
assertion_jti = Table(
    "assertion_jti",
    metadata,
    Column("key", String(400), primary_key=True),  # "<client_id> <jti>"
    Column("expires_at", UTCDateTime, nullable=False),
    Index(None, "expires_at"),
)

# Failed client authentications at the token endpoint, per client id and per network address
# (hub.security.lockout): shared by every process, so a lockout holds across them.
auth_failure = Table(
    "auth_failure",
    metadata,
    Column("key", String(300), primary_key=True),  # "client <id>" or "address <ip>"
    Column("failures", Integer, nullable=False, default=0),  # since the last lockout or success
    Column("lockouts", Integer, nullable=False, default=0),  # in a row: the backoff exponent
    Column("locked_until", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "updated_at"),
)

# ---------------------------------------------------------------------------
# Search indexes (filled by hub.search.indexer; one row per indexed value)
# ---------------------------------------------------------------------------


def _index_table(name: str, *columns: Column, indexes: tuple = ()) -> Table:
    return Table(
        name,
        metadata,
        Column("resource_pk", BigInteger, nullable=False, index=True),
        Column("res_type", String(64), nullable=False),
        Column("param", String(100), nullable=False),
        *columns,
        *indexes,
    )


sp_string = _index_table(
    "sp_string",
    Column("value", String(512), nullable=False),  # normalised: case/accent folded
    Column("exact", String(512), nullable=False),
    # text_pattern_ops lets PostgreSQL use the index for prefix LIKE 'abc%'
    # whatever the database collation; SQLite searches prefixes as ranges.
    indexes=(
        Index(None, "res_type", "param", "value", postgresql_ops={"value": "text_pattern_ops"}),
    ),
)

sp_token = _index_table(
    "sp_token",
    Column("system", String(512)),
    Column("code", String(512)),
    Column("text", String(512)),  # display/text, normalised, for :text
    # resource_pk last: a search reads matching pks from the index alone (index-only scan),
    # in pk order for one code, without visiting the table.
    indexes=(
        Index(None, "res_type", "param", "code", "system", "resource_pk"),
        Index(None, "res_type", "param", "system"),
    ),
)

sp_date = _index_table(
    "sp_date",
    # [low, high) in UTC; open ends are 0001-01-01 and 9999-12-31T23:59:59
    # (not NULL), so every comparison is a plain range test.
    Column("low", UTCDateTime, nullable=False),
    Column("high", UTCDateTime, nullable=False),
    indexes=(Index(None, "res_type", "param", "low"), Index(None, "res_type", "param", "high")),
)

sp_number = _index_table(
    "sp_number",
    Column("value", Float),
    Column("low", Float),
    Column("high", Float),
    indexes=(Index(None, "res_type", "param", "value"),),
)

sp_quantity = _index_table(
    "sp_quantity",
    Column("value", Float),
    Column("low", Float),
    Column("high", Float),
    Column("system", String(512)),
    Column("code", String(128)),
    Column("unit", String(128)),
    # value converted to a canonical UCUM unit, where known
    Column("canonical_value", Float),
    Column("canonical_code", String(128)),
    indexes=(
        Index(None, "res_type", "param", "code", "value"),
        Index(None, "res_type", "param", "canonical_code", "canonical_value"),
    ),
)

sp_reference = _index_table(
    "sp_reference",
    Column("target_type", String(64)),
    Column("target_id", String(64)),
    Column("target_version", String(64)),
    Column("url", String(1024)),  # absolute or canonical reference
    Column("identifier_system", String(512)),
    Column("identifier_value", String(512)),
    indexes=(
        Index(None, "target_type", "target_id", "res_type", "param", "resource_pk"),
        Index(None, "res_type", "param", "url"),
    ),
)

sp_uri = _index_table(
    "sp_uri",
    Column("value", String(1024), nullable=False),
    indexes=(Index(None, "res_type", "param", "value"),),
)

# Composite parameters: one row per combination of the first two component
# values. The first component is a token; the second is stored by its type:
# token/string/reference/uri in c2_system/c2_code, number/quantity in c2_value
# (with the unit in c2_system/c2_code), date as the [c2_low, c2_high) range.
sp_composite = _index_table(
    "sp_composite",
    Column("c1_system", String(512)),
    Column("c1_code", String(512)),
    Column("c2_system", String(512)),
    Column("c2_code", String(512)),
    Column("c2_value", Float),
    Column("c2_low", UTCDateTime),
    Column("c2_high", UTCDateTime),
    indexes=(Index(None, "res_type", "param", "c1_code", "c2_code"),),
)

# Which compartments (Patient/123, Encounter/9, ...) a resource belongs to.
compartment = Table(
    "compartment",
    metadata,
    Column("resource_pk", BigInteger, nullable=False, index=True),
    Column("res_type", String(64), nullable=False),
    Column("comp_type", String(64), nullable=False),
    Column("comp_id", String(64), nullable=False),
    Index(None, "comp_type", "comp_id", "res_type", "resource_pk"),
)

INDEX_TABLES = {
    t.name: t
    for t in (
        sp_string,
        sp_token,
        sp_date,
        sp_number,
        sp_quantity,
        sp_reference,
        sp_uri,
        sp_composite,
        compartment,
    )
}

# PostgreSQL multiplies the selectivities of res_type, param and code as if they
# were independent, and so underestimates a common token (category=vital-signs)
# a hundredfold and picks nested loops over thousands of rows. Extended
# statistics on the correlated key columns fix those estimates (10-20x faster
# plans on two-parameter searches).
_CORRELATED = {
    "sp_string": ("res_type", "param"),
    "sp_token": ("res_type", "param", "code", "system"),
    "sp_date": ("res_type", "param"),
    "sp_number": ("res_type", "param"),
    "sp_quantity": ("res_type", "param", "code"),
    "sp_reference": ("res_type", "param", "target_type"),
    "sp_uri": ("res_type", "param"),
    "sp_composite": ("res_type", "param", "c1_code"),
    "compartment": ("comp_type", "res_type"),
}
for _name, _cols in _CORRELATED.items():
    event.listen(
        INDEX_TABLES[_name],
        "after_create",
        DDL(
            f"CREATE STATISTICS IF NOT EXISTS st_{_name} (dependencies, ndistinct, mcv) "
            f"ON {', '.join(_cols)} FROM {_name}"
        ).execute_if(dialect="postgresql"),
    )


# ---------------------------------------------------------------------------
# Completeness audits and indicators (hub.completeness)
# ---------------------------------------------------------------------------

# One row per person and audit period: the latest audit run's result. The
# dashboard's lists filter, sort and page on these columns.
audit_person = Table(
    "audit_person",
    metadata,
    Column("period", String(32), primary_key=True),  # "2025" or "2025-01-01..2025-06-30"
    Column("patient_id", String(64), primary_key=True),
    Column("record_no", String(32)),
    Column("county", String(6)),
    Column("township", String(9)),
    Column("village", String(12)),
    Column("organization", String(128)),  # "Organization/ID"
    Column("name", String(128)),
    Column("gender", String(16)),
    Column("age", Integer),
    Column("colour", String(16)),  # displayed five-colour, if any
    Column("gaps", Integer, nullable=False),
    Column("overdue", Integer, nullable=False),
    Column("next_due", String(10)),  # earliest due date of a missing item
    Column("gap_codes", Text),  # " rule/item rule/item " (for filtering by item)
    Column("metrics", Text, nullable=False),  # " metric metric " counted by the summary
    Column("detail", JsonDocument),  # hub.completeness.evaluate.PersonResult.as_dict()
    Column("computed_at", UTCDateTime, nullable=False),
    Index(None, "period", "county", "gaps"),
    Index(None, "period", "township"),
    Index(None, "period", "village"),
    Index(None, "period", "organization"),
)

# Aggregates per period, jurisdiction and metric, refreshed by the audit job:
# the dashboard overview reads only this table.
audit_summary = Table(
    "audit_summary",
    metadata,
    Column("period", String(32), primary_key=True),
    Column("jurisdiction", String(140), primary_key=True),  # "" = everything
    Column("metric", String(200), primary_key=True),
    Column("value", Float, nullable=False),
    Column("computed_at", UTCDateTime, nullable=False),
)

# Denominators from population statistics (常住人口 ...), per jurisdiction, year and indicator.
audit_denominator = Table(
    "audit_denominator",
    metadata,
    Column("jurisdiction", String(140), primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("indicator", String(100), primary_key=True),
    Column("value", Float, nullable=False),
    Column("source", String(255)),  # e.g. "county statistical yearbook 2025"
    Column("updated_at", UTCDateTime, nullable=False),
)


# ---------------------------------------------------------------------------
# Bulk data (hub.bulk): asynchronous jobs and import progress
# ---------------------------------------------------------------------------

# One row per asynchronous request (``$export``, a search or ``$everything`` with
# ``Prefer: respond-async``). Workers claim a queued job (``claimed_at`` is the lease, renewed
# as it progresses; a stale claim is taken over); its files live in the bulk folder.
bulk_job = Table(
    "bulk_job",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # export, search, everything
    # queued, running, done, failed, cancelled
    Column("status", String(16), nullable=False),
    Column("owner", String(200), nullable=False),  # the principal's subject ("" for the hub)
    Column("principal", JsonDocument),  # who asked, to export exactly what they may see
    Column("request", Text, nullable=False),  # the kick-off URL, for the manifest
    Column("params", JsonDocument, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("claimed_at", UTCDateTime),
    Column("claimed_by", String(128)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("transaction_time", UTCDateTime),
    Column("progress", String(200)),
    Column("manifest", JsonDocument),  # output, deleted and error files when done
    Column("outcome", JsonDocument),  # why a failed job failed
    Column("finished_at", UTCDateTime),
    Column("expires_at", UTCDateTime),
    Index(None, "status", "created_at"),
    Index(None, "owner", "created_at"),
)

# ``hub import``: how many lines of each NDJSON file are stored, so a rerun continues there.
import_progress = Table(
    "import_progress",
    metadata,
    Column("source", String(500), primary_key=True),  # the file's resolved path
    Column("digest", String(64), nullable=False),  # sha256 of its first 64 KiB and size
    Column("lines", BigInteger, nullable=False, default=0),
    Column("stored", BigInteger, nullable=False, default=0),
    Column("errors", BigInteger, nullable=False, default=0),
    Column("updated_at", UTCDateTime, nullable=False),
)
