"""The plugin API: everything of the hub an adapter may use, in one module.

Plugins (the built-in ``hl7v2``, ``cda`` and ``va_registry`` adapters as well as
third-party ones) import from here and nowhere else in ``hub``: the names below
are kept stable across releases (added to, never removed or changed in meaning),
while the modules they come from may move. ``docs/plugin_hooks.md`` is the
guide; ``hub/hookspecs.py`` declares the hooks.

What is here:

* hooks: :data:`hookimpl` (mark your hook functions with it) and :class:`Adapter`
  (what ``register_adapters`` returns);
* messages and mapping: :class:`InboundMessage`, :class:`OutboundMessage`,
  :class:`MappingContext`, :class:`CodeMap`, :func:`load_code_maps`, :data:`MAPPINGS_DIR`
  (a context's ``code_map``, ``translate`` and ``lookup`` read the hub's terminology
  service: the maps as the site uses them, the same ones ``$translate`` serves);
* outcomes: :class:`OperationOutcomeError`, :func:`issue`, :func:`outcome`, :func:`error`
  and the whole :mod:`outcomes` module (``bad_request``, ``not_found`` ...);
* identity: the identifier systems, :mod:`resident_id` (``parse``, ``mask`` ...),
  :func:`split_chinese_name`, the deterministic ids :func:`stable_id`,
  :func:`patient_id_for_resident_id`, :func:`with_content_hash`;
* code systems: :mod:`codesystems` (the hub's own URLs);
* operations: :class:`Operation`, :class:`OperationCall`, :class:`Result`;
* the running hub, for listeners, operations and CLI commands:
  :func:`current_hub` (the hub of the ``hub`` command), :func:`queue_delivery` (hand a
  message to the outbound queue), :func:`ingest_many` (store messages a listener
  received), :func:`http_status`, :func:`runs`, :func:`compartment_resources`,
  :func:`patients_with_code` and :func:`read_in_batches` (read the lifetime file).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from hub import codesystems
from hub import outcomes
from hub.config import setting
from hub.fhir.service import Result
from hub.hookspecs import hookimpl
from hub.identity import HEALTH_CARD_SYSTEM
from hub.identity import HEALTH_RECORD_SYSTEM
from hub.identity import RESIDENT_ID_SYSTEM
from hub.identity import resident_id
from hub.identity.ids import patient_id_for_resident_id
from hub.identity.ids import stable_id
from hub.identity.ids import with_content_hash
from hub.identity.names import split_chinese_name
from hub.ingest.pipeline import http_status
from hub.ingest.pipeline import runs
from hub.lifetime.exports import patients_with_code
from hub.lifetime.exports import read_in_batches
from hub.lifetime.links import compartment_resources
from hub.mapping import CodeMap
from hub.mapping import InboundMessage
from hub.mapping import MappingContext
from hub.mapping import OutboundMessage
from hub.mapping import load_code_maps
from hub.operations import Operation
from hub.operations import OperationCall
from hub.operations import parameter
from hub.outcomes import OperationOutcomeError
from hub.outcomes import error
from hub.outcomes import issue
from hub.outcomes import outcome
from hub.paths import MAPPINGS_DIR
from hub.plugins import Adapter
from hub.sites import Site

if TYPE_CHECKING:
    from hub.kernel import Hub  # the type of ``call.hub`` and of a listener's hub

__all__ = [
    "Adapter",
    "HEALTH_CARD_SYSTEM",
    "HEALTH_RECORD_SYSTEM",
    "MAPPINGS_DIR",
    "RESIDENT_ID_SYSTEM",
    "CodeMap",
    "InboundMessage",
    "MappingContext",
    "Operation",
    "OperationCall",
    "OperationOutcomeError",
    "OutboundMessage",
    "Result",
    "Site",
    "codesystems",
    "compartment_resources",
    "current_hub",
    "error",
    "hookimpl",
    "http_status",
    "ingest_many",
    "issue",
    "load_code_maps",
    "outcome",
    "outcomes",
    "parameter",
    "patient_id_for_resident_id",
    "patients_with_code",
    "queue_delivery",
    "read_in_batches",
    "resident_id",
    "runs",
    "setting",
    "split_chinese_name",
    "stable_id",
    "with_content_hash",
]


def current_hub() -> Any:
    """The hub configured from the environment, as the ``hub`` command builds it.

    For a plugin's CLI commands and listeners; an operation handler gets its hub
    as ``call.hub`` instead.
    """
    from hub.app import create_app
    from hub.app import get_hub

    return get_hub(create_app())


def queue_delivery(the_hub: Hub, site: Site, message: OutboundMessage) -> int:
    """Queue ``message`` for ``site``'s outbound transport; returns the delivery id.

    ``hub worker`` sends it in order with the site's other messages, retries it
    with back-off and keeps it as a dead letter after the last attempt.
    """
    from hub import outbound

    return outbound.queue(the_hub, site, message)


def ingest_many(the_hub: Hub, site_name: str, bodies: list[bytes], **options: Any) -> list[Any]:
    """Store and process messages a listener received for one site, in one inbox commit.

    ``options`` are those of the pipeline's ``ingest_many`` (``source_keys``,
    ``parsed``, ``fmt``); returns one result per message, each with its inbox
    ``item`` (``status``, ``outcome``).
    """
    return the_hub.pipeline.ingest_many(site_name, bodies, **options)
