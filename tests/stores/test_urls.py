"""Choosing a store by URL: every scheme, every option, and clear errors for the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
import redis.cluster

from quotaflow import ConfigurationError, Limiter, SyncLimiter, rpm
from quotaflow.stores import (
    SCHEMES,
    FailoverStore,
    MemoryStore,
    RedisOptions,
    RedisStore,
    SqliteStore,
    open_store,
)
from quotaflow.stores._redis_clients import make_sync_client
from quotaflow.testing import FakeClock


def test_memory_urls_open_a_memory_store(clock: FakeClock) -> None:
    store = open_store("memory://", clock=clock)
    assert isinstance(store, MemoryStore)
    assert isinstance(open_store("memory://?sweep_interval=5"), MemoryStore)


def test_sqlite_urls_open_a_file(tmp_path: Path, clock: FakeClock) -> None:
    store = open_store(f"sqlite:///{tmp_path}/limits.db?busy_timeout=1", clock=clock)
    try:
        assert isinstance(store, SqliteStore)
        assert (tmp_path / "limits.db").exists()
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6379/2", redis.Redis),
        ("rediss://user:secret@cache.internal:6380/0", redis.Redis),
        ("redis+unix:///run/redis.sock?namespace=x", redis.Redis),
        ("redis+cluster://10.0.0.1:7000,10.0.0.2:7001", redis.cluster.RedisCluster),
        ("redis+sentinel://10.0.0.1:26379,10.0.0.2/mymaster/1", redis.Redis),
    ],
)
def test_every_redis_scheme_builds_its_client(url: str, kind: type) -> None:
    store = open_store(url)
    assert isinstance(store, RedisStore)
    if kind is redis.cluster.RedisCluster:
        return  # a Cluster client connects as it is built: the cluster tests cover it
    client = make_sync_client(url.partition("?")[0], RedisOptions())  # no connection yet
    try:
        assert isinstance(client, kind)
    finally:
        client.close()


def test_options_reach_the_store() -> None:
    store = open_store(
        "redis://127.0.0.1:6379/0?namespace=prod&pool_size=7&socket_timeout=0.5"
        "&connect_timeout=0.25&retries=2&backoff_base=0.01&backoff_cap=0.2"
    )
    assert isinstance(store, RedisStore)
    assert "namespace='prod'" in repr(store)
    assert store._options == RedisOptions(
        pool_size=7, socket_timeout=0.5, connect_timeout=0.25, retries=2,
        backoff_base=0.01, backoff_cap=0.2,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://localhost/db", "unknown store URL scheme 'mysql'"),
        ("localhost:6379", "unknown store URL scheme"),
        ("redis://127.0.0.1:6379/0?pool=3", "unknown store option 'pool'"),
        ("redis://127.0.0.1:6379/0?pool_size=many", "pool_size must be an integer"),
        ("redis://127.0.0.1:6379/0?pool_size=0", "pool_size must be between"),
        ("redis://127.0.0.1:6379/0?retries=-1", "retries must be between"),
        ("redis://127.0.0.1:6379/0?socket_timeout=nan", "socket_timeout must be finite"),
        ("redis://127.0.0.1:6379/0?socket_timeout=0", "socket_timeout must be in"),
        ("redis://127.0.0.1:6379/0?retries=1&retries=2", "given twice"),
        ("redis://127.0.0.1:6379/0?namespace=a{b}", "without braces"),
        ("redis://127.0.0.1:6379/zero", "database must be a number"),
        ("redis://127.0.0.1:99999/0", "port out of range"),
        ("redis://127.0.0.1:port/0", "bad port"),
        ("redis://h1:1,h2:2/0", "takes one host"),
        ("redis:///0", "has no host"),
        ("redis+unix://", "needs a socket path"),
        ("redis+sentinel://127.0.0.1:26379", "names its service"),
        ("memory://somewhere", "takes no host or path"),
        ("memory://?sweep_interval=soon", "sweep_interval must be seconds"),
    ],
)
def test_bad_urls_raise_a_configuration_error_naming_the_problem(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        open_store(url)


def test_every_scheme_is_listed() -> None:
    assert set(SCHEMES) == {
        "memory", "sqlite", "redis", "rediss", "redis+unix", "redis+cluster",
        "rediss+cluster", "redis+sentinel",
    }  # fmt: skip


def test_limiters_take_urls_and_wrap_shared_stores_in_their_fault_policy(tmp_path: Path) -> None:
    memory = SyncLimiter({"m": [rpm(5)]}, store="memory://")
    assert isinstance(memory.store, MemoryStore)
    shared = SyncLimiter({"m": [rpm(5)]}, store=f"sqlite:///{tmp_path}/x.db", fault_policy="local")
    try:
        assert isinstance(shared.store, FailoverStore)
        assert shared.store.policy.mode == "local"
    finally:
        shared.close()
    with pytest.raises(ConfigurationError, match="takes no fault_policy"):
        Limiter({"m": [rpm(5)]}, store="memory://", fault_policy="fail_open")
    with pytest.raises(ConfigurationError, match="must implement"):
        Limiter({"m": [rpm(5)]}, store=42)  # type: ignore[arg-type]
