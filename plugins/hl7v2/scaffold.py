"""What ``hub site new NAME --adapter hl7v2`` writes (the adapter's ``register_adapters``)."""

from __future__ import annotations

from fhirhub_plugins.hl7v2.api import FORMAT
from hub.plugin_api import Adapter

# One synthetic ADT^A28 whose MSH-3/MSH-4 are the manifest's placeholders, so the
# scaffolded site routes it and its kit passes as created.
_EXAMPLE = (
    "MSH|^~\\&|FILL-IN-APP|FILL-IN-FACILITY|FHIRHUB|HUB|20240101080000||ADT^A28^ADT_A05|{name}-0001|P|2.5|||||CHN|UNICODE UTF-8\r"
    "EVN|A28|20240101080000\r"
    "PID|1||000001^^^FILL-IN-FACILITY^MR||测试^患者||19800101|2\r"
)

ADAPTER = Adapter(
    name="hl7v2",
    format=FORMAT,
    input_extension="hl7",
    example=("register-person", "input.hl7", _EXAMPLE),
    match=(
        "match:\n"
        "  sending_application: FILL-IN-APP     # MSH-3\n"
        "  sending_facility: FILL-IN-FACILITY  # MSH-4\n"
    ),
    match_step=(
        "`match.sending_application` (MSH-3) and\n"
        "   `match.sending_facility` (MSH-4) are what the site's interface engine puts\n"
        "   in every message header; the hub routes MLLP messages to this site by them.\n"
        "   Put the same values in the example case's `input.hl7` MSH segment."
    ),
)
