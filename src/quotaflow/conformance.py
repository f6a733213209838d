"""A conformance suite that every store implementation must pass.

Subclass :class:`StoreConformance` in a test module and implement :meth:`make_store`; pytest
then runs the whole suite against your store:

.. code-block:: python

    from quotaflow.conformance import StoreConformance
    from quotaflow.stores import MemoryStore
    from quotaflow.testing import FakeClock


    class TestMemoryStore(StoreConformance):
        def make_store(self, clock: FakeClock) -> MemoryStore:
            return MemoryStore(clock=clock)

The suite holds a store to two standards:

- **The promise.** Random histories are replayed through an exact (``Fraction``) model of the
  provider that sees only what each call really used; every admission must find room there.
- **MemoryStore's semantics.** The same random history runs on the store and on a
  :class:`~quotaflow.stores.MemoryStore`, and targeted tests pin all-or-nothing admission,
  idempotency, refunds, debt, expiry, leases, calendar periods, reconfiguration and snapshots.

It drives the store only through the :class:`~quotaflow.stores.Store` protocol (and
:class:`~quotaflow.stores.AsyncStore` for the async tests) on a
:class:`~quotaflow.testing.FakeClock`.

Rounding. A shared store may keep time more coarsely than in nanoseconds (Redis counts
microseconds). The suite allows that as long as rounding goes against the caller: a store may
admit a little later than MemoryStore, by at most :attr:`StoreConformance.slack_ns` per
operation, and never earlier. Slots must be truthful (a request is admitted at the slot it was
given) and tight (it is refused ``slack_ns`` before). Amounts are exact integers and are
compared exactly wherever no time rounding is involved: quotas, leases, full buckets.

This module imports pytest and Hypothesis at import time: it is meant for test environments.
"""

# Assertions are the point of a test suite, and so are literal limits and amounts.
# ruff: noqa: S101, PLR2004

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any, ClassVar, Final
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from quotaflow import daily_quota, rpm, tpm
from quotaflow.core import (
    NS_PER_SECOND,
    BoundLimit,
    Claim,
    Concurrency,
    Limit,
    LimitSnapshot,
    Metric,
    Quota,
    QuotaPeriod,
    Rate,
    ReserveResult,
    Route,
    Usage,
    period_bounds,
)
from quotaflow.stores import AsyncStore, MemoryStore, Store
from quotaflow.testing import FakeClock

__all__ = ["StoreConformance"]

S: Final = NS_PER_SECOND
MS: Final = NS_PER_SECOND // 1_000
HOUR: Final = 3_600 * S
DAY: Final = 86_400 * S
#: The reservation TTL of tests that are not about expiry: nothing expires during them.
TTL: Final = 365 * DAY
#: A history waits for a slot only if it is at most this far away.
_MAX_WAIT: Final = 3 * DAY
_NOTHING: Final = Usage(requests=0)
_FOREVER: Final = (2**63, 0)

#: One step of a random history: ``(kind, a, b)``; the meaning of ``a`` and ``b`` depends on
#: the kind (see :func:`_history`).
Op = tuple[str, int, int]
Scopes = tuple[tuple[str, tuple[Limit, ...]], ...]


def _epoch(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 instant (``2026-03-29T10:00:00Z``)."""
    return datetime.fromisoformat(text).timestamp()


def _midnight(year: int, month: int, day: int, timezone: str) -> int:
    """The local midnight that starts ``year-month-day`` in ``timezone``, in ns."""
    return round(datetime(year, month, day, tzinfo=ZoneInfo(timezone)).timestamp()) * S


def _advance_to(clock: FakeClock, target: int) -> None:
    """Move ``clock`` to exactly ``target`` ns (in steps short enough for exact floats)."""
    if target < clock.now_ns():
        raise ValueError(f"cannot move the clock back to {target}")
    while (gap := target - clock.now_ns()) > 0:
        clock.advance(min(gap, DAY) / NS_PER_SECOND)


def _advance(clock: FakeClock, ns: int) -> None:
    _advance_to(clock, clock.now_ns() + ns)


def _units(limit: Rate, ns: int) -> int:
    """Units of ``limit`` that refill in ``ns``, rounded up: a reading's rounding allowance."""
    return -(-ns * limit.refill // limit.period_ns)


# Checked access to the store under test ----------------------------------------------------


def _check_result(
    result: ReserveResult, claims: Sequence[Claim], clock_now: int, slack_ns: int
) -> None:
    """Every answer to ``reserve``: store time close to the clock, a slot and a binding."""
    assert isinstance(result, ReserveResult), f"reserve returned {result!r}"
    assert clock_now - slack_ns <= result.now <= clock_now, (
        f"the store's time {result.now} is not the clock's {clock_now} "
        f"(less at most {slack_ns} ns of rounding)"
    )
    if result.granted:
        assert result.binding is None, f"a grant names a binding limit: {result}"
        assert result.slot is not None, f"a grant must report its slot (now): {result}"
        assert result.now <= result.slot <= result.now + slack_ns, f"grant slot != now: {result}"
        return
    assert result.slot is not None, (
        f"a refusal must name the slot at which it would admit: {result}"
    )
    assert result.slot > result.now, f"a refusal's slot must be in the future: {result}"
    bound = [BoundLimit(scope, limit) for scope, limit, _, _ in claims]
    assert result.binding in bound, f"the binding limit {result.binding} is not one of {bound}"


class _Checked:
    """The store under test, with the checks that every answer gets."""

    def __init__(self, store: Store, clock: FakeClock, slack_ns: int) -> None:
        self.store = store
        self.clock = clock
        self.slack_ns = slack_ns
        self.calls = 0  # operations so far: each may round against the caller once

    def reserve(self, rid: str, claims: Sequence[Claim], ttl_ns: int = TTL) -> ReserveResult:
        self.calls += 1
        result = self.store.reserve(rid, claims, ttl_ns)
        _check_result(result, claims, self.clock.now_ns(), self.slack_ns)
        return result

    def settle(self, rid: str, actual: Usage | None) -> bool:
        self.calls += 1
        found = self.store.settle(rid, actual)
        assert type(found) is bool, f"settle returned {found!r}, not a bool"
        return found

    def renew(self, rid: str, ttl_ns: int = TTL) -> bool:
        self.calls += 1
        found = self.store.renew(rid, ttl_ns)
        assert type(found) is bool, f"renew returned {found!r}, not a bool"
        return found

    def snapshot(self, scope: str, limits: Sequence[Limit]) -> list[LimitSnapshot]:
        now, snapshots = self.store.snapshot(scope, limits)
        clock = self.clock.now_ns()
        assert clock - self.slack_ns <= now <= clock, f"snapshot time {now}, clock {clock}"
        assert [s.limit for s in snapshots] == list(limits), "snapshot limits out of order"
        return list(snapshots)

    def reading(self, scope: str, limit: Limit) -> LimitSnapshot:
        (snapshot,) = self.snapshot(scope, (limit,))
        return snapshot

    def used(self, scope: str, limit: Limit) -> int:
        return self.reading(scope, limit).used


def _retry_at_slot(
    attempt: Callable[[], ReserveResult],
    clock: FakeClock,
    refusal: ReserveResult,
    *,
    probe: bool,
    slack_ns: int,
) -> ReserveResult | None:
    """Wait for the slot ``refusal`` named and try again: the slot must be truthful and tight.

    With ``probe``, first try ``slack_ns`` before the slot, where the request must still be
    refused. Returns the answer at the slot, or ``None`` if the slot is too far away to wait.
    """
    slot = refusal.slot
    assert slot is not None
    if slot - clock.now_ns() > _MAX_WAIT:
        return None
    early = slot - max(slack_ns, 1)
    if probe and early > clock.now_ns():
        _advance_to(clock, early)
        again = attempt()
        assert not again.granted, f"admitted {slot - early} ns before the slot {slot} it named"
        assert again.slot is not None
        assert abs(again.slot - slot) <= slack_ns, f"the slot moved from {slot} to {again.slot}"
        slot = again.slot
    _advance_to(clock, slot)
    result = attempt()
    assert result.granted, (
        f"refused at the slot {slot} it named (a waiter that retries there waits again): {result}"
    )
    return result


# The exact provider model ------------------------------------------------------------------


@dataclass
class _Call:
    """One admitted call of a history, as the provider sees it."""

    rid: str
    start: int
    order: int  # position in the history, to order events that share a timestamp
    reserved: Usage
    used: Usage | None = None  # what it really used; None: never settled (counts as reserved)
    end: tuple[int, int] | None = None  # (time, order) of its settlement


def _events(calls: Sequence[_Call], metric: Metric) -> list[tuple[int, int, int, int]]:
    """``(time, order, admitted, debt)``: admissions carry what was really used, then overruns."""
    out = []
    for call in calls:
        reserved = call.reserved.amount(metric)
        used = reserved if call.used is None else call.used.amount(metric)
        out.append((call.start, call.order, min(used, reserved), 0))
        if used > reserved and call.end is not None:
            out.append((*call.end, 0, used - reserved))
    return sorted(out)


def _check_rate(limit: Rate, calls: Sequence[_Call]) -> None:
    """Replay ``calls`` through the provider's bucket: every admission must find room."""
    rate = Fraction(limit.refill, limit.period_ns)
    capacity = Fraction(limit.capacity)
    level, last = capacity, None
    for time, _, admitted, debt in _events(calls, limit.metric):
        if last is not None:
            level = min(capacity, level + rate * (time - last))
        last = time
        # A call that uses nothing never overdraws (zero amounts are admitted even in debt).
        assert admitted == 0 or level >= admitted, (
            f"{limit}: admitted {admitted} at {time} when the provider's bucket held "
            f"{float(level):.6f}"
        )
        level -= admitted + debt


def _check_quota(limit: Quota, calls: Sequence[_Call]) -> None:
    """Replay ``calls`` period by period: no admission may take a period past its total."""
    spent: dict[int, int] = {}
    for time, _, admitted, debt in _events(calls, limit.metric):
        period = period_bounds(limit, time)[0]
        total = spent.get(period, 0)
        assert admitted == 0 or total + admitted <= limit.capacity, (
            f"{limit}: admitted {admitted} at {time} with {total} already spent this period"
        )
        spent[period] = total + admitted + debt


def _check_leases(limit: Concurrency, calls: Sequence[_Call], slack_ns: int) -> None:
    """No admission finds ``capacity`` leases in flight (a lease ends at settlement or TTL)."""
    for call in calls:
        at = (call.start, call.order)
        held = sum(
            1
            for other in calls
            if (other.start, other.order) < at
            and min(other.end or _FOREVER, (other.start + limit.ttl_ns - slack_ns, -1)) > at
        )
        assert held < limit.capacity, f"{limit}: admitted at {call.start} with {held} in flight"


def _check_all(scopes: Scopes, calls: Sequence[_Call], slack_ns: int) -> None:
    for _, limits in scopes:
        for limit in limits:
            if isinstance(limit, Rate):
                _check_rate(limit, calls)
            elif isinstance(limit, Quota):
                _check_quota(limit, calls)
            else:
                _check_leases(limit, calls, slack_ns)


# Random histories --------------------------------------------------------------------------

_PER_MILLE: Final = st.sampled_from([0, 1, 10, 100, 300, 500, 900, 1_000]) | st.integers(0, 1_000)
_ACTUAL: Final = st.sampled_from([0, 0, 1, 100, 500, 1_000, 1_500]) | st.integers(0, 1_500)
_PICK: Final = st.integers(0, 10**6)


def _history(max_steps: int, *, compare: bool = False) -> st.SearchStrategy[list[Op]]:
    """Random histories of up to ``max_steps`` steps (the length is uniform, not skewed short).

    Steps: ``("wait", ms, 0)``; ``("nudge", ns, 0)`` (odd times, off the microsecond grid);
    ``("reserve", per mille of the unit, mode)`` where mode 1 waits for the slot of a refusal
    and tries again and mode 2 also tries just before it; ``("settle", pick, per mille of the
    reservation used)``; ``("cancel", pick, 0)``. Comparisons also have ``("long", hours, 0)``,
    ``("renew", pick, 0)`` and ``("snapshot", 0, 0)`` but no nudges. Reservations are drawn
    three times as often as other steps, waits twice.
    """
    # Distinct (if equal) strategies: one_of draws from each alike, duplicates included.
    waits = [st.tuples(st.just("wait"), st.integers(1, 40_000), st.just(0)) for _ in range(2)]
    reserves = [st.tuples(st.just("reserve"), _PER_MILLE, st.integers(0, 2)) for _ in range(3)]
    steps = [
        *waits,
        *reserves,
        st.tuples(st.just("settle"), _PICK, _ACTUAL),
        st.tuples(st.just("cancel"), _PICK, st.just(0)),
    ]
    if compare:
        steps += [
            st.tuples(st.just("long"), st.integers(1, 12), st.just(0)),
            st.tuples(st.just("renew"), _PICK, st.just(0)),
            st.tuples(st.just("snapshot"), st.just(0), st.just(0)),
        ]
    else:
        steps.append(st.tuples(st.just("nudge"), st.integers(1, 5_000), st.just(0)))
    step = st.one_of(steps)
    return st.integers(0, max_steps).flatmap(
        lambda size: st.lists(step, min_size=size, max_size=size)
    )


class _Runner:
    """Runs a random history on one store and records what it admitted."""

    def __init__(
        self, store: _Checked, scopes: Scopes, unit: int, wait_scale: int, resolution_ns: int
    ) -> None:
        self.store = store
        self.clock = store.clock
        self.route = Route(scopes)
        self.unit = unit
        self.wait_scale = wait_scale
        self.resolution_ns = resolution_ns
        self.calls: list[_Call] = []
        self.held: list[_Call] = []

    def run(self, ops: Sequence[Op]) -> list[_Call]:
        for order, (kind, a, b) in enumerate(ops):
            if kind == "wait":
                _advance(self.clock, a * MS * self.wait_scale)
            elif kind == "nudge":
                _advance(self.clock, max(self.resolution_ns, a - a % self.resolution_ns))
            elif kind == "reserve":
                self.reserve(order, a, b)
            elif self.held:
                call = self.held.pop(a % len(self.held))
                call.end = (self.clock.now_ns(), order)
                if kind == "settle":
                    call.used = Usage(tokens=b * call.reserved.tokens // 1_000)
                    assert self.store.settle(call.rid, call.used), f"{call.rid} was lost"
                else:
                    call.used = _NOTHING
                    assert self.store.settle(call.rid, None), f"{call.rid} was lost"
        return self.calls

    def reserve(self, order: int, per_mille: int, mode: int) -> None:
        rid = f"r{order}"
        usage = Usage(tokens=per_mille * self.unit // 1_000)
        claims = self.route.claims(usage)
        result = self.store.reserve(rid, claims)
        if not result.granted and mode:
            # The same id again: a refused id is not held, so this is a fresh attempt.
            retried = _retry_at_slot(
                lambda: self.store.reserve(rid, claims),
                self.clock,
                result,
                probe=mode == 2,
                slack_ns=self.store.slack_ns,
            )
            result = result if retried is None else retried
        if result.granted:
            call = _Call(rid, self.clock.now_ns(), order, usage)
            self.calls.append(call)
            self.held.append(call)


class _Comparison:
    """One random history, run side by side on the store under test and on a MemoryStore.

    Both see the same time; the MemoryStore is the reference. See
    :meth:`StoreConformance.test_agrees_with_memory_store_on_random_histories`.
    """

    def __init__(self, store: _Checked, scopes: Scopes, unit: int) -> None:
        self.store = store
        self.clock = store.clock
        self.reference = MemoryStore(clock=store.clock)
        self.scopes = scopes
        self.route = Route(scopes)
        self.unit = unit
        self.reserved: dict[str, int] = {}  # every id tried -> tokens asked for
        self.realigned = 0  # grants the reference cancelled to follow a refusal

    @property
    def tolerance(self) -> int:
        """How far, in ns, the store may lag the reference by now: ``slack_ns`` per operation."""
        return self.store.slack_ns * (self.store.calls + 1)

    def run(self, ops: Sequence[Op]) -> None:
        for kind, a, b in ops:
            if kind == "wait":
                _advance(self.clock, a * MS)
            elif kind == "long":
                _advance(self.clock, a * HOUR)
            elif kind == "reserve":
                self.reserve(a, b)
            elif kind == "snapshot":
                self.compare_readings()
            elif self.reserved:
                rid = list(self.reserved)[a % len(self.reserved)]
                self.later(kind, rid, b)
        self.compare_readings()

    def later(self, kind: str, rid: str, per_mille: int) -> None:
        """Settle, cancel or renew ``rid`` (held, settled or never granted) on both."""
        if kind == "renew":
            mine, theirs = self.store.renew(rid), self.reference.renew(rid, TTL)
        else:
            actual = Usage(tokens=per_mille * self.reserved[rid] // 1_000)
            usage = actual if kind == "settle" else None
            mine, theirs = self.store.settle(rid, usage), self.reference.settle(rid, usage)
        assert mine == theirs, f"{kind} {rid}: the store says {mine}, MemoryStore {theirs}"

    def reserve(self, per_mille: int, mode: int) -> None:
        rid = f"r{len(self.reserved)}"
        tokens = per_mille * self.unit // 1_000
        self.reserved[rid] = tokens
        claims = self.route.claims(Usage(tokens=tokens))
        result = self.admit(rid, claims)
        if not result.granted and mode:
            _retry_at_slot(
                lambda: self.admit(rid, claims),
                self.clock,
                result,
                probe=mode == 2,
                slack_ns=self.store.slack_ns,
            )

    def admit(self, rid: str, claims: Sequence[Claim]) -> ReserveResult:
        """Ask both; where they disagree, check the store is within rounding and realign them.

        Returns the store's answer.
        """
        now = self.clock.now_ns()
        mine = self.store.reserve(rid, claims)
        theirs = self.reference.reserve(rid, claims, TTL)
        assert mine.slot is not None
        assert theirs.slot is not None
        if mine.granted and not theirs.granted:
            assert theirs.slot - now <= self.realigned, (
                f"the store admitted {rid} at {now}; MemoryStore refuses it until "
                f"{theirs.slot - now} ns later: the store admits more than MemoryStore"
            )
            assert self.store.settle(rid, None)  # as if it had refused too
        elif theirs.granted and not mine.granted:
            assert mine.slot - now <= self.tolerance, (
                f"the store refused {rid} until {mine.slot - now} ns from now; MemoryStore "
                f"admits it now (rounding allows {self.tolerance} ns)"
            )
            assert self.reference.settle(rid, None)  # as if it had refused too
            self.realigned += 1
        elif not mine.granted:
            assert theirs.slot - self.realigned <= mine.slot <= theirs.slot + self.tolerance, (
                f"{rid}: the store's slot is {mine.slot - theirs.slot:+} ns off MemoryStore's "
                f"(rounding allows 0 to +{self.tolerance} ns)"
            )
        return mine

    def compare_readings(self) -> None:
        tolerance = self.tolerance + self.realigned
        for scope, limits in self.scopes:
            _, expected = self.reference.snapshot(scope, limits)
            for mine, theirs in zip(self.store.snapshot(scope, limits), expected, strict=True):
                _assert_same_reading(mine, theirs, tolerance)


def _assert_same_reading(mine: LimitSnapshot, theirs: LimitSnapshot, tolerance: int) -> None:
    """Compare two readings of one limit: rates within ``tolerance`` ns, the rest exactly."""
    limit = theirs.limit
    units = _units(limit, tolerance) if isinstance(limit, Rate) else 0
    assert abs(mine.used - theirs.used) <= units, f"{limit}: used {mine.used} != {theirs.used}"
    assert abs(mine.remaining - theirs.remaining) <= units, (
        f"{limit}: remaining {mine.remaining} != {theirs.remaining}"
    )
    assert abs(mine.resets_in_ns - theirs.resets_in_ns) <= tolerance, (
        f"{limit}: resets in {mine.resets_in_ns} ns, MemoryStore says {theirs.resets_in_ns}"
    )


# Fixed histories for the property tests ---------------------------------------------------

_RATES: Final = (
    tpm(6_000),
    tpm(60_000),
    Rate(Metric.TOKENS, 1_000, 7),
    Rate(Metric.TOKENS, 1_200, 60, burst=0.5),
    # A unit refills in a time that is not a whole number of microseconds (nor nanoseconds).
    Rate(Metric.TOKENS, 7, 1),
    Rate(Metric.TOKENS, 7_001, 61, headroom=0.9),
)

#: Limits for the comparison with MemoryStore, each with the token amount that "1,000 per
#: mille" stands for.
_COMPARED: Final[tuple[tuple[int, Scopes], ...]] = (
    (6_000, (("m", (tpm(6_000),)),)),
    (
        3_500,
        (("m", (Rate(Metric.TOKENS, 7_001, 61, burst=0.5), Rate(Metric.REQUESTS, 3, 1))),),
    ),
    (
        1_000,
        (
            ("m", (rpm(7), Rate(Metric.TOKENS, 1_000, 7))),
            ("u", (daily_quota("tokens", 5_000, timezone="Europe/Paris"), Concurrency(3, ttl=30))),
        ),
    ),
)

#: The multi-limit history: a model's RPM and TPM, and a user's daily quota and concurrency.
#: It starts 20 minutes before midnight in Paris, on the eve of a daylight-saving change.
_MULTI: Final[Scopes] = (
    ("model", (rpm(60), tpm(6_000))),
    ("user", (daily_quota("tokens", 20_000, timezone="Europe/Paris"), Concurrency(4, ttl=20))),
)
_MULTI_START: Final = "2026-03-28T22:40:00Z"

_QUOTA_STARTS: Final = (None, "2026-03-28T20:00:00Z", "2026-10-24T20:00:00Z")

#: A rate that is never full again (one request per 366 days, 1,000 at once). Next to a quota
#: it keeps the scope busy, so that a store that forgets idle scopes (MemoryStore's sweep
#: drops a quota whose period has ended) still meets refunds and overruns of past periods.
_KEEPER: Final = Rate(Metric.REQUESTS, 1, 366 * 86_400, burst=1_000)


# The suite -----------------------------------------------------------------------------------


class StoreConformance:
    """The tests every store must pass. Subclass it in a test module and implement make_store.

    Pytest collects the subclass (its name must start with ``Test``) with every test below;
    the base class itself is never collected.

    Attributes:
        max_examples: Hypothesis examples per property test (each is one fresh store).
        max_steps: operations per random history.
        slack_ns: time, in ns, that a store may lose to rounding per operation: its reported
            time may lag the clock by this much, a request may be admitted up to this much
            (per operation so far) later than MemoryStore admits it, and slots are checked to
            within it. ``2_000`` suits a store that keeps time in microseconds.
        expiry_grace: seconds past its TTL that a store may go on holding an expired
            reservation, until its next write forgets it. MemoryStore sweeps at most once per
            ``sweep_interval`` (60 s by default).
        resolution_ns: the resolution of the store's own clock. The suite otherwise moves
            time by single nanoseconds too, and every admission must then be exact against
            the provider model at those times. A store whose real clock ticks coarser (Redis
            ``TIME``: microseconds) may declare it (``1_000``), so that histories move time
            only by whole multiples of it, as its clock would; slots it names are used as is.
        async_store: run the async tests (see :meth:`make_async_store`).
        threads: threads of the concurrency tests.
    """

    __test__: ClassVar[bool] = False

    max_examples: ClassVar[int] = 50
    max_steps: ClassVar[int] = 60
    slack_ns: ClassVar[int] = 2_000
    expiry_grace: ClassVar[float] = 60.0
    resolution_ns: ClassVar[int] = 1
    async_store: ClassVar[bool] = True
    threads: ClassVar[int] = 8

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "__test__" not in cls.__dict__:
            cls.__test__ = True  # a subclass is a test class unless it says otherwise

    # To implement ----------------------------------------------------------------------------

    def make_store(self, clock: FakeClock) -> Store:
        """Return a fresh, empty store whose time is ``clock``.

        Called once per test and once per Hypothesis example: every call must give isolated
        state (a new database file, a new Redis key prefix).
        """
        raise NotImplementedError

    def make_async_store(self, clock: FakeClock) -> AsyncStore:
        """Return a fresh, empty async store whose time is ``clock``.

        Called inside the running event loop that will use it. The default returns
        :meth:`make_store`'s store if it is also an :class:`~quotaflow.stores.AsyncStore`, and
        skips the async tests otherwise.
        """
        store = self.make_store(clock)
        if not isinstance(store, AsyncStore):
            store.close()
            pytest.skip(f"{type(store).__name__} is not an AsyncStore; override make_async_store")
        return store

    # Plumbing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _open(self, start: str | None = None) -> Iterator[_Checked]:
        clock = FakeClock(None if start is None else _epoch(start))
        store = self.make_store(clock)
        try:
            yield _Checked(store, clock, self.slack_ns)
        finally:
            store.close()

    def _settings(self) -> settings:
        return settings(
            max_examples=self.max_examples,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )

    def _run(
        self,
        scopes: Scopes,
        ops: Sequence[Op],
        *,
        unit: int,
        start: str | None = None,
        wait_scale: int = 1,
    ) -> None:
        with self._open(start) as store:
            calls = _Runner(store, scopes, unit, wait_scale, self.resolution_ns).run(ops)
        _check_all(scopes, calls, self.slack_ns)

    def _slot_is(self, store: _Checked, rid: str, claims: Sequence[Claim], expected: int) -> None:
        """Refused now with a slot of ``expected``, refused just before it and granted at it."""
        result = store.reserve(rid, claims)
        assert not result.granted, f"{rid} was admitted; expected a wait until {expected}"
        assert result.slot is not None
        assert abs(result.slot - expected) <= self.slack_ns, (
            f"{rid}: slot {result.slot} is {result.slot - expected:+} ns off {expected}"
        )
        _retry_at_slot(
            lambda: store.reserve(rid, claims),
            store.clock,
            result,
            probe=True,
            slack_ns=self.slack_ns,
        )

    # 1. The promise, on random histories ------------------------------------------------------

    def test_a_rolling_rate_never_admits_more_than_the_provider_allows(self) -> None:
        """Random reserve/settle/cancel/wait histories on one rate never overdraw the provider.

        Admissions are replayed through an exact bucket that sees what each call really used
        (at admission) and its overruns (at settlement); every admission must find room. This
        also proves that no refund mints capacity. Refusals retried at their slot must pass.
        """

        @self._settings()
        @given(limit=st.sampled_from(_RATES), ops=_history(self.max_steps))
        # A full-bucket reservation refunded after a later admission used what had refilled.
        @example(
            limit=tpm(6_000),
            ops=[
                ("reserve", 1_000, 0),
                ("wait", 30_000, 0),
                ("reserve", 500, 0),
                ("settle", 0, 0),
                ("reserve", 1_000, 0),
            ],
        )
        # A refund between two other reservations must not be credited twice.
        @example(
            limit=tpm(60_000),
            ops=[
                *[("reserve", 83, 0), ("wait", 1_000, 0), ("reserve", 83, 0)],
                *[("wait", 500, 0), ("reserve", 83, 0), ("wait", 500, 0)],
                *[("settle", 1, 0), ("settle", 0, 0), ("reserve", 933, 0)],
            ],
        )
        # An overrun is debt: half the bucket used 150% leaves room for a quarter, not a half.
        @example(
            limit=tpm(6_000),
            ops=[("reserve", 500, 0), ("settle", 0, 1_500), ("reserve", 500, 0)],
        )
        def check(limit: Rate, ops: list[Op]) -> None:
            self._run((("s", (limit,)),), ops, unit=limit.capacity)

        check()

    def test_a_calendar_quota_never_admits_more_than_its_period_total(self) -> None:
        """Random histories over days (and daylight-saving changes) never exceed a daily total.

        Refunds count only within the reservation's period; overruns are charged when settled.
        """

        @self._settings()
        @given(
            timezone=st.sampled_from(["UTC", "Europe/Paris", "America/Los_Angeles"]),
            start=st.sampled_from(_QUOTA_STARTS),
            ops=_history(self.max_steps),
        )
        @example(timezone="UTC", start=None, ops=[("reserve", 1_000, 0), ("reserve", 1, 0)])
        # A refund of yesterday's reservation must not credit today's spending.
        @example(
            timezone="UTC",
            start=None,
            ops=[
                ("reserve", 500, 0),
                *[("wait", 40_000, 0)] * 5,
                ("reserve", 1_000, 0),
                ("settle", 0, 0),
                ("reserve", 500, 0),
            ],
        )
        # An overrun counts: 500 used as 750 leaves room for 251, not 501.
        @example(
            timezone="UTC",
            start=None,
            ops=[("reserve", 500, 0), ("settle", 0, 1_500), ("reserve", 500, 0)],
        )
        # Two full days' worth within one day in Los Angeles, on either side of midnight UTC.
        @example(
            timezone="America/Los_Angeles",
            start=None,
            ops=[
                *[("wait", 36_000, 0)] * 4,
                ("reserve", 1_000, 0),
                ("wait", 36_000, 0),
                ("reserve", 1_000, 0),
            ],
        )
        def check(timezone: str, start: str | None, ops: list[Op]) -> None:
            # Odd, so that sums can land one past the total; waits are of up to 5.5 hours.
            quota = daily_quota("tokens", 1_001, timezone=timezone)
            scopes = (("s", (quota, _KEEPER)),)
            self._run(scopes, ops, unit=quota.capacity, start=start, wait_scale=500)

        check()

    def test_several_limits_on_several_scopes_are_all_honoured(self) -> None:
        """RPM and TPM on a model, a daily quota and a concurrency cap on a user: none exceeded.

        The history starts just before midnight in Paris, so the quota's period rolls over.
        """

        @self._settings()
        @given(ops=_history(self.max_steps))
        @example(ops=[("reserve", 0, 0)] * 5)  # one call more than the concurrency cap
        def check(ops: list[Op]) -> None:
            self._run(_MULTI, ops, unit=1_000, start=_MULTI_START)

        check()

    # 2. MemoryStore's semantics, on random histories ------------------------------------------

    def test_agrees_with_memory_store_on_random_histories(self) -> None:
        """The same random history runs on the store and on a MemoryStore at the same times.

        What is provable, and checked, for a store whose rounding goes against the caller by
        at most ``slack_ns`` per operation (``tol`` = ``slack_ns`` x operations so far):

        - If the store admits, MemoryStore admits: never more than MemoryStore (give or take
          the nanosecond that each realignment below may leave in the reference).
        - If MemoryStore admits and the store refuses, the store's slot is within ``tol``.
        - If both refuse, the store's slot is at or after MemoryStore's, within ``tol``.
        - A slot is truthful and tight: retried at the slot the request passes; retried
          ``slack_ns`` earlier it does not.
        - Settle, cancel and renew answer the same (held or not), including for ids that were
          refused, settled already or never granted.
        - Readings agree: quotas and leases exactly, rates within ``tol`` (in units: what
          refills in ``tol``).

        When the two disagree within rounding, the side that admitted cancels at once, so the
        histories stay comparable. Times stay on whole microseconds (waits of milliseconds,
        jumps to slots the store named), so lease expiries and quota periods agree exactly.
        """

        @self._settings()
        @given(
            config=st.sampled_from(_COMPARED),
            ops=_history(self.max_steps, compare=True),
        )
        def check(config: tuple[int, Scopes], ops: list[Op]) -> None:
            unit, scopes = config
            with self._open("2026-03-28T20:00:00Z") as store:
                _Comparison(store, scopes, unit).run(ops)

        check()

    # 3. All or nothing ----------------------------------------------------------------------

    def test_a_refusal_charges_nothing_in_any_scope(self) -> None:
        """Whichever scope refuses (first, middle or last), no limit anywhere is charged."""
        model = ("model", (rpm(100), tpm(10_000)))
        user = ("user", (daily_quota("cost", 1_000),))
        pool = ("pool", (Concurrency(2),))
        scopes = (model, user, pool)
        route = Route(scopes)
        with self._open() as store:
            assert store.reserve("a", route.claims(Usage(input_tokens=9_000, cost=900))).granted
            self._refuse_without_charge(
                store,
                route,
                {
                    "user": Usage(input_tokens=500, cost=200),  # the budget has 100 left
                    "model": Usage(input_tokens=1_500, cost=10),  # the model has 1,000 tokens
                },
            )
            assert store.reserve("b", route.claims(Usage(input_tokens=10, cost=10))).granted
            self._refuse_without_charge(store, route, {"pool": Usage(input_tokens=10, cost=10)})
            # A refused id is not held: it can be tried again, and is charged then.
            assert not store.settle("no-pool", None)
            assert store.settle("b", None)
            assert store.reserve("no-pool", route.claims(Usage(input_tokens=10, cost=10))).granted
            assert store.used("user", user[1][0]) == 910

    def _refuse_without_charge(
        self, store: _Checked, route: Route, refusals: dict[str, Usage]
    ) -> None:
        """Each usage is refused by a limit of the scope it names, and nothing is charged."""
        scopes = sorted({scope for scope, _, _, _ in route.claims(Usage())})
        limits = {
            scope: [limit for s, limit, _, _ in route.claims(Usage()) if s == scope]
            for scope in scopes
        }
        before = [store.snapshot(scope, limits[scope]) for scope in scopes]
        for scope, usage in refusals.items():
            result = store.reserve(f"no-{scope}", route.claims(usage))
            assert not result.granted, f"admitted past the {scope} limits"
            assert result.binding is not None
            assert result.binding.scope == scope, f"{result.binding} binds, not {scope}"
        after = [store.snapshot(scope, limits[scope]) for scope in scopes]
        assert after == before, f"a refused request charged something: {before} -> {after}"

    def test_the_refusal_names_the_limit_furthest_from_admitting_and_its_slot(self) -> None:
        """The binding limit is the one with the latest slot; the slot is when all admit."""
        limits = (rpm(100), tpm(10_000))
        route = Route([("m", limits)])
        with self._open() as store:
            start = store.clock.now_ns()
            assert store.reserve("a", route.claims(Usage(input_tokens=10_000))).granted
            result = store.reserve("b", route.claims(Usage(input_tokens=5_000)))
            assert result.binding == BoundLimit("m", limits[1])
            # 5,000 tokens refill in 30 s.
            self._slot_is(store, "b", route.claims(Usage(input_tokens=5_000)), start + 30 * S)

    # 4. Idempotency -------------------------------------------------------------------------

    def test_reserving_the_same_id_twice_charges_once(self) -> None:
        """A retried reserve of a held id reports it granted and charges nothing more."""
        limits = (tpm(6_000), daily_quota("tokens", 1_000))
        claims = Route([("m", limits)]).claims(Usage(tokens=600))
        with self._open() as store:
            assert store.reserve("a", claims).granted
            assert store.reserve("a", claims).granted
            assert [s.used for s in store.snapshot("m", limits)] == [600, 600]
            assert store.settle("a", Usage(tokens=600))
            assert [s.used for s in store.snapshot("m", limits)] == [600, 600]

    def test_settle_and_cancel_are_idempotent(self) -> None:
        """The first settle or cancel of a reservation returns True, any later one False."""
        quota = daily_quota("tokens", 1_000)
        route = Route([("u", (quota,))])
        with self._open() as store:
            assert store.reserve("a", route.claims(Usage(tokens=500))).granted
            assert store.reserve("b", route.claims(Usage(tokens=300))).granted
            assert store.settle("a", Usage(tokens=400))
            assert not store.settle("a", Usage(tokens=0))
            assert not store.settle("a", None)
            assert store.settle("b", None)
            assert not store.settle("b", None)
            assert not store.settle("b", Usage(tokens=900))
            assert store.used("u", quota) == 400
            assert not store.settle("never-seen", Usage(tokens=10))
            assert not store.settle("never-seen", None)
            assert not store.renew("never-seen", TTL)
            assert store.used("u", quota) == 400

    # 5. Refunds and debt ----------------------------------------------------------------------

    def test_settling_below_the_estimate_gives_capacity_back_at_once(self) -> None:
        """A full-bucket reservation settled at a quarter frees exactly three quarters now."""
        rate = tpm(6_000)
        quota = daily_quota("tokens", 10_000)
        limits = (rate, quota)
        route = Route([("m", limits)])
        with self._open() as store:
            assert store.reserve("a", route.claims(Usage(tokens=6_000))).granted
            assert store.settle("a", Usage(tokens=1_500))
            assert [(s.used, s.remaining) for s in store.snapshot("m", limits)] == [
                (1_500, 4_500),
                (1_500, 8_500),
            ]
            assert not store.reserve("b", route.claims(Usage(tokens=4_501))).granted
            assert store.reserve("b", route.claims(Usage(tokens=4_500))).granted
            assert store.used("m", quota) == 6_000

    def test_a_refund_never_returns_capacity_that_has_refilled_since(self) -> None:
        """A refund made after a later admission credits only what that admission left over.

        60,000 at t=0; 30,000 more at t=30 s (half had refilled); at t=31 s the first settles
        having used nothing. The provider still holds the second's 30,000 less 1 s of refill:
        29,000 in use, 31,000 free. Crediting the whole refund would free all 60,000.
        """
        rate = tpm(60_000)
        route = Route([("m", (rate,))])
        with self._open() as store:
            assert store.reserve("a", route.claims(Usage(tokens=60_000))).granted
            _advance(store.clock, 30 * S)
            assert store.reserve("b", route.claims(Usage(tokens=30_000))).granted
            _advance(store.clock, 1 * S)
            assert store.settle("a", Usage(tokens=0))
            slack = _units(rate, self.slack_ns)
            used = store.used("m", rate)
            assert 29_000 <= used <= 29_000 + slack, f"{used} in use after the refund"
            assert not store.reserve("c", route.claims(Usage(tokens=31_001))).granted
            assert store.reserve("c", route.claims(Usage(tokens=31_000 - slack))).granted

    def test_cancelling_gives_everything_back(self) -> None:
        """A cancel returns tokens, requests, quota and lease, in every scope."""
        model = ("m", (rpm(10), tpm(6_000)))
        user = ("u", (daily_quota("cost", 1_000), Concurrency(1)))
        route = Route([model, user])
        with self._open() as store:
            assert store.reserve("a", route.claims(Usage(tokens=6_000, cost=1_000))).granted
            assert not store.reserve("b", route.claims(Usage(tokens=1))).granted
            assert store.settle("a", None)
            for scope, limits in (model, user):
                readings = store.snapshot(scope, limits)
                assert [(s.used, s.remaining) for s in readings] == [
                    (0, limit.capacity) for limit in limits
                ], f"{scope} kept something after the cancel: {readings}"
            assert store.reserve("b", route.claims(Usage(tokens=6_000, cost=1_000))).granted

    def test_an_overrun_is_charged_as_debt(self) -> None:
        """Usage above the reservation is charged at settlement and delays later requests."""
        rate = tpm(6_000)  # 100 tokens per second
        quota = daily_quota("tokens", 10_000)
        route = Route([("m", (rate,)), ("u", (quota,))])
        with self._open() as store:
            start = store.clock.now_ns()
            assert store.reserve("a", route.claims(Usage(tokens=1_000))).granted
            assert store.settle("a", Usage(tokens=7_000))  # 1,000 tokens past the capacity
            assert (store.used("m", rate), store.used("u", quota)) == (7_000, 7_000)
            assert store.reading("m", rate).remaining == 0
            # 1,001 tokens must refill before one more fits: 10.01 s.
            self._slot_is(store, "b", route.claims(Usage(tokens=1)), start + 10_010 * MS)
            assert store.settle("b", Usage(tokens=3_500))  # the quota ends above its total
            assert store.used("u", quota) == 10_500
            assert store.reading("u", quota).remaining == 0
            result = store.reserve("c", route.claims(Usage(tokens=1)))
            assert not result.granted
            assert result.binding == BoundLimit("u", quota)

    def test_zero_amounts_never_block_but_their_overruns_count(self) -> None:
        """A claim of nothing passes even in debt; what it then uses is charged."""
        rate, requests = tpm(6_000), rpm(1_000)
        route = Route([("m", (rate, requests))])
        with self._open() as store:
            assert store.reserve("debt", route.claims(Usage(tokens=1_000))).granted
            assert store.settle("debt", Usage(tokens=7_000))
            assert store.reserve("free", route.claims(Usage(tokens=0))).granted
            assert store.settle("free", Usage(tokens=600))
            assert store.used("m", rate) == 7_600
            assert store.used("m", requests) == 2

    # 6. Expiry --------------------------------------------------------------------------------

    def _expiry_ttl(self) -> tuple[int, int]:
        """A reservation TTL and the wait after which an expired reservation must be forgotten."""
        grace = round(self.expiry_grace * S)
        return 2 * grace + 10 * S, grace + 1 * S

    def test_a_reservation_not_settled_within_its_ttl_stands_as_reserved(self) -> None:
        """Past its TTL a reservation is forgotten: no refund, but a late overrun still counts.

        Within one more TTL a late settlement returns False yet charges what it overran; after
        that nothing more is charged, and once a second TTL has passed nothing at all is.
        """
        ttl, grace = self._expiry_ttl()
        quota = daily_quota("tokens", 1_000)
        route = Route([("u", (quota,))])
        tick = Route([("tick", (rpm(1_000),))]).claims(Usage())
        with self._open() as store:
            assert store.reserve("a", route.claims(Usage(tokens=400)), ttl).granted
            assert store.reserve("b", route.claims(Usage(tokens=100)), ttl).granted
            _advance(store.clock, ttl - 1 * S)
            assert store.settle("b", Usage(tokens=50)), "held until its TTL"
            assert store.used("u", quota) == 450
            _advance(store.clock, 1 * S + grace)
            assert store.reserve("tick-1", tick).granted  # a write, to let the store sweep
            assert not store.renew("a", ttl), "renewed past its TTL"
            assert store.used("u", quota) == 450, "an expired reservation must stay charged"
            assert not store.settle("a", Usage(tokens=100)), "settled past its TTL"
            assert store.used("u", quota) == 450, "refunded past its TTL"
            assert not store.settle("a", Usage(tokens=900))
            assert store.used("u", quota) == 450, "settled twice"

            assert store.reserve("c", route.claims(Usage(tokens=100)), ttl).granted
            _advance(store.clock, ttl + grace)
            assert store.reserve("tick-2", tick).granted
            assert not store.settle("c", Usage(tokens=300)), "settled past its TTL"
            assert store.used("u", quota) == 750, "a late overrun must still be charged"
            assert not store.settle("c", Usage(tokens=600))
            assert store.used("u", quota) == 750, "a late overrun charged twice"

            assert store.reserve("d", route.claims(Usage(tokens=100)), ttl).granted
            _advance(store.clock, ttl + grace)
            assert store.reserve("tick-3", tick).granted
            _advance(store.clock, ttl + grace)
            assert store.reserve("tick-4", tick).granted
            assert not store.settle("d", Usage(tokens=200))
            assert store.used("u", quota) == 850, "charged an overrun two TTLs late"

    def test_a_lease_outlives_its_expired_reservation_until_settled(self) -> None:
        """A forgotten reservation's lease runs to its own expiry; a late settle ends it."""
        ttl, grace = self._expiry_ttl()
        pool = Concurrency(1, ttl=(3 * ttl + 10 * S) / S)
        route = Route([("pool", (pool,))])
        tick = Route([("tick", (rpm(1_000),))]).claims(Usage())
        with self._open() as store:
            start = store.clock.now_ns()
            assert store.reserve("a", route.claims(Usage()), ttl).granted
            _advance(store.clock, ttl + grace)
            assert store.reserve("tick", tick).granted
            result = store.reserve("b", route.claims(Usage()))
            assert not result.granted, "a lease ended with its reservation's TTL"
            assert result.slot is not None
            assert abs(result.slot - (start + pool.ttl_ns)) <= self.slack_ns
            assert not store.settle("a", None)
            assert store.reserve("b", route.claims(Usage())).granted, "a late settle kept a lease"

    # 7. Concurrency leases -----------------------------------------------------------------

    def test_leases_in_flight_never_exceed_the_cap(self) -> None:
        """A concurrency limit admits ``limit`` calls; settling or cancelling one frees a slot."""
        pool = Concurrency(2, ttl=60)
        route = Route([("pool", (pool,))])
        claims = route.claims(Usage())
        with self._open() as store:
            start = store.clock.now_ns()
            assert store.reserve("a", claims).granted
            assert store.reserve("b", claims).granted
            result = store.reserve("c", claims)
            assert not result.granted
            assert result.binding == BoundLimit("pool", pool)
            assert result.slot is not None
            assert abs(result.slot - (start + 60 * S)) <= self.slack_ns
            assert (store.used("pool", pool), store.reading("pool", pool).remaining) == (2, 0)
            assert store.settle("a", Usage())
            assert store.reserve("c", claims).granted
            assert not store.reserve("d", claims).granted
            assert store.settle("b", None)
            assert store.reserve("d", claims).granted
            assert store.used("pool", pool) == 2

    def test_a_lease_expires_after_the_limits_ttl(self) -> None:
        """An unrenewed lease frees its slot after the limit's TTL, whatever the reservation's.

        Renewing it then fails, and settling it must not release the lease taken since.
        """
        pool = Concurrency(1, ttl=10)
        route = Route([("pool", (pool,))])
        claims = route.claims(Usage())
        with self._open() as store:
            start = store.clock.now_ns()
            assert store.reserve("a", claims).granted
            _advance(store.clock, 5 * S)
            self._slot_is(store, "b", claims, start + 10 * S)
            assert not store.renew("a", TTL), "renewed an expired lease"
            store.settle("a", Usage())
            assert not store.reserve("c", claims).granted, "settling a released b's lease"
            assert store.used("pool", pool) == 1

    def test_renewing_extends_the_lease_by_the_limits_ttl(self) -> None:
        """``renew`` extends a lease to now + the limit's TTL; after it lapses, renew fails."""
        pool = Concurrency(1, ttl=10)
        route = Route([("pool", (pool,))])
        claims = route.claims(Usage())
        with self._open() as store:
            start = store.clock.now_ns()
            assert store.reserve("a", claims, 30 * S).granted
            _advance(store.clock, 8 * S)
            assert store.renew("a", 30 * S)
            _advance(store.clock, 4 * S)
            self._slot_is(store, "b", claims, start + 18 * S)  # 8 s + the lease's 10 s
            assert not store.renew("a", 30 * S), "renewed a lease that had expired"
            assert store.settle("b", None)
            assert store.used("pool", pool) == 0

    def test_renewing_extends_the_reservation_until_its_ttl_lapses(self) -> None:
        """``renew`` moves a reservation's expiry to now + ttl; once it has passed, renew fails."""
        route = Route([("m", (tpm(6_000),))])
        with self._open() as store:
            assert store.reserve("a", route.claims(Usage(tokens=10)), 5 * S).granted
            _advance(store.clock, 4 * S)
            assert store.renew("a", 5 * S)
            _advance(store.clock, 4 * S)  # past the first TTL, within the renewed one
            assert store.renew("a", 5 * S)
            _advance(store.clock, 6 * S)
            assert not store.renew("a", 5 * S), "renewed past its TTL"

    # 8. Calendar quotas -----------------------------------------------------------------------

    def test_a_daily_quota_resets_at_local_midnight_across_daylight_saving_changes(self) -> None:
        """Usage resets at midnight in the quota's zone; DST days last 23 and 25 hours.

        Yesterday's refunds credit nothing today; yesterday's overruns are charged today.
        """
        cases = (
            ("2026-03-29T10:00:00Z", (2026, 3, 29), (2026, 3, 30), (2026, 3, 31), 23),
            ("2026-10-25T10:00:00Z", (2026, 10, 25), (2026, 10, 26), (2026, 10, 27), 25),
        )
        zone = "Europe/Paris"
        quota = daily_quota("requests", 2, timezone=zone)
        route = Route([("u", (quota,))])
        for start, today, tomorrow, after, hours in cases:
            midnight = _midnight(*tomorrow, zone)
            assert midnight - _midnight(*today, zone) == hours * HOUR  # the test's own premise
            with self._open(start) as store:
                assert store.reserve("a", route.claims(Usage())).granted
                assert store.reserve("b", route.claims(Usage())).granted
                reading = store.reading("u", quota)
                assert (reading.used, reading.remaining) == (2, 0)
                resets = midnight - store.clock.now_ns()
                assert abs(reading.resets_in_ns - resets) <= self.slack_ns, (
                    f"resets in {reading.resets_in_ns} ns, not at midnight in {zone}"
                )
                self._slot_is(store, "c", route.claims(Usage()), midnight)
                reading = store.reading("u", quota)
                assert (reading.used, reading.remaining) == (1, 1)
                assert abs(reading.resets_in_ns - (_midnight(*after, zone) - midnight)) <= (
                    self.slack_ns
                )
                assert store.settle("a", None)  # yesterday's: refunds nothing today
                assert store.used("u", quota) == 1
                assert store.settle("b", Usage(requests=3))  # yesterday's overrun: today's
                assert store.used("u", quota) == 3

    def test_a_monthly_quota_resets_on_the_first(self) -> None:
        """A monthly quota spans the calendar month in its zone."""
        zone = "America/Los_Angeles"
        quota = Quota(Metric.COST, 100, QuotaPeriod.MONTH, timezone=zone)
        route = Route([("u", (quota,))])
        with self._open("2026-02-28T12:00:00Z") as store:
            assert store.reserve("a", route.claims(Usage(cost=100))).granted
            self._slot_is(store, "b", route.claims(Usage(cost=1)), _midnight(2026, 3, 1, zone))
            reading = store.reading("u", quota)
            assert (reading.used, reading.remaining) == (1, 99)
            expected = _midnight(2026, 4, 1, zone) - _midnight(2026, 3, 1, zone)
            assert abs(reading.resets_in_ns - expected) <= self.slack_ns

    # 9. Reconfiguration -------------------------------------------------------------------

    def test_changing_a_limits_numbers_keeps_its_recorded_usage(self) -> None:
        """A limit with the same key but new numbers applies to the usage already recorded."""
        with self._open() as store:
            small, big = tpm(10_000), tpm(20_000)
            assert store.reserve("a", Route([("m", (small,))]).claims(Usage(tokens=8_000))).granted
            assert [store.reading("m", big).used, store.reading("m", big).remaining] == [
                8_000,
                12_000,
            ]
            bigger = Route([("m", (big,))])
            assert not store.reserve("b", bigger.claims(Usage(tokens=12_001))).granted
            assert store.reserve("b", bigger.claims(Usage(tokens=12_000))).granted
            assert store.used("m", big) == 20_000

            budget, raised = daily_quota("cost", 1_000), daily_quota("cost", 2_000)
            assert store.reserve("c", Route([("u", (budget,))]).claims(Usage(cost=800))).granted
            more = Route([("u", (raised,))])
            assert not store.reserve("d", more.claims(Usage(cost=1_201))).granted
            assert store.reserve("d", more.claims(Usage(cost=1_200))).granted
            assert (store.used("u", budget), store.reading("u", budget).remaining) == (2_000, 0)

            two, one, three = Concurrency(2), Concurrency(1), Concurrency(3)
            assert store.reserve("e", Route([("p", (two,))]).claims(Usage())).granted
            assert store.reserve("f", Route([("p", (two,))]).claims(Usage())).granted
            assert not store.reserve("g", Route([("p", (one,))]).claims(Usage())).granted
            assert store.reserve("g", Route([("p", (three,))]).claims(Usage())).granted
            assert store.used("p", three) == 3

    # 10. Snapshots ----------------------------------------------------------------------------

    def test_a_snapshot_of_an_unknown_scope_shows_full_capacity(self) -> None:
        """Limits never used read as empty: nothing used, everything remaining."""
        zone = "Europe/Paris"
        limits = (tpm(6_000), daily_quota("tokens", 1_000, timezone=zone), Concurrency(3))
        with self._open("2026-03-29T10:00:00Z") as store:
            rate, quota, pool = store.snapshot("never-seen", limits)
            assert (rate.used, rate.remaining, rate.resets_in_ns) == (0, 6_000, 0)
            assert (quota.used, quota.remaining) == (0, 1_000)
            resets = _midnight(2026, 3, 30, zone) - store.clock.now_ns()
            assert abs(quota.resets_in_ns - resets) <= self.slack_ns
            assert (pool.used, pool.remaining, pool.resets_in_ns) == (0, 3, 0)

    def test_snapshots_report_usage_after_operations_and_change_nothing(self) -> None:
        """Readings follow reservations, refills, refunds and leases; reading changes nothing."""
        rate, quota, pool = tpm(6_000), daily_quota("tokens", 10_000), Concurrency(3, ttl=60)
        limits = (rate, quota, pool)
        route = Route([("s", limits)])
        slack = _units(rate, self.slack_ns)
        with self._open() as store:
            start = store.clock.now_ns()
            assert store.reserve("a", route.claims(Usage(tokens=3_000))).granted
            _advance(store.clock, 10 * S)
            assert store.reserve("b", route.claims(Usage(tokens=1_200))).granted
            # 3,000 less 10 s of refill (1,000), plus 1,200: the bucket is full again in 32 s.
            readings = store.snapshot("s", limits)
            assert store.snapshot("s", limits) == readings, "a snapshot changed something"
            bucket, spent, leases = readings
            assert 3_200 <= bucket.used <= 3_200 + slack
            assert bucket.remaining == 6_000 - bucket.used
            assert abs(bucket.resets_in_ns - 32 * S) <= self.slack_ns
            assert (spent.used, spent.remaining) == (4_200, 5_800)
            assert abs(spent.resets_in_ns - (DAY - 10 * S)) <= self.slack_ns
            assert (leases.used, leases.remaining) == (2, 1)
            assert abs(leases.resets_in_ns - 60 * S) <= self.slack_ns  # b's lease, taken at 10 s

            _advance(store.clock, 5 * S)
            assert store.settle("a", Usage(tokens=1_000))
            # b still holds its 1,200 less 5 s of refill: the bucket is full at 22 s.
            bucket, spent, leases = store.snapshot("s", limits)
            assert 700 <= bucket.used <= 700 + slack
            assert abs(bucket.resets_in_ns - 7 * S) <= self.slack_ns
            assert (spent.used, spent.remaining) == (2_200, 7_800)
            assert (leases.used, leases.remaining) == (1, 2)
            assert abs(leases.resets_in_ns - (start + 70 * S - store.clock.now_ns())) <= (
                self.slack_ns
            )

    # 11. Async --------------------------------------------------------------------------------

    def _run_async(
        self, body: Callable[[AsyncStore, FakeClock], Coroutine[Any, Any, None]]
    ) -> None:
        if not self.async_store:
            pytest.skip("async tests are disabled (async_store = False)")

        async def main() -> None:
            clock = FakeClock()
            store = self.make_async_store(clock)
            try:
                await body(store, clock)
            finally:
                await store.aclose()

        asyncio.run(main())

    def test_async_methods_follow_the_same_rules(self) -> None:
        """areserve, asettle, arenew and asnapshot behave as their sync counterparts."""
        rate, quota, pool = tpm(6_000), daily_quota("tokens", 100_000), Concurrency(1, ttl=10)
        route = Route([("m", (rate,)), ("u", (quota, pool))])

        async def body(store: AsyncStore, clock: FakeClock) -> None:
            now = clock.now_ns()
            full = route.claims(Usage(tokens=6_000))
            result = await store.areserve("a", full, TTL)
            _check_result(result, full, now, self.slack_ns)
            assert result.granted
            assert (await store.areserve("a", full, TTL)).granted  # idempotent
            result = await store.areserve("b", full, TTL)
            _check_result(result, full, now, self.slack_ns)
            assert not result.granted
            assert result.binding == BoundLimit("m", rate)
            assert result.slot is not None
            assert abs(result.slot - (now + 60 * S)) <= self.slack_ns
            assert await store.arenew("a", TTL)
            assert await store.asettle("a", Usage(tokens=1_500))
            assert not await store.asettle("a", None)
            assert not await store.asettle("never-seen", None)
            assert not await store.arenew("never-seen", TTL)
            at, readings = await store.asnapshot("m", (rate,))
            assert now - self.slack_ns <= at <= now
            assert [(s.used, s.remaining) for s in readings] == [(1_500, 4_500)]
            _, readings = await store.asnapshot("u", (quota, pool))
            assert [(s.used, s.remaining) for s in readings] == [(1_500, 98_500), (0, 1)]
            assert not (await store.areserve("c", route.claims(Usage(tokens=4_501)), TTL)).granted
            assert (await store.areserve("c", route.claims(Usage(tokens=4_500)), TTL)).granted

        self._run_async(body)

    def test_async_reservations_in_parallel_never_exceed_the_capacity(self) -> None:
        """Many concurrent areserve calls admit exactly the capacity when demand exceeds it."""
        rate = Rate(Metric.REQUESTS, 40, 60)
        claims = Route([("m", (rate,))]).claims(Usage())

        async def body(store: AsyncStore, _clock: FakeClock) -> None:
            results = await asyncio.gather(
                *(store.areserve(f"a{i}", claims, TTL) for i in range(100))
            )
            assert sum(result.granted for result in results) == 40
            _, (reading,) = await store.asnapshot("m", (rate,))
            assert reading.used == 40

        self._run_async(body)

    # 12. Threads ------------------------------------------------------------------------------

    def _in_threads(self, work: Callable[[int], int]) -> int:
        """Run ``work(thread)`` in ``threads`` threads released together; sum the results."""
        barrier = threading.Barrier(self.threads)

        def start(thread: int) -> int:
            barrier.wait(timeout=30)
            return work(thread)

        with ThreadPoolExecutor(self.threads) as pool:
            return sum(pool.map(start, range(self.threads)))

    def test_threads_never_admit_more_than_the_capacity(self) -> None:
        """Threads reserving at one instant are admitted exactly the capacity, never more."""
        cases: tuple[tuple[str, Limit], ...] = (
            ("rate", Rate(Metric.REQUESTS, 40, 60)),
            ("quota", daily_quota("requests", 40)),
            ("pool", Concurrency(40)),
        )
        attempts = 100 // self.threads + 1
        for scope, limit in cases:
            claims = Route([(scope, (limit,))]).claims(Usage())
            with self._open() as store:

                def work(thread: int, store: _Checked = store, claims: list[Claim] = claims) -> int:
                    return sum(
                        store.store.reserve(f"t{thread}-{i}", claims, TTL).granted
                        for i in range(attempts)
                    )

                granted = self._in_threads(work)
                assert granted == 40, f"{limit}: {granted} admitted"
                assert store.used(scope, limit) == 40

    def test_threads_settling_concurrently_keep_exact_accounts(self) -> None:
        """Concurrent reserves and settlements: usage is exactly the sum of what was settled."""
        quota = daily_quota("tokens", 1_000)
        route = Route([("u", (quota,))])
        with self._open() as store:

            def work(thread: int) -> int:
                kept = 0
                for i in range(25):
                    amount = (thread * 37 + i * 11) % 97 + 1
                    rid = f"t{thread}-{i}"
                    claims = route.claims(Usage(tokens=amount))
                    if store.store.reserve(rid, claims, TTL).granted:
                        actual = amount // 2 if i % 2 else amount
                        if not store.store.settle(rid, Usage(tokens=actual)):
                            return -(10**9)  # a held reservation was lost
                        kept += actual
                return kept

            kept = self._in_threads(work)
            assert 0 < kept <= 1_000
            assert store.used("u", quota) == kept
