"""The engine against a shadow model written in another form (usage levels, exact fractions).

The engine keeps a theoretical arrival time in integer nanoseconds; the model keeps the units in
use as a ``Fraction`` and refills them continuously. The limits chosen make the engine's integer
rounding exact, so both must agree on every decision, slot and reading.
"""

from __future__ import annotations

from fractions import Fraction

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from quotaflow import Usage, tpm
from quotaflow.core import NS_PER_SECOND, Engine, Route

S = NS_PER_SECOND
T0 = 1_767_225_600 * S
LIMITS = {3_000: tpm(3_000), 6_000: tpm(6_000), 12_000: tpm(12_000)}


class Model:
    """A token bucket as a level of usage; refunds bounded by brute force over its history.

    Every admission and overrun is an event whose amount shrinks when it is refunded. After a
    refund of A the bucket must still hold what the events after A hold, less the refill since
    each of them: ``max over k after A of (sum of amounts from k on) - r * (now - t_k)``.
    """

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.used = Fraction(0)
        self.at = T0
        self.gross = 0
        self.since = 0  # gross at the last rate change
        self.events: list[list[int]] = []  # [time, amount held] per admission or overrun
        self.event_of: dict[int, int] = {}  # mark (gross after) -> index in events

    @property
    def rate(self) -> Fraction:  # units per ns
        return Fraction(self.per_minute, 60 * S)

    def refill(self, now: int) -> None:
        self.used = max(Fraction(0), self.used - self.rate * (now - self.at))
        self.at = now

    def slot(self, amount: int, now: int) -> int:
        self.refill(now)
        excess = self.used + amount - self.per_minute
        return now if excess <= 0 else now + int(excess / self.rate)

    def take(self, amount: int) -> int:
        self.events.append([self.at, amount])
        self.used += amount
        self.gross += amount
        self.event_of[self.gross] = len(self.events) - 1
        return self.gross

    def still_held(self, mark: int) -> Fraction:
        """What the events after the reservation marked ``mark`` still hold in the bucket."""
        if mark < self.since:  # from before a rate change: later units count in full
            return Fraction(self.gross - mark)
        later = self.events[self.event_of[mark] + 1 :]
        held = Fraction(0)
        for k, (time, _) in enumerate(later):
            held = max(held, sum(amount for _, amount in later[k:]) - self.rate * (self.at - time))
        return held

    def settle(self, reserved: int, actual: int, mark: int) -> None:
        if actual > reserved:
            self.take(actual - reserved)
            return
        lowered = max(self.used - (reserved - actual), self.still_held(mark))
        self.used = max(Fraction(0), min(self.used, lowered))
        self.events[self.event_of[mark]][1] -= reserved - actual


class EngineVersusModel(RuleBasedStateMachine):
    reservations = Bundle("reservations")

    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine()
        self.model = Model(6_000)
        self.limit = LIMITS[6_000]
        self.now = T0
        self.count = 0

    def route(self) -> Route:
        return Route([("s", (self.limit,))])

    @rule(ms=st.integers(0, 30_000))
    def wait(self, ms: int) -> None:
        self.now += ms * S // 1000

    @rule(target=reservations, amount=st.integers(0, 3_000))
    def reserve(self, amount: int) -> tuple[str, int, int]:
        self.count += 1
        rid = f"r{self.count}"
        result = self.engine.reserve(
            rid, self.route().claims(Usage(tokens=amount)), self.now, 10**6 * S
        )
        slot = self.model.slot(amount, self.now)
        assert result.granted == (slot == self.now or amount == 0)
        if not result.granted:
            assert result.slot == slot
            return (rid, 0, -1)
        return (rid, amount, self.model.take(amount))

    @rule(reservation=consumes(reservations), per_mille=st.integers(0, 1_500))
    def settle(self, reservation: tuple[str, int, int], per_mille: int) -> None:
        rid, reserved, mark = reservation
        actual = reserved * per_mille // 1000
        found = self.engine.settle(rid, Usage(tokens=actual), self.now)
        assert found == (mark >= 0)
        if found:
            self.model.refill(self.now)
            self.model.settle(reserved, actual, mark)

    @rule(reservation=consumes(reservations))
    def cancel(self, reservation: tuple[str, int, int]) -> None:
        rid, reserved, mark = reservation
        if self.engine.settle(rid, None, self.now):
            self.model.refill(self.now)
            self.model.settle(reserved, 0, mark)

    @rule(per_minute=st.sampled_from(sorted(LIMITS)))
    def change_limit(self, per_minute: int) -> None:
        self.limit = LIMITS[per_minute]
        self.count += 1  # a fresh id: reserving a held id is a no-op that would skip the change
        self.engine.reserve(
            f"probe{self.count}", self.route().claims(Usage(requests=0)), self.now, S
        )
        self.model.refill(self.now)
        if per_minute != self.model.per_minute:
            # The engine re-expresses whole units in use under the new rate: rounded up.
            self.model.used = Fraction(-(-self.model.used.numerator // self.model.used.denominator))
            self.model.per_minute = per_minute
            self.model.since = self.model.gross

    @invariant()
    def same_reading(self) -> None:
        (snapshot,) = self.engine.snapshot("s", (self.limit,), self.now)
        self.model.refill(self.now)
        expected = -(-self.model.used.numerator // self.model.used.denominator)
        assert snapshot.used == expected
        assert snapshot.remaining == max(0, self.model.per_minute - expected)


EngineVersusModel.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestEngineVersusModel = EngineVersusModel.TestCase
