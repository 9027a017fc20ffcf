"""Lockout of the token endpoint after failed client authentications, with backoff.

Failures are counted per client id (as sent, known or not) and per network address, in the
``auth_failure`` table, so that every process of the hub sees the same counts and locks:
an in-process counter would let a guesser spread over the workers. After
``max_failures`` failures of a client id (``max_per_address`` of an address) that key is
locked for ``base`` seconds, doubled at each further lockout in a row (up to ``cap``).
While a key is locked every request with it is refused, a correct secret too, before the
secret is even checked. A successful authentication clears its client id and address.
Keys untouched for a day are forgotten (their backoff starts again).

Each lockout is audited (``login``, outcome 8) in the transaction that counts the failure.
Settings: ``CLIENT_AUTH_MAX_FAILURES``, ``CLIENT_AUTH_MAX_FAILURES_PER_ADDRESS``,
``CLIENT_AUTH_LOCKOUT_SECONDS``, ``CLIENT_AUTH_LOCKOUT_MAX_SECONDS`` (``hub.config``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

from hub import audit
from hub.storage.accounts import LockoutStore

FORGET_AFTER = dt.timedelta(days=1)


@dataclasses.dataclass(frozen=True)
class Policy:
    max_failures: int = 10  # per client id; 0 turns the client id limit off
    max_per_address: int = 50  # per network address; 0 turns the address limit off
    base: float = 60.0  # seconds of the first lockout
    cap: float = 3600.0  # longest lockout

    def keys(self, client_id: str, address: str | None) -> dict[str, int]:
        """The keys a request counts against, with their limits."""
        client, addr = client_key(client_id), address_key(address)
        out = {}
        if self.max_failures > 0:
            out[client] = self.max_failures
        if self.max_per_address > 0 and addr:
            out[addr] = self.max_per_address
        return out

    def length(self, lockouts: int) -> float:
        """Seconds of the ``lockouts``-th lockout in a row (1, 2, ...)."""
        return min(self.cap, self.base * 2 ** max(0, lockouts - 1))


def client_key(client_id: str) -> str:
    return f"client {client_id[:100]}"


def address_key(address: str | None) -> str | None:
    return f"address {address[:100]}" if address else None


@dataclasses.dataclass(frozen=True)
class State:
    retry_after: int  # seconds until every key is free; 0 when none is locked
    known: bool  # some key has a row (a success then clears it)


def check(engine: Any, keys: dict[str, int], now: dt.datetime | None = None) -> State:
    """Whether any of ``keys`` is locked, and for how long."""
    now = now or _now()
    if not keys:
        return State(0, False)
    rows = LockoutStore(engine).locked_until(list(keys))
    until = [u for u in rows if u is not None and u > now]
    wait = max(((u - now).total_seconds() for u in until), default=0.0)
    return State(math.ceil(wait), bool(rows))


def failed(
    engine: Any,
    keys: dict[str, int],
    policy: Policy,
    event: dict[str, Any],
    who: dict[str, Any],
    now: dt.datetime | None = None,
) -> list[tuple[str, float]]:
    """Count one failure against each key and audit it (``event``); locks the keys at their
    limit and audits each lockout (``who``: ``audit.build_event`` arguments). Returns the
    ``(key, seconds)`` locked now."""
    now = now or _now()
    locked: list[tuple[str, float]] = []
    store = LockoutStore(engine)
    with store.counting() as conn:
        store.forget(conn, now - FORGET_AFTER, now)
        for key, limit in sorted(keys.items()):  # one order: no deadlock between two requests
            row = store.take(conn, key, now)
            if row.locked_until is not None and row.locked_until > now:
                continue  # raced the lockout: the request was checked before it began
            failures = row.failures + 1
            values: dict[str, Any] = {"failures": failures, "updated_at": now}
            if failures >= limit:
                seconds = policy.length(row.lockouts + 1)
                values.update(
                    failures=0,
                    lockouts=row.lockouts + 1,
                    locked_until=now + dt.timedelta(seconds=seconds),
                )
                locked.append((key, seconds))
            store.set(conn, key, **values)
        audit.record(conn, event)
        for key, seconds in locked:
            audit.record(
                conn,
                audit.build_event(
                    interaction="login",
                    outcome="8",
                    description=f"{key} locked out for {seconds:g} s after"
                    f" {keys[key]} failed client authentications",
                    at=now,
                    **who,
                ),
            )
    return locked


def clear(engine: Any, keys) -> None:
    """Forget the failures, lockout and backoff of ``keys`` (a client authenticated with its
    secret, or ``hub clients unlock``)."""
    LockoutStore(engine).clear(keys)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
