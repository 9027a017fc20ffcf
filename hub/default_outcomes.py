"""The hub's default ``handle_exception``: a generic outcome, the traceback to the log."""

from __future__ import annotations

import logging

from hub.hookspecs import hookimpl
from hub.outcomes import issue
from hub.outcomes import outcome

log = logging.getLogger("hub.errors")


@hookimpl(trylast=True)
def handle_exception(exception: BaseException) -> dict:
    log.error("unhandled error", exc_info=exception)
    return outcome(
        issue(
            "fatal",
            "exception",
            "The server could not process the request; the error has been logged.",
        )
    )
