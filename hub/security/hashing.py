"""Hashing of passwords (argon2id) and client secrets (scrypt); neither is ever stored.

Also the keyed digest of the audit chain (:func:`keyed_digest`) and the
instance-folder key files it and the web sessions use (:func:`instance_key`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

import orjson
from argon2 import PasswordHasher
from argon2 import exceptions as argon2_exceptions

_PASSWORDS = PasswordHasher()  # argon2id with the library's current recommended parameters

# Client secrets are 256-bit random strings, so a moderate scrypt cost suffices and keeps the
# token endpoint fast; the salt still prevents precomputation.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    return _PASSWORDS.hash(password)


def check_password(stored_hash: str, password: str) -> bool:
    try:
        return _PASSWORDS.verify(stored_hash, password)
    except (argon2_exceptions.VerificationError, argon2_exceptions.InvalidHashError):
        return False


def password_needs_rehash(stored_hash: str) -> bool:
    return _PASSWORDS.check_needs_rehash(stored_hash)


# A fixed argon2 hash to verify against when a username is unknown, so that the
# answer takes as long as for a known user (no username probing by timing).
DUMMY_PASSWORD_HASH = _PASSWORDS.hash("not a password: unknown user")


def new_client_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_client_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt${n}${r}${p}${salt}${digest}".format(
        **_SCRYPT, salt=_b64(salt), digest=_b64(digest)
    )


def check_client_secret(stored_hash: str, secret: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored_hash.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            secret.encode(), salt=_unb64(salt), dklen=32, n=int(n), r=int(r), p=int(p)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(digest))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def keyed_digest(keyed: hmac.HMAC, parts: list[str | None]) -> str:
    """HMAC-SHA256, in hex, of ``parts`` encoded as a JSON array (unambiguous: ``null`` is
    not ``""``, and no part can pass for two).

    ``keyed`` is ``hmac.new(key, digestmod="sha256")``, made once and copied
    here, so the key is not processed again on every call (an audit append
    runs on every request).
    """
    mac = keyed.copy()
    mac.update(orjson.dumps(parts))
    return mac.hexdigest()


def instance_key(path: Path) -> str:
    """The key in ``path``, generated (256 random bits, hex, mode 0600) when it does not exist.

    Written to a temporary file and linked into place, so that a process
    starting at the same moment never reads a half-written key.
    """
    if path.exists():
        return path.read_text(encoding="ascii").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(key)
        out.flush()
        os.fsync(out.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:  # another process made it first: use theirs
        key = path.read_text(encoding="ascii").strip()
    except OSError:  # no hard links on this file system: create it in place
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(key)
    finally:
        tmp.unlink()
    return key
