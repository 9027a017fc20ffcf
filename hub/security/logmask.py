"""A logging filter that masks resident ID numbers in every log line.

Log lines include request URLs and error messages, which may carry an 18-digit
resident ID number (``identifier=...|110105...``); logs are kept longer and seen
by more people than the records, so numbers are masked before any handler
writes them (``110105********002X``, as :func:`hub.identity.resident_id.mask`).
"""

from __future__ import annotations

import logging
import re

from hub.identity.resident_id import mask

# 18 characters: 17 digits then a digit or X, not inside a longer run of digits.
ID_NUMBER_RE = re.compile(r"(?<![0-9A-Za-z])(\d{17}[\dXx])(?![0-9A-Za-z])")


def mask_text(text: str) -> str:
    if len(text) < 18:
        return text
    return ID_NUMBER_RE.sub(lambda m: mask(m.group(1)), text)


class MaskIdNumbers(logging.Filter):
    """Rewrites each record's message with ID numbers masked (attach it to handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Add the filter to every handler of ``logger`` (the root logger by default), once."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, MaskIdNumbers) for f in handler.filters):
            handler.addFilter(MaskIdNumbers())


def mask_resource_ids(resource: dict, entitled: bool) -> dict:
    """A copy of ``resource`` with resident ID numbers masked in identifiers (exports).

    ``entitled`` principals (grant ``resident-id``) get the resource unchanged.
    """
    if entitled:
        return resource
    from hub.identity import RESIDENT_ID_SYSTEM

    out = dict(resource)
    idents = resource.get("identifier")
    if isinstance(idents, list):
        out["identifier"] = [
            {**i, "value": mask(i["value"])}
            if isinstance(i, dict)
            and i.get("system") == RESIDENT_ID_SYSTEM
            and isinstance(i.get("value"), str)
            else i
            for i in idents
        ]
    return out
