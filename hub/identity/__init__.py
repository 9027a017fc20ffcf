"""Person identity: identifier systems, the resident ID number, linking."""

# Identifier systems (DESIGN decision 6).
RESIDENT_ID_SYSTEM = "urn:oid:2.16.156.10011.1.3"  # 居民身份证号 (GB 11643)
HEALTH_RECORD_SYSTEM = "urn:oid:2.16.156.10011.1.2"  # 健康档案编号 (17 digits)
HEALTH_CARD_SYSTEM = "urn:oid:2.16.156.10011.1.19"  # 居民健康卡号


def is_current(identifier: dict) -> bool:
    """Whether an identifier is still in use: not ``use: old`` and no ``period.end``.

    A health-record number superseded by a move keeps its place on the Patient
    as history, marked both ways (``hub.ingest.identity``).
    """
    return identifier.get("use") != "old" and not (identifier.get("period") or {}).get("end")
