"""What the hub calls besides the hooks: routing a message to its site, and
parse + map in one call (for the CLI, the kit runner and tests)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from fhirhub_plugins.hl7v2.messages import to_bundle
from fhirhub_plugins.hl7v2.parse import Header
from fhirhub_plugins.hl7v2.parse import Message
from fhirhub_plugins.hl7v2.parse import parse_message
from hub.plugin_api import MappingContext

if TYPE_CHECKING:
    from hub.plugin_api import Site

FORMAT = "hl7v2"
CONTENT_TYPE = "application/hl7-v2"


def route(message: Message | Header, sites: dict[str, Any] | list[Any]) -> Any | None:
    """The site whose ``match`` names this message's MSH-3 / MSH-4, or ``None``.

    A site naming both keys wins over one naming only MSH-4 or MSH-3. A
    :class:`Header` read from the raw bytes routes as well as a parsed message
    (the MLLP listener routes before it knows the site's character set).
    """
    candidates = sites.values() if isinstance(sites, dict) else sites
    found = [
        s
        for s in candidates
        if getattr(s, "adapter", None) == FORMAT
        and s.accepts(message.sending_application, message.sending_facility)
    ]
    found.sort(key=lambda s: -sum(1 for v in (s.match or {}).values() if v))
    return found[0] if found else None


def convert(body: bytes, site: Site, code_maps: dict | None = None) -> tuple[dict, list[dict]]:
    """Parse and map one message for ``site``; returns (Bundle, issues)."""
    if code_maps is None:
        from hub.plugin_api import MAPPINGS_DIR
        from hub.plugin_api import load_code_maps

        code_maps = load_code_maps([MAPPINGS_DIR])
    context = MappingContext(site, code_maps)
    msg = parse_message(body, site)
    return to_bundle(msg, site, context), context.issues
