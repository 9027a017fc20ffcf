"""The R4 websocket binding, served by ``hub worker`` (``SUBSCRIPTION_WEBSOCKET_PORT``).

A client connects with its bearer token in the handshake's ``Authorization`` header,
sends ``bind <subscription-id>`` for a Subscription whose channel is ``websocket`` and
that its token may read, receives ``bound <id>``, then ``ping <id>`` for every
notification (and reads the changes itself, with its own token). A bind the hub
refuses answers ``error <reason>``; a connection without a valid token is closed at
once (1008, policy violation), so even the pings' timing is kept from strangers.

Why in the worker and not in the web app: the worker makes the notifications, so it
pings its bound connections as it delivers, with no polling and no shared state between
processes; and the web app stays plain WSGI (gunicorn's threads are not held by
connections that stay open for hours). The pings carry only the Subscription's id.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server
from websockets.sync.server import ServerConnection
from websockets.sync.server import serve

log = logging.getLogger("hub.subscriptions.websocket")

MAX_BINDINGS = 100  # per connection
MAX_MESSAGE = 1024  # a bind is short


class WebsocketEndpoint:
    """The bound connections, by Subscription id, and the server thread that accepts them.

    ``authenticate(authorization)`` returns who holds the handshake's ``Authorization``
    header, or raises ``ValueError`` with the reason it is refused; ``can_bind(id, who)``
    returns None when ``who`` may bind Subscription ``id``, else the reason.
    """

    def __init__(
        self,
        can_bind: Callable[[str, Any], str | None],
        authenticate: Callable[[str | None], Any],
    ):
        self.can_bind = can_bind
        self.authenticate = authenticate
        self.lock = threading.Lock()
        self.bound: dict[str, set[ServerConnection]] = {}
        self.server: Server | None = None
        self.thread: threading.Thread | None = None

    def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port) in a thread; returns the port."""
        self.server = serve(self._handle, host, port, max_size=MAX_MESSAGE)
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="subscription-websocket", daemon=True
        )
        self.thread.start()
        return self.server.socket.getsockname()[1]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def ping(self, subscription_id: str) -> int:
        """Send ``ping <id>`` to every connection bound to it; how many were reached."""
        with self.lock:
            targets = list(self.bound.get(subscription_id, ()))
        reached = 0
        for conn in targets:
            try:
                conn.send(f"ping {subscription_id}")
                reached += 1
            except ConnectionClosed:
                self._unbind(conn)
        return reached

    def _handle(self, conn: ServerConnection) -> None:
        mine: set[str] = set()
        try:
            who = self.authenticate(conn.request.headers.get("Authorization"))
        except ValueError as err:
            conn.close(1008, f"unauthorized: {err}"[:120])
            return
        try:
            for message in conn:
                if not isinstance(message, str):
                    conn.send("error send text: bind <subscription-id>")
                    continue
                verb, _, sid = message.strip().partition(" ")
                sid = sid.strip()
                if verb != "bind" or not sid:
                    conn.send("error send: bind <subscription-id>")
                    continue
                if len(mine) >= MAX_BINDINGS:
                    conn.send(f"error at most {MAX_BINDINGS} bindings per connection")
                    continue
                refused = self.can_bind(sid, who)
                if refused:
                    conn.send(f"error {refused}")
                    continue
                with self.lock:
                    self.bound.setdefault(sid, set()).add(conn)
                mine.add(sid)
                conn.send(f"bound {sid}")
        except ConnectionClosed:
            pass
        finally:
            self._unbind(conn)

    def _unbind(self, conn: ServerConnection) -> None:
        with self.lock:
            for sid in [s for s, conns in self.bound.items() if conn in conns]:
                self.bound[sid].discard(conn)
                if not self.bound[sid]:
                    del self.bound[sid]
