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
import re
import socket
import socketserver
import threading
import uuid
from collections.abc import Callable

from fhirhub_plugins.hl7v2.parse import Header
from fhirhub_plugins.hl7v2.parse import Message
from fhirhub_plugins.hl7v2.parse import charset_name
from fhirhub_plugins.hl7v2.parse import parse_message
from fhirhub_plugins.hl7v2.parse import read_header
from hub.plugin_api import OperationOutcomeError
from hub.plugin_api import issue

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
                    None,
                    "AR",
                    f"message larger than {self.server.max_frame} bytes ({exc})",
                    error_code="too-long",
                )
                self._send(sock, ack)
                return
            for body in messages:
                try:
                    ack = self.server.handler(body)
                except Exception as exc:  # the handler must answer; never leave the sender waiting
                    log.exception("MLLP %s: handler failed", peer)
                    ack = make_ack(
                        body, "AE", f"internal error: {type(exc).__name__}", error_code="exception"
                    )
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

# MSA-1 code -> ERR-4 severity of its error (HL7 table 0516).
_SEVERITY = {"AA": "I", "CA": "I", "AE": "E", "CE": "E", "AR": "E", "CR": "E"}
# OperationOutcome issue severity -> ERR-4 (HL7 table 0516).
_ISSUE_SEVERITY = {"fatal": "E", "error": "E", "warning": "W", "information": "I"}

# OperationOutcome issue type -> ERR-3 error condition (HL7 table 0357). The table is
# short; each problem gets the code that names it best and ERR-8 says exactly what is
# wrong. Anything else (a business rule, a storage failure) is 207.
ERROR_CONDITIONS = {
    "structure": ("100", "Segment sequence error"),
    "incomplete": ("100", "Segment sequence error"),
    "required": ("101", "Required field missing"),
    "invalid": ("102", "Data type error"),
    "value": ("102", "Data type error"),
    "code-invalid": ("103", "Table value not found"),
    "too-long": ("104", "Value too long"),
    "too-costly": ("104", "Value too long"),
    "not-supported": ("200", "Unsupported message type"),
    "not-found": ("204", "Unknown key identifier"),
    "duplicate": ("205", "Duplicate key identifier"),
    "lock-error": ("206", "Application record locked"),
}
INTERNAL_ERROR = ("207", "Application internal error")
# At most this many ERR segments in one ACK (the inbox item's outcome has them all).
MAX_ERR_SEGMENTS = 20

_LOCATION = re.compile(r"^([A-Z][A-Z0-9]{2})(?:\[(\d+)\])?-(\d+)")


def _esc(value: str) -> str:
    """Escape for the ACK's own separators (always ``|^~\\&``)."""
    for ch, code in (("\\", "E"), ("|", "F"), ("^", "S"), ("&", "T"), ("~", "R")):
        value = value.replace(ch, f"\\{code}\\")
    return value.replace("\r", " ").replace("\n", " ")


def make_ack(
    msg: Message | Header | bytes | None,
    code: str = "AA",
    error_text: str | None = None,
    error_location: str | None = None,
    *,
    issues: list[dict] | tuple = (),
    error_code: str = "processing",
    sending_application: str = "FHIRHUB",
    sending_facility: str = "HUB",
    control_id: str | None = None,
) -> bytes:
    """An ``ACK`` for ``msg`` with MSA-1 ``code`` and an ERR segment per issue.

    ``msg`` may be a parsed :class:`Message`, its :class:`Header` read from
    the raw bytes (a message that could not be decoded or parsed), raw bytes
    (parsed leniently, else their header is read; a message too broken for
    both still gets an ACK, with an empty MSA-2) or ``None``.

    ``issues`` are OperationOutcome issues; each becomes an ERR segment (at
    most :data:`MAX_ERR_SEGMENTS`): ERR-2 the location (``PID-8`` or
    ``OBX[2]-5`` -> ``OBX^2^5``), ERR-3 the condition (HL7 table 0357, from the
    issue type, :data:`ERROR_CONDITIONS`), ERR-4 the severity (``E``, ``W``,
    ``I``), ERR-8 the text. So an AA may carry warnings (severity ``W``).
    ``error_text``, ``error_location`` and ``error_code`` (an issue type) are
    shorthand for one issue of severity error. MSA-3 repeats the first error.
    The ACK uses the message's character set and swaps MSH-3/4 with MSH-5/6.
    """
    if code not in _SEVERITY:
        raise ValueError(f"ACK code must be one of {sorted(_SEVERITY)}")
    if isinstance(msg, bytes | bytearray):
        raw = bytes(msg)
        try:
            msg = parse_message(raw)
        except Exception:
            msg = read_header(raw)
    issues = list(issues)
    if error_text:
        severity = "error" if _SEVERITY[code] == "E" else "warning"
        issues.insert(0, issue(severity, error_code, error_text, error_location))
    now = dt.datetime.now(dt.UTC).astimezone().strftime("%Y%m%d%H%M%S%z")
    encoding = "utf-8"
    if isinstance(msg, Message):
        msh = msg.msh

        def get(field: int) -> str:
            return msh.first(field).raw_component(1) if msh.first(field) else ""

        charset, trigger, acked, encoding = (
            msh.get(18) or "",
            msg.trigger,
            msg.control_id,
            msg.charset,
        )
    elif isinstance(msg, Header):
        head = msg

        def get(field: int) -> str:
            return head.get(field) or ""

        charset, trigger, acked = head.get(18) or "", head.trigger, head.control_id
        try:
            encoding = charset_name(charset) or "utf-8"
        except OperationOutcomeError:
            charset = ""  # an ACK never names a character set its bytes are not in
    else:

        def get(field: int) -> str:
            return ""

        charset, trigger, acked = "UNICODE UTF-8", "", ""
    fields = [
        "MSH",
        "^~\\&",
        get(5) or sending_application,
        get(6) or sending_facility,
        get(3),
        get(4),
        now,
        "",
        f"ACK^{trigger}^ACK" if trigger else "ACK",
        control_id or uuid.uuid4().hex[:20],
        get(11) or "P",
        get(12) or "2.5",
        "",
        "",
        "",
        "",
        "",
        charset,
    ]
    segments = ["|".join(fields).rstrip("|")]
    msa = ["MSA", code, _esc(acked or "")]
    first_error = next(
        (i for i in issues if i.get("severity") in ("error", "fatal") and i.get("diagnostics")),
        None,
    )
    if first_error and code != "AA":
        msa.append(_esc(first_error["diagnostics"][:80]))
    segments.append("|".join(msa))
    segments += [_err(i) for i in issues[:MAX_ERR_SEGMENTS]]
    return ("\r".join(segments) + "\r").encode(encoding, "replace")


def err_location(location: str | None) -> str:
    """ERR-2 (segment^sequence^field) of a location like ``PID-8``, ``OBX[2]-5``, ``PID-3[2]``."""
    found = _LOCATION.match(location or "")
    if not found:
        return ""
    seg, sequence, field = found.groups()
    return f"{seg}^{sequence or 1}^{field}"


def _err(found: dict) -> str:
    """ERR: ERR-2 error location, ERR-3 condition (HL7 table 0357), ERR-4 severity, ERR-8 text."""
    where = next(iter(found.get("expression") or ()), None)
    number, name = ERROR_CONDITIONS.get(found.get("code") or "", INTERNAL_ERROR)
    severity = _ISSUE_SEVERITY.get(found.get("severity") or "", "E")
    text = found.get("diagnostics") or name
    return "|".join(
        [
            "ERR",
            "",
            err_location(where),
            f"{number}^{name}^HL70357",
            severity,
            "",
            "",
            "",
            _esc(text),
        ]
    )


def ack_code(ack: bytes) -> str | None:
    """MSA-1 of an acknowledgement (``AA``, ``AE`` ...), or ``None`` when it has no MSA."""
    for segment in ack.replace(b"\n", b"\r").split(b"\r"):
        if segment.startswith(b"MSA"):
            fields = segment.split(segment[3:4])
            return fields[1].decode(errors="replace") if len(fields) > 1 else None
    return None


def send_acknowledged(host: str, port: int, payload: bytes, timeout: float = 10.0) -> bytes:
    """:func:`send`, raising ``ValueError`` unless the receiver accepted (``AA``/``CA``)."""
    ack = send(host, port, payload, timeout=timeout)
    code = ack_code(ack)
    if code not in ("AA", "CA"):
        raise ValueError(f"negative acknowledgement {code}: {ack[:200]!r}")
    return ack
