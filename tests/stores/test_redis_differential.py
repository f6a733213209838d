"""RedisStore against MemoryStore on busy buckets with many reservations in flight.

The Lua script ports the exact engine of ``quotaflow.core`` to doubles and whole microseconds;
the only differences it may show are rounding against the caller. Both stores run the same
random history at the same times (two FakeClocks moved together, by whole microseconds, so
that Redis's truncation of time never matters), with up to 60 reservations held at once so
that held marks spill out of the bucket's inline list into the sorted set beside it and the
stack of refund bounds is compacted. After every step:

- whatever Redis grants, MemoryStore grants too, and a refusal names a slot no earlier than
  MemoryStore's (Redis may only be more conservative);
- Redis's bucket is never emptier than MemoryStore's (``resets_in`` and ``used`` no lower),
  and no fuller than a few microseconds of refill per operation allow: refunds are not lost;
- settle and renew answer alike (idempotency, expiry, tombstones), and quotas and leases
  read alike;

and at the end every admission Redis made is replayed through the provider's exact token
bucket (fractions), which must have held room for it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quotaflow import Usage, daily_quota
from quotaflow.core import NS_PER_SECOND, Concurrency, Limit, LimitSnapshot, Rate, Route
from quotaflow.stores import MemoryStore, RedisStore
from quotaflow.testing import FakeClock

US: Final = 1_000  # ns
MS: Final = 1_000_000  # ns

#: Time, in ns, that Redis may fall behind MemoryStore per operation: up to a microsecond of
#: rounding up on each admission, one of rounding down on each refund, and the +1 µs margin
#: of a refund floor.
DRIFT_NS: Final = 3 * US

#: Busy buckets: the rate, the most one reservation asks for (about a hundred reservations
#: fill the bucket, so that the stack of refund bounds outgrows 64 + the reservations held)
#: and a limit of the same key that a history may switch to and back.
RATES: Final[tuple[tuple[Rate, int, Rate], ...]] = (
    # One unit a millisecond: every interval is a whole number of microseconds.
    (Rate("tokens", 1_000, 1), 16, Rate("tokens", 2_000, 1, burst=0.5)),
    # 1.003009... ms a unit: intervals round, in microseconds and in nanoseconds.
    (Rate("tokens", 997, 1), 16, Rate("tokens", 991, 1, burst=1.5)),
    # A minute's TPM, half of it at once: 1.2 ms a unit.
    (Rate("tokens", 50_000, 60, burst=0.5), 400, Rate("tokens", 40_000, 60)),
    # 7 requests per 10 ms, 700 at once: 1428.571... us a unit.
    (Rate("requests", 7, 0.01, burst=100), 12, Rate("requests", 9, 0.01, burst=80)),
)

#: Reservation TTLs: the short ones expire within a history, the long one never does.
TTLS_NS: Final = (40 * MS, 150 * MS, 600 * MS, 3_600 * NS_PER_SECOND)

MAX_HELD: Final = 60  # live reservations at once, at most
SLACK: Final = 64  # stack entries the script keeps beyond one per held reservation

Step = tuple[str, int, int]

_PICK = st.integers(0, 10**6)
_PER_MILLE = st.sampled_from([0, 1, 500, 999, 1_000, 1_001, 1_500]) | st.integers(0, 1_500)
_TTL = st.integers(0, len(TTLS_NS) - 1)

#: ``(kind, a, b)``. reserve: ``a`` per mille of the largest amount, ``b`` a TTL index; burst:
#: ``a`` reservations at one instant, ``b`` per mille; churn: the same, each settled at once as
#: estimated (the stack grows, the marks held do not); settle: ``a`` picks a reservation (held
#: mostly, else any id tried), ``b`` per mille of it used; cancel, renew: ``a`` picks; wait:
#: ``a`` µs; long: ``a`` ms; reconfigure: switch the rate to its alternative (or back).
STEP: Final = st.one_of(
    st.tuples(st.just("reserve"), st.integers(0, 1_000), _TTL),
    st.tuples(st.just("reserve"), st.integers(0, 1_000), _TTL),
    st.tuples(st.just("burst"), st.integers(2, 40), st.integers(0, 1_000)),
    st.tuples(st.just("churn"), st.integers(5, 60), st.integers(0, 1_000)),
    st.tuples(st.just("settle"), _PICK, _PER_MILLE),
    st.tuples(st.just("settle"), _PICK, _PER_MILLE),
    st.tuples(st.just("cancel"), _PICK, st.just(0)),
    st.tuples(st.just("renew"), _PICK, st.just(0)),
    st.tuples(st.just("wait"), st.integers(1, 30_000), st.just(0)),
    st.tuples(st.just("wait"), st.integers(1, 2_000), st.just(0)),
    st.tuples(st.just("long"), st.integers(50, 1_500), st.just(0)),
    st.tuples(st.just("reconfigure"), st.just(0), st.just(0)),
)


def histories(max_steps: int) -> st.SearchStrategy[list[Step]]:
    """Histories of up to ``max_steps`` steps, the length uniform (not skewed short)."""
    return st.integers(0, max_steps).flatmap(
        lambda size: st.lists(STEP, min_size=size, max_size=size)
    )


@dataclass
class Call:
    """One reservation both stores admitted, as the provider sees it."""

    start: int
    order: int
    reserved: int
    ttl: int
    expiry: int
    used: int | None = None  # None: never settled while live (it counts as reserved)
    debt: tuple[int, int, int] | None = None  # (time, order, units) of an overrun charged
    done: bool = False  # settled or cancelled: its record is gone


@dataclass
class Stats:
    """What a history exercised (read from Redis's state after every step)."""

    max_held: int = 0
    max_stack: int = 0
    spilled: bool = False
    compacted: bool = False
    realigned: int = 0  # grants MemoryStore cancelled to follow a refusal by Redis
    max_lag_ns: int = 0  # most Redis's bucket was behind MemoryStore's
    max_lag_per_op_ns: float = 0.0


#: A read-only look at the bucket: its stack entries, the marks held inline, then each mark
#: held (inline, then in the sorted set) as its reservation's id and expiry (µs).
_INSPECT: Final = """
local raw = redis.call('GET', KEYS[1])
if not raw then return {0, 0} end
local st = cmsgpack.unpack(raw)
local I = st.I or {}
local reply = {#st.A, #I / 3}
for j = 1, #I, 3 do
  reply[#reply + 1], reply[#reply + 2] = I[j + 2], I[j + 1]
end
if st.z then
  local held = redis.call('ZRANGE', string.format('%s|h|%d', KEYS[1], st.b), 0, -1, 'WITHSCORES')
  for j = 1, #held, 2 do
    reply[#reply + 1], reply[#reply + 2] = string.match(held[j], '^%d+:(.*)$'), held[j + 1]
  end
end
return reply
"""


class Differential:
    """One history on both stores; the module docstring says what is checked."""

    def __init__(
        self,
        url: str,
        client: redis.Redis,
        rate: Rate,
        largest: int,
        alternative: Rate,
        extras: list[Limit],
    ) -> None:
        self.clock = FakeClock()
        self.reference_clock = FakeClock()
        self.namespace = f"differential-{uuid.uuid4().hex}"
        self.redis = RedisStore(url, namespace=self.namespace, clock=self.clock)
        # No periodic sweep: expire() forgets expired reservations exactly on time, and idle
        # scopes stay (Redis keeps an idle bucket for a minute).
        self.memory = MemoryStore(clock=self.reference_clock, sweep_interval=10**7)
        self.client = client
        self.original = self.rate = rate
        self.largest = largest
        self.alternative = alternative
        self.extras = extras
        units = [limit.period_ns / limit.refill for limit in (rate, alternative)]
        self.ratio = max(units) / min(units)
        self.reconfigures = 0
        self.ops = 0  # operations that may each round against the caller
        self.order = 0
        self.calls: dict[str, Call] = {}  # admitted by both
        self.tried: list[str] = []  # every id tried
        self.held: list[str] = []  # admitted, neither settled nor cancelled (maybe expired)
        self.stats = Stats()
        self.stack = 0
        self.marks = 0

    def close(self) -> None:
        self.redis.close()
        self.memory.close()

    @property
    def limits(self) -> list[Limit]:
        return [self.rate, *self.extras]

    @property
    def now(self) -> int:
        return self.clock.now_ns()

    @property
    def tolerance(self) -> int:
        """How far, in ns, Redis's bucket may be behind MemoryStore's by now.

        ``DRIFT_NS`` per operation. A reconfiguration re-expresses the units in the bucket under
        the new limit rounded up to a whole unit (both stores do), so that a microsecond behind
        can become a unit; and the time of what is behind scales with the refill.
        """
        drift = DRIFT_NS * (self.ops + 1) * (self.ratio if self.reconfigures else 1)
        return int(drift) + self.reconfigures * self.rate.interval_ns(1)

    # Steps -------------------------------------------------------------------------------------

    def run(self, steps: Sequence[Step]) -> None:
        for kind, a, b in steps:
            self.order += 1
            self.expire()
            if kind in {"reserve", "burst", "churn"}:
                self.admissions(kind, a, b)
            elif kind in {"wait", "long"}:
                self.advance(a * (US if kind == "wait" else MS))
            elif kind == "reconfigure":
                self.reconfigures += 1
                self.rate = self.alternative if self.rate is self.original else self.original
            else:
                rid = self.pick(a)
                if rid is not None:
                    self.later(kind, rid, b)
            self.compare()

    def admissions(self, kind: str, a: int, b: int) -> None:
        if kind == "reserve":
            self.reserve(a * self.largest // 1_000, TTLS_NS[b])
            return
        for _ in range(a):
            rid = self.reserve(max(1, b * self.largest // 1_000), TTLS_NS[-1])
            if kind == "churn" and rid is not None:
                self.later("settle", rid, 1_000)
                self.inspect()

    def advance(self, ns: int) -> None:
        for clock in (self.clock, self.reference_clock):
            target = clock.now_ns() + ns
            clock.advance(ns / NS_PER_SECOND)
            assert clock.now_ns() == target

    def expire(self) -> None:
        """Have MemoryStore forget expired reservations and tombstones exactly on time.

        As Redis does: its records carry their expiry. ``Engine.sweep`` would also drop idle
        scopes, and then charge a late overrun to a fresh state under the limit the reservation
        was made with, which the next reconfiguration rounds up by a unit.
        """
        engine = self.memory._engine
        now = self.reference_clock.now_ns()
        for rid in [rid for rid, record in engine._records.items() if record[1] <= now]:
            engine._forget(rid, engine._records.pop(rid))
        for rid in [rid for rid, (_, until) in engine._expired.items() if until <= now]:
            del engine._expired[rid]

    def pick(self, a: int) -> str | None:
        if a % 4 and self.held:
            return self.held[(a // 4) % len(self.held)]
        return self.tried[(a // 4) % len(self.tried)] if self.tried else None

    def reserve(self, amount: int, ttl: int) -> str | None:
        """Reserve ``amount`` on both stores; return the id if both hold it."""
        now = self.now
        if sum(self.calls[rid].expiry > now for rid in self.held) >= MAX_HELD:
            return None
        rid = f"r{len(self.tried)}"
        self.tried.append(rid)
        claims = Route([("s", self.limits)]).claims(Usage(tokens=amount, requests=amount))
        self.ops += 1
        mine = self.redis.reserve(rid, claims, ttl)
        theirs = self.memory.reserve(rid, claims, ttl)
        assert mine.now == theirs.now == now
        assert mine.slot is not None
        assert theirs.slot is not None
        if mine.granted and not theirs.granted:
            # MemoryStore may be behind only by the nanoseconds its realignments cost it.
            assert theirs.slot - now <= self.stats.realigned, (
                f"Redis admitted {rid} ({amount}) at {now}; MemoryStore refuses it for "
                f"{theirs.slot - now} ns: Redis admits more than the exact engine"
            )
            assert self.redis.settle(rid, None)
            return None
        if theirs.granted and not mine.granted:
            assert mine.slot - now <= self.tolerance, (
                f"Redis refused {rid} ({amount}) for {mine.slot - now} ns; MemoryStore admits "
                f"it now (rounding allows {self.tolerance} ns)"
            )
            assert self.memory.settle(rid, None)  # as if it had refused too
            self.stats.realigned += 1
            return None
        if not mine.granted:
            assert theirs.slot - self.stats.realigned <= mine.slot, (
                f"Redis names the slot {mine.slot}, before MemoryStore's {theirs.slot}"
            )
            assert mine.slot <= theirs.slot + self.tolerance, (
                f"Redis's slot is {mine.slot - theirs.slot} ns after MemoryStore's "
                f"(rounding allows {self.tolerance} ns)"
            )
            return None
        self.calls[rid] = Call(now, self.order, amount, ttl, now + ttl)
        self.held.append(rid)
        self.inspect()
        return rid

    def later(self, kind: str, rid: str, per_mille: int) -> None:
        """Settle, cancel or renew ``rid`` (held, expired, settled or never granted) on both."""
        now = self.now
        self.ops += 1
        call = self.calls.get(rid)
        if kind == "renew":
            ttl = TTLS_NS[0] if call is None else call.ttl  # the same TTL: the same tombstone
            mine, theirs = self.redis.renew(rid, ttl), self.memory.renew(rid, ttl)
            assert mine == theirs, f"renew {rid} at {now}: Redis {mine}, MemoryStore {theirs}"
            if call is not None and mine:
                call.expiry = now + ttl
            return
        reserved = self.largest if call is None else call.reserved
        actual = None if kind == "cancel" else per_mille * reserved // 1_000
        usage = None if actual is None else Usage(tokens=actual, requests=actual)
        mine, theirs = self.redis.settle(rid, usage), self.memory.settle(rid, usage)
        assert mine == theirs, f"{kind} {rid} at {now}: Redis {mine}, MemoryStore {theirs}"
        if call is None:
            return
        if rid in self.held:
            self.held.remove(rid)
        spent = actual or 0
        if mine:
            assert not call.done
            assert now < call.expiry, f"{rid} settled at {now}, after its expiry {call.expiry}"
            call.used = spent
        if not call.done and now < call.expiry + call.ttl and spent > call.reserved:
            # Charged while held, or late (within the tombstone window): an overrun is real.
            call.debt = (now, self.order, spent - call.reserved)
        call.done = True

    # Checks ------------------------------------------------------------------------------------

    def compare(self) -> None:
        limits = self.limits
        _, mine = self.redis.snapshot("s", limits)
        _, theirs = self.memory.snapshot("s", limits)
        for reading, expected in zip(mine, theirs, strict=True):
            if isinstance(expected.limit, Rate):
                self.compare_rate(reading, expected)
            else:
                assert reading.used == expected.used, f"{expected.limit}: {reading} != {expected}"
        self.inspect()

    def compare_rate(self, mine: LimitSnapshot, theirs: LimitSnapshot) -> None:
        rate = self.rate
        slack = self.stats.realigned  # ns MemoryStore may be behind after realignments
        lag = mine.resets_in_ns - theirs.resets_in_ns
        assert lag >= -slack, (
            f"{rate}: Redis's bucket refills {-lag} ns before MemoryStore's: it holds less "
            f"than the exact engine ({mine.used} used, MemoryStore {theirs.used})"
        )
        assert mine.used >= theirs.used - (1 if slack else 0), (
            f"{rate}: Redis reports {mine.used} used, MemoryStore {theirs.used}"
        )
        tolerance = self.tolerance
        assert lag <= tolerance, (
            f"{rate}: Redis's bucket is {lag} ns ({mine.used} used) behind MemoryStore's "
            f"({theirs.used} used) after {self.ops} operations: refunds lost "
            f"(rounding allows {tolerance} ns)"
        )
        units = -(-tolerance * rate.refill // rate.period_ns)
        assert mine.used - theirs.used <= units + 1, (
            f"{rate}: Redis reports {mine.used} used, MemoryStore {theirs.used} "
            f"(rounding allows {units + 1})"
        )
        stats = self.stats
        stats.max_lag_ns = max(stats.max_lag_ns, lag)
        stats.max_lag_per_op_ns = max(stats.max_lag_per_op_ns, lag / (self.ops + 1))

    def inspect(self) -> None:
        """Check the marks Redis holds for refunds, and note what the history exercised."""
        key = f"qf:{{{self.namespace}}}:s|{self.rate.key}|s"
        stack, inline, *flat = self.client.eval(_INSPECT, 1, key)
        marks = {flat[i].decode(): int(flat[i + 1]) * US for i in range(0, len(flat), 2)}
        assert len(marks) == len(flat) // 2, "a reservation holds two marks"
        assert inline <= 8, "more marks inline than the script's INLINE"
        now = self.now
        for rid, expiry in marks.items():
            call = self.calls.get(rid)
            # A mark is released when its reservation is settled while held...
            assert call is not None, f"{rid} holds a mark, but Redis does not hold it"
            assert call.used is None, f"{rid} was settled, but its mark was not released"
            # ... and follows its renewals while the reservation is live.
            assert call.expiry <= now or expiry >= call.expiry, (
                f"{rid} is held until {call.expiry}, its mark only until {expiry}"
            )
        stats = self.stats
        stats.max_held = max(stats.max_held, len(self.held))
        stats.max_stack = max(stats.max_stack, stack)
        stats.spilled = stats.spilled or len(marks) > inline
        # An admission that found more entries than 64 + the marks held compacted the stack
        # to one entry per mark at most, and its own.
        if self.stack + 1 > SLACK + self.marks and 0 < stack <= self.marks + 1:
            stats.compacted = True
        self.stack, self.marks = stack, len(marks)

    def check_guarantee(self) -> None:
        """Replay Redis's admissions through the provider's exact bucket (one limit only)."""
        if self.reconfigures:
            return  # the provider's bucket is not defined across a change of its limit
        rate = self.original
        refill = Fraction(rate.refill, rate.period_ns)
        capacity = Fraction(rate.capacity)
        events: list[tuple[int, int, int, int]] = []
        for call in self.calls.values():
            used = call.reserved if call.used is None else call.used
            events.append((call.start, call.order, min(used, call.reserved), 0))
            if call.debt is not None:
                events.append((*call.debt[:2], 0, call.debt[2]))
        level, last = capacity, None
        for time, _, admitted, debt in sorted(events):
            if last is not None:
                level = min(capacity, level + refill * (time - last))
            last = time
            assert admitted == 0 or level >= admitted, (
                f"{rate}: Redis admitted {admitted} at {time} when the provider's bucket held "
                f"{float(level):.6f}"
            )
            level -= admitted + debt


@pytest.fixture(scope="module")
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as connection:
        yield connection


def run_history(
    url: str, client: redis.Redis, choice: int, extras: int, steps: Sequence[Step]
) -> Stats:
    """Run ``steps`` on both stores with ``RATES[choice]``, and check everything.

    ``extras`` is a bit set: 1 adds a concurrency limit whose leases expire within a history,
    2 a daily quota, 4 lets ``reconfigure`` steps switch the rate.
    """
    rate, largest, alternative = RATES[choice]
    more: list[Limit] = []
    if extras & 1:
        more.append(Concurrency(45, ttl=0.5))
    if extras & 2:
        more.append(daily_quota(rate.metric, 400 * largest))
    if not extras & 4:
        steps = [step for step in steps if step[0] != "reconfigure"]
    run = Differential(url, client, rate, largest, alternative, more)
    try:
        run.run(steps)
        run.check_guarantee()
    finally:
        run.close()
    return run.stats


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(choice=st.integers(0, len(RATES) - 1), extras=st.integers(0, 7), steps=histories(120))
def test_redis_agrees_with_memory_store_on_busy_buckets(
    redis_url: str, client: redis.Redis, choice: int, extras: int, steps: list[Step]
) -> None:
    run_history(redis_url, client, choice, extras, steps)


@pytest.mark.parametrize("choice", range(len(RATES)))
def test_spill_and_compaction_paths_run_and_agree(
    redis_url: str, client: redis.Redis, choice: int
) -> None:
    """A fixed history that surely spills held marks and compacts the stack, then refunds."""
    one = -(-1_000 // RATES[choice][1])  # per mille of the largest amount that makes 1 unit
    steps: list[Step] = []
    for _ in range(3):
        # Units at one instant: each admission adds an entry to the stack. Settling most of
        # them as estimated (no refund) releases their marks but keeps the entries.
        steps += [("burst", 60, one)]
        steps += [("settle", 4 * k + 1, 1_000) for k in range(50)]
    steps += [("wait", 700, 0), ("burst", 30, 3 * one), ("wait", 300, 0)]
    # Refunds (below the estimate, cancels) and overruns against the compacted stack.
    steps += [("settle", 4 * k + 1, (0, 400, 999, 1_000, 1_300)[k % 5]) for k in range(20)]
    steps += [("cancel", 4 * k + 2, 0) for k in range(10)]
    steps += [("renew", 4 * k + 3, 0) for k in range(10)]
    steps += [("reserve", 1_000, 3)] * 10 + [("wait", 2_000, 0)]
    steps += [("settle", 4 * k + 1, k * 97 % 1_500) for k in range(60)]
    stats = run_history(redis_url, client, choice, 0, steps)
    assert stats.max_held >= 40, stats
    assert stats.spilled, stats
    assert stats.compacted, stats


def test_expired_marks_in_the_sorted_set_are_dropped_and_refunds_still_agree(
    redis_url: str, client: redis.Redis
) -> None:
    """Short reservations spill, expire unsettled and are settled late (tombstones)."""
    steps: list[Step] = [("reserve", 300, 0)] * 30  # TTL 40 ms
    steps += [("reserve", 300, 3)] * 30  # TTL an hour
    steps += [("wait", 30_000, 0), ("renew", 1, 0), ("renew", 5, 0), ("wait", 15_000, 0)]
    steps += [("reserve", 300, 3)] * 20
    steps += [("settle", 4 * k, 1_200) for k in range(30)]  # the expired ones: overruns only
    steps += [("settle", 4 * k + 1, 200) for k in range(40)]
    stats = run_history(redis_url, client, 0, 1, steps)
    assert stats.spilled, stats


def test_renewed_reservations_keep_their_refund_bounds_through_compaction(
    redis_url: str, client: redis.Redis
) -> None:
    """Reservations renewed past their first TTL, one inline and one in the sorted set.

    Compaction keeps only the stack entries that live reservations ask for: a mark that
    expired at the first TTL would lose the entry right after it, and the refund would then
    credit the units that refilled between it and the next admission.
    """
    steps: list[Step] = [("reserve", 1_000, 0)]  # A (r0, TTL 40 ms): inline
    steps += [("reserve", 63, 3)] * 8  # the inline list is full
    steps += [("reserve", 1_000, 0)]  # B (r9, TTL 40 ms): in the sorted set
    steps += [("wait", 5_000, 0), ("burst", 40, 1_000), ("churn", 60, 63), ("wait", 25_000, 0)]
    steps += [("renew", 1, 0), ("renew", 4 * 9 + 1, 0)]  # A and B, until 70 ms
    steps += [("wait", 20_000, 0), ("churn", 100, 63)]  # past 40 ms: compaction
    steps += [("cancel", 2, 0), ("cancel", 4 * 8 + 2, 0)]  # A, then B
    stats = run_history(redis_url, client, 0, 0, steps)
    assert stats.spilled, stats
    assert stats.compacted, stats


@pytest.mark.parametrize("gap_us", [1_700, 15_500])
@pytest.mark.parametrize("choice", range(len(RATES)))
def test_refunds_in_every_order_against_a_staircase(
    redis_url: str, client: redis.Redis, choice: int, gap_us: int
) -> None:
    """Admissions spread out in time, so that refills between them bound every refund.

    Each refund lifts the entries after it; refunds of earlier reservations then depend on
    the lifts of later ones (and on finding the entry right after their own). With the long
    gap the provider's bucket is nearly full between admissions, so that a refund crediting
    what refilled meanwhile would show as an admission past its limit in the final bursts.
    """
    steps: list[Step] = []
    for _ in range(30):
        steps += [("reserve", 1_000, 3), ("wait", gap_us, 0)]
    steps += [("cancel", 2, 0), ("settle", 4 * 5 + 1, 300), ("cancel", 4 * 3 + 2, 0)]
    steps += [("settle", 4 * 20 + 1, 1_400), ("cancel", 4 * 1 + 2, 0), ("wait", 3_000, 0)]
    steps += [("reserve", 1_000, 3)] * 5
    steps += [("settle", 4 * (k * 7 % 25) + 1, k * 61 % 1_000) for k in range(25)]
    steps += [("burst", 40, 1_000), ("wait", 2_000, 0), ("burst", 40, 1_000)]
    run_history(redis_url, client, choice, 0, steps)
