"""RedisStore on a real Redis: the protocol details the conformance suite does not see."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from quotaflow import (
    ConfigurationError,
    Limiter,
    StoreError,
    SyncLimiter,
    Usage,
    concurrency,
    daily_quota,
    rpm,
    tpm,
)
from quotaflow.core import NS_PER_SECOND, Route
from quotaflow.stores import RedisOptions, RedisStore
from quotaflow.testing import FakeClock
from tests.servers import RedisServer, find_free_port
from tests.stores.processes import hammer_and_check

S = NS_PER_SECOND
TTL = 3600 * S


def namespace() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as connection:
        yield connection


@pytest.fixture
def store(redis_url: str, clock: FakeClock) -> Iterator[RedisStore]:
    store = RedisStore(redis_url, namespace=namespace(), clock=clock)
    yield store
    store.close()


def keys_of(client: redis.Redis, store: RedisStore) -> list[bytes]:
    """Every key of the store's namespace (SCAN, in the test only: the store never scans)."""
    prefix = repr(store).split("namespace=")[1].strip("')")
    return sorted(client.scan_iter(match=f"qf:{{{prefix}}}:*", count=1000))


def test_time_comes_from_the_server(redis_url: str, client: redis.Redis) -> None:
    store = RedisStore(redis_url, namespace=namespace())
    try:
        route = Route([("m", (rpm(10),))])
        seconds, micros = client.time()
        before = seconds * S + micros * 1000
        result = store.reserve("a", route.claims(Usage()), TTL)
        seconds, micros = client.time()
        after = seconds * S + micros * 1000
        assert before <= result.now <= after
    finally:
        store.close()


def test_every_key_shares_one_hash_slot_and_expires(
    store: RedisStore, client: redis.Redis, clock: FakeClock
) -> None:
    route = Route([
        ("model", (rpm(10), tpm(1000), concurrency(3))),
        ("user:1", (daily_quota("tokens", 10_000),)),
    ])  # fmt: skip
    claims = route.claims(Usage(tokens=100))
    assert store.reserve("a", claims, TTL).granted
    assert store.reserve("b", claims, TTL).granted
    store.settle("a", Usage(tokens=50))
    keys = keys_of(client, store)
    assert len(keys) == 5  # four states and reservation b (few held: marks kept inline)
    slots = {key_slot(key) for key in keys}
    assert len(slots) == 1
    for key in keys:
        assert client.pttl(key) > 0, key  # nothing lives forever
    clock.advance(1)


def test_many_reservations_held_at_once_spill_into_a_sorted_set_and_back(
    store: RedisStore, client: redis.Redis, clock: FakeClock
) -> None:
    route = Route([("m", (tpm(1_000_000),))])
    for i in range(40):  # 40 held at once: beyond the 8 kept inline in the state
        assert store.reserve(f"r{i}", route.claims(Usage(tokens=1_000)), TTL).granted
    held = [key for key in keys_of(client, store) if b"|h|" in key]
    assert len(held) == 1
    assert client.zcard(held[0]) == 32
    assert client.pttl(held[0]) > 0
    for i in range(40):
        assert store.settle(f"r{i}", Usage(tokens=100))
    assert client.zcard(held[0]) == 0
    # Every refund came back: 40 x 900 returned, 40 x 100 still in the bucket.
    assert store.snapshot("m", [tpm(1_000_000)])[1][0].used == 4_000
    clock.advance(60)
    assert store.reserve("again", route.claims(Usage(tokens=1_000)), TTL).granted
    assert not [key for key in keys_of(client, store) if b"|h|" in key]  # dropped: bucket full


def test_a_rate_keeps_constant_space_whatever_the_volume(
    store: RedisStore, client: redis.Redis, clock: FakeClock
) -> None:
    route = Route([("m", (tpm(1_000_000),))])
    sizes = []
    for block in range(4):
        for i in range(500):
            rid = f"{block}-{i}"
            assert store.reserve(rid, route.claims(Usage(tokens=900)), TTL).granted
            clock.advance(0.01)
            store.settle(rid, Usage(tokens=300))
        (key,) = keys_of(client, store)
        sizes.append(client.strlen(key))
    # The refund stack keeps at most 64 entries beyond the reservations held (none here).
    assert max(sizes) < 4096, sizes


def test_the_script_is_loaded_again_after_a_flush(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, namespace=namespace())
    try:
        route = Route([("m", (rpm(10),))])
        assert store.reserve("a", route.claims(Usage()), TTL).granted
        with redis.Redis.from_url(redis_server.url) as admin:
            admin.script_flush()
        assert store.reserve("b", route.claims(Usage()), TTL).granted
        assert store.snapshot("m", [rpm(10)])[1][0].used == 2
    finally:
        store.close()


def test_two_stores_on_one_namespace_share_the_limits(redis_url: str, clock: FakeClock) -> None:
    shared = namespace()
    one = RedisStore(redis_url, namespace=shared, clock=clock)
    two = RedisStore(redis_url, namespace=shared, clock=clock)
    try:
        claims = Route([("m", (tpm(1000),))]).claims(Usage(tokens=600))
        assert one.reserve("a", claims, TTL).granted
        refused = two.reserve("b", claims, TTL)
        assert not refused.granted
        assert refused.slot == refused.now + 12 * S  # 200 tokens at 1000 a minute
        assert one.settle("a", Usage(tokens=100))
        assert two.reserve("b", claims, TTL).granted  # the refund is seen by the other store
    finally:
        one.close()
        two.close()


def test_namespaces_are_independent(redis_url: str, clock: FakeClock) -> None:
    one = RedisStore(redis_url, namespace=namespace(), clock=clock)
    two = RedisStore(redis_url, namespace=namespace(), clock=clock)
    try:
        claims = Route([("m", (rpm(1),))]).claims(Usage())
        assert one.reserve("a", claims, TTL).granted
        assert two.reserve("a", claims, TTL).granted
    finally:
        one.close()
        two.close()


def test_a_wrong_password_fails_at_once_without_retries(redis_server: RedisServer) -> None:
    with redis.Redis.from_url(redis_server.url) as admin:
        admin.config_set("requirepass", "right")
    url = redis_server.url.replace("redis://", "redis://:wrong@")
    if True:
        store = RedisStore(url, namespace=namespace(), options=RedisOptions(retries=5))
        try:
            claims = Route([("m", (rpm(1),))]).claims(Usage())
            with pytest.raises(StoreError) as caught:
                store.reserve("a", claims, TTL)
            assert caught.value.reason == "store"  # not "store_unavailable": not transient
        finally:
            store.close()


def test_the_async_limiter_paces_calls_on_redis(redis_url: str) -> None:
    async def run() -> list[int]:
        clock = FakeClock()
        store = RedisStore(redis_url, namespace=namespace(), clock=clock)
        limiter = Limiter({"m": [rpm(60)]}, store=store, clock=clock)
        grants: list[int] = []

        async def call() -> None:
            async with limiter.reserve("m") as reservation:
                grants.append(round(reservation.slot_time * S))  # the store's time of admission

        tasks = [asyncio.create_task(call()) for _ in range(63)]
        for _ in range(200):
            if all(task.done() for task in tasks):
                break
            await asyncio.sleep(0.001)
            clock.advance(0.25)
        await asyncio.gather(*tasks)
        await limiter.aclose()
        return grants

    grants = sorted(asyncio.run(run()))
    assert len(grants) == 63
    # A burst of 60, then one a second: grant k comes at least k - 59 seconds after the first.
    # (slot_time is a float of seconds: compare to within a microsecond)
    assert all(t >= grants[0] + (k - 59) * S - 1_000 for k, t in enumerate(grants))
    assert grants[-1] >= grants[0] + 3 * S


def test_a_sync_limiter_accepts_a_url(redis_url: str) -> None:
    url = f"{redis_url}?namespace={namespace()}&pool_size=4"
    limiter = SyncLimiter({"m": [rpm(5)]}, store=url)
    try:
        for _ in range(5):
            with limiter.reserve("m"):
                pass
        assert limiter.try_acquire("m").reservation is None
        assert limiter.status("m").limits[0].used == 5
    finally:
        limiter.close()


def test_a_release_in_another_process_wakes_waiters_at_once(redis_url: str) -> None:
    """Waiters learn of capacity given back elsewhere by notification, not at their slot.

    The waiting limiter's clock never moves, so only the notification can wake it: without
    it, the waiter would sleep until the lease's TTL (10 minutes).
    """
    shared = namespace()
    other = RedisStore(redis_url, namespace=shared)
    limiter = SyncLimiter(
        {"m": [concurrency(1, ttl=600)]},
        store=RedisStore(redis_url, namespace=shared),
        clock=FakeClock(),
    )
    try:
        claims = Route([("m", limiter.limits_of("m"))]).claims(Usage())
        assert other.reserve("elsewhere", claims, TTL).granted
        result: list[object] = []
        waiter = threading.Thread(target=lambda: result.append(limiter.acquire("m")))
        waiter.start()
        for _ in range(1000):  # until the waiter has queued (bounded: 10 s)
            if limiter.status("m").queue_depth:
                break
            time.sleep(0.01)
        assert limiter.status("m").queue_depth == 1
        assert other.settle("elsewhere", Usage())  # publishes the release
        waiter.join(timeout=10)
        assert not waiter.is_alive(), "the waiter was not woken by the release"
        assert len(result) == 1
    finally:
        limiter.close()
        other.close()


def test_sentinel_urls_reach_the_master(redis_server: RedisServer, tmp_path: Path) -> None:
    port = find_free_port()
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor quotaflow-test 127.0.0.1 {redis_server.port} 1\n"
    )
    sentinel = subprocess.Popen(  # noqa: S603 (a fixed command line)
        ["redis-server", str(config), "--sentinel"],  # noqa: S607 (from PATH, as the fixtures)
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(500):  # bounded: 5 s
            with contextlib.suppress(redis.RedisError), redis.Redis(port=port) as probe:
                if probe.ping():
                    break
            time.sleep(0.01)
        store = RedisStore(
            f"redis+sentinel://127.0.0.1:{port}/quotaflow-test", namespace=namespace()
        )
        try:
            claims = Route([("m", (rpm(2),))]).claims(Usage())
            assert store.reserve("a", claims, TTL).granted
            assert store.reserve("b", claims, TTL).granted
            assert not store.reserve("c", claims, TTL).granted
        finally:
            store.close()
        with redis.Redis.from_url(redis_server.url) as master:
            assert any(master.scan_iter(match="qf:*"))  # the state is on the master
    finally:
        sentinel.terminate()
        sentinel.wait(timeout=10)


def test_claims_naming_one_limit_twice_are_refused(store: RedisStore) -> None:
    claims = Route([("m", (rpm(2),))]).claims(Usage())
    with pytest.raises(ConfigurationError, match="twice"):
        store.reserve("a", [*claims, *claims], TTL)


@pytest.mark.slow
def test_processes_sharing_redis_never_exceed_the_limit(redis_url: str) -> None:
    """Four processes, server time: every interval holds at most capacity + refill x length."""
    hammer_and_check(f"{redis_url}?namespace={namespace()}")


def test_a_pause_shorter_than_the_retries_is_ridden_out(redis_server: RedisServer) -> None:
    """A transient outage (the server stopped for 0.3 s) is retried with backoff, not raised."""
    options = RedisOptions(retries=8, socket_timeout=0.2, backoff_base=0.05, backoff_cap=0.2)
    store = RedisStore(redis_server.url, namespace=namespace(), options=options)
    try:
        claims = Route([("m", (rpm(10),))]).claims(Usage())
        assert store.reserve("a", claims, TTL).granted
        redis_server.pause()
        resume = threading.Timer(0.3, redis_server.resume)
        resume.start()
        try:
            assert store.reserve("b", claims, TTL).granted
        finally:
            resume.join(timeout=5)
            redis_server.resume()
        assert store.snapshot("m", [rpm(10)])[1][0].used == 2
    finally:
        store.close()


def test_a_script_error_is_a_store_error_at_once(store: RedisStore) -> None:
    """Not transient: no retry, no fault policy; the reason is "store", the cause kept."""
    with pytest.raises(StoreError, match="malformed claim") as caught:
        store._run(["qf:{x}:r|a", "qf:{x}:s"], ["reserve", -1, 0], ["a", 1, 1, "garbage"])
    assert caught.value.reason == "store"
    assert isinstance(caught.value.__cause__, redis.ResponseError)
