"""The inbox as ingestion sees it: the statuses of a payload and its store.

The rows and their SQL (the PostgreSQL/SQLite differences included) live in
:mod:`hub.storage.inbox_store`; this module names them for the ingestion code
(see that module for what each status means).
"""

from __future__ import annotations

from hub.storage.inbox_store import REPLAYABLE
from hub.storage.inbox_store import STATUSES
from hub.storage.inbox_store import InboxItem
from hub.storage.inbox_store import InboxStore
from hub.storage.inbox_store import payload_hash

# The pipeline's inbox is the store itself: nothing of ingestion sits between.
Inbox = InboxStore

__all__ = ["REPLAYABLE", "STATUSES", "Inbox", "InboxItem", "InboxStore", "payload_hash"]
