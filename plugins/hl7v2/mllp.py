"""MLLP transport: a threaded server, a client and ACK building.

Framing is ``<VT> message <FS><CR>`` (0x0B ... 0x1C 0x0D). The server reads
each connection on its own thread, skips bytes before a start block (line
noise, a stray health-check), keeps partial frames until they complete and
drops a connection whose frame outgrows ``max_frame`` after answering AR.
The ``handler`` callback receives the message bytes and returns the ACK bytes;
it decides durability (the hub stores the message before it answers AA).
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import socketserver
import threading
import uuid
from collections.abc import Callable

from fhirhub_plugins.hl7v2.parse import Message
from fhirhub_plugins.hl7v2.parse import parse_message

log = logging.getLogger("fhirhub.hl7v2.mllp")

VT = b"\x0b"
FS = b"\x1c"
CR = b"\x0d"
DEFAULT_MAX_FRAME = 16 * 1024 * 1024

Handler = Callable[[bytes], bytes]


def frame(payload: bytes) -> bytes:
    """Wrap one message in an MLLP frame."""
    return VT + payload + FS + CR


class FrameReader:
    """Incremental MLLP de-framer: feed bytes, get complete messages."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME):
        self.max_frame = max_frame
        self._buf = bytearray()
        self._in_frame = False
        self.skipped = 0  # bytes discarded outside frames

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the messages completed. Raises :class:`FrameTooLarge`."""
        out = []
        self._buf += data
        while True:
            if not self._in_frame:
                start = self._buf.find(VT)
                if start < 0:
                    self.skipped += len(self._buf)
                    self._buf.clear()
                    break
                self.skipped += start
                del self._buf[: start + 1]
                self._in_frame = True
            end = self._buf.find(FS + CR)
            if end < 0:
                # A second start block inside a frame means the first frame was cut off.
                restart = self._buf.find(VT)
                if restart >= 0:
                    self.skipped += restart
                    del self._buf[: restart + 1]
                    continue
                if len(self._buf) > self.max_frame:
                    raise FrameTooLarge(len(self._buf))
                break
            restart = self._buf.rfind(VT, 0, end)
            if restart >= 0:  # a frame cut off by a new start block: keep the new one
                self.skipped += restart + 1
                del self._buf[: restart + 1]
                continue
            out.append(bytes(self._buf[:end]))
            del self._buf[: end + 2]
            self._in_frame = False
        return out


class FrameTooLarge(Exception):
    """A frame grew past ``max_frame`` bytes without its end block."""


class _ConnectionHandler(socketserver.BaseRequestHandler):
    server: MLLPServer

    def handle(self) -> None:
        reader = FrameReader(self.server.max_frame)
        sock = self.request
        sock.settimeout(self.server.idle_timeout)
        peer = self.client_address
        while True:
            try:
                data = sock.recv(65536)
            except (TimeoutError, OSError):
                return
            if not data:
                return
            try:
                messages = reader.feed(data)
            except FrameTooLarge as exc:
                log.warning("MLLP %s: frame over %d bytes, closing", peer, self.server.max_frame)
                ack = make_ack(
                    None, "AR", f"message larger than {self.server.max_frame} bytes ({exc})"
                )
                self._send(sock, ack)
                return
            for body in messages:
                try:
                    ack = self.server.handler(body)
                except Exception as exc:  # the handler must answer; never leave the sender waiting
                    log.exception("MLLP %s: handler failed", peer)
                    ack = make_ack(body, "AE", f"internal error: {type(exc).__name__}")
                if not self._send(sock, ack):
                    return

    @staticmethod
    def _send(sock: socket.socket, ack: bytes) -> bool:
        try:
            sock.sendall(frame(ack))
            return True
        except OSError:
            return False


class MLLPServer(socketserver.ThreadingTCPServer):
    """A threaded MLLP listener: one thread per connection, ``handler(bytes) -> ack bytes``.

    ``MLLPServer(("127.0.0.1", 0), handler)`` binds an ephemeral port
    (``server.port``); run it with ``serve_forever()`` or ``start()`` (a
    daemon thread) and stop it with ``stop()``.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: Handler,
        max_frame: int = DEFAULT_MAX_FRAME,
        idle_timeout: float | None = 300.0,
    ):
        self.handler = handler
        self.max_frame = max_frame
        self.idle_timeout = idle_timeout
        self._thread: threading.Thread | None = None
        super().__init__(address, _ConnectionHandler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> MLLPServer:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="mllp", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread:
            self._thread.join()


def send(host: str, port: int, payload: bytes, timeout: float = 10.0) -> bytes:
    """Send one message over MLLP and return the ACK's bytes (frame removed).

    Raises ``TimeoutError`` or ``ConnectionError`` when no complete ACK arrives.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(frame(payload))
        reader = FrameReader()
        while True:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError(f"{host}:{port} closed the connection before acknowledging")
            messages = reader.feed(data)
            if messages:
                return messages[0]


# ---------------------------------------------------------------------------
# ACK
# ---------------------------------------------------------------------------

# MSA-1 code -> ERR-4 severity (HL7 table 0516).
_SEVERITY = {"AA": "I", "CA": "I", "AE": "E", "CE": "E", "AR": "E", "CR": "E"}


def _esc(value: str, msg: Message | None = None) -> str:
    """Escape for the ACK's own separators (always ``|^~\\&``)."""
    for ch, code in (("\\", "E"), ("|", "F"), ("^", "S"), ("&", "T"), ("~", "R")):
        value = value.replace(ch, f"\\{code}\\")
    return value.replace("\r", " ").replace("\n", " ")


def make_ack(
    msg: Message | bytes | None,
    code: str = "AA",
    error_text: str | None = None,
    error_location: str | None = None,
    *,
    sending_application: str = "FHIRHUB",
    sending_facility: str = "HUB",
    control_id: str | None = None,
) -> bytes:
    """An ``ACK`` for ``msg`` with MSA-1 ``code`` and, for errors, an ERR segment.

    ``msg`` may be a parsed :class:`Message`, raw bytes (parsed leniently; a
    message too broken to parse still gets an ACK, with an empty MSA-2) or
    ``None``. ``error_location`` is ``PID-8`` style (ERR-2 segment^seq^field).
    The ACK uses the message's character set and swaps MSH-3/4 with MSH-5/6.
    """
    if code not in _SEVERITY:
        raise ValueError(f"ACK code must be one of {sorted(_SEVERITY)}")
    if isinstance(msg, bytes | bytearray):
        try:
            msg = parse_message(bytes(msg))
        except Exception:
            msg = None
    now = dt.datetime.now(dt.UTC).astimezone().strftime("%Y%m%d%H%M%S%z")
    if msg is not None:
        msh = msg.msh
        receiver_app = msh.first(3).raw_component(1) if msh.first(3) else ""
        receiver_fac = msh.first(4).raw_component(1) if msh.first(4) else ""
        ours_app = (msh.first(5).raw_component(1) if msh.first(5) else "") or sending_application
        ours_fac = (msh.first(6).raw_component(1) if msh.first(6) else "") or sending_facility
        processing = msh.get(11) or "P"
        version = msh.get(12) or "2.5"
        charset = msh.get(18) or ""
        trigger = msg.trigger
        acked = msg.control_id or ""
        encoding = msg.charset
    else:
        receiver_app = receiver_fac = ""
        ours_app, ours_fac = sending_application, sending_facility
        processing, version, charset, trigger, acked, encoding = (
            "P",
            "2.5",
            "UNICODE UTF-8",
            "",
            "",
            "utf-8",
        )
    fields = [
        "MSH",
        "^~\\&",
        ours_app,
        ours_fac,
        receiver_app,
        receiver_fac,
        now,
        "",
        f"ACK^{trigger}^ACK" if trigger else "ACK",
        control_id or uuid.uuid4().hex[:20],
        processing,
        version,
        "",
        "",
        "",
        "",
        "",
        charset,
    ]
    segments = ["|".join(fields).rstrip("|")]
    msa = ["MSA", code, _esc(acked, msg)]
    if error_text and code != "AA":
        msa.append(_esc(error_text[:80], msg))
    segments.append("|".join(msa))
    if error_text and code != "AA":
        segments.append(_err(error_text, error_location, code, msg))
    return ("\r".join(segments) + "\r").encode(encoding, "replace")


def _err(text: str, location: str | None, code: str, msg: Message | None) -> str:
    """ERR: ERR-2 error location (segment^sequence^field), ERR-3 (HL7 table 0357), ERR-4, ERR-8."""
    err_location = ""
    if location:
        seg, _, rest = location.partition("-")
        field = rest.split(".")[0].split("[")[0]
        if len(seg) == 3 and field.isdigit():
            err_location = f"{seg}^1^{field}"
    condition = (
        "200^Unsupported message type^HL70357"
        if code == "AR"
        else "207^Application internal error^HL70357"
    )
    if code == "AE" and location:
        condition = "102^Data type error^HL70357"
    return "|".join(
        ["ERR", "", err_location, condition, _SEVERITY[code], "", "", "", _esc(text, msg)]
    )
