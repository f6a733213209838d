"""The admission engine: all-or-nothing reservations across scopes, on in-memory state.

Pure: every operation takes ``now`` (nanoseconds) and does no I/O; stores add the clock, the
locking and, where they need it, persistence. One admission spans any number of scopes and
limits: either every limit admits its amount at ``now`` and all are charged, or none is
charged and the result names the earliest time at which all would admit it (the slot) and the
limit that binds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, NamedTuple

from quotaflow._errors import CapacityExceededError
from quotaflow.core._lease_state import LeaseState
from quotaflow.core._limits import BoundLimit, Limit, Quota, Rate
from quotaflow.core._quota_state import QuotaState
from quotaflow.core._rate_state import RateState
from quotaflow.core._snapshot import LimitSnapshot
from quotaflow.core._usage import Usage, usage_index

__all__ = ["Claim", "Engine", "ReserveResult", "Route", "State", "plan_claims"]

#: The state behind one limit in one scope.
State = RateState | QuotaState | LeaseState

#: One limit's share of an admission: ``(scope, limit, amount, usage index)``. The index is
#: the position of the limit's metric in a :class:`Usage` (-1 for ``concurrent``).
Claim = tuple[str, Limit, int, int]

_NO_USAGE: Final = Usage(requests=0)


class Route:
    """The limits one request touches, resolved once per combination of scopes.

    Turning a usage into claims is then a loop over precomputed entries; this is the hot path
    of every admission.
    """

    __slots__ = ("entries", "names")

    def __init__(self, scopes: Sequence[tuple[str, Sequence[Limit]]]) -> None:
        self.names = tuple(scope for scope, _ in scopes)
        self.entries = tuple(
            (scope, limit, usage_index(limit.metric), limit.capacity)
            for scope, limits in scopes
            for limit in limits
        )

    def claims(self, usage: Usage) -> list[Claim]:
        """Return the claims of ``usage`` on every limit of the route.

        Raises:
            CapacityExceededError: a limit could never admit its amount, however long one waits.
        """
        claims: list[Claim] = []
        for scope, limit, index, capacity in self.entries:
            amount = usage[index] if index >= 0 else 1
            if amount > capacity:
                raise CapacityExceededError(BoundLimit(scope, limit), amount)
            claims.append((scope, limit, amount, index))
        return claims


def plan_claims(scopes: Sequence[tuple[str, Sequence[Limit]]], usage: Usage) -> list[Claim]:
    """Return the claims of ``usage`` on every limit of ``scopes`` (see :class:`Route`)."""
    return Route(scopes).claims(usage)


class ReserveResult(NamedTuple):
    """What the engine decided about one admission.

    Attributes:
        granted: whether the request was admitted (and charged) at ``now``.
        now: the engine's time of the decision, ns.
        slot: ``now`` when granted; otherwise the earliest time at which every limit would
            admit the request as things stand, or ``None`` when no time is known.
        binding: the limit that is furthest from admitting the request, when not granted.
    """

    granted: bool
    now: int
    slot: int | None
    binding: BoundLimit | None


def _result(values: tuple[bool, int, int | None, BoundLimit | None]) -> ReserveResult:
    """Build a :class:`ReserveResult` from its four fields, in order (the fast way)."""
    return _new_tuple(ReserveResult, values)


_new_tuple = tuple.__new__


#: One limit's part of a granted reservation: ``(scope, state, usage index, reserved, mark)``.
_Entry = tuple[str, State, int, int, int]

#: What a granted reservation holds: ``[entries, expires, ttl]``. A list, not an object: one is
#: made on every admission, and a list is the cheapest mutable record.
_Record = list[Any]


def _new_state(limit: Limit) -> State:
    if isinstance(limit, Rate):
        return RateState(limit)
    if isinstance(limit, Quota):
        return QuotaState(limit)
    return LeaseState(limit)


class Engine:
    """In-memory limit state for any number of scopes, and the reservations held against it.

    Not thread-safe by itself: a store serialises access to it.
    """

    __slots__ = ("_expired", "_next_sweep", "_records", "_scopes", "sweep_interval_ns")

    def __init__(self, *, sweep_interval_ns: int = 60 * 1_000_000_000) -> None:
        self._scopes: dict[str, dict[str, State]] = {}
        self._records: dict[str, _Record] = {}
        self._expired: dict[str, _Record] = {}  # forgotten reservations: [entries, until]
        self._next_sweep = 0
        self.sweep_interval_ns = sweep_interval_ns

    def _state(self, scope: str, limit: Limit, now: int) -> State:
        states = self._scopes.get(scope)
        if states is None:
            states = self._scopes[scope] = {}
        state = states.get(limit.key)
        if state is None:
            state = states[limit.key] = _new_state(limit)
        elif state.limit is not limit:
            if state.limit == limit:
                state.limit = limit  # same key, so the same kind
            else:
                state.reconfigure(limit, now)  # type: ignore[arg-type]  # same key, same kind
        return state

    def reserve(self, rid: str, claims: Sequence[Claim], now: int, ttl_ns: int) -> ReserveResult:
        """Admit ``claims`` at ``now`` as reservation ``rid``, or charge nothing.

        Reserving an ``rid`` that is already held is a no-op that reports it granted, so a
        retried call never charges twice. The reservation is forgotten (and can no longer be
        refunded) ``ttl_ns`` after ``now`` unless renewed.
        """
        if now >= self._next_sweep:
            self.sweep(now)
        records = self._records
        if rid in records:
            return _result((True, now, now, None))
        scopes = self._scopes
        states: list[State] = []
        for scope, limit, amount, _ in claims:
            by_key = scopes.get(scope)
            state = by_key.get(limit.key) if by_key is not None else None
            if state is None or state.limit is not limit:
                state = self._state(scope, limit, now)
            states.append(state)
            if (amount or type(state) is LeaseState) and state.available_at(amount, now) > now:
                return self._refusal(claims, now)
        # A plain loop: on Python 3.11 a comprehension costs a function frame per call.
        entries: list[_Entry] = []
        for position, (scope, _, amount, index) in enumerate(claims):
            state = states[position]
            entries.append((scope, state, index, amount, state.take(amount, now, rid)))
        records[rid] = [entries, now + ttl_ns, ttl_ns]
        return _result((True, now, now, None))

    def _refusal(self, claims: Sequence[Claim], now: int) -> ReserveResult:
        """The earliest time every claim fits, and the claim that waits longest."""
        slot, binding = now, 0
        for position, (scope, limit, amount, _) in enumerate(claims):
            state = self._state(scope, limit, now)
            if amount or type(state) is LeaseState:
                at = state.available_at(amount, now)
                if at > slot:
                    slot, binding = at, position
        scope, limit, _, _ = claims[binding]
        return _result((False, now, slot, BoundLimit(scope, limit)))

    def settle(self, rid: str, actual: Usage | None, now: int) -> bool:
        """Reconcile reservation ``rid`` with ``actual`` usage (``None``: cancel, refund all).

        Returns ``False`` when ``rid`` is not held (already settled, cancelled or expired),
        which makes settling idempotent.
        """
        record = self._records.pop(rid, None)
        if record is not None and record[1] <= now:
            # Past its TTL but not swept yet: forget it now, as the sweep would have.
            self._forget(rid, record)
            record = None
        if record is None:
            expired = self._expired.pop(rid, None)
            if expired is not None:
                self._charge_overruns(rid, expired[0], _NO_USAGE if actual is None else actual, now)
            return False
        used = _NO_USAGE if actual is None else actual
        scopes = self._scopes
        entries: list[_Entry] = record[0]
        for scope, state, index, reserved, mark in entries:
            spent = used[index] if index >= 0 else 1
            by_key = scopes.get(scope)
            if by_key is not None and by_key.get(state.limit.key) is state:
                state.settle(reserved, spent, mark, now, rid)
            elif spent > reserved:
                # The state was swept as idle (its bucket refilled or its period ended), so a
                # refund is moot; an overrun is still real.
                self._charge(scope, state, spent - reserved, now)
        return True

    def _charge_overruns(self, rid: str, entries: list[_Entry], actual: Usage, now: int) -> None:
        """Settle a forgotten reservation late: end its leases, charge what it overran."""
        for scope, state, index, reserved, _ in entries:
            if type(state) is LeaseState:
                state.settle(1, 1, 0, now, rid)  # a lease kept past the reservation's TTL
                continue
            spent = actual[index] if index >= 0 else 1
            if spent > reserved:
                self._charge(scope, state, spent - reserved, now)

    def _charge(self, scope: str, state: State, amount: int, now: int) -> None:
        """Charge an overrun to the live state behind ``state``'s limit, under its limit now."""
        by_key = self._scopes.get(scope)
        live = by_key.get(state.limit.key) if by_key is not None else None
        if live is None:
            live = self._state(scope, state.limit, now)
        live.settle(0, amount, 0, now, None)

    def renew(self, rid: str, now: int, ttl_ns: int) -> bool:
        """Extend reservation ``rid`` and its concurrency leases; ``False`` if it is gone.

        Nothing is extended when a lease has already expired: the reservation is then lost.
        """
        record = self._records.get(rid)
        if record is None or record[1] <= now:
            return False
        entries: list[_Entry] = record[0]
        leases = [state for _, state, _, _, _ in entries if type(state) is LeaseState]
        if not all(lease.leases.get(rid, 0) > now for lease in leases):
            return False
        for lease in leases:
            lease.renew(rid, now)
        record[1] = now + ttl_ns
        return True

    def snapshot(self, scope: str, limits: Sequence[Limit], now: int) -> list[LimitSnapshot]:
        """Return the state of ``limits`` in ``scope`` without changing anything."""
        states = self._scopes.get(scope, {})
        snapshots = []
        for limit in limits:
            state = states.get(limit.key)
            if state is None or state.limit != limit:
                state = (
                    _new_state(limit) if state is None else _copy_reconfigured(state, limit, now)
                )
            snapshots.append(state.snapshot(now))
        return snapshots

    def sweep(self, now: int) -> None:
        """Forget expired reservations and scopes whose every limit is idle."""
        self._next_sweep = now + self.sweep_interval_ns
        expired = [rid for rid, record in self._records.items() if record[1] <= now]
        for rid in expired:
            self._forget(rid, self._records.pop(rid))
        gone = [rid for rid, (_, until) in self._expired.items() if until <= now]
        for rid in gone:
            del self._expired[rid]
        idle = [
            scope
            for scope, states in self._scopes.items()
            if all(state.is_idle(now) for state in states.values())
        ]
        for scope in idle:
            del self._scopes[scope]

    def _forget(self, rid: str, record: _Record) -> None:
        """Forget a reservation past its TTL; keep a tombstone for one more TTL.

        A forgotten reservation stands as reserved: it is settled so, which releases what its
        rates keep for refunds. Its concurrency leases run to their own expiry (the call may
        still be going), and a late settlement can still charge an overrun.
        """
        entries: list[_Entry] = record[0]
        for _, state, _, reserved, mark in entries:
            if type(state) is not LeaseState:
                state.settle(reserved, reserved, mark, record[1], rid)
        self._expired[rid] = [entries, record[1] + record[2]]

    @property
    def scope_count(self) -> int:
        """Number of scopes with state in memory."""
        return len(self._scopes)

    @property
    def reservation_count(self) -> int:
        """Number of reservations held."""
        return len(self._records)


def _copy_reconfigured(state: State, limit: Limit, now: int) -> State:
    copy = _new_state(state.limit)
    for name in type(state).__slots__:
        value = getattr(state, name)
        setattr(copy, name, value.copy() if isinstance(value, dict | list) else value)
    copy.reconfigure(limit, now)  # type: ignore[arg-type]  # same key, same kind
    return copy
