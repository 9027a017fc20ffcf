"""Hook specifications for fhirhub plugins.

Every hook is documented here, where it is declared, and again in
``docs/plugin_hooks.md`` under a heading that is its exact name; each is
exercised by a ``test_hook_<name>`` test. ``tests/test_plugin_docs.py`` fails
when either is missing.

Rules for plugin authors (pluggy's): hooks are always called with keyword
arguments; arguments may be added but never removed, so an implementation may
accept only the arguments it needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

import pluggy

if TYPE_CHECKING:
    from hub.mapping import InboundMessage
    from hub.mapping import MappingContext
    from hub.sites import Site

hookspec = pluggy.HookspecMarker("fhirhub")
hookimpl = pluggy.HookimplMarker("fhirhub")


# ---------------------------------------------------------------------------
# Inbound: site format -> FHIR
# ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def detect_format(body: bytes, content_type: str | None) -> str | None:
    """Name the format of a raw payload, or return ``None`` when it is not yours.

    :param body: the payload exactly as received.
    :param content_type: the media type it arrived with, if any.
    :returns: a format name (``"hl7v2"``, ``"cda"``, ``"va-registry"``...) that
        some plugin's :func:`map_inbound` accepts. The first non-``None`` wins.

    Used when a site's manifest does not fix the format (e.g. an HTTP upload
    folder that receives both CDA and CSV).
    """


@hookspec(firstresult=True)
def source_key(fmt: str, body: bytes, site: Site) -> str | None:
    """The sender's own key for a payload (HL7 MSH-10, a CDA document id), or ``None``.

    The inbox stores each payload under (site, source key, payload hash), so a
    message re-sent after a lost acknowledgement is recognised and answered
    without being processed twice. Without a key the payload hash stands in.
    Must be cheap and must not raise on malformed input: return ``None``.
    """


@hookspec(firstresult=True)
def parse(fmt: str, body: bytes, site: Site, settings: Any) -> Any | None:
    """Parse a payload of your format, once; return ``None`` when ``fmt`` is not yours.

    The hub calls it before :func:`map_inbound` when the receiver has not parsed
    the payload already, and hands the result over as ``message.parsed``: the
    one parse feeds both routing (a listener routes on it) and mapping. Raise
    :class:`hub.outcomes.OperationOutcomeError` for a payload that cannot be
    read (located: segment, line, XPath); ``settings`` carry the limits
    (``INGEST_MAX_BYTES``...).
    """


@hookspec(firstresult=True)
def map_inbound(message: InboundMessage, context: MappingContext) -> dict | None:
    """Map one inbound message to a FHIR ``Bundle`` of type ``transaction``.

    Return ``None`` when ``message.format`` is not yours; the hub asks the next
    plugin. Stops at the first non-``None`` result.

    :param message: ``format``, ``site`` (the :class:`hub.sites.Site`), ``body``
        (bytes), ``content_type`` and ``parsed`` (your own parse of ``body`` when
        the receiver already made one, as the MLLP listener does; map it instead
        of parsing again, after checking it is of your type).
    :param context: ``context.code_map(name)`` reads ``mappings/`` with the
        site's overrides; ``context.warn(text, expression=...)`` records a
        warning and carries on; ``context.unused(location)`` records input left
        unmapped (e.g. ``"PV2-3"``); ``context.settings`` are the hub's settings
        (e.g. the limits ``INGEST_MAX_BYTES``; refuse a payload over a limit with
        status 413: only its digest and the outcome are kept).
    :returns: a transaction ``Bundle`` (a JSON-ready dict) whose entries use
        deterministic ids (``PUT Type/id``) so that a re-delivered message
        updates instead of duplicating.
    :raises hub.outcomes.OperationOutcomeError: the message is yours but cannot
        be mapped. Nothing is stored; the outcome is kept with the raw message
        in the inbox and sent back to the sender.
    """


@hookspec
def is_stale(incoming: dict, stored: dict) -> bool | None:
    """Say whether ``incoming`` is older than the ``stored`` version it would replace.

    Called for every update a site's message makes to an existing resource.
    Return ``True`` to keep the stored version (an older document arriving
    after a newer one must not overwrite it), ``False`` or ``None`` when you
    have no opinion. One ``True`` keeps the stored version.
    """


# ---------------------------------------------------------------------------
# Outbound: FHIR changes -> site format
# ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def map_outbound(resource: dict, event: str, site: Site, context: MappingContext) -> list | None:
    """Turn one changed resource into zero or more messages for ``site``.

    :param resource: the resource as stored after the change.
    :param event: ``"create"``, ``"update"`` or ``"delete"``.
    :param site: the receiving :class:`hub.sites.Site`.
    :param context: ``context.read("Type/id")`` reads a stored resource;
        ``context.previous`` is the resource before the change (``None`` for a
        creation), e.g. to tell that a deletion or a merge ended something.
        A labelled resource reaches only sites whose client holds its grant.
    :returns: a list of :class:`hub.mapping.OutboundMessage` (possibly empty:
        the change is not of interest), or ``None`` when the site's adapter is
        not yours.
    """


@hookspec(firstresult=True)
def send_outbound(
    site: Site, body: bytes, content_type: str | None, timeout: float
) -> bytes | None:
    """Send one queued message over ``site``'s transport; return the receiver's answer.

    Return ``None`` when ``site.outbound["kind"]`` is not a transport of yours
    (the hub itself sends ``kind: http``). Raise ``OSError`` (unreachable,
    timed out) or ``ValueError`` (a negative acknowledgement) when the message
    was not taken: the hub retries it with back-off and, after
    ``OUTBOUND_MAX_ATTEMPTS``, keeps it as a dead letter. The HL7 v2 adapter
    brings ``kind: mllp`` this way.
    """


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------


@hookspec
def register_cli_commands() -> list | None:
    """Return ``click`` commands or groups to add to the ``hub`` command.

    A group named like one the hub has (``export``) adds its subcommands to it;
    any other name becomes a new top-level command. Listeners are started this
    way (the HL7 v2 adapter's ``hub mllp serve``); a command gets the configured
    hub from :func:`hub.plugin_api.current_hub`. Called when the ``hub`` command
    starts, for the plugins ``HUB_LOAD_PLUGINS`` allows.
    """


# ---------------------------------------------------------------------------
# Registration: code maps, search parameters, operations
# ---------------------------------------------------------------------------


@hookspec
def register_adapters() -> list | None:
    """Return the :class:`hub.plugin_api.Adapter` descriptions of the adapters you bring.

    A site binds to an adapter with ``adapter: NAME`` in its manifest; the
    description gives the adapter's payload ``format`` (what ``map_inbound``
    sees in ``message.format`` unless the manifest sets ``format:``) and what
    ``hub site new NAME --adapter X`` writes for it: the input file extension,
    an example case, the manifest's routing keys (``match``) and their README step.
    """


@hookspec
def register_code_maps() -> list | None:
    """Return extra folders (paths) of code-map YAML/ConceptMap files.

    Every plugin's folders are read after the hub's own ``mappings/``; a map id
    defined twice is an error at start-up.
    """


@hookspec
def register_search_parameters() -> list | None:
    """Return ``SearchParameter`` resources (dicts) to index and serve.

    They join the official R4 set; ``hub reindex`` fills their index rows for
    resources stored before the plugin was installed.
    """


@hookspec
def register_operations() -> list | None:
    """Return :class:`hub.operations.Operation` objects (``$name`` handlers).

    Each operation names its level (system, type, instance), its resource
    types and a handler; the CapabilityStatement lists it, and the hub serves
    its OperationDefinition (the R4 one its ``definition`` names, or one built
    from its ``documentation`` and ``parameters``; docs/capabilities.md).
    """


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


@hookspec
def register_profiles() -> list | None:
    """Return conformance resources to validate against, or folders holding them.

    Items are ``StructureDefinition``, ``ValueSet`` or ``CodeSystem`` dicts, or paths of FHIR
    package folders (``StructureDefinition-*.json``...). They join the official R4 definitions
    and ``profiles/``; a canonical URL defined again replaces the earlier definition. A
    resource that names one of these profiles in ``meta.profile`` is validated against it on
    every write.
    """


@hookspec
def validate_resource(resource: dict, site: Site) -> list | None:
    """Return extra ``OperationOutcome.issue`` dicts for ``resource``.

    Called on every write after structural checks; every issue should carry a
    FHIRPath ``expression``. ``site`` is the writing site or ``None`` for plain
    REST clients. What happens to errors follows the site's policy
    (``reject``, ``quarantine`` or ``accept-with-warnings``).
    """


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def handle_exception(exception: BaseException) -> dict | None:
    """Turn an unexpected exception into an ``OperationOutcome`` dict.

    The hub's default (registered ``trylast``) answers with a generic
    ``exception`` issue and logs the traceback; a plugin may return a more
    specific outcome first. Never put a traceback in the outcome.
    """
