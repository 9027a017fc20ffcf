"""FHIR RESTful interactions, free of Flask.

:class:`FhirService` takes plain arguments (type, id, resource dict, headers
that matter) and returns a :class:`Result` (status, body, headers). The API
blueprint only translates HTTP to these calls and back; the ingestion pipeline
and transaction bundles call the same functions, so that every write goes
through the same checks, hooks and storage call.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import urllib.parse
from collections.abc import Callable
from email.utils import format_datetime
from typing import TYPE_CHECKING
from typing import Any

import jsonpatch
import orjson

from hub import outcomes
from hub.config import setting
from hub.fhir import binaries
from hub.fhir.limits import check_params
from hub.fhir.limits import count_param
from hub.security import guard
from hub.storage import blobs
from hub.storage.repository import Repository
from hub.storage.repository import Stored
from hub.storage.repository import Writer
from hub.storage.repository import format_instant
from hub.storage.repository import lock_keys
from hub.storage.repository import new_id
from hub.storage.subscriptions import set_owner
from hub.subscriptions import rules as subscription_rules
from hub.validation.structure import check_structure
from hub.validation.structure import known_type

if TYPE_CHECKING:
    from hub.sites import Site

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# Versions are stored in 32-bit integer columns: a larger number names no version.
MAX_VERSION = 2**31 - 1
# Writes of these types change what the terminology service serves.
TERMINOLOGY_TYPES = ("CodeSystem", "ValueSet", "ConceptMap")


class Quarantined(outcomes.OperationOutcomeError):
    """Validation errors under a site policy of ``quarantine``: keep the message aside."""


@dataclasses.dataclass
class Result:
    """What an interaction answers: status, body and headers.

    ``body`` is a dict (a resource or OperationOutcome), JSON text/bytes
    already serialised (stored content, spliced bundles), or ``None``.
    """

    status: int
    body: dict[str, Any] | str | bytes | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    stored: Stored | None = None


@dataclasses.dataclass
class WriteOptions:
    """Per-request write settings from the HTTP layer."""

    prefer_return: str = "representation"  # minimal | representation | OperationOutcome
    if_match: str | None = None
    site: Site | None = None  # the writing site (hub.sites.Site) or None for REST clients


@dataclasses.dataclass(frozen=True)
class Match:
    """What a conditional interaction's criteria found: the guard key and the match."""

    key: str  # the canonical criteria (Writer.claim_conditional_key)
    res_id: str | None  # the one current match, or None


@dataclasses.dataclass
class Written:
    """One write's outcome in a unit of work; each caller serialises it its own way."""

    stored: Stored | None
    status: int
    warnings: list[dict] = dataclasses.field(default_factory=list)
    text: str = ""  # what a deletion answers


def check_update_id(
    res_type: str, res_id: str, resource: dict[str, Any], conditional: bool = False
) -> None:
    """The body's id against the target's: the URL's, or a conditional update's match."""
    body_id = resource.get("id")
    if conditional:
        if body_id not in (None, res_id):
            raise outcomes.bad_request(
                f"The resource id {body_id!r} differs from the matching {res_type}/{res_id}",
                f"{res_type}.id",
            )
        return
    if body_id is None:
        raise outcomes.bad_request("The resource in an update must have an id", f"{res_type}.id")
    if body_id != res_id:
        raise outcomes.bad_request(
            f"The resource id {body_id!r} does not match the URL id {res_id!r}", f"{res_type}.id"
        )


def check_type(res_type: str) -> None:
    if not known_type(res_type):
        raise outcomes.error(404, "not-supported", f"Unknown resource type {res_type!r}")


def check_id(res_id: str) -> None:
    if not ID_RE.match(res_id or ""):
        raise outcomes.bad_request(f"Invalid resource id {res_id!r}: 1-64 of A-Z a-z 0-9 - .", "id")


def parse_etag(value: str | None) -> int | None:
    """The version number in an ``ETag``/``If-Match`` value (``W/"3"``, ``"3"`` or ``3``)."""
    if value is None:
        return None
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not (text.isascii() and text.isdigit()):
        raise outcomes.bad_request(f"Invalid version in If-Match: {value!r}")
    return int(text)


def version_headers(stored: Stored, base: str = "") -> dict[str, str]:
    return {
        "ETag": stored.etag,
        "Last-Modified": format_datetime(stored.last_updated.astimezone(dt.UTC), usegmt=True),
    }


def location(stored: Stored, base: str) -> str:
    return f"{base}/{stored.res_type}/{stored.res_id}/_history/{stored.version}"


class FhirService:
    """The FHIR interactions over a :class:`Repository`.

    :param search: a ``hub.search.engine.SearchEngine`` (needed for searches
        and conditional interactions).
    :param pm: the app's plugin manager (``validate_resource`` hooks).
    """

    def __init__(
        self,
        repo: Repository,
        search: Any = None,
        pm: Any = None,
        config: dict | None = None,
        on_search_parameter: Callable[[], None] | None = None,
    ):
        self.repo = repo
        self.search_engine = search
        self.pm = pm
        self.config = config or {}
        # Called after a SearchParameter is written (the kernel rebuilds its registry).
        self.on_search_parameter = on_search_parameter
        # Called after a CodeSystem, ValueSet or ConceptMap is written (the kernel's
        # terminology service drops its stored layer; other processes see the change
        # through the service's stamp check).
        self.on_terminology: Callable[[], None] | None = None

    # -- validation on write ---------------------------------------------------

    def check_resource(
        self,
        resource: dict[str, Any],
        res_type: str | None = None,
        site: Site | None = None,
        structure: bool = True,
        bindings: list[dict] = (),
    ) -> list[dict]:
        """Structure (unless already checked), then required bindings and plugin validation.

        A structural issue is always a 400. Codes outside a required binding (found by the
        structure check, or passed in ``bindings`` when the caller ran it) and the plugins'
        errors go by the site's validation policy: 422 (``reject``, and REST clients),
        :class:`Quarantined`, or returned with the warnings (``accept-with-warnings``).
        """
        if not isinstance(resource, dict):
            raise outcomes.error(400, "structure", "The body must be a FHIR resource")
        if res_type is not None and resource.get("resourceType") != res_type:
            raise outcomes.bad_request(
                f"resourceType {resource.get('resourceType')!r} does not match the URL type {res_type!r}",
                "resourceType",
            )
        if structure:
            bindings = check_structure(resource)
        warnings: list[dict] = []
        errors: list[dict] = list(bindings)
        if self.pm is not None:
            for issues in self.pm.hook.validate_resource(resource=resource, site=site):
                for iss in issues or ():
                    (errors if iss.get("severity") in ("error", "fatal") else warnings).append(iss)
        if errors:
            # a profile's validation finds the structure check's binding issues again
            errors = list(
                {(str(i.get("expression")), i["diagnostics"]): i for i in errors}.values()
            )
            policy = getattr(site, "validation", "reject") if site is not None else "reject"
            if policy == "reject":
                raise outcomes.OperationOutcomeError(outcomes.outcome(*errors, *warnings), 422)
            if policy == "quarantine":
                raise Quarantined(outcomes.outcome(*errors, *warnings), 422)
            warnings = errors + warnings
        return warnings

    # -- reads ---------------------------------------------------------------

    def read(self, res_type: str, res_id: str, conn=None) -> Result:
        check_type(res_type)
        guard.require(res_type, "r")
        stored = self.repo.read(res_type, res_id, conn)
        if stored is None:
            raise outcomes.not_found(f"{res_type}/{res_id} is not known")
        guard.check_read(res_type, res_id, stored.content)
        self.check_jurisdiction(res_type, res_id, conn)
        if stored.deleted:
            raise outcomes.gone(f"{res_type}/{res_id} was deleted", headers=version_headers(stored))
        return Result(200, stored.content, version_headers(stored), stored)

    def vread(self, res_type: str, res_id: str, version: str) -> Result:
        check_type(res_type)
        guard.require(res_type, "r")
        if not (str(version).isascii() and str(version).isdigit()):
            raise outcomes.bad_request(f"Invalid version {version!r}")
        number = int(version) if len(version) <= len(str(MAX_VERSION)) else MAX_VERSION + 1
        stored = self.repo.vread(res_type, res_id, number) if number <= MAX_VERSION else None
        # A resource labelled later hides its earlier versions too.
        current = self.repo.read(res_type, res_id)
        if current is not None:
            guard.check_read(res_type, res_id, current.content)
            self.check_jurisdiction(res_type, res_id)
        if stored is None:
            if current is None:
                raise outcomes.not_found(f"{res_type}/{res_id} is not known")
            raise outcomes.not_found(f"{res_type}/{res_id} has no version {version}")
        guard.check_read(res_type, res_id, stored.content)
        if stored.deleted:
            raise outcomes.gone(
                f"{res_type}/{res_id} version {version} is a deletion", version_headers(stored)
            )
        return Result(200, stored.content, version_headers(stored), stored)

    # -- Binary content (hub.fhir.binaries) ---------------------------------------

    def binary(self, res_id: str, version: str | None = None) -> tuple[Result, dict, bytes | None]:
        """A Binary to send: its read (or vread) result, its stored JSON and its bytes.

        Besides the Binary's own scope and labels, the caller must be able to read the
        resource its ``securityContext`` names; when not, the Binary is as absent as a
        hidden resource (404), or 403 for a missing scope on the context's type.
        """
        if version is None:
            result = self.read("Binary", res_id)
        else:
            result = self.vread("Binary", res_id, version)
        resource = result.stored.resource()
        self.check_security_context(res_id, resource)
        return result, resource, self.binary_data(resource)

    def binary_data(self, resource: dict[str, Any]) -> bytes | None:
        """The bytes of a stored Binary (``None``: it has none); no access check."""
        key = binaries.content_key(resource)
        if key is not None:
            with self.repo.standalone_reads() as conn:
                blob = blobs.get(conn, key)
            return blob.data if blob is not None else None
        if isinstance(resource.get("data"), str):  # stored before content was kept apart
            return binaries.decode(resource["data"], self.config, "Binary.data")
        return None

    def check_security_context(self, res_id: str, resource: dict[str, Any], conn=None) -> None:
        """Read access to the Binary's ``securityContext`` (a local ``Type/id`` reference)."""
        from hub.security.principal import current

        context = resource.get("securityContext")
        ref = context.get("reference") if isinstance(context, dict) else None
        if current() is None or not isinstance(ref, str) or ref.count("/") != 1:
            return
        ctx_type, ctx_id = ref.split("/")
        if not known_type(ctx_type) or not ID_RE.match(ctx_id):
            return
        try:
            self.read(ctx_type, ctx_id, conn)
        except outcomes.OperationOutcomeError as err:
            if err.status == 403:
                raise
            raise outcomes.not_found(f"Binary/{res_id} is not known") from None

    def _check_binary_overwrite(self, writer: Writer, res_type: str, res_id: str | None) -> None:
        """Changing or deleting a Binary needs read access to its current ``securityContext``.

        A caller who may not see the context may not see the Binary (404, as on read),
        so neither may it overwrite or delete the content a hidden record points at.
        """
        if res_type != "Binary" or res_id is None:
            return
        current = writer.current(res_type, res_id)
        if current is None or current.deleted:
            return
        writer.flush()  # a context staged earlier in the same unit must be found
        self.check_security_context(res_id, current.resource(), writer.conn)

    # -- writes --------------------------------------------------------------

    def _write_result(
        self, stored: Stored, status: int, opts: WriteOptions, base: str, warnings=()
    ) -> Result:
        if stored.res_type == "SearchParameter" and self.on_search_parameter is not None:
            self.on_search_parameter()
        headers = version_headers(stored)
        headers["Location"] = location(stored, base)
        if opts.prefer_return == "minimal":
            return Result(status, None, headers, stored)
        if opts.prefer_return == "OperationOutcome":
            text = f"{stored.res_type}/{stored.res_id} version {stored.version} stored"
            return Result(
                status,
                outcomes.outcome(outcomes.issue("information", "informational", text), *warnings),
                headers,
                stored,
            )
        return Result(status, stored.content, headers, stored)

    def create(
        self,
        res_type: str,
        resource: dict[str, Any],
        opts: WriteOptions,
        base: str,
        if_none_exist: str | None = None,
    ) -> Result:
        check_type(res_type)
        done = self._unit(
            opts,
            lambda w: self.create_with(
                w, res_type, resource, site=opts.site, if_none_exist=if_none_exist or None
            ),
        )
        if done.status == 200 and not guard.visible_content(res_type, done.stored.content):
            # The existing match is returned only to a caller who may read it.
            opts = dataclasses.replace(opts, prefer_return="minimal")
        return self._write_result(done.stored, done.status, opts, base, done.warnings)

    def update(
        self, res_type: str, res_id: str, resource: dict[str, Any], opts: WriteOptions, base: str
    ) -> Result:
        if_match = parse_etag(opts.if_match)
        done = self._unit(
            opts,
            lambda w: self.update_with(
                w, res_type, res_id, resource, site=opts.site, if_match=if_match
            ),
        )
        return self._write_result(done.stored, done.status, opts, base, done.warnings)

    def conditional_update(
        self, res_type: str, query: str, resource: dict[str, Any], opts: WriteOptions, base: str
    ) -> Result:
        if_match = parse_etag(opts.if_match)
        done = self._unit(
            opts,
            lambda w: self.update_with(
                w, res_type, None, resource, site=opts.site, if_match=if_match, condition=query
            ),
        )
        return self._write_result(done.stored, done.status, opts, base, done.warnings)

    def patch(
        self, res_type: str, res_id: str, patch_body: Any, opts: WriteOptions, base: str
    ) -> Result:
        """JSON Patch (RFC 6902) applied to the current version, then checked as an update."""
        if_match = parse_etag(opts.if_match)
        done = self._unit(
            opts, lambda w: self.patch_with(w, res_type, res_id, patch_body, opts.site, if_match)
        )
        return self._write_result(done.stored, done.status, opts, base)

    def delete(self, res_type: str, res_id: str, opts: WriteOptions | None = None) -> Result:
        opts = opts or WriteOptions()
        if_match = parse_etag(opts.if_match)
        done = self._unit(opts, lambda w: self.delete_with(w, res_type, res_id, if_match=if_match))
        headers = {"ETag": done.stored.etag} if done.stored else {}
        return Result(done.status, outcomes.ok(done.text), headers, done.stored)

    def conditional_delete(
        self, res_type: str, query: str, opts: WriteOptions | None = None
    ) -> Result:
        done = self._unit(opts, lambda w: self.delete_with(w, res_type, None, condition=query))
        return Result(done.status, outcomes.ok(done.text))

    def _unit(self, opts: WriteOptions | None, fn) -> Written:
        """Run one interaction in a unit of work of its own (what a REST call gets)."""
        site = getattr(getattr(opts, "site", None), "name", None)
        done = self.repo.write(fn, site=site)
        stored = getattr(done, "stored", None)
        if (
            self.on_terminology is not None
            and getattr(stored, "res_type", None) in TERMINOLOGY_TYPES
        ):
            self.on_terminology()
        return done

    # -- the write interactions, each one method over a unit of work ------------
    #
    # ``writer`` is the unit of work (:class:`hub.storage.repository.Writer`): a
    # connection in a transaction with staged writes, flushed with their audit and
    # change feed at commit. REST gives each call a unit of its own (above); a
    # transaction Bundle and an ingested message share one across their entries
    # (``hub.fhir.bundles``), so every write meets the same checks and answers.

    def match_one(self, writer: Writer, res_type: str, criteria: str, what: str) -> Match:
        """The one current ``res_type`` matching ``criteria`` (or none); several: 412."""
        check_type(res_type)
        params = parse_query(criteria)
        if not params:
            raise outcomes.bad_request(f"{what} has no search criteria")
        writer.flush()  # staged writes of the same unit must be found
        ids = self.match_ids(writer.conn, res_type, params)
        if len(ids) > 1:
            raise outcomes.precondition_failed(
                f"{what} {criteria!r} matches {len(ids)} {res_type} resources"
            )
        return Match(canonical_criteria(params), ids[0] if ids else None)

    def create_with(
        self,
        writer: Writer,
        res_type: str,
        resource: dict[str, Any],
        *,
        site: Site | None = None,
        if_none_exist: str | Match | None = None,
        res_id: str | None = None,
        checked: list[dict] | None = None,
    ) -> Written:
        """Create (conditionally with ``if_none_exist``); the server assigns the id.

        ``res_id`` is an id planned by the caller (a transaction maps fullUrls to it);
        ``checked`` the warnings of a caller that already ran :meth:`check_resource`.
        """
        check_type(res_type)
        warnings = self.check_resource(resource, res_type, site) if checked is None else checked
        match = None
        if if_none_exist is not None:
            match = (
                if_none_exist
                if isinstance(if_none_exist, Match)
                else self.match_one(writer, res_type, if_none_exist, "If-None-Exist")
            )
            if match.res_id is not None:
                return Written(writer.current(res_type, match.res_id), 200)
        res_id = res_id or new_id()
        if match is not None:
            writer.claim_conditional_key(res_type, match.key, res_id)
        resource = self._subscription(writer, res_type, resource, res_id)
        body = {k: v for k, v in resource.items() if k != "id"}
        body = binaries.prepare(writer, body, res_id, self.config)
        return Written(writer.create(body, res_id, fresh=True), 201, warnings)

    def update_with(
        self,
        writer: Writer,
        res_type: str,
        res_id: str | None,
        resource: dict[str, Any],
        *,
        site: Site | None = None,
        if_match: int | None = None,
        condition: str | Match | None = None,
        checked: list[dict] | None = None,
    ) -> Written:
        """Update ``res_type/res_id`` (update-as-create when absent), or the one match of
        ``condition`` (a new resource, id ``res_id`` or the body's, when none matches)."""
        check_type(res_type)
        if condition is not None:
            match = (
                condition
                if isinstance(condition, Match)
                else self.match_one(writer, res_type, condition, "The conditional update")
            )
            if match.res_id is not None:
                res_id = match.res_id
            else:
                res_id = res_id or resource.get("id") or new_id()
            check_update_id(res_type, res_id, resource, conditional=True)
        else:
            check_id(res_id)
            check_update_id(res_type, res_id, resource)
        warnings = self.check_resource(resource, res_type, site) if checked is None else checked
        current = writer.current(res_type, res_id)
        self._check_binary_overwrite(writer, res_type, res_id)
        if site is not None and self._stale(resource, current):
            return Written(current, 200)  # a site's older data does not overwrite newer
        if condition is not None and match.res_id is None:
            check_id(res_id)
            if current is None:  # the key guards the creation of a match
                writer.claim_conditional_key(res_type, match.key, res_id)
        resource = self._subscription(writer, res_type, resource, res_id)
        body = binaries.prepare(writer, dict(resource), res_id, self.config)
        stored, created = writer.update(dict(body), res_id, if_match=if_match)
        return Written(stored, 201 if created else 200, warnings)

    def _subscription(
        self, writer: Writer, res_type: str, resource: dict[str, Any], res_id: str
    ) -> dict[str, Any]:
        """A Subscription is checked and stored ``active`` (``hub.subscriptions.rules``), and
        its writer recorded as its owner in the same unit of work; other types pass as is."""
        if res_type != "Subscription":
            return resource
        resource = subscription_rules.prepare(
            resource, self.config, self.search_engine, writer.conn
        )
        set_owner(writer.conn, res_id, subscription_rules.owner_of_write())
        return resource

    def _stale(self, incoming: dict[str, Any], current: Stored | None) -> bool:
        """The ``is_stale`` hook: may ``incoming`` (from a site) overwrite ``current``?"""
        if current is None or current.deleted or self.pm is None:
            return False
        return any(self.pm.hook.is_stale(incoming=incoming, stored=current.resource()))

    def patch_with(
        self,
        writer: Writer,
        res_type: str,
        res_id: str,
        patch_body: Any,
        site: Site | None = None,
        if_match: int | None = None,
    ) -> Written:
        """Patch ``res_type/res_id`` with ``writer``: the one PATCH of REST and transactions."""
        check_type(res_type)
        current = writer.current(res_type, res_id)
        # Authorize before applying: a failed "test" op must not reveal the content.
        guard.check_write("update", None, current, res_type)
        if current is None:
            raise outcomes.not_found(f"{res_type}/{res_id} is not known")
        if current.deleted:
            raise outcomes.gone(f"{res_type}/{res_id} was deleted")
        self._check_binary_overwrite(writer, res_type, res_id)
        patched = apply_patch(current.resource(), patch_body)
        if patched.get("resourceType") != res_type or patched.get("id") != res_id:
            raise outcomes.unprocessable(
                f"A patch may not change resourceType or id (of {res_type}/{res_id})",
                f"{res_type}.id",
            )
        warnings = self.check_resource(patched, res_type, site)
        patched = self._subscription(writer, res_type, patched, res_id)
        patched = binaries.prepare(writer, patched, res_id, self.config)
        stored, _ = writer.update(patched, res_id, if_match=if_match, method="PATCH")
        return Written(stored, 200, warnings)

    def delete_with(
        self,
        writer: Writer,
        res_type: str,
        res_id: str | None,
        *,
        if_match: int | None = None,
        condition: str | None = None,
    ) -> Written:
        """Delete ``res_type/res_id``, or every match of ``condition`` (as HAPI with
        multiple-delete enabled, at most ``MAX_COUNT``). Nothing there is no error."""
        check_type(res_type)
        if condition is not None:
            params = parse_query(condition)
            if not params:
                raise outcomes.bad_request("A conditional delete needs search criteria")
            writer.flush()
            ids = self.match_ids(
                writer.conn, res_type, params, limit=int(setting(self.config, "MAX_COUNT"))
            )
            for match_id in ids:
                self._check_binary_overwrite(writer, res_type, match_id)
            deleted = [d for d in (writer.delete(res_type, i) for i in ids) if d]
            return Written(
                deleted[0] if len(deleted) == 1 else None,
                200,
                text=f"{len(deleted)} {res_type} resource(s) deleted",
            )
        check_id(res_id)
        self._check_binary_overwrite(writer, res_type, res_id)
        if if_match is not None:
            cur = writer.current(res_type, res_id)
            if cur is None or cur.deleted or cur.version != if_match:
                raise outcomes.precondition_failed(
                    f"{res_type}/{res_id} is not at version {if_match}"
                )
        stored = writer.delete(res_type, res_id)
        text = (
            f"{res_type}/{res_id} deleted"
            if stored
            else f"{res_type}/{res_id} was not there; nothing to delete"
        )
        return Written(stored, 200, text=text)

    # -- search helpers ----------------------------------------------------------

    def check_jurisdiction(self, res_type: str, res_id: str, conn=None) -> None:
        """404 for a resource outside the jurisdiction of the caller (a user bound to one).

        The same SQL boundary as searches (``hub.search.access``): a Patient inside by its
        health-record number or institution, other resources by their Patient.
        """
        access = guard.search_access()
        if access is None or not access.jurisdiction or self.search_engine is None:
            return
        scoped = dataclasses.replace(access, hidden_labels=(), patient=None)
        if conn is None:
            with self.repo.standalone_reads() as c:
                inside = self.search_engine.visible_keys(c, [(res_type, res_id)], scoped)
        else:
            inside = self.search_engine.visible_keys(conn, [(res_type, res_id)], scoped)
        if not inside:
            raise outcomes.not_found(f"{res_type}/{res_id} is not known")

    def within_jurisdiction(self, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The ``resources`` inside the caller's jurisdiction (all of them without one)."""
        access = guard.search_access()
        if access is None or not access.jurisdiction or not resources:
            return resources
        scoped = dataclasses.replace(access, hidden_labels=(), patient=None)
        keys = [(r.get("resourceType"), r.get("id")) for r in resources]
        with self.repo.standalone_reads() as conn:
            inside = self.search_engine.visible_keys(conn, keys, scoped)
        return [r for r, key in zip(resources, keys, strict=True) if key in inside]

    def match_ids(
        self, conn, res_type: str, params: list[tuple[str, str]], limit: int = 2
    ) -> list[str]:
        """Ids of the current resources matching search ``params`` (at most ``limit``).

        The criteria of conditional operations are a search: they need the search
        scope on every type they touch, and see only what the caller may see, so
        a hidden resource behaves as if it were not there (``docs/security.md``).
        """
        if self.search_engine is None:
            raise outcomes.error(501, "not-supported", "Search is not available")
        check_params(params)
        guard.require(res_type, "s")
        lock_keys(conn, criteria_locks(res_type, params))
        result = self.search_engine.search(
            conn,
            res_type,
            [*params, ("_count", str(limit)), ("_total", "none")],
            strict=True,
            base_url="",
            access=guard.search_access(),
        )
        return [e.res_id for e in result.entries if e.mode == "match"]

    # -- history ---------------------------------------------------------------

    def history(
        self, base: str, res_type: str | None, res_id: str | None, params: list[tuple[str, str]]
    ) -> bytes:
        if res_type:
            check_type(res_type)
            guard.require(res_type, "r", "reading the history of")
        args = dict(params)
        count = _count(args.get("_count"), self.config)
        since = _instant_param(args.get("_since"), "_since")
        at = _instant_param(args.get("_at"), "_at")
        cursor = _decode_cursor(args.get("_cursor"))
        if res_id:
            current = self.repo.read(res_type, res_id)
            if current is None:
                raise outcomes.not_found(f"{res_type}/{res_id} is not known")
            guard.check_read(res_type, res_id, current.content)
            self.check_jurisdiction(res_type, res_id)
        rows = self.repo.history(
            res_type, res_id, since=since, at=at, count=count + 1, before=cursor
        )
        more = len(rows) > count
        rows = rows[:count]
        # The cursor follows the unfiltered page, so hidden entries never shift paging.
        cursor_row = rows[-1] if rows else None
        rows = self._visible_history(rows)
        path = "/".join(
            p for p in ("" if not res_type else res_type, res_id or "", "_history") if p
        )
        self_link = f"{base}/{path}"
        keep = [(k, v) for k, v in params if k not in ("_cursor",)]
        links = [{"relation": "self", "url": _with_query(self_link, params)}]
        if more and cursor_row is not None:
            token = _encode_cursor(cursor_row)
            links.append(
                {"relation": "next", "url": _with_query(self_link, [*keep, ("_cursor", token)])}
            )
        total = None
        if res_id or not cursor:
            total = self.repo.history_count(res_type, res_id, since) if res_id else None
        return history_bundle(rows, base, links, total)

    def _visible_history(self, rows: list[Stored]) -> list[Stored]:
        """History entries the principal may see: type scope, and labels of the version and of
        the current version (a resource labelled later hides its earlier versions)."""
        from hub.security.principal import current

        p = current()
        if p is None or not rows:
            return rows
        rows = [r for r in rows if p.can(r.res_type, "r")]
        if p.jurisdiction and self.search_engine is not None and rows:
            # Each version by its own patient compartment, as searches judge current rows.
            access = guard.search_access(p)
            with self.repo.standalone_reads() as conn:
                inside = self.search_engine.visible_versions(
                    conn, [(r.res_type, r.res_id, r.version) for r in rows], access
                )
            rows = [r for r in rows if (r.res_type, r.res_id, r.version) in inside]
        if p.all_labels and not p.patient_only:
            return rows
        with self.repo.standalone_reads() as conn:
            now = self.repo.read_many({(r.res_type, r.res_id) for r in rows}, conn)
        return [
            r
            for r in rows
            if p.sees_json(r.content)
            and p.sees_json(getattr(now.get((r.res_type, r.res_id)), "content", None))
        ]

    # -- CapabilityStatement is built in hub.fhir.capabilities -----------------


def apply_patch(resource: dict[str, Any], body: Any) -> dict[str, Any]:
    """Apply a JSON Patch (a list of operations, or a Binary holding one) or a
    FHIRPath Patch (a Parameters resource) to ``resource``."""
    if isinstance(body, dict) and body.get("resourceType") == "Binary":
        import base64

        try:
            body = orjson.loads(base64.b64decode(body.get("data", "")))
        except (ValueError, orjson.JSONDecodeError):
            raise outcomes.bad_request("The Binary does not hold a JSON Patch") from None
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        from hub.fhir import fhirpath_patch

        return fhirpath_patch.apply(resource, body)
    if not isinstance(body, list):
        raise outcomes.bad_request(
            "A patch is a JSON Patch array or a FHIRPath Patch Parameters resource"
        )
    try:
        return jsonpatch.apply_patch(resource, body)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
        raise outcomes.unprocessable(f"The patch cannot be applied: {err}") from None
    except (TypeError, KeyError, ValueError) as err:
        raise outcomes.bad_request(f"Invalid JSON Patch: {err}") from None


def history_bundle(rows: list[Stored], base: str, links: list[dict], total: int | None) -> bytes:
    """A ``history`` Bundle, with stored JSON spliced in unparsed."""
    head: dict[str, Any] = {"resourceType": "Bundle", "type": "history"}
    if total is not None:
        head["total"] = total
    head["link"] = links
    parts = []
    for r in rows:
        full_url = f"{base}/{r.res_type}/{r.res_id}"
        if r.deleted:
            req = {"method": "DELETE", "url": f"{r.res_type}/{r.res_id}"}
            status = "204 No Content"
        elif r.version == 1 or r.method == "POST":
            req = {
                "method": "POST" if r.method == "POST" else "PUT",
                "url": r.res_type if r.method == "POST" else f"{r.res_type}/{r.res_id}",
            }
            status = "201 Created"
        else:
            req = {
                "method": r.method if r.method in ("PUT", "PATCH") else "PUT",
                "url": f"{r.res_type}/{r.res_id}",
            }
            status = "200 OK"
        response = {
            "status": status,
            "etag": r.etag,
            "lastModified": format_instant(r.last_updated),
        }
        entry = b'{"fullUrl":' + orjson.dumps(full_url)
        if r.content is not None:
            entry += b',"resource":' + r.content.encode()
        entry += (
            b',"request":' + orjson.dumps(req) + b',"response":' + orjson.dumps(response) + b"}"
        )
        parts.append(entry)
    body = orjson.dumps(head)[:-1] + b',"entry":[' + b",".join(parts) + b"]}"
    return body


def parse_query(query: str) -> list[tuple[str, str]]:
    query = query.split("?", 1)[1] if "?" in query else query
    return urllib.parse.parse_qsl(query, keep_blank_values=True)


def canonical_criteria(params: list[tuple[str, str]]) -> str:
    """Criteria in a canonical order, the key of the conditional-create guard.

    A caller who may not see everything (labels, jurisdiction, patient context) gets a key
    of its own view: a hidden resource created under the same criteria must not block its
    create (it behaves as if the hidden one were not there, ``docs/security.md``).
    """
    key = urllib.parse.urlencode(sorted(params))
    view = guard.view_key()
    return f"{key}#view={view}" if view else key


# Criteria naming these identify a resource: conditional operations on them lock per value.
_IDENTIFYING = ("identifier", "_id")


def criteria_locks(res_type: str, params: list[tuple[str, str]]) -> list[str]:
    """The lock keys of conditional criteria (:func:`hub.storage.repository.lock_keys`).

    Two criteria can match the same resource only if they agree on its identifiers, so
    ``identifier=S|V`` and ``identifier=S|V&gender=female`` share the key ``identifier=S|V``;
    criteria without an identifier serialise on the resource type.
    """
    from hub.search.params import split_escaped
    from hub.search.params import split_or

    keys = []
    for name, raw in params:
        if name not in _IDENTIFYING:
            continue
        for value in split_or(raw):
            # The value alone: ``identifier=V`` matches what ``identifier=S|V`` matches.
            code = split_escaped(value, "|", 1)[-1]
            if not code:  # ``identifier=S|``: any value of the system
                return [res_type]
            keys.append(f"{res_type}?{name}={code}")
    return keys or [res_type]


def _count(value: str | None, config: dict) -> int:
    default = int(setting(config, "DEFAULT_COUNT"))
    return count_param(value, "_count", default, int(setting(config, "MAX_COUNT")))


def _instant_param(value: str | None, name: str) -> dt.datetime | None:
    if not value:
        return None
    text = value.replace("Z", "+00:00")
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = dt.datetime.fromisoformat(text[:10])
        except ValueError:
            raise outcomes.bad_request(
                f"{name} must be an instant (e.g. 2026-01-31T10:00:00Z), not {value!r}", name
            ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def _encode_cursor(stored: Stored) -> str:
    raw = orjson.dumps(
        [stored.last_updated.isoformat(), stored.res_type, stored.res_id, stored.version]
    )
    import base64

    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(token: str | None):
    if not token:
        return None
    import base64

    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        ts, t, i, v = orjson.loads(raw)
        if not (isinstance(v, int) and 0 <= v <= MAX_VERSION):
            raise ValueError(v)
        return (dt.datetime.fromisoformat(ts), t, i, v)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise outcomes.bad_request("Invalid _cursor", "_cursor") from None


def _with_query(url: str, params: list[tuple[str, str]]) -> str:
    return url + ("?" + urllib.parse.urlencode(params) if params else "")
