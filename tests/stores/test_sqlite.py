"""The SQLite store: the memory store's semantics, in a file shared by processes."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from quotaflow import (
    CapacityExceededError,
    ConfigurationError,
    Limiter,
    StoreError,
    SyncLimiter,
    Usage,
    concurrency,
    cost_per_hour,
    daily_quota,
    rpm,
    tpm,
)
from quotaflow.core import (
    NS_PER_SECOND,
    Claim,
    Engine,
    LeaseState,
    Limit,
    QuotaState,
    Rate,
    RateState,
    Route,
)
from quotaflow.stores import AsyncStore, MemoryStore, Store
from quotaflow.stores._sqlite import _FIELDS, SCHEMA_VERSION, SqliteStore
from quotaflow.testing import FakeClock
from tests.stores.processes import hammer_and_check

S = NS_PER_SECOND
TTL = 3600 * S
MODEL = ("model", (rpm(100), tpm(10_000)))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def store(path: Path, clock: FakeClock) -> Iterator[SqliteStore]:
    store = SqliteStore(path, clock=clock)
    yield store
    store.close()


def claims_of(usage: Usage, *scopes: tuple[str, Sequence[Limit]]) -> list[Claim]:
    return Route(scopes or [MODEL]).claims(usage)


def used(store: Store, scope: tuple[str, Sequence[Limit]] = MODEL) -> list[int]:
    return [snapshot.used for snapshot in store.snapshot(*scope)[1]]


# The same answers as the memory store. -------------------------------------------------------

BASE: dict[str, tuple[Limit, ...]] = {
    "model": (rpm(20), tpm(5_000), concurrency(3, ttl=30)),
    "user:a": (daily_quota("cost", 40_000),),
    "user:b": (daily_quota("cost", 40_000), cost_per_hour(15_000)),
}
# The same keys with other parameters: a configuration change keeps the recorded usage.
CHANGED: dict[str, tuple[Limit, ...]] = {
    "model": (rpm(30), tpm(5_000, burst=0.5), concurrency(2, ttl=30)),
    "user:a": (daily_quota("cost", 30_000),),
    "user:b": (daily_quota("cost", 50_000), cost_per_hour(10_000)),
}
ROUTES = (("model", "user:a"), ("model", "user:b"), ("model",), ("user:b",))
ADVANCES = (0.0, 0.001, 0.2, 1.0, 3.0, 20.0, 61.0, 400.0, 3 * 3600.0)


def random_usage(rng: random.Random) -> Usage:
    return Usage(
        input_tokens=rng.randint(0, 2_000),
        output_tokens=rng.randint(0, 1_500),
        cost=rng.randint(0, 6_000),
    )


def orphan_overrun(memory: MemoryStore, rid: str, actual: Usage | None) -> bool:
    """Whether settling ``rid`` would charge an overrun to a rate state swept in the meantime.

    The memory store then creates the state afresh under the limit the swept state had last;
    the SQLite store, under the limit of the reservation (the swept row is gone). The two
    differ only when the limit was changed in between, so the comparison avoids this case.
    """
    engine: Engine = memory._engine
    record = engine._records.get(rid) or engine._expired.get(rid)
    if record is None or actual is None:
        return False
    return any(
        type(state) is RateState
        and actual[index] > reserved
        and engine._scopes.get(scope, {}).get(state.limit.key) is None
        for scope, state, index, reserved, _ in record[0]
    )


def reusable_id(memory: MemoryStore, rid: str) -> bool:
    """Whether reserving ``rid`` again can never meet its tombstone.

    The memory store can hold a tombstone and a new reservation under one id; the SQLite store
    keeps one row per id and replaces the tombstone. Limiters never reuse an id, so the
    comparison does not either once an id may have expired.
    """
    engine: Engine = memory._engine
    record = engine._records.get(rid)
    return rid not in engine._expired and (record is None or record[1] > memory._now())


class History:
    """One random history run on both stores; every answer must be the same."""

    def __init__(self, seed: int, path: Path) -> None:
        self.rng = random.Random(seed)  # noqa: S311 (seeded on purpose)
        self.path = path
        self.clock = FakeClock()
        self.memory = MemoryStore(clock=self.clock)
        self.sql = SqliteStore(path, clock=self.clock)
        self.config = BASE
        self.rids: list[str] = []
        self.step = 0

    def run(self, steps: int) -> None:
        operations = (
            (0.40, self.reserve),
            (0.60, self.settle),
            (0.65, self.renew),
            (0.75, self.snapshot),
            (0.95, self.advance),
            (0.96, self.sweep),
            (0.98, self.change_limits),
            (1.00, self.reopen),
        )
        try:
            for self.step in range(steps):
                draw = self.rng.random()
                next(operation for bound, operation in operations if draw < bound)()
                assert self.sql.reservation_count == self.memory.reservation_count, self.step
            for scope, limits in self.config.items():
                assert self.sql.snapshot(scope, limits) == self.memory.snapshot(scope, limits)
        finally:
            self.sql.close()

    def some_rid(self) -> str:
        held = list(self.memory._engine._records)
        return self.rng.choice(held if held and self.rng.random() < 0.7 else self.rids)

    def reserve(self) -> None:
        names = self.rng.choice(ROUTES)
        route = Route([(name, self.config[name]) for name in names])
        try:
            claims = route.claims(random_usage(self.rng))
        except CapacityExceededError:
            return
        reusable = [rid for rid in self.rids if reusable_id(self.memory, rid)]
        again = reusable and self.rng.random() < 0.1
        rid = self.rng.choice(reusable) if again else f"r{self.step}"
        ttl = self.rng.choice((10, 120)) * S
        self.rids.append(rid)
        expected = self.memory.reserve(rid, claims, ttl)
        assert self.sql.reserve(rid, claims, ttl) == expected, self.step

    def settle(self) -> None:
        if not self.rids:
            return
        rid = self.some_rid()
        actual = None if self.rng.random() < 0.3 else random_usage(self.rng)
        if orphan_overrun(self.memory, rid, actual):
            actual = None
        assert self.sql.settle(rid, actual) == self.memory.settle(rid, actual), self.step

    def renew(self) -> None:
        if self.rids:
            rid = self.some_rid()
            assert self.sql.renew(rid, 60 * S) == self.memory.renew(rid, 60 * S), self.step

    def snapshot(self) -> None:
        scope = self.rng.choice(list(self.config))
        limits = self.config[scope]
        assert self.sql.snapshot(scope, limits) == self.memory.snapshot(scope, limits), self.step

    def advance(self) -> None:
        self.clock.advance(self.rng.choice(ADVANCES))

    def sweep(self) -> None:
        self.sql.sweep()
        self.memory.sweep()
        assert self.sql.scope_count == self.memory.scope_count, self.step

    def change_limits(self) -> None:
        self.config = CHANGED if self.config is BASE else BASE

    def reopen(self) -> None:
        self.sql.close()
        self.sql = SqliteStore(self.path, clock=self.clock)


@pytest.mark.parametrize("seed", range(16))
def test_answers_equal_the_memory_stores_on_random_histories(seed: int, tmp_path: Path) -> None:
    History(seed, tmp_path / "state.db").run(400)


# Persistence and idempotence. ----------------------------------------------------------------


def test_state_survives_closing_and_reopening(path: Path, clock: FakeClock) -> None:
    store = SqliteStore(path, clock=clock)
    assert store.reserve("a", claims_of(Usage(input_tokens=6_000)), TTL).granted
    store.close()
    again = SqliteStore(path, clock=clock)
    assert used(again) == [1, 6_000]
    assert again.reservation_count == 1
    assert not again.reserve("b", claims_of(Usage(input_tokens=5_000)), TTL).granted
    assert again.settle("a", Usage(input_tokens=1_000))  # the reservation survived too
    assert used(again) == [1, 1_000]
    again.close()


def test_reserve_and_settle_are_idempotent_by_id(store: SqliteStore) -> None:
    claims = claims_of(Usage(input_tokens=1_000))
    assert store.reserve("a", claims, TTL).granted
    assert store.reserve("a", claims, TTL).granted
    assert used(store) == [1, 1_000]
    assert store.settle("a", Usage(input_tokens=400))
    assert not store.settle("a", Usage(input_tokens=400))
    assert not store.settle("a", None)
    assert used(store) == [1, 400]
    assert store.reservation_count == 0


def test_an_unknown_id_is_neither_settled_nor_renewed(store: SqliteStore) -> None:
    assert not store.settle("nobody", None)
    assert not store.renew("nobody", TTL)


def test_a_snapshot_of_an_unknown_scope_is_empty(store: SqliteStore, clock: FakeClock) -> None:
    now, snapshots = store.snapshot("nowhere", MODEL[1])
    assert now == clock.now_ns()
    assert [(s.used, s.remaining) for s in snapshots] == [(0, 100), (0, 10_000)]
    assert store.scope_count == 0  # reading creates nothing


# Expiry, tombstones, sweeping. ---------------------------------------------------------------


def test_an_expired_reservation_stands_as_reserved_and_a_late_overrun_is_charged(
    store: SqliteStore, clock: FakeClock
) -> None:
    claims = claims_of(Usage(input_tokens=3_000))
    assert store.reserve("a", claims, 10 * S).granted
    clock.advance(11)
    assert not store.renew("a", TTL)  # past its TTL, before any sweep
    store.sweep()
    assert store.reservation_count == 0
    # Settled as reserved: a refund is no longer possible...
    assert not store.settle("a", Usage(input_tokens=0))
    # ...but only once: the tombstone is gone.
    assert store.reserve("b", claims, 10 * S).granted
    clock.advance(11)
    store.sweep()
    before = used(store)[1]
    assert not store.settle("b", Usage(input_tokens=5_000))  # late, and 2,000 over
    assert used(store)[1] == before + 2_000


def test_a_tombstone_is_forgotten_after_another_ttl(store: SqliteStore, clock: FakeClock) -> None:
    assert store.reserve("a", claims_of(Usage(input_tokens=3_000)), 10 * S).granted
    clock.advance(11)
    store.sweep()
    clock.advance(11)
    store.sweep()
    assert not store.settle("a", Usage(input_tokens=9_000))
    assert used(store)[1] == 0  # the overrun came too late to be charged


def test_a_lease_of_an_expired_reservation_runs_to_its_own_expiry(
    store: SqliteStore, clock: FakeClock
) -> None:
    scope = ("pool", (concurrency(1, ttl=60),))
    assert store.reserve("a", claims_of(Usage(), scope), 10 * S).granted
    clock.advance(11)
    store.sweep()
    assert not store.reserve("b", claims_of(Usage(), scope), 10 * S).granted
    assert not store.settle("a", None)  # the late settlement ends the lease
    assert store.reserve("b", claims_of(Usage(), scope), 10 * S).granted


def test_a_swept_and_recreated_state_is_not_refunded_into(
    store: SqliteStore, clock: FakeClock
) -> None:
    memory = MemoryStore(clock=clock)
    old = claims_of(Usage(input_tokens=6_000))
    for each in (store, memory):
        assert each.reserve("old", old, TTL).granted
    clock.advance(40)  # the bucket is full again: idle
    store.sweep()
    memory.sweep()
    assert store.scope_count == memory.scope_count == 0
    new = claims_of(Usage(input_tokens=8_000))
    for each in (store, memory):
        assert each.reserve("new", new, TTL).granted
    # Refunding the old reservation would credit capacity the new state never lent it.
    assert store.settle("old", Usage(input_tokens=0)) == memory.settle("old", Usage())
    assert used(store) == used(memory) == [1, 8_000]
    assert not store.reserve("c", claims_of(Usage(input_tokens=5_000)), TTL).granted


def test_an_overrun_of_a_swept_state_is_charged_to_the_new_one(
    store: SqliteStore, clock: FakeClock
) -> None:
    assert store.reserve("old", claims_of(Usage(input_tokens=1_000)), TTL).granted
    clock.advance(40)
    store.sweep()
    assert store.reserve("new", claims_of(Usage(input_tokens=1_000)), TTL).granted
    assert store.settle("old", Usage(input_tokens=3_000))
    assert used(store)[1] == 3_000


def test_sweeping_removes_idle_states_and_keeps_busy_ones(
    store: SqliteStore, clock: FakeClock
) -> None:
    user = ("user:1", (daily_quota("cost", 1_000),))
    assert store.reserve("a", claims_of(Usage(cost=10), MODEL, user), TTL).granted
    assert store.settle("a", Usage(cost=10))
    assert store.scope_count == 2
    clock.advance(61)
    store.sweep()
    assert store.scope_count == 1  # the model's bucket is full; the user has spent today
    clock.advance(86_400)
    store.sweep()
    assert store.scope_count == 0


def test_a_sweep_does_bounded_work_and_the_next_admission_continues(
    store: SqliteStore, clock: FakeClock
) -> None:
    store._sweep_batch = 2
    for index in range(5):
        assert store.reserve(f"r{index}", claims_of(Usage(input_tokens=10)), 10 * S).granted
    clock.advance(11)
    store.sweep()
    assert store.reservation_count == 3
    for expected in (1, 0):  # each admission sweeps again while work is left
        store.reserve("x", claims_of(Usage(input_tokens=10)), TTL)
        assert store.reservation_count == expected + 1
        assert store.settle("x", None)


def test_sweeps_are_spaced_by_the_interval_across_stores(path: Path, clock: FakeClock) -> None:
    one = SqliteStore(path, clock=clock, sweep_interval=60)
    two = SqliteStore(path, clock=clock, sweep_interval=60)
    assert one.reserve("a", claims_of(Usage(input_tokens=10)), 10 * S).granted  # sweeps first
    clock.advance(11)
    assert two.reserve("b", claims_of(Usage(input_tokens=10)), 10 * S).granted
    assert one.reservation_count == 2  # not yet: the last sweep was 11 s ago
    clock.advance(50)
    assert two.reserve("c", claims_of(Usage(input_tokens=10)), 10 * S).granted
    assert one.reservation_count == 1  # a and b expired; c is new
    one.close()
    two.close()


def test_a_renewal_extends_the_reservation_and_its_leases(
    store: SqliteStore, clock: FakeClock
) -> None:
    scope = ("pool", (concurrency(1, ttl=30),))
    assert store.reserve("a", claims_of(Usage(), scope), 20 * S).granted
    clock.advance(15)
    assert store.renew("a", 20 * S)
    clock.advance(15)  # 30 s after the reservation: both would have expired without renewal
    store.sweep()
    assert store.reservation_count == 1
    assert not store.reserve("b", claims_of(Usage(), scope), TTL).granted
    assert store.settle("a", None)
    assert store.reserve("b", claims_of(Usage(), scope), TTL).granted


# Atomicity and errors. ---------------------------------------------------------------------


def test_an_error_midway_rolls_everything_back(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_: object) -> str:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("quotaflow.stores._sqlite._entries_data", fail)
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.reserve("a", claims_of(Usage(input_tokens=1_000)), TTL)
    assert used(store) == [0, 0]
    assert store.scope_count == 0
    assert store.reservation_count == 0
    monkeypatch.undo()
    assert store.reserve("a", claims_of(Usage(input_tokens=1_000)), TTL).granted


def test_a_lock_held_past_the_timeout_raises_store_error(path: Path, clock: FakeClock) -> None:
    store = SqliteStore(path, clock=clock, busy_timeout=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"locked for more than busy_timeout=0\.05s") as info:
        store.reserve("a", claims_of(Usage()), TTL)
    assert 0.05 <= time.monotonic() - started < 2.0
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    other.execute("ROLLBACK")
    assert store.reserve("a", claims_of(Usage()), TTL).granted  # usable again
    other.close()
    store.close()


def test_a_lock_held_briefly_is_waited_for(path: Path, clock: FakeClock) -> None:
    store = SqliteStore(path, clock=clock)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.1, lambda: other.execute("COMMIT")).start()
    assert store.reserve("a", claims_of(Usage()), TTL).granted
    other.close()
    store.close()


def test_threads_on_two_connections_never_admit_more_than_the_capacity(
    path: Path, clock: FakeClock
) -> None:
    stores = [SqliteStore(path, clock=clock) for _ in range(2)]
    scope = ("burst", (rpm(50),))
    granted: list[bool] = []

    def work(store: SqliteStore, thread: int) -> None:
        for index in range(50):
            result = store.reserve(f"{thread}:{index}", claims_of(Usage(), scope), TTL)
            granted.append(result.granted)

    threads = [
        threading.Thread(target=work, args=(stores[thread % 2], thread)) for thread in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 400
    assert sum(granted) == 50  # time stands still: exactly the bucket
    assert stores[0].reservation_count == 50
    for store in stores:
        store.close()


def test_a_corrupt_file_raises_store_error(path: Path) -> None:
    path.write_bytes(b"this is not a database, just some bytes " * 200)
    with pytest.raises(StoreError) as info:
        SqliteStore(path)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


def test_a_corrupt_row_raises_store_error(store: SqliteStore, path: Path) -> None:
    assert store.reserve("a", claims_of(Usage(input_tokens=10)), TTL).granted
    with sqlite3.connect(path) as other:
        other.execute("UPDATE states SET data = '[1, 2' WHERE key LIKE 'rate:tokens%'")
    other.close()
    with pytest.raises(StoreError, match="invalid state"):
        store.settle("a", None)
    assert store.reservation_count == 1  # rolled back


def test_a_newer_schema_is_refused(path: Path) -> None:
    SqliteStore(path).close()
    with sqlite3.connect(path) as other:
        other.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    other.close()
    with pytest.raises(ConfigurationError, match="schema version 2, newer than"):
        SqliteStore(path)


def test_a_file_of_another_application_is_refused(path: Path) -> None:
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE songs (title TEXT)")
    other.close()
    with pytest.raises(ConfigurationError, match="holds other tables"):
        SqliteStore(path)


def test_a_closed_store_raises(store: SqliteStore) -> None:
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="is closed"):
        store.reserve("a", claims_of(Usage()), TTL)


# Configuration. ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [":memory:", ""])
def test_memory_databases_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="use MemoryStore"):
        SqliteStore(bad)


@pytest.mark.parametrize("bad", ["file::memory:", "file:state.db?mode=ro"])
def test_sqlite_uris_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="SQLite URIs are not accepted"):
        SqliteStore(bad)


def test_bad_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is a directory"):
        SqliteStore(tmp_path)
    with pytest.raises(ConfigurationError, match="does not exist"):
        SqliteStore(tmp_path / "missing" / "state.db")
    with pytest.raises(ConfigurationError, match="must be a str or a path"):
        SqliteStore(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"busy_timeout": -1}, "busy_timeout must be non-negative, got -1"),
        ({"busy_timeout": float("nan")}, "busy_timeout must be a finite number"),
        ({"busy_timeout": True}, "busy_timeout must be a finite number"),
        ({"sweep_interval": 0}, "sweep_interval must be positive, got 0"),
        ({"sweep_interval": "60"}, "sweep_interval must be a finite number"),
    ],
)
def test_bad_options_are_refused(path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SqliteStore(path, **options)
    assert not path.exists()


def test_urls_name_relative_and_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = SqliteStore.from_url("sqlite:///state.db?busy_timeout=0.5&sweep_interval=5")
    assert relative._busy_timeout == 0.5
    assert relative._sweep_interval_ns == 5 * S
    relative.close()
    assert (tmp_path / "state.db").exists()
    absolute = SqliteStore.from_url(f"sqlite:///{tmp_path}/with%20space.db", clock=clock)
    assert absolute._clock is clock
    absolute.close()
    assert (tmp_path / "with space.db").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost/0", "not a SQLite URL"),
        ("sqlite://host/state.db", "not a SQLite URL"),
        ("sqlite:///", "names no file"),
        ("sqlite:state.db", "names no file"),
        ("sqlite:///:memory:", "use MemoryStore"),
        ("sqlite:///state.db?timeout=1", "unknown option 'timeout'"),
        ("sqlite:///state.db?busy_timeout=soon", "busy_timeout must be a number.*'soon'"),
        ("sqlite:///state.db?busy_timeout=1&busy_timeout=2", "given twice"),
        ("sqlite:///state.db?sweep_interval=-5", "sweep_interval must be positive, got -5.0"),
    ],
)
def test_bad_urls_are_refused(
    url: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match=message):
        SqliteStore.from_url(url)


def test_the_store_implements_both_protocols(store: SqliteStore) -> None:
    assert isinstance(store, Store)
    assert isinstance(store, AsyncStore)
    assert not getattr(store, "nonblocking", False)
    assert repr(store).startswith("SqliteStore(")


def test_every_slot_of_every_state_is_stored() -> None:
    for kind, fields in _FIELDS.items():
        assert {name for name, _ in fields} | {"limit"} == set(kind.__slots__), kind
    assert set(_FIELDS) == {RateState, QuotaState, LeaseState}


def test_huge_debts_are_stored_exactly(store: SqliteStore) -> None:
    slow = ("slow", (Rate("tokens", 1, 366 * 86_400),))
    assert store.reserve("a", claims_of(Usage(input_tokens=1), slow), TTL).granted
    assert store.settle("a", Usage(input_tokens=10**15))  # a debt of ~10**15 years in ns
    snapshot = store.snapshot(*slow)[1][0]
    assert snapshot.used == 10**15
    assert snapshot.resets_in_ns > 2**63


# Limiters on the store. --------------------------------------------------------------------


def test_a_sync_limiter_runs_on_the_store(path: Path, clock: FakeClock) -> None:
    limits = {"api": [rpm(2), tpm(1_000)]}
    with SyncLimiter(limits, store=SqliteStore(path, clock=clock), clock=clock) as limiter:
        with limiter.reserve("api", input_tokens=600) as reservation:
            reservation.settle(input_tokens=100)
        assert limiter.try_acquire("api", input_tokens=800)
        refused = limiter.try_acquire("api", input_tokens=10)
        assert not refused
        assert refused.retry_after == pytest.approx(30.0)
        status = limiter.status("api")
        assert [(s.used, s.remaining) for s in status.limits] == [(2, 0), (900, 100)]
    # Another limiter on the same file sees the same state.
    with SyncLimiter(limits, store=SqliteStore(path, clock=clock), clock=clock) as other:
        assert other.status("api").limit("tokens").used == 900


@pytest.mark.asyncio
async def test_an_async_limiter_runs_on_the_store(path: Path, clock: FakeClock) -> None:
    limiter = Limiter({"api": [rpm(2), tpm(1_000)]}, store=SqliteStore(path, clock=clock))
    async with limiter.reserve("api", input_tokens=600) as reservation:
        await reservation.settle(input_tokens=100)
    decision = await limiter.try_acquire("api", input_tokens=800)
    assert decision.reservation is not None
    assert not await limiter.try_acquire("api", input_tokens=10)
    await decision.reservation.cancel()
    status = await limiter.status("api")
    assert [s.used for s in status.limits] == [1, 100]  # a cancellation refunds the request too
    assert await limiter.try_acquire("api", input_tokens=10)
    await limiter.aclose()


@pytest.mark.asyncio
async def test_a_cancelled_admission_can_still_be_given_back(path: Path) -> None:
    store = SqliteStore(path, clock=FakeClock())
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # holds the admission up in its thread
    claims = claims_of(Usage(input_tokens=1_000))
    task = asyncio.create_task(store.areserve("a", claims, TTL))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    settling = asyncio.create_task(store.asettle("a", None))
    await asyncio.sleep(0.05)
    other.execute("COMMIT")  # the admission now completes, then the settlement
    assert await settling
    assert store.reservation_count == 0
    assert [s.used for s in (await store.asnapshot(*MODEL))[1]] == [0, 0]
    assert not await store.arenew("a", TTL)
    other.close()
    await store.aclose()


# Processes sharing one file. -----------------------------------------------------------------


@pytest.mark.slow
def test_processes_hammering_one_file_never_exceed_the_limit(path: Path) -> None:
    SqliteStore(path).close()
    hammer_and_check(f"sqlite:///{path}")


def test_a_release_in_another_process_wakes_waiters(path: Path) -> None:
    """A waiter learns of a lease released through another store on the same file.

    The waiting limiter's clock never moves, so only the release watcher can wake it: without
    it, the waiter would sleep until the lease's TTL (10 minutes).
    """
    other = SqliteStore(path)
    limiter = SyncLimiter(
        {"pool": [concurrency(1, ttl=600)]}, store=SqliteStore(path), clock=FakeClock()
    )
    try:
        claims = Route([("pool", limiter.limits_of("pool"))]).claims(Usage())
        assert other.reserve("elsewhere", claims, 3600 * S).granted
        result: list[object] = []
        waiter = threading.Thread(target=lambda: result.append(limiter.acquire("pool")))
        waiter.start()
        for _ in range(1000):  # until the waiter has queued (bounded: 10 s)
            if limiter.status("pool").queue_depth:
                break
            time.sleep(0.01)
        assert limiter.status("pool").queue_depth == 1
        assert other.settle("elsewhere", Usage())
        waiter.join(timeout=10)
        assert not waiter.is_alive(), "the waiter was not woken by the release"
        assert len(result) == 1
    finally:
        limiter.close()
        other.close()
