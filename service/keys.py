"""API keys scoped to collections: created by the admin, shown once, stored only as hashes, revoked at once.

A key reads `cl_<id>_<secret>`. The id finds the row; the secret's SHA-256 is compared with the stored one
in constant time, so neither a lookup nor a comparison tells an attacker how much of a guess was right.
Every check reads the file, so a revocation holds from the next request on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

READ, WRITE = "read", "write"
SCOPES = (READ, WRITE)
PREFIX = "cl_"
KEYS_FILE = "keys.sqlite"


@dataclass(frozen=True)
class ApiKey:
    """A key as `GET /keys` lists it: never its secret."""

    id: str
    collections: tuple[str, ...]
    scopes: tuple[str, ...]
    label: str
    created: float

    def allows(self, collection: str, scope: str) -> bool:
        return collection in self.collections and scope in self.scopes


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(presented: str) -> tuple[str, str] | None:
    """(id, secret) of a key in this module's shape, or None."""
    if not presented.startswith(PREFIX):
        return None
    key_id, _, secret = presented[len(PREFIX) :].partition("_")
    return (key_id, secret) if key_id and secret else None


class KeyStore:
    """The keys of one server, in an SQLite file beside its collections (mode 0600)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists()
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if fresh:
            os.chmod(path, 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS keys (id TEXT PRIMARY KEY, digest TEXT NOT NULL, collections TEXT NOT NULL,"
            " scopes TEXT NOT NULL, label TEXT NOT NULL, created REAL NOT NULL)"
        )
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def create(self, collections: list[str], scopes: list[str], label: str = "") -> tuple[ApiKey, str]:
        """A new key and its whole secret (`cl_<id>_<secret>`), which is not stored and cannot be shown again."""
        key = ApiKey(
            id=secrets.token_hex(8),
            collections=tuple(sorted(set(collections))),
            scopes=tuple(s for s in SCOPES if s in scopes),
            label=label,
            created=time.time(),
        )
        secret = secrets.token_urlsafe(32)
        with self._lock:
            self._db.execute(
                "INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?)",
                (key.id, _digest(secret), json.dumps(key.collections), json.dumps(key.scopes), label, key.created),
            )
        return key, f"{PREFIX}{key.id}_{secret}"

    def all(self) -> list[ApiKey]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, collections, scopes, label, created FROM keys ORDER BY created"
            ).fetchall()
        return [_key(*row) for row in rows]

    def find(self, presented: str) -> ApiKey | None:
        """The key whose whole secret this is, or None (unknown, revoked, or not a key of this shape)."""
        parts = split_key(presented)
        if parts is None:
            return None
        key_id, secret = parts
        with self._lock:
            row = self._db.execute(
                "SELECT id, collections, scopes, label, created, digest FROM keys WHERE id = ?", (key_id,)
            ).fetchone()
        if row is None or not hmac.compare_digest(_digest(secret), row[5]):
            return None
        return _key(*row[:5])

    def revoke(self, key_id: str) -> bool:
        """Remove a key; False when there is none with this id."""
        with self._lock:
            return self._db.execute("DELETE FROM keys WHERE id = ?", (key_id,)).rowcount > 0

    def forget_collection(self, name: str) -> None:
        """Take a deleted collection out of every key, so a new collection of the same name is not opened to
        the old keys; a key left with no collection is removed."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for key_id, raw in self._db.execute("SELECT id, collections FROM keys").fetchall():
                    collections = [c for c in json.loads(raw) if c != name]
                    if collections:
                        kept = json.dumps(collections)
                        self._db.execute("UPDATE keys SET collections = ? WHERE id = ?", (kept, key_id))
                    else:
                        self._db.execute("DELETE FROM keys WHERE id = ?", (key_id,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise


def _key(key_id: str, collections: str, scopes: str, label: str, created: float) -> ApiKey:
    return ApiKey(key_id, tuple(json.loads(collections)), tuple(json.loads(scopes)), label, created)
