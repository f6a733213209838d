"""The admission engine: all-or-nothing across scopes, idempotence, memory bounds."""

from __future__ import annotations

import pytest

from quotaflow import CapacityExceededError, Usage, concurrency, daily_quota, rpm, tpm
from quotaflow.core import NS_PER_SECOND, BoundLimit, Engine, Route

S = NS_PER_SECOND
T0 = 1_767_225_600 * S
TTL = 3600 * S

USER = ("user:1", (daily_quota("cost", 1_000),))
MODEL = ("openai:gpt-4o", (rpm(100), tpm(10_000)))


def test_an_admission_spans_every_scope_or_charges_none() -> None:
    engine = Engine()
    route = Route([USER, MODEL])
    assert engine.reserve("a", route.claims(Usage(input_tokens=9_000, cost=900)), T0, TTL).granted
    # The model has room for 1,000 more tokens but the user's budget has only 100 left.
    result = engine.reserve("b", route.claims(Usage(input_tokens=500, cost=200)), T0, TTL)
    assert not result.granted
    assert result.binding == BoundLimit("user:1", USER[1][0])
    assert result.slot == T0 + 86_400 * S  # the user's next day
    # Nothing was charged to the model by the refused request.
    model = engine.snapshot("openai:gpt-4o", MODEL[1], T0)
    assert [s.used for s in model] == [1, 9_000]


def test_the_binding_limit_is_the_one_furthest_from_admitting() -> None:
    engine = Engine()
    route = Route([MODEL])
    engine.reserve("a", route.claims(Usage(input_tokens=10_000, requests=1)), T0, TTL)
    result = engine.reserve("b", route.claims(Usage(input_tokens=5_000)), T0, TTL)
    assert result.binding == BoundLimit("openai:gpt-4o", MODEL[1][1])
    assert result.slot == T0 + 30 * S


def test_a_request_larger_than_a_limit_can_never_pass() -> None:
    with pytest.raises(CapacityExceededError, match="can admit at most 10000 tokens") as info:
        Route([MODEL]).claims(Usage(input_tokens=10_001))
    assert info.value.limit == BoundLimit("openai:gpt-4o", MODEL[1][1])
    assert info.value.requested == 10_001
    assert info.value.reason == "exceeds_capacity"


def test_reserving_the_same_id_twice_charges_once() -> None:
    engine = Engine()
    claims = Route([MODEL]).claims(Usage(input_tokens=1_000))
    assert engine.reserve("a", claims, T0, TTL).granted
    assert engine.reserve("a", claims, T0, TTL).granted
    assert engine.snapshot(*MODEL, T0)[1].used == 1_000


def test_settle_and_cancel_are_idempotent() -> None:
    engine = Engine()
    claims = Route([MODEL]).claims(Usage(input_tokens=1_000))
    engine.reserve("a", claims, T0, TTL)
    assert engine.settle("a", Usage(input_tokens=400), T0)
    assert not engine.settle("a", Usage(input_tokens=0), T0)
    assert not engine.settle("a", None, T0)
    assert engine.snapshot(*MODEL, T0)[1].used == 400


def test_cancel_gives_everything_back() -> None:
    engine = Engine()
    route = Route([USER, MODEL, ("pool", (concurrency(1),))])
    engine.reserve("a", route.claims(Usage(input_tokens=1_000, cost=500)), T0, TTL)
    assert not engine.reserve("b", route.claims(Usage()), T0, TTL).granted  # pool is full
    engine.settle("a", None, T0)
    assert [s.used for s in engine.snapshot(*MODEL, T0)] == [0, 0]
    assert engine.snapshot(*USER, T0)[0].used == 0
    assert engine.reserve("b", route.claims(Usage()), T0, TTL).granted


def test_zero_amounts_never_block_but_overruns_are_still_charged() -> None:
    engine = Engine()
    limits = (tpm(6_000), rpm(1_000))
    route = Route([("m", limits)])
    engine.reserve("debt", route.claims(Usage(tokens=1_000)), T0, TTL)
    engine.settle("debt", Usage(tokens=6_000), T0)  # 1,000 tokens of debt
    assert engine.reserve("free", route.claims(Usage(tokens=0)), T0, TTL).granted
    engine.settle("free", Usage(tokens=600), T0)
    assert engine.snapshot("m", limits, T0)[0].used == 6_600


def test_idle_scopes_and_expired_reservations_are_forgotten() -> None:
    engine = Engine(sweep_interval_ns=60 * S)
    for user in range(1_000):
        claims = Route([(f"user:{user}", (rpm(10),))]).claims(Usage())
        engine.reserve(f"r{user}", claims, T0, 30 * S)
    assert (engine.scope_count, engine.reservation_count) == (1_000, 1_000)
    engine.sweep(T0 + 61 * S)  # buckets full again, reservations past their TTL
    assert (engine.scope_count, engine.reservation_count) == (0, 0)


def test_a_quota_with_spending_is_kept_until_its_period_ends() -> None:
    engine = Engine()
    engine.reserve("a", Route([USER]).claims(Usage(cost=10)), T0, TTL)
    engine.sweep(T0 + 3600 * S)
    assert engine.scope_count == 1
    engine.sweep(T0 + 86_400 * S)
    assert engine.scope_count == 0


def test_an_overrun_settled_after_its_scope_was_swept_is_still_charged() -> None:
    engine = Engine()
    limits = (tpm(6_000),)
    engine.reserve("slow", Route([("m", limits)]).claims(Usage(tokens=100)), T0, TTL)
    engine.sweep(T0 + 120 * S)  # the bucket refilled: the scope is dropped
    engine.settle("slow", Usage(tokens=3_100), T0 + 120 * S)
    assert engine.snapshot("m", limits, T0 + 120 * S)[0].used == 3_000


def test_renewing_extends_the_reservation_and_its_leases() -> None:
    engine = Engine()
    route = Route([("pool", (concurrency(1, ttl=10),))])
    engine.reserve("a", route.claims(Usage()), T0, 10 * S)
    assert engine.renew("a", T0 + 9 * S, 10 * S)
    assert not engine.reserve("b", route.claims(Usage()), T0 + 15 * S, TTL).granted
    assert not engine.renew("zzz", T0, TTL)


def test_changed_limits_keep_their_state() -> None:
    engine = Engine()
    engine.reserve("a", Route([("m", (tpm(10_000),))]).claims(Usage(tokens=8_000)), T0, TTL)
    bigger = (tpm(20_000),)
    assert engine.reserve("b", Route([("m", bigger)]).claims(Usage(tokens=12_000)), T0, TTL).granted
    assert engine.snapshot("m", bigger, T0)[0].used == 20_000
