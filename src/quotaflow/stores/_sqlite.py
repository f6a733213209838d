"""A store shared by the processes of one host: limit state in a SQLite file.

Semantics are the memory store's, because the logic is the same: each operation loads the rows
it touches into a fresh :class:`~quotaflow.core.Engine`, runs the engine's own method, and
writes back the rows that changed. There is no second algorithm to keep in step.

**One immediate transaction per operation.** ``BEGIN IMMEDIATE`` takes the file's write lock
before anything is read, so the read-decide-write of an admission is atomic across processes
and no transaction ever has to be retried for a conflict found half-way (a deferred
transaction that reads and then writes can fail with ``SQLITE_BUSY`` at its first write). The
clock is read after the lock is taken, so time advances in commit order. A waiting process
backs off from 50 µs up to 2 ms (with jitter) until ``busy_timeout``: SQLite's own busy
handler sleeps whole milliseconds at best, and whole seconds when built without ``usleep``.
WAL journaling lets :meth:`SqliteStore.snapshot` read without blocking writers, and
``synchronous=NORMAL`` commits without an fsync (a power cut may lose the last commits, a
process crash loses nothing). An error rolls the transaction back: nothing is half-done.

**Whole-state rows.** A row holds one limit's state in one scope (a GCRA bucket with its
refund stack, a quota's period, a concurrency limit's leases) as JSON of exact integers, and
an operation reads and rewrites the few rows it touches whole. That is far simpler than a
normalised schema and cheap while rows are small; a row grows with the reservations held on
its limit (a bucket keeps a mark and at most one stack entry per held reservation, plus 64; a
concurrency limit keeps a lease per call in flight), so the cost of an operation does too: it
suits hundreds of calls in flight per limit, not tens of thousands. Each row carries a
generation number that reservations record, so that a state swept as idle and created again
is never refunded into.

**Bounded space.** A reservation not settled within its TTL is settled as reserved (its
concurrency leases run to their own expiry) and kept as a tombstone for another TTL, so that a
late settlement can still charge an overrun; then it is deleted. A state is deleted once idle
(bucket full, nothing spent this period, no lease held): it is then indistinguishable from a
new one. A sweep runs at most once per ``sweep_interval`` across all processes, inside an
admission's transaction, and handles at most 1,000 rows of each kind; when more are due, the
next admission sweeps again.

**Where it differs from the memory store**, in two corner cases. Reserving again the id of a
reservation forgotten at its TTL replaces its tombstone (the memory store keeps both; limiters
never reuse an id). An overrun settled after its bucket was swept as idle creates the bucket
again under the reservation's limit (the memory store: under the limit the swept bucket had
last), which differs only if the limit was changed in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from operator import attrgetter
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from quotaflow._clock import Clock, SystemClock
from quotaflow._errors import ConfigurationError, StoreError
from quotaflow.core import (
    NS_PER_SECOND,
    Claim,
    Concurrency,
    Engine,
    LeaseState,
    Limit,
    LimitSnapshot,
    Quota,
    QuotaState,
    Rate,
    RateState,
    ReserveResult,
    State,
    Usage,
)
from quotaflow.stores._notes import check_note

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

_log = logging.getLogger("quotaflow")

#: The layout of the file this version reads and writes (``PRAGMA user_version``).
SCHEMA_VERSION: Final = 1

_SCHEMA: Final = (
    """CREATE TABLE states (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        gen INTEGER NOT NULL,
        spec TEXT NOT NULL,
        data TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (scope, key)
    ) WITHOUT ROWID""",
    "CREATE INDEX states_expiry ON states (expires_at)",
    """CREATE TABLE reservations (
        rid TEXT PRIMARY KEY NOT NULL,
        data TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        forget_at INTEGER
    ) WITHOUT ROWID""",
    "CREATE INDEX reservations_expiry ON reservations (expires_at) WHERE forget_at IS NULL",
    "CREATE INDEX reservations_forget ON reservations (forget_at) WHERE forget_at IS NOT NULL",
    "CREATE TABLE meta (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID",
    # Settlements, so that waiters in other processes learn that capacity came back.
    """CREATE TABLE releases (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        origin TEXT NOT NULL,
        scopes TEXT NOT NULL,
        at INTEGER NOT NULL
    )""",
    "INSERT INTO meta (name, value) VALUES ('generation', 0), ('next_sweep', 0)",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

#: Notes (see quotaflow.stores._notes): not part of any admission, so outside the versioned
#: schema; created on open by every version that uses them.
_NOTES_TABLE: Final = """CREATE TABLE IF NOT EXISTS notes (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID"""

#: Rows of each kind a sweep handles at most.
SWEEP_BATCH: Final = 1000
#: Seconds between two reads of new settlements by a waiting process's watcher thread.
_RELEASE_CHECK: Final = 0.05
#: Seconds a settlement stays in the ``releases`` table.
_RELEASE_KEPT: Final = 60

_NEVER: Final = 1 << 200  # later than any time: the store, not the engine, decides when to sweep
_MAX_INT64: Final = (1 << 63) - 1
_FIRST_DELAY: Final = 50e-6  # seconds: the first back-off when the file is locked
_MAX_DELAY: Final = 2e-3
_BUSY: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})

_T = TypeVar("_T")

_encode = json.JSONEncoder(separators=(",", ":")).encode
_raw_decode = json.JSONDecoder().raw_decode


def _decode(text: str) -> Any:  # noqa: ANN401 (any JSON value)
    """Parse JSON ``text`` (without ``json.loads``'s per-call overheads)."""
    value, end = _raw_decode(text)
    if end != len(text):
        raise ValueError(f"unexpected data after the JSON value in {text!r}")
    return value


# States as rows. -----------------------------------------------------------------------------

#: The slots of each state kind stored in a row, in order, and whether each is a dict (stored
#: as a list of pairs). ``limit`` is stored apart, as a spec.
_FIELDS: Final[dict[type[State], tuple[tuple[str, bool], ...]]] = {
    RateState: (
        ("tat", False),
        ("gross", False),
        ("net", False),
        ("_since", False),
        ("_void", False),
        ("_at", False),
        ("_q", False),
        ("_held", True),
    ),
    QuotaState: (("start", False), ("end", False), ("used", False)),
    LeaseState: (("leases", True),),
}
_rate_fields: Final = attrgetter(*(name for name, _ in _FIELDS[RateState]))
_quota_fields: Final = attrgetter(*(name for name, _ in _FIELDS[QuotaState]))
_KINDS: Final[dict[type[Limit], type[State]]] = {
    Rate: RateState,
    Quota: QuotaState,
    Concurrency: LeaseState,
}
_CACHE_SIZE: Final = 4096
_specs: dict[int, tuple[Limit, str]] = {}
_limits: dict[str, Limit] = {}


def _spec(limit: Limit) -> str:
    """The JSON text that rebuilds ``limit`` (cached: limits are few and immutable)."""
    cached = _specs.get(id(limit))
    if cached is not None and cached[0] is limit:
        return cached[1]
    if isinstance(limit, Rate):
        parts: list[Any] = ["rate", limit.metric.value, limit.limit, limit.period]
        parts += [limit.burst, limit.headroom]
    elif isinstance(limit, Quota):
        parts = ["quota", limit.metric.value, limit.limit, limit.period.value, limit.timezone]
    else:
        parts = ["concurrency", limit.limit, limit.ttl]
    if len(_specs) >= _CACHE_SIZE:
        _specs.clear()
    spec = _encode(parts)
    _specs[id(limit)] = (limit, spec)  # holding the limit keeps its id from being reused
    return spec


def _limit(spec: str) -> Limit:
    """The limit ``spec`` describes."""
    limit = _limits.get(spec)
    if limit is None:
        try:
            kind, *args = _decode(spec)
            if kind == "rate":
                metric, value, period, burst, headroom = args
                limit = Rate(metric, value, period, burst=burst, headroom=headroom)
            elif kind == "quota":
                metric, value, period, timezone = args
                limit = Quota(metric, value, period, timezone=timezone)
            else:
                value, ttl = args
                limit = Concurrency(value, ttl=ttl)
        except (ValueError, TypeError) as error:  # ConfigurationError is a ValueError
            raise StoreError(f"the SQLite file holds an invalid limit {spec!r}") from error
        if len(_limits) >= _CACHE_SIZE:
            _limits.clear()
        _limits[spec] = limit
    return limit


def _fresh(limit: Limit) -> State:
    """A new, empty state of ``limit``."""
    kind = _KINDS[type(limit)]
    return kind(limit)  # type: ignore[arg-type]  # the kind matches the limit


def _dump(state: State) -> tuple[str, int]:
    """The row data of ``state`` and the time from which it is idle.

    Rates and quotas hold only integers and lists of them, whose ``repr`` is valid JSON and
    several times faster to make than ``json.dumps``.
    """
    if type(state) is RateState:
        *values, held = _rate_fields(state)
        values.append(list(map(list, held.items())))
        return repr(values), min(state.tat, _MAX_INT64)
    if type(state) is QuotaState:
        return repr(list(_quota_fields(state))), state.end if state.used else 0
    leases: dict[str, int] = state.leases  # type: ignore[union-attr]
    return _encode([list(leases.items())]), max(leases.values(), default=0)


def _load(limit: Limit, data: str) -> State:
    """The state of ``limit`` stored as ``data``."""
    kind = _KINDS[type(limit)]
    state: State = object.__new__(kind)
    state.limit = limit
    try:
        for (name, is_dict), value in zip(_FIELDS[kind], _decode(data), strict=True):
            setattr(state, name, dict(value) if is_dict else value)
    except (ValueError, TypeError) as error:
        raise StoreError(f"the SQLite file holds an invalid state {data!r}") from error
    return state


class _Loaded(NamedTuple):
    state: State
    gen: int
    spec: str
    data: str


#: One limit's part of a reservation, as the engine keeps it: ``(scope, state, index, reserved,
#: mark)``.
_Entry = tuple[str, State, int, int, int]


class _Session(Engine):
    """An engine holding only the rows one operation touches, loaded from the file.

    The store loads states and reservations into the engine's own tables, runs the engine's
    method, and writes back what changed: the engine's logic runs unchanged.
    """

    __slots__ = ("conn", "loaded", "scopes_loaded")

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__()
        self.conn = conn
        self.loaded: dict[tuple[str, str], _Loaded] = {}
        self.scopes_loaded: set[str] = set()

    def reset(self) -> None:
        """Forget the previous operation's rows."""
        self._scopes.clear()
        self._records.clear()
        self._expired.clear()
        self.loaded.clear()
        self.scopes_loaded.clear()
        self._next_sweep = _NEVER

    def load(self, scope: str, key: str) -> _Loaded | None:
        """The state of ``key`` in ``scope``, if it has a row (loading the scope's rows)."""
        if scope not in self.scopes_loaded:
            self.load_scope(scope)
        return self.loaded.get((scope, key))

    def load_scope(self, scope: str) -> None:
        """Load every state of ``scope`` into the engine: one statement."""
        self.scopes_loaded.add(scope)
        rows = self.conn.execute(
            "SELECT key, gen, spec, data FROM states WHERE scope = ?", (scope,)
        ).fetchall()
        if rows:
            states = self._scopes[scope] = {}
            for key, gen, spec, data in rows:
                got = _Loaded(_load(_limit(spec), data), gen, spec, data)
                states[key] = got.state
                self.loaded[scope, key] = got

    def load_entries(self, data: str) -> tuple[list[_Entry], int]:
        """Load a reservation's entries and the states they refer to; return them and its TTL.

        An entry whose state is gone, or was swept and created again since, gets a detached
        state of its own: the engine then treats it as swept (no refund; overruns are charged
        to the live state).
        """
        try:
            ttl, raw = _decode(data)
            rows = [
                (str(s), str(k), int(g), int(i), int(r), int(m), str(p))
                for s, k, g, i, r, m, p in raw
            ]
        except (ValueError, TypeError) as error:
            raise StoreError(f"the SQLite file holds an invalid reservation {data!r}") from error
        entries: list[_Entry] = []
        for scope, key, gen, index, reserved, mark, spec in rows:
            got = self.load(scope, key)
            state = got.state if got is not None and got.gen == gen else _fresh(_limit(spec))
            entries.append((scope, state, index, reserved, mark))
        return entries, ttl

    def add_record(self, rid: str, entries: list[_Entry], expires: int, ttl_ns: int) -> None:
        """Hold reservation ``rid`` in the engine."""
        self._records[rid] = [entries, expires, ttl_ns]

    def add_tombstone(self, rid: str, entries: list[_Entry], until: int) -> None:
        """Hold forgotten reservation ``rid`` in the engine, until ``until``."""
        self._expired[rid] = [entries, until]

    def record(self, rid: str) -> list[Any] | None:
        """The engine's record of reservation ``rid``: ``[entries, expires, ttl]``."""
        return self._records.get(rid)

    def tombstones(self) -> dict[str, list[Any]]:
        """The forgotten reservations: ``rid -> [entries, until]``."""
        return self._expired

    def write_back(self) -> dict[int, int]:
        """Write the states that changed or were created; return ``id(state) -> generation``."""
        conn = self.conn
        gens: dict[int, int] = {}
        changed: list[tuple[str, str, int, str, str]] = []
        for (scope, key), got in self.loaded.items():
            state = got.state
            gens[id(state)] = got.gen
            spec = _spec(state.limit)
            data, expires = _dump(state)
            if data != got.data or spec != got.spec:
                changed.append((spec, data, expires, scope, key))
        new = [
            (scope, key, state)
            for scope, states in self._scopes.items()
            for key, state in states.items()
            if id(state) not in gens
        ]
        if changed:
            conn.executemany(
                "UPDATE states SET spec = ?, data = ?, expires_at = ? WHERE scope = ? AND key = ?",
                changed,
            )
        if new:
            (last,) = conn.execute("SELECT value FROM meta WHERE name = 'generation'").fetchone()
            conn.execute("UPDATE meta SET value = ? WHERE name = 'generation'", (last + len(new),))
            rows = []
            for gen, (scope, key, state) in enumerate(new, last + 1):
                gens[id(state)] = gen
                rows.append((scope, key, gen, _spec(state.limit), *_dump(state)))
            conn.executemany(
                "INSERT OR REPLACE INTO states (scope, key, gen, spec, data, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        return gens


def _entries_data(entries: list[_Entry], ttl_ns: int, gens: dict[int, int]) -> str:
    return _encode(
        [
            ttl_ns,
            [
                [scope, state.limit.key, gens[id(state)], index, reserved, mark, _spec(state.limit)]
                for scope, state, index, reserved, mark in entries
            ],
        ]
    )


# Configuration. ------------------------------------------------------------------------------


def _seconds(name: str, value: object, *, zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not zero):
        bound = "non-negative" if zero else "positive"
        raise ConfigurationError(f"{name} must be {bound}, got {value!r}")
    return float(value)


def _check_path(path: object) -> str:
    if not isinstance(path, str | os.PathLike):
        raise ConfigurationError(f"the SQLite path must be a str or a path, got {path!r}")
    text = os.fspath(path)
    if not isinstance(text, str):
        raise ConfigurationError(f"the SQLite path must be text, got {path!r}")
    if text in {"", ":memory:"}:
        raise ConfigurationError(
            f"SqliteStore needs a file shared by processes, got {text!r}; "
            "for state in this process only, use MemoryStore"
        )
    if text.startswith("file:"):
        raise ConfigurationError(
            f"SQLite URIs are not accepted, got {text!r}: pass the path of a file "
            "(or a sqlite:/// URL to SqliteStore.from_url)"
        )
    file = Path(text)
    if file.is_dir():
        raise ConfigurationError(f"the SQLite path {text!r} is a directory")
    if not file.parent.is_dir():
        raise ConfigurationError(f"the directory of the SQLite path {text!r} does not exist")
    return text


def _is_busy(error: sqlite3.Error) -> bool:
    return getattr(error, "sqlite_errorcode", 0) & 0xFF in _BUSY


# The store. ----------------------------------------------------------------------------------


class SqliteStore:
    """Limit state in a SQLite file shared by the processes of one host.

    Implements both :class:`~quotaflow.stores.Store` and :class:`~quotaflow.stores.AsyncStore`
    (the async methods run the call in a worker thread, since SQLite may wait for the file's
    lock). Thread-safe: a store has one connection, used under a lock. Create stores after
    forking, not before.

    Args:
        path: the database file; created with its tables if absent.
        clock: the time source (a :class:`~quotaflow.testing.FakeClock` in tests). Processes
            sharing a file must share a clock: the default reads the system's.
        busy_timeout: seconds to wait for another process's transaction before failing with
            :class:`~quotaflow.StoreError`.
        sweep_interval: seconds between sweeps of expired reservations and idle states.

    Raises:
        ConfigurationError: a bad path or option, or a file of another schema.
        StoreError: the file cannot be opened or is not a database.
    """

    __slots__ = (
        "_busy_timeout",
        "_callbacks",
        "_clock",
        "_conn",
        "_listener",
        "_lock",
        "_next_sweep",
        "_origin",
        "_path",
        "_pending",
        "_session",
        "_stop",
        "_sweep_batch",
        "_sweep_interval_ns",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        busy_timeout: float = 5.0,
        sweep_interval: float = 60.0,
    ) -> None:
        self._path = _check_path(path)
        self._busy_timeout = _seconds("busy_timeout", busy_timeout, zero=True)
        interval = _seconds("sweep_interval", sweep_interval, zero=False)
        self._sweep_interval_ns = round(interval * NS_PER_SECOND)
        self._sweep_batch = SWEEP_BATCH
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._next_sweep = 0  # a lower bound of the file's: no need to look before then
        self._pending: dict[str, asyncio.Task[ReserveResult]] = {}
        self._origin = secrets.token_hex(6)  # tags this store's settlements
        self._callbacks: list[Callable[[tuple[str, ...]], None]] = []
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        try:
            # The retry loop below replaces SQLite's busy handler (timeout=0).
            conn = sqlite3.connect(
                self._path, timeout=0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as error:
            raise StoreError(f"cannot open the SQLite file {self._path!r}: {error}") from error
        self._conn: sqlite3.Connection | None = conn
        self._session = _Session(conn)
        try:
            self._retry(self._open)
        except BaseException:
            conn.close()
            self._conn = None
            raise

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None) -> SqliteStore:
        """Open the store a URL names.

        ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``, with the options
        ``busy_timeout`` and ``sweep_interval`` (seconds) as a query:
        ``sqlite:///state.db?busy_timeout=2``.

        Raises:
            ConfigurationError: the URL or an option is invalid.
        """
        if not isinstance(url, str):
            raise ConfigurationError(f"a SQLite URL must be a string, got {url!r}")
        parts = urlsplit(url)
        if parts.scheme.lower() != "sqlite" or parts.netloc or parts.fragment:
            raise ConfigurationError(
                f"not a SQLite URL: {url!r}; expected sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db"
            )
        if not parts.path.startswith("/") or len(parts.path) == 1:
            raise ConfigurationError(f"the SQLite URL {url!r} names no file")
        options: dict[str, float] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name not in {"busy_timeout", "sweep_interval"}:
                raise ConfigurationError(
                    f"unknown option {name!r} in the SQLite URL {url!r}; "
                    "expected busy_timeout or sweep_interval"
                )
            if name in options:
                raise ConfigurationError(f"option {name!r} is given twice in {url!r}")
            try:
                options[name] = float(value)
            except ValueError:
                raise ConfigurationError(
                    f"option {name} must be a number of seconds, got {value!r}"
                ) from None
        return cls(
            unquote(parts.path[1:]),
            clock=clock,
            busy_timeout=options.get("busy_timeout", 5.0),
            sweep_interval=options.get("sweep_interval", 60.0),
        )

    def __repr__(self) -> str:
        return f"SqliteStore({self._path!r})"

    # Transactions ------------------------------------------------------------------------

    def _open(self) -> None:
        conn = self._connection()
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._create_schema(conn)
            conn.execute(_NOTES_TABLE)  # added after version 1: older files get it here
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        """Create the tables in a new file; refuse a file of another schema."""
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"the SQLite file {self._path!r} has schema version {version}, newer than "
                f"the {SCHEMA_VERSION} this version of quotaflow reads; upgrade quotaflow"
            )
        if version == 0:
            if conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
                raise ConfigurationError(
                    f"the SQLite file {self._path!r} holds other tables and no quotaflow "
                    "schema version; give the store a file of its own"
                )
            for statement in _SCHEMA:
                conn.execute(statement)

    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            raise StoreError(f"{self!r} is closed")
        return conn

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the original error matters, not this one
                conn.execute("ROLLBACK")

    def _retry(self, attempt: Callable[[], _T]) -> _T:
        """Run ``attempt`` until the file is not locked, for up to ``busy_timeout`` seconds."""
        deadline = 0.0
        delay = _FIRST_DELAY
        while True:
            try:
                return attempt()
            except sqlite3.Error as error:
                if not _is_busy(error):
                    raise StoreError(f"SQLite store {self._path!r}: {error}") from error
                now = time.monotonic()
                if not deadline:
                    deadline = now + self._busy_timeout
                if now >= deadline:
                    raise StoreError(
                        f"SQLite store {self._path!r} stayed locked for more than "
                        f"busy_timeout={self._busy_timeout:g}s: {error}"
                    ) from error
                time.sleep(min(delay * (0.5 + random.random()), deadline - now))  # noqa: S311
                delay = min(delay * 2, _MAX_DELAY)

    def _transaction(self, operation: Callable[[int], _T]) -> _T:
        """Run ``operation(now)`` in one immediate transaction, retried while the file is locked."""

        def attempt() -> _T:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = operation(self._clock.now_ns())
                conn.execute("COMMIT")
            except BaseException:
                self._rollback(conn)
                self._next_sweep = 0  # a sweep may have been rolled back
                raise
            return result

        with self._lock:
            return self._retry(attempt)

    def _read(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            return self._retry(lambda: operation(self._connection()))

    # Operations (each inside one transaction) -------------------------------------------

    def _reserve(self, rid: str, claims: Sequence[Claim], ttl_ns: int, now: int) -> ReserveResult:
        conn = self._connection()
        if now >= self._next_sweep:
            (due,) = conn.execute("SELECT value FROM meta WHERE name = 'next_sweep'").fetchone()
            if now >= due:
                self._sweep(now)
            else:
                self._next_sweep = due
        held = conn.execute("SELECT forget_at FROM reservations WHERE rid = ?", (rid,)).fetchone()
        if held is not None and held[0] is None:
            return ReserveResult(granted=True, now=now, slot=now, binding=None)
        session = self._session
        session.reset()
        for scope in {claim[0] for claim in claims}:
            session.load_scope(scope)
        result = session.reserve(rid, claims, now, ttl_ns)
        gens = session.write_back()
        record = session.record(rid)
        if record is not None:
            conn.execute(
                "INSERT OR REPLACE INTO reservations (rid, data, expires_at, forget_at) "
                "VALUES (?, ?, ?, NULL)",
                (rid, _entries_data(record[0], ttl_ns, gens), record[1]),
            )
        return result

    def _settle(self, rid: str, actual: Usage | None, now: int) -> bool:
        conn = self._connection()
        row = conn.execute(
            "SELECT data, expires_at, forget_at FROM reservations WHERE rid = ?", (rid,)
        ).fetchone()
        if row is None:
            return False
        data, expires, forget = row
        session = self._session
        session.reset()
        entries, ttl_ns = session.load_entries(data)
        if forget is None:
            session.add_record(rid, entries, expires, ttl_ns)
        else:
            session.add_tombstone(rid, entries, forget)
        settled = session.settle(rid, actual, now)
        session.write_back()
        conn.execute("DELETE FROM reservations WHERE rid = ?", (rid,))
        scopes = "\n".join(dict.fromkeys(scope for scope, *_ in entries))
        conn.execute(
            "INSERT INTO releases (origin, scopes, at) VALUES (?, ?, ?)",
            (self._origin, scopes, now),
        )
        return settled

    def _renew(self, rid: str, ttl_ns: int, now: int) -> bool:
        conn = self._connection()
        row = conn.execute(
            "SELECT data, expires_at FROM reservations WHERE rid = ? AND forget_at IS NULL", (rid,)
        ).fetchone()
        if row is None or row[1] <= now:
            return False
        session = self._session
        session.reset()
        entries, ttl = session.load_entries(row[0])
        session.add_record(rid, entries, row[1], ttl)
        if not session.renew(rid, now, ttl_ns):
            return False
        session.write_back()
        conn.execute("UPDATE reservations SET expires_at = ? WHERE rid = ?", (now + ttl_ns, rid))
        return True

    def _sweep(self, now: int) -> None:
        """Expire reservations, delete old tombstones and idle states: a bounded batch of each."""
        conn = self._connection()
        batch = self._sweep_batch
        session = self._session
        session.reset()
        expired = conn.execute(
            "SELECT rid, data, expires_at FROM reservations "
            "WHERE forget_at IS NULL AND expires_at <= ? LIMIT ?",
            (now, batch),
        ).fetchall()
        for rid, data, expires in expired:
            entries, ttl_ns = session.load_entries(data)
            session.add_record(rid, entries, expires, ttl_ns)
        session.sweep(now)  # the engine's own expiry: settle as reserved, keep a tombstone
        session.write_back()
        tombstones = session.tombstones()
        conn.executemany(
            "UPDATE reservations SET forget_at = ? WHERE rid = ?",
            [(until, rid) for rid, (_, until) in tombstones.items()],
        )
        # Swept more than a TTL after they expired: past their tombstone too.
        conn.executemany(
            "DELETE FROM reservations WHERE rid = ?",
            [(rid,) for rid, _, _ in expired if rid not in tombstones],
        )
        forgotten = conn.execute(
            "DELETE FROM reservations WHERE rid IN "
            "(SELECT rid FROM reservations WHERE forget_at <= ? LIMIT ?)",
            (now, batch),
        ).rowcount
        conn.execute("DELETE FROM releases WHERE at <= ?", (now - _RELEASE_KEPT * NS_PER_SECOND,))
        idle = conn.execute(
            "DELETE FROM states WHERE (scope, key) IN "
            "(SELECT scope, key FROM states WHERE expires_at <= ? LIMIT ?)",
            (now, batch),
        ).rowcount
        more = batch in {len(expired), forgotten, idle}
        due = now if more else now + self._sweep_interval_ns
        conn.execute("UPDATE meta SET value = ? WHERE name = 'next_sweep'", (due,))
        self._next_sweep = due

    # Store ---------------------------------------------------------------------------------

    def reserve(self, rid: str, claims: Sequence[Claim], ttl_ns: int) -> ReserveResult:
        """Admit ``claims`` now as reservation ``rid``, all or nothing; idempotent by ``rid``."""
        return self._transaction(partial(self._reserve, rid, claims, ttl_ns))

    def settle(self, rid: str, actual: Usage | None) -> bool:
        """Reconcile ``rid`` with ``actual`` usage; ``None`` refunds it all."""
        return self._transaction(partial(self._settle, rid, actual))

    def renew(self, rid: str, ttl_ns: int) -> bool:
        """Extend ``rid`` and its leases."""
        return self._transaction(partial(self._renew, rid, ttl_ns))

    def snapshot(self, scope: str, limits: Sequence[Limit]) -> tuple[int, list[LimitSnapshot]]:
        """Return the time and the state of ``limits`` in ``scope``."""

        def read(_: sqlite3.Connection) -> tuple[int, list[LimitSnapshot]]:
            session = self._session
            session.reset()
            session.load_scope(scope)  # one statement: consistent without a transaction
            now = self._clock.now_ns()
            return now, session.snapshot(scope, limits, now)

        return self._read(read)

    def close(self) -> None:
        """Close the connection; later operations raise :class:`~quotaflow.StoreError`."""
        self._stop.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.join(timeout=5)
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    # Release notifications -----------------------------------------------------------------

    def listen(self, on_release: Callable[[tuple[str, ...]], None]) -> None:
        """Call ``on_release(scopes)`` when another process settles a reservation there.

        Every settlement appends its scopes to a ``releases`` table; a background thread (one
        per store, started by the first waiter) reads the new rows every
        ``_RELEASE_CHECK`` seconds, one indexed query, and passes them on, so that waiters in
        this process try again instead of sleeping until the slot the store named earlier
        (for a concurrency lease, its TTL). The rows are swept after a minute.
        """
        self._callbacks.append(on_release)
        if self._listener is not None or self._conn is None:
            return
        # The cursor is taken here, before this call returns: a release made between now and
        # the thread's first read must not be skipped as "old".
        last: int = self._read(
            lambda conn: conn.execute("SELECT coalesce(max(seq), 0) FROM releases").fetchone()[0]
        )
        thread = threading.Thread(
            target=self._watch, args=(last,), name="quotaflow-sqlite-releases", daemon=True
        )
        self._listener = thread
        thread.start()

    def _watch(self, last: int) -> None:
        try:
            conn = sqlite3.connect(self._path, timeout=1.0, isolation_level=None)
        except sqlite3.Error as error:
            _log.warning("quotaflow: not watching %r for releases: %s", self._path, error)
            return
        try:
            while not self._stop.wait(_RELEASE_CHECK):
                try:
                    rows = conn.execute(
                        "SELECT seq, origin, scopes FROM releases WHERE seq > ? ORDER BY seq",
                        (last,),
                    ).fetchall()
                except sqlite3.Error as error:  # locked for a moment, or the file went away
                    _log.debug("quotaflow: release watcher: %s", error)
                    continue
                for seq, origin, scopes in rows:
                    last = seq
                    if origin != self._origin:
                        self._notify(tuple(scopes.split("\n")))
        finally:
            conn.close()

    def _notify(self, scopes: tuple[str, ...]) -> None:
        for callback in tuple(self._callbacks):
            try:
                callback(scopes)
            except Exception:  # noqa: BLE001 (a callback must not stop the watcher)
                _log.exception("quotaflow: release callback %r failed", callback)

    # AsyncStore ----------------------------------------------------------------------------

    async def areserve(self, rid: str, claims: Sequence[Claim], ttl_ns: int) -> ReserveResult:
        """Admit ``claims`` now as reservation ``rid``, all or nothing; idempotent by ``rid``.

        A cancelled caller does not stop the call, which may still admit the request; a later
        :meth:`asettle` of the same ``rid`` waits for it, so that it can be given back.
        """
        task = asyncio.ensure_future(asyncio.to_thread(self.reserve, rid, claims, ttl_ns))
        self._pending[rid] = task
        task.add_done_callback(partial(self._done, rid))
        return await asyncio.shield(task)

    def _done(self, rid: str, task: asyncio.Task[ReserveResult]) -> None:
        if self._pending.get(rid) is task:
            del self._pending[rid]
        if not task.cancelled():
            task.exception()  # retrieved here: a cancelled caller never reads it

    async def _after_reserve(self, rid: str) -> None:
        """Wait for a reservation of ``rid`` still running in a thread, from this loop."""
        task = self._pending.get(rid)
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            await asyncio.wait((task,))

    async def asettle(self, rid: str, actual: Usage | None) -> bool:
        """Reconcile ``rid`` with ``actual`` usage; ``None`` refunds it all."""
        await self._after_reserve(rid)
        return await asyncio.to_thread(self.settle, rid, actual)

    async def arenew(self, rid: str, ttl_ns: int) -> bool:
        """Extend ``rid`` and its leases."""
        await self._after_reserve(rid)
        return await asyncio.to_thread(self.renew, rid, ttl_ns)

    async def asnapshot(
        self, scope: str, limits: Sequence[Limit]
    ) -> tuple[int, list[LimitSnapshot]]:
        """Return the time and the state of ``limits`` in ``scope``."""
        return await asyncio.to_thread(self.snapshot, scope, limits)

    async def aclose(self) -> None:
        """Close the connection."""
        await asyncio.to_thread(self.close)

    # Notes ---------------------------------------------------------------------------------

    def get_note(self, key: str) -> str | None:
        """Return the note under ``key``, or ``None`` if there is none or it expired."""

        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT value FROM notes WHERE key = ? AND expires_at > ?",
                (key, self._clock.now_ns()),
            ).fetchone()
            return None if row is None else str(row[0])

        return self._read(read)

    def put_note(self, key: str, value: str, ttl: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl`` seconds (replacing any earlier note)."""
        ttl_ns = check_note(key, value, ttl)

        def write(now: int) -> None:
            conn = self._connection()
            conn.execute("DELETE FROM notes WHERE expires_at <= ?", (now,))
            conn.execute(
                "INSERT OR REPLACE INTO notes (key, value, expires_at) VALUES (?, ?, ?)",
                (key, value, min(now + ttl_ns, _MAX_INT64)),
            )

        self._transaction(write)

    async def aget_note(self, key: str) -> str | None:
        """Return the note under ``key`` (see :meth:`get_note`)."""
        return await asyncio.to_thread(self.get_note, key)

    async def aput_note(self, key: str, value: str, ttl: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl`` seconds."""
        await asyncio.to_thread(self.put_note, key, value, ttl)

    # Introspection -------------------------------------------------------------------------

    def sweep(self) -> None:
        """Expire reservations and delete idle states now, rather than at the next interval."""
        self._transaction(self._sweep)

    @property
    def scope_count(self) -> int:
        """Scopes with state in the file."""
        query = "SELECT count(DISTINCT scope) FROM states"
        return int(self._read(lambda c: c.execute(query).fetchone())[0])

    @property
    def reservation_count(self) -> int:
        """Reservations held (not counting the tombstones of forgotten ones)."""
        query = "SELECT count(*) FROM reservations WHERE forget_at IS NULL"
        return int(self._read(lambda c: c.execute(query).fetchone())[0])
