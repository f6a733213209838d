"""Shared fixtures.

Real servers (see docs/testing.md, "Real servers"):
- `redis_url` (session): `REDIS_URL`, else a throwaway `redis-server`, else skip.
- `redis_cluster_url` (session): `REDIS_CLUSTER_URL`, else a throwaway 3-node cluster, else skip.
- `redis_server` (function): a private throwaway `RedisServer` a fault test may stop, pause,
  kill or restart.
- `database_url` (session): `DATABASE_URL`, else skip.

With `QUOTAFLOW_REQUIRE_SERVICES=1` every "skip" above fails instead. A test using one of the
Redis fixtures is marked `redis` automatically, so `-m "not redis"` deselects it.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

import pytest

from quotaflow.testing import FakeClock
from tests.servers import RedisCluster, RedisServer, skip_or_fail

if TYPE_CHECKING:
    from collections.abc import Iterator

REDIS_FIXTURES = frozenset({"redis_url", "redis_cluster_url", "redis_server"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `redis` every test that uses a Redis fixture (directly or through another one)."""
    for item in items:
        if REDIS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.redis)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis shared by the session: `REDIS_URL`, else a throwaway server, else skip.

    The server may be shared with other users (CI points `REDIS_URL` at the machine's Redis):
    use unique key names and never FLUSHDB/FLUSHALL.
    """
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    if shutil.which("redis-server") is None:
        skip_or_fail("Redis: REDIS_URL is not set and redis-server is not on PATH")
    with RedisServer() as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A Redis Cluster: `REDIS_CLUSTER_URL`, else a throwaway 3-node cluster, else skip.

    `REDIS_CLUSTER_URL` reads `redis+cluster://h1:p1,h2:p2,...`; the throwaway cluster needs
    redis-server and redis-cli on PATH.
    """
    url = os.environ.get("REDIS_CLUSTER_URL")
    if url:
        yield url
        return
    missing = [name for name in ("redis-server", "redis-cli") if shutil.which(name) is None]
    if missing:
        skip_or_fail(
            f"Redis Cluster: REDIS_CLUSTER_URL is not set and {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not on PATH"
        )
    with RedisCluster(3) as cluster:
        yield cluster.url


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private throwaway Redis for one test, which may stop, pause, kill or restart it."""
    if shutil.which("redis-server") is None:
        skip_or_fail("a private Redis server needs redis-server on PATH")
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def database_url() -> str:
    """A PostgreSQL database: `DATABASE_URL`, else skip."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        skip_or_fail("PostgreSQL: DATABASE_URL is not set")
    return url
