"""Passwords (pwdlib, argon2), opaque tokens, roles and the failed sign-in limiter.

Tokens are opaque random strings stored as SHA-256 in ``api_token`` rather than JWTs: the
service is the only party that checks them, and a table lookup makes logout, expiry and
"all tokens die when the user changes" exact and immediate with no revocation list to keep.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass

from pwdlib import PasswordHash

ROLES = ("operator", "manager", "admin")
STATION = "station"  # the pseudo-role of a station key
RANK = {STATION: 0, "operator": 1, "manager": 2, "admin": 3}
USER_TOKEN_PREFIX = "kt_"
STATION_KEY_PREFIX = "ks_"

_hasher = PasswordHash.recommended()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    return _hasher.verify(password, password_hash)


DUMMY_HASH = hash_password("not-a-real-password")  # equal work for unknown usernames


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (``kind`` "user") or a station key (``kind`` "station")."""

    kind: str
    name: str
    role: str
    station: str | None = None
    user_id: int | None = None
    key_id: int | None = None

    @property
    def actor(self) -> str:
        """The name the audit trail records."""
        return self.name if self.kind == "user" else f"station-key:{self.key_id}:{self.name}"

    def at_least(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]


class FailureLimiter:
    """Events per key in a sliding window (failed sign-ins, uploads); ``retry_after`` > 0
    means: refuse."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _trim(self, key: str, now: float) -> deque[float]:
        hits = self._hits[key]
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        return hits

    def retry_after(self, *keys: str) -> int:
        now = time.monotonic()
        with self._lock:
            waits = [self._trim(k, now)[0] + self.window - now for k in keys
                     if len(self._trim(k, now)) >= self.limit]
        return math.ceil(max(waits)) if waits else 0

    def take(self, key: str) -> int:
        """Count one event for ``key`` unless it is over the limit: 0 when it went through,
        else the seconds until it would (nothing counted)."""
        now = time.monotonic()
        with self._lock:
            hits = self._trim(key, now)
            if len(hits) >= self.limit:
                return max(1, math.ceil(hits[0] + self.window - now))
            hits.append(now)
            return 0

    def fail(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._trim(key, now).append(now)
