"""Bytes -> :class:`Message`: HL7 v2 parsing, knowing nothing of FHIR.

Parsing is a small ER7 splitter on the message's own separators (MSH-1 and
MSH-2), behind a normalisation step that real feeds need (integration
research A.6/A.8):

- an MLLP frame, a UTF-8 BOM and leading whitespace are stripped;
- ``\\r\\n`` and ``\\n`` segment separators become ``\\r``;
- the character set comes from MSH-18 when it names a known one, else from
  the site manifest (``encoding``), else UTF-8; GBK and GB 2312 are read as
  GB 18030, their superset (an unknown MSH-18 is reported as a warning);
- bytes that are not valid in that character set, and control characters
  (anything below U+0020 but TAB, CR and LF, and DEL), are rejected with the
  segment and field they sit in, never stored as mojibake;
- :class:`Limits` bound the work one message can cause (its bytes, its
  segments, the length of one field); a message over them is refused (413).

Values are kept escaped in the tree and unescaped on access (``\\F\\ \\S\\
\\T\\ \\R\\ \\E\\``, ``\\Xhh..\\`` in the message's character set, ``\\.br\\``).
Z-segments are kept like any other segment.
"""

from __future__ import annotations

import codecs
import dataclasses
import re
from typing import TYPE_CHECKING
from typing import Any

from hub.plugin_api import OperationOutcomeError
from hub.plugin_api import issue
from hub.plugin_api import outcome

if TYPE_CHECKING:
    from hub.plugin_api import Site

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
FRAME_END = b"\x1c\r"
BOM = codecs.BOM_UTF8

# MSH-18 character set names (HL7 table 0211 and what Chinese HIS vendors send).
_CHARSETS = {
    "": None,
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "UTF8": "utf-8",
    "UNICODE": "utf-8",
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "GB 18030-2000": "gb18030",
    "GB18030": "gb18030",
    "GB 18030": "gb18030",
    "GB18030-2000": "gb18030",
    "GB18030-2005": "gb18030",
    "GBK": "gb18030",
    "GB2312": "gb18030",
    "GB 2312": "gb18030",
    "CHINESE": "gb18030",
}

_SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")
# C0 controls and DEL, but TAB (kept as data), CR and LF (segment ends).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def reject(text: str, location: str | None = None, code: str = "structure", status: int = 400):
    """The :class:`OperationOutcomeError` for a message that cannot be read."""
    return OperationOutcomeError(outcome(issue("error", code, text, location)), status)


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one message may cost: bytes, segments, characters in one field (0: no limit).

    The hub's settings ``INGEST_MAX_BYTES``, ``HL7V2_MAX_SEGMENTS`` and
    ``HL7V2_MAX_FIELD_LENGTH`` (hub/config.py); a message over one is refused
    with 413 before it is split into fields, so its cost stays bounded.
    """

    max_bytes: int = 0
    max_segments: int = 0
    max_field_length: int = 0

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        get = getattr(settings, "get", None) or (lambda _key, default=None: default)
        return cls(
            int(get("INGEST_MAX_BYTES", 0) or 0),
            int(get("HL7V2_MAX_SEGMENTS", 0) or 0),
            int(get("HL7V2_MAX_FIELD_LENGTH", 0) or 0),
        )


def too_large(text: str, location: str | None = None) -> OperationOutcomeError:
    """The refusal of a message over one of its :class:`Limits`."""
    return reject(text, location, code="too-long", status=413)


# ---------------------------------------------------------------------------
# The tree
# ---------------------------------------------------------------------------


class Composite:
    """One repetition of a field: components of subcomponents, still escaped."""

    __slots__ = ("components", "location", "_message")

    def __init__(self, components: list[list[str]], location: str, message: Message):
        self.components = components
        self.location = location
        self._message = message

    def get(self, component: int = 1, subcomponent: int = 1) -> str | None:
        """The unescaped value (1-based positions), ``None`` when empty."""
        try:
            raw = self.components[component - 1][subcomponent - 1]
        except IndexError:
            return None
        if raw == "" or raw == '""':
            return None
        return self._message.unescape(raw)

    def raw_component(self, component: int) -> str:
        """A component with its subcomponents joined, as sent (escaped)."""
        try:
            return self._message.sub_sep.join(self.components[component - 1])
        except IndexError:
            return ""

    def text(self, component: int = 1) -> str | None:
        """A component with subcomponents joined by ``&`` and unescaped."""
        raw = self.raw_component(component)
        return self._message.unescape(raw) if raw else None

    def __bool__(self) -> bool:
        return any(s for c in self.components for s in c)


class Segment:
    """One segment: field texts split once, each field into repetitions on first use.

    Mapping reads a few dozen fields of a message; splitting the others into
    components (and building their :class:`Composite` objects) would be wasted.
    """

    __slots__ = ("name", "position", "raw", "_reps", "_message")

    def __init__(self, name: str, position: int, raw: list[str], message: Message):
        self.name = name
        self.position = position  # 1-based place in the message
        self.raw = raw  # raw[n] is field n as sent (escaped); raw[0] the segment id
        self._reps: dict[int, list[Composite]] = {}
        self._message = message

    @property
    def fields(self) -> list[list[Composite]]:
        """Every field as its repetitions, empty ones included (``fields[n]`` is field *n*)."""
        return [self._split(n) for n in range(len(self.raw))]

    def _split(self, field: int) -> list[Composite]:
        if field <= 2 and self.name in _HEADERS:
            # MSH-1 is the field separator and MSH-2 the encoding characters: never split.
            return [Composite([[self.raw[field]]], f"{self.name}-{field}", self._message)]
        return _field(self.raw[field], self.name, field, self._message)

    def reps(self, field: int) -> list[Composite]:
        """The non-empty repetitions of a field (shared: do not modify the list)."""
        found = self._reps.get(field)
        if found is None:
            structural = self._message.structural
            if field >= len(self.raw) or not self.raw[field].strip(structural):
                found = []  # absent, or nothing but separators
            elif field <= 2 and self.name in _HEADERS:
                found = self._split(field)
            else:
                value, msg = self.raw[field], self._message
                if msg.rep_sep not in value:
                    found = _field(value, self.name, field, msg)
                else:
                    # Skip empty repetitions before building them (``~~x``); a
                    # repetition keeps its place in the location (``PID-3[2]``).
                    cs, ss, name = msg.comp_sep, msg.sub_sep, self.name
                    found = [
                        Composite([c.split(ss) for c in rep.split(cs)], f"{name}-{field}[{r}]", msg)
                        for r, rep in enumerate(value.split(msg.rep_sep), start=1)
                        if rep.strip(structural)
                    ]
            self._reps[field] = found
        return found

    def first(self, field: int) -> Composite | None:
        reps = self.reps(field)
        return reps[0] if reps else None

    def get(self, field: int, component: int = 1, subcomponent: int = 1) -> str | None:
        """The first repetition's component value (unescaped) or ``None``."""
        reps = self.reps(field)
        return reps[0].get(component, subcomponent) if reps else None

    def valued(self) -> list[int]:
        """Numbers of the fields that carry something (for unused-field reports)."""
        start = 3 if self.name == "MSH" else 1
        structural = self._message.structural
        raw = self.raw
        return [n for n in range(start, len(raw)) if raw[n].strip(structural)]

    def loc(self, field: int, component: int | None = None) -> str:
        text = f"{self.name}-{field}"
        return f"{text}.{component}" if component else text

    def __repr__(self) -> str:
        return f"<Segment {self.name} #{self.position}>"


class Message:
    """A parsed HL7 v2 message."""

    def __init__(self, raw: bytes, text: str, charset: str, separators: str):
        self.raw = raw
        self.text = text
        self.charset = charset
        self.field_sep = separators[0]
        self.comp_sep = separators[1]
        self.rep_sep = separators[2]
        self.esc = separators[3]
        self.sub_sep = separators[4]
        # A field made of these alone carries nothing (``^^~^``).
        self.structural = self.rep_sep + self.comp_sep + self.sub_sep
        self.segments: list[Segment] = []
        self._by_name: dict[str, list[Segment]] = {}
        # (text, location) of what parsing worked around (an unknown MSH-18); the
        # adapter reports them as warnings.
        self.warnings: list[tuple[str, str]] = []

    # -- access ------------------------------------------------------------

    def segment(self, name: str) -> Segment | None:
        found = self._by_name.get(name)
        return found[0] if found else None

    def all(self, name: str) -> list[Segment]:
        return list(self._by_name.get(name, ()))

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    @property
    def message_type(self) -> str:
        return self.msh.get(9, 1) or ""  # MSH-9.1 message code

    @property
    def trigger(self) -> str:
        return self.msh.get(9, 2) or ""  # MSH-9.2 trigger event

    @property
    def structure(self) -> str:
        """``ADT_A01``: the message type and trigger event (MSH-9.1 ``_`` MSH-9.2)."""
        return f"{self.message_type}_{self.trigger}"

    @property
    def control_id(self) -> str | None:
        return self.msh.get(10)  # MSH-10 message control id

    @property
    def sending_application(self) -> str | None:
        return self.msh.get(3)  # MSH-3.1 sending application namespace id

    @property
    def sending_facility(self) -> str | None:
        return self.msh.get(4)  # MSH-4.1 sending facility namespace id

    @property
    def version(self) -> str | None:
        return self.msh.get(12)  # MSH-12 version id

    # -- escapes -----------------------------------------------------------

    def unescape(self, value: str) -> str:
        """Resolve HL7 escape sequences (v2.5 section 2.7)."""
        esc = self.esc
        if not esc or esc not in value:
            return value
        out: list[str] = []
        i, n = 0, len(value)
        while i < n:
            ch = value[i]
            if ch != esc:
                out.append(ch)
                i += 1
                continue
            end = value.find(esc, i + 1)
            if end < 0:  # a lone escape character: keep it as data
                out.append(value[i:])
                break
            seq = value[i + 1 : end]
            out.append(self._resolve(seq))
            i = end + 1
        return "".join(out)

    def _resolve(self, seq: str) -> str:
        if seq == "F":
            return self.field_sep
        if seq == "S":
            return self.comp_sep
        if seq == "T":
            return self.sub_sep
        if seq == "R":
            return self.rep_sep
        if seq == "E":
            return self.esc
        if seq in (".br", ".sp"):
            return "\n"
        if seq in ("H", "N") or seq.startswith((".", "C", "M")):
            return ""  # highlighting, formatting and charset switches carry no data
        if seq.startswith("X"):
            try:
                return bytes.fromhex(seq[1:]).decode(self.charset)
            except (ValueError, UnicodeDecodeError):
                return f"{self.esc}{seq}{self.esc}"
        return f"{self.esc}{seq}{self.esc}"  # \Zxx\ and unknown: kept verbatim

    def escape(self, value: str) -> str:
        """The inverse of :meth:`unescape` for the separators and line breaks."""
        esc = self.esc
        value = value.replace(esc, f"{esc}E{esc}")
        for ch, code in (
            (self.field_sep, "F"),
            (self.comp_sep, "S"),
            (self.sub_sep, "T"),
            (self.rep_sep, "R"),
        ):
            value = value.replace(ch, f"{esc}{code}{esc}")
        return value.replace("\r\n", "\n").replace("\n", f"{esc}.br{esc}")


# ---------------------------------------------------------------------------
# Bytes -> Message
# ---------------------------------------------------------------------------


def strip_frame(body: bytes) -> bytes:
    """Remove an MLLP frame, a BOM and surrounding whitespace."""
    data = body.strip()
    if data.startswith(START_BLOCK):
        data = data[1:]
        end = data.rfind(END_BLOCK)
        if end >= 0:
            data = data[:end]
    data = data.lstrip()
    if data.startswith(BOM):
        data = data[len(BOM) :].lstrip()
    return data


def looks_like_hl7(body: bytes) -> bool:
    """True when the payload starts with ``MSH`` after a BOM, whitespace or an MLLP start block."""
    head = body[:64].lstrip()
    if head.startswith(START_BLOCK):
        head = head[1:].lstrip()
    if head.startswith(BOM):
        head = head[len(BOM) :].lstrip()
    return head.startswith(b"MSH") and len(head) > 8 and not head[3:4].isalnum()


def charset_name(msh18: str | None) -> str | None:
    """The Python codec for an MSH-18 value, ``None`` when empty; raises on unknown names."""
    key = (msh18 or "").strip().upper()
    if key in _CHARSETS:
        return _CHARSETS[key]
    try:
        return codecs.lookup(key.replace(" ", "")).name
    except LookupError:
        raise reject(
            f"MSH-18 names an unknown character set {msh18!r}", "MSH-18", code="code-invalid"
        ) from None


@dataclasses.dataclass(frozen=True)
class Header:
    """MSH read from the raw bytes, before the message is decoded or parsed.

    The fields that route and acknowledge a message (MSH-3, 4, 5, 6, 9, 10, 11,
    12, 18) are ASCII in every feed, whatever the character set of the rest,
    so they can be read before the sender, and so its site's encoding, is
    known. ``fields[n]`` is MSH-n as sent (escaped), read as UTF-8 (bytes that
    are not read as U+FFFD).
    """

    fields: list[str]
    comp_sep: str = "^"
    rep_sep: str = "~"

    def get(self, field: int, component: int = 1) -> str | None:
        """MSH-``field``, first repetition, ``component`` (1-based), ``None`` when empty."""
        if field >= len(self.fields):
            return None
        value = self.fields[field].split(self.rep_sep)[0].split(self.comp_sep)
        return (value[component - 1] if component <= len(value) else "") or None

    @property
    def sending_application(self) -> str | None:
        return self.get(3)

    @property
    def sending_facility(self) -> str | None:
        return self.get(4)

    @property
    def control_id(self) -> str | None:
        return self.get(10)

    @property
    def trigger(self) -> str:
        return self.get(9, 2) or ""


def read_header(body: bytes) -> Header | None:
    """The MSH of a payload (framed or not, with a BOM or not), ``None`` when it has none."""
    fields = _msh_fields(strip_frame(body))
    if fields is None:
        return None
    enc = fields[2].decode("ascii", "replace") if len(fields) > 2 else ""
    return Header([f.decode("utf-8", "replace") for f in fields], enc[:1] or "^", enc[1:2] or "~")


def _msh_fields(data: bytes) -> list[bytes] | None:
    """MSH's fields as bytes (``[b"MSH", separator, MSH-2, MSH-3, ...]``) from normalised bytes."""
    if not data.startswith(b"MSH") or len(data) < 8:
        return None
    sep = data[3:4]
    if sep.isalnum() or sep in b"\r\n":
        return None
    line = re.split(rb"[\r\n]", data, maxsplit=1)[0]
    parts = line.split(sep)  # parts[0] = "MSH", parts[1] = MSH-2, so MSH-n is parts[n-1]
    return [parts[0], sep, *parts[1:]]


def _position(text: str, offset: int) -> str:
    """``PID-5`` (``OBX[2]-5`` for a repeated segment, or ``segment 3``) of a character offset."""
    start = text.rfind("\r", 0, offset) + 1
    line = text[start:offset]
    name = line[:3]
    fs = text[3] if len(text) > 3 else "|"
    field = line.count(fs) + (1 if name == "MSH" else 0)
    if _SEGMENT_NAME.match(name):
        before = text[:start]
        occurrence = before.startswith(name + fs) + before.count(f"\r{name}{fs}") + 1
        return f"{name}[{occurrence}]-{field}" if occurrence > 1 else f"{name}-{field}"
    return f"segment {text.count(chr(13), 0, start) + 1}"


def resolve_charset(data: bytes, site: Site | None = None) -> tuple[str, str | None, str | None]:
    """``(codec, MSH-18 as sent, warning)``: the character set a message is read in.

    MSH-18 when it names a character set we know, else the site manifest's
    ``encoding``, else UTF-8. An MSH-18 we do not know is not fatal (the
    manifest says what the site sends); the warning says it was not used.
    """
    fields = _msh_fields(data) or []
    msh18 = fields[18] if len(fields) > 18 else b""
    declared = msh18.split(b"^")[0].split(b"~")[0].decode("ascii", "replace").strip() or None
    warning = None
    charset = None
    if declared:
        try:
            charset = charset_name(declared)
        except OperationOutcomeError as err:
            warning = f"{err.issues[0]['diagnostics']}; read as the site's encoding instead"
    if charset is None:
        charset = charset_name(getattr(site, "encoding", None) or "utf-8") or "utf-8"
    return charset, (declared if warning is None else None), warning


def decode(data: bytes, site: Site | None = None) -> tuple[str, str]:
    """Decode normalised bytes (see :func:`resolve_charset`); returns (text, codec)."""
    text, charset, _warning = _decode(data, site)
    return text, charset


def _decode(data: bytes, site: Site) -> tuple[str, str, str | None]:
    charset, declared, warning = resolve_charset(data, site)
    try:
        return data.decode(charset), charset, warning
    except UnicodeDecodeError as exc:
        lossy = data.decode(charset, "replace").replace("\r\n", "\r").replace("\n", "\r")
        # Map the byte offset to a character offset in the lossy text, near enough.
        prefix = (
            data[: exc.start].decode(charset, "replace").replace("\r\n", "\r").replace("\n", "\r")
        )
        where = _position(lossy, len(prefix))
        said = f"MSH-18 says {declared!r}" if declared else f"the site's encoding is {charset}"
        raise reject(
            f"bytes at offset {exc.start} are not valid {charset} ({said}); "
            "the message is rejected rather than stored garbled",
            where,
            code="invalid",
        ) from None


def _refuse_controls(text: str) -> None:
    """Refuse a control character (NUL, ESC, a stray frame byte...) naming its field."""
    found = _CONTROL.search(text)
    if found:
        where = _position(text, found.start())
        raise reject(
            f"{where} contains the control character U+{ord(found.group()):04X}; "
            "HL7 v2 text may not carry control characters (send binary data as \\X..\\ or ED)",
            where,
            code="invalid",
        )


def _terminated(body: bytes) -> bool:
    """True when the last segment ends with CR (or LF), inside or outside an MLLP frame."""
    data = body.rstrip(b" \t")
    if data.endswith(FRAME_END):
        data = data[: -len(FRAME_END)]
    elif data.endswith(END_BLOCK):
        data = data[:-1]
    return data.endswith((b"\r", b"\n"))


def _normalise_text(text: str) -> str:
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    # Blank lines between segments are noise, not segments.
    return "\r".join(line for line in text.split("\r") if line.strip())


def parse_message(body: bytes, site: Site | None = None, limits: Limits | None = None) -> Message:
    """Parse one HL7 v2 message; raises :class:`OperationOutcomeError` if unreadable.

    400 for a message that cannot be read, 413 for one over ``limits``.
    """
    if not isinstance(body, bytes | bytearray):
        raise TypeError("parse_message takes bytes")
    limits = limits or _NO_LIMITS
    if limits.max_bytes and len(body) > limits.max_bytes:
        raise too_large(
            f"the message is {len(body)} bytes; the limit is {limits.max_bytes} (INGEST_MAX_BYTES)"
        )
    data = strip_frame(bytes(body))
    if not data:
        raise reject("empty message", None)
    config = site.plugin_config("hl7v2") if hasattr(site, "plugin_config") else {}
    if config.get("require_final_terminator") and not _terminated(bytes(body)):
        # Over a socket a missing final CR means the sender stopped mid-message.
        raise reject(
            "the message ends without a segment terminator: it is truncated",
            "MSH",
            code="incomplete",
        )
    if not data.startswith(b"MSH"):
        raise reject("an HL7 v2 message must start with an MSH segment", "segment 1")
    text, charset, warning = _decode(data, site)
    text = _normalise_text(text)
    _refuse_controls(text)
    segments = text.count("\r") + 1
    if limits.max_segments and segments > limits.max_segments:
        raise too_large(
            f"the message has {segments} segments; the limit is {limits.max_segments} "
            "(HL7V2_MAX_SEGMENTS)"
        )
    if len(text) < 8:
        raise reject("the MSH segment is truncated", "MSH-2")
    fs = text[3]
    enc_end = text.find(fs, 4)
    enc = text[4:enc_end] if enc_end > 0 else text[4:]
    if enc_end < 0 or len(enc) < 4 or fs in enc or fs.isalnum():
        raise reject(f"MSH-1/MSH-2 encoding characters {text[3:8]!r} are not usable", "MSH-2")
    if len(enc) == 5 and enc[2] == enc[3]:
        # A doubled escape character (``^~\\&``) seen from some engines: drop the duplicate.
        enc = enc[:3] + enc[4]
        text = text[:4] + enc + text[enc_end:]
    separators = fs + enc[0] + enc[1] + enc[2] + enc[3]
    if len(set(separators)) != 5:
        raise reject(f"MSH-2 encoding characters {enc!r} are not distinct", "MSH-2")
    msg = Message(bytes(body), text, charset, separators)
    if warning:
        msg.warnings.append((warning, "MSH-18"))
    _split_segments(msg, text.strip(), separators, limits.max_field_length)
    if msg.segments[0].name != "MSH":
        raise reject("the first segment must be MSH", "segment 1")
    if not msg.message_type or (not msg.trigger and msg.message_type != "ACK"):
        raise reject("MSH-9 message type and trigger event are required", "MSH-9", "required")
    if not msg.control_id:
        raise reject("MSH-10 message control id is required", "MSH-10", "required")
    return msg


# Segments whose field 1 is the field separator itself (header segments).
_HEADERS = ("MSH", "BHS", "FHS")


def _split_segments(msg: Message, text: str, separators: str, max_field: int = 0) -> None:
    """Split normalised text into segments and fields (fields split further on use).

    A segment holding none of the separators has no fields at all, so its
    "name" is its first character and it is refused below, as is every
    segment whose id is not three letters or digits. A field longer than
    ``max_field`` characters is refused (only segments that long are looked at).
    """
    fs, cs, rs, _esc, ss = separators
    segments = msg.segments
    by_name = msg._by_name
    for position, line in enumerate(text.split("\r"), start=1):
        if fs not in line and rs not in line and cs not in line and ss not in line:
            name = line[:1]
            raw: list[str] = [line]
        elif line[:3] in _HEADERS:
            name = line[:3]
            raw = _header_fields(line, name)
        else:
            raw = line.split(fs)
            name = raw[0].split(rs, 1)[0]  # a repeated segment id: its first repetition
        if not _SEGMENT_NAME.match(name):
            raise reject(
                f"segment {position} has no valid segment id (got {name[:10]!r})",
                f"segment {position}",
            )
        found = by_name.get(name)
        if max_field and len(line) > max_field:
            _check_lengths(raw, name, len(found or ()) + 1, max_field)
        segment = Segment(name, position, raw, msg)
        segments.append(segment)
        if found is None:
            by_name[name] = [segment]
        else:
            found.append(segment)


def _check_lengths(raw: list[str], name: str, occurrence: int, max_field: int) -> None:
    for number, value in enumerate(raw):
        if len(value) > max_field:
            where = f"{name}[{occurrence}]-{number}" if occurrence > 1 else f"{name}-{number}"
            raise too_large(
                f"{where} is {len(value)} characters long; the limit is {max_field} "
                "(HL7V2_MAX_FIELD_LENGTH)",
                where,
            )


_NO_LIMITS = Limits()


def _header_fields(line: str, name: str) -> list[str]:
    """MSH (and BHS/FHS): field 1 is the separator character, field 2 the encoding characters."""
    sep = line[3]
    end = line.find(sep, 4)
    # Without a second separator the whole line is read again as fields 3.. (as
    # python-hl7 did): a later header segment like that is only ever reported unused.
    raw = [name, sep, line[4:end]]
    rest = line[end + 1 :]
    if rest:
        raw.extend(rest.split(sep))
    return raw


def _field(value: str, seg: str, number: int, msg: Message) -> list[Composite]:
    """One field's text as repetitions of components of subcomponents (still escaped)."""
    if not value:
        return [Composite([[value]], f"{seg}-{number}", msg)]
    rs, cs, ss = msg.rep_sep, msg.comp_sep, msg.sub_sep
    if rs not in value:
        if cs not in value and ss not in value:
            return [Composite([[value]], f"{seg}-{number}", msg)]
        return [Composite([c.split(ss) for c in value.split(cs)], f"{seg}-{number}", msg)]
    return [
        Composite([c.split(ss) for c in rep.split(cs)], f"{seg}-{number}[{r}]", msg)
        for r, rep in enumerate(value.split(rs), start=1)
    ]


def message_key(msg: Message) -> str:
    """The de-duplication key of a message: its MSH-10 control id."""
    return msg.control_id or ""
