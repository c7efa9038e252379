"""A durable, content-addressed cache of teacher responses (one SQLite file).

Key: sha256 of the canonical JSON of ``{"model", "messages", "sampling"}`` (:func:`request_key`), so a request
is asked once however many runs, tasks or configs lead to it, and a changed prompt text, model or sampling
parameter is a different key.

Table ``responses`` (one row per key)::

    key TEXT PRIMARY KEY, status 'ok'|'failed', text, error, model (what the server says answered),
    finish_reason, prompt_tokens, completion_tokens, cost_usd (NULL: unknown price), attempts (summed over
    runs), request_model, prompt_version, sampling (JSON), record_id, kind (of the first task that asked),
    created_at, updated_at (unix seconds)

Why SQLite (WAL mode, one transaction per response) rather than an append-only JSONL:

* SIGKILL at any moment loses nothing committed: a commit in WAL mode is a write of the WAL file, which the OS
  keeps when the process dies (``synchronous=NORMAL``; ``fsync=True`` selects ``FULL``, which also survives a
  power cut at a few ms per commit). A torn transaction is rolled back on the next open, so there is no torn
  last line to repair, and nothing is duplicated: the key is the primary key.
* Two runs (threads or processes) sharing one file are serialised by SQLite's locks (``busy_timeout`` 60 s)
  instead of interleaving half-written lines; the upsert below keeps an ``ok`` row once it exists, so a
  concurrent run's later answer or failure for the same key never replaces it.
* Lookups of 50K keys are an indexed query rather than a scan of a growing log.

Failures are stored (with the error and attempts): a rerun does not re-ask them unless asked to retry failures;
an ``ok`` answer then replaces the failure and the attempts add up.

Two more tables, added beside ``responses`` (older cache files gain them on open; the schema version is unchanged):

* ``claims (key, owner, expires_at)``: a run :meth:`claims <RequestCache.claim>` a key before asking it, in one
  transaction that also checks for a stored answer, so two runs (processes, machines on one filesystem) sharing the
  cache never ask the same key at the same time; storing the answer drops the claim, and a claim whose owner died
  expires (``expires_at``) and is taken over.
* ``batches (id, ...)`` and ``batch_keys (batch_id, key)``: the Batch API's uploaded files and batches
  (:mod:`cft_lab.teachers.batch`), written before the run waits on them, so a restarted run polls the batches it
  submitted instead of paying for them again.

>>> import tempfile, os
>>> c = RequestCache(os.path.join(tempfile.mkdtemp(), "c.sqlite"))
>>> k = request_key("m", [{"role": "user", "content": "hi"}], {"temperature": 0.3})
>>> c.put(CacheRow(k, "failed", error="HTTP 500", attempts=3))
>>> c.put(CacheRow(k, "ok", text="hello", attempts=1))
>>> c.put(CacheRow(k, "failed", error="late failure", attempts=2))
>>> row = c.get_many([k])[k]
>>> row.status, row.text, row.attempts
('ok', 'hello', 4)
>>> c.counts()
{'ok': 1, 'failed': 0}
>>> c.close()
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

SCHEMA_VERSION = 1

#: Request body fields that change what a chat-completions server returns (besides model and messages).
SAMPLING_FIELDS = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "seed",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "response_format",
)


def canonical_json(obj) -> str:
    """Sorted keys, no spaces, UTF-8 kept: the same object always gives the same text.

    >>> canonical_json({"b": 1, "a": [1.5, "é"]})
    '{"a":[1.5,"é"],"b":1}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_key(model: str, messages: list[dict], sampling: dict) -> str:
    """sha256 (hex) of the canonical request: the cache key."""
    payload = {"model": model, "messages": messages, "sampling": sampling}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def key_of_body(body: dict) -> str:
    """The cache key of a chat-completions request body (what a server sees), equal to :func:`request_key`.

    >>> msgs = [{"role": "user", "content": "hi"}]
    >>> key_of_body({"model": "m", "messages": msgs, "top_p": 0.9}) == request_key("m", msgs, {"top_p": 0.9})
    True
    """
    sampling = {k: body[k] for k in SAMPLING_FIELDS if k in body}
    return request_key(body.get("model"), body.get("messages"), sampling)


@dataclass
class CacheRow:
    key: str
    status: str  # "ok" | "failed"
    text: str | None = None
    error: str | None = None
    model: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    attempts: int = 0
    request_model: str | None = None
    prompt_version: str | None = None
    sampling: str | None = None  # canonical JSON
    record_id: str | None = None
    kind: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


_COLUMNS = [f.name for f in fields(CacheRow)]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    text TEXT, error TEXT, model TEXT, finish_reason TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0, cost_usd REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    request_model TEXT, prompt_version TEXT, sampling TEXT, record_id TEXT, kind TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY, input_file_id TEXT NOT NULL, batch_id TEXT, status TEXT NOT NULL, host TEXT,
    model TEXT, requests INTEGER NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL, detail TEXT
);
CREATE TABLE IF NOT EXISTS batch_keys (batch TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (batch, key));
"""
# An ok row is final. A failed row is replaced by the new outcome; attempts accumulate across runs.
_UPSERT = (
    f"INSERT INTO responses ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)}) "
    "ON CONFLICT(key) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c not in ("key", "attempts", "created_at"))
    + ", attempts = responses.attempts + excluded.attempts WHERE responses.status != 'ok'"
)


class RequestCache:
    """The SQLite request cache; one instance per thread (SQLite connections are not shared)."""

    def __init__(self, path: str | Path, *, fsync: bool = False, timeout_s: float = 60.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=timeout_s, isolation_level=None)
        self._db.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
        mode = self._switch_to_wal(timeout_s)
        if mode.lower() != "wal":
            raise RuntimeError(f"{self.path}: could not switch the cache to WAL mode (got {mode!r})")
        self._db.execute(f"PRAGMA synchronous = {'FULL' if fsync else 'NORMAL'}")
        self._db.executescript(_SCHEMA)
        self._db.execute(
            "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        found = self._db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()[0]
        if found != str(SCHEMA_VERSION):
            raise RuntimeError(f"{self.path}: cache schema version {found}, this code reads {SCHEMA_VERSION}")

    def _switch_to_wal(self, timeout_s: float) -> str:
        """``PRAGMA journal_mode = WAL``, retried: SQLite answers a mode switch with SQLITE_BUSY at once (without
        waiting for ``busy_timeout``) while another process's first connection is creating the same file."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def get_many(self, keys: list[str]) -> dict[str, CacheRow]:
        """The stored rows among ``keys`` (missing keys are absent from the result)."""
        out: dict[str, CacheRow] = {}
        uniq = list(dict.fromkeys(keys))
        for i in range(0, len(uniq), 500):  # stay under SQLite's bound-parameter limit
            chunk = uniq[i : i + 500]
            q = f"SELECT {', '.join(_COLUMNS)} FROM responses WHERE key IN ({', '.join('?' for _ in chunk)})"
            for values in self._db.execute(q, chunk):
                row = CacheRow(*values)
                out[row.key] = row
        return out

    def put(self, row: CacheRow) -> None:
        """Store one outcome durably, and drop the key's claim, in one transaction (upsert rule: module doc)."""
        if row.status not in ("ok", "failed"):
            raise ValueError(f"only ok/failed outcomes are stored, got {row.status!r}")
        now = time.time()
        row.created_at = row.created_at or now
        row.updated_at = now
        with self.transaction():
            self._db.execute(_UPSERT, [getattr(row, c) for c in _COLUMNS])
            self._db.execute("DELETE FROM claims WHERE key = ?", (row.key,))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` .. ``COMMIT`` (rolled back on an exception): the write lock is taken at the start, so
        a read-then-write (a claim) cannot interleave with another process's."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def claim(self, key: str, owner: str, ttl_s: float, *, retry_failed: bool = False) -> str:
        """Claim ``key`` for asking: ``"done"`` (an answer is stored: an ``ok`` row, or a failure unless
        ``retry_failed``), ``"busy"`` (another owner's claim has not expired) or ``"mine"`` (claimed until
        now + ``ttl_s``; taken over when the previous owner's claim expired, or at once when that owner was a
        process of this host that is gone: a SIGKILLed run's claims do not hold its rerun back)."""
        now = time.time()
        with self.transaction() as db:
            row = db.execute("SELECT status FROM responses WHERE key = ?", (key,)).fetchone()
            if row is not None and (row[0] == "ok" or not retry_failed):
                return "done"
            held = db.execute("SELECT owner, expires_at FROM claims WHERE key = ?", (key,)).fetchone()
            if held is not None and held[0] != owner and held[1] > now and owner_alive(held[0]):
                return "busy"
            db.execute(
                "INSERT INTO claims (key, owner, expires_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                "owner = excluded.owner, expires_at = excluded.expires_at",
                (key, owner, now + ttl_s),
            )
            return "mine"

    def renew(self, key: str, owner: str, ttl_s: float) -> None:
        """Extend our claim on ``key`` (before a long wait: a Retry-After, a backoff)."""
        self._db.execute(
            "UPDATE claims SET expires_at = ? WHERE key = ? AND owner = ?", (time.time() + ttl_s, key, owner)
        )

    def release(self, key: str, owner: str) -> None:
        """Drop our claim without an answer (a fatal stop, a budget stop): another run may ask the key now."""
        self._db.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, owner))

    def claims(self) -> dict[str, tuple[str, float]]:
        """key -> (owner, expires_at) of every claim held."""
        return {k: (o, e) for k, o, e in self._db.execute("SELECT key, owner, expires_at FROM claims")}

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        """One statement (its own transaction), e.g. on the batch tables (``cft_lab.teachers.batch``)."""
        return self._db.execute(query, params).fetchall()

    def counts(self) -> dict[str, int]:
        got = dict(self._db.execute("SELECT status, COUNT(*) FROM responses GROUP BY status").fetchall())
        return {"ok": got.get("ok", 0), "failed": got.get("failed", 0)}

    def keys(self) -> dict[str, str]:
        """key -> status of every stored row."""
        return dict(self._db.execute("SELECT key, status FROM responses").fetchall())

    def integrity_ok(self) -> bool:
        return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RequestCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def owner_alive(owner: str) -> bool:
    """False when ``owner`` (``host:pid:nonce``, ``OpenAITeacher.owner``) names a process of this host that is gone;
    True otherwise (another host's process cannot be checked: its claim lasts until it expires)."""
    import os
    import socket

    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a live process of another user
        return True
    return True


def dumps_sampling(sampling: dict) -> str:
    return canonical_json(sampling)


def loads_sampling(text: str | None) -> dict:
    return json.loads(text) if text else {}
