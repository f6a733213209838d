"""The real-server helpers of tests/servers.py and the fixtures built on them."""

from __future__ import annotations

import shutil
import socket
import time
from typing import TYPE_CHECKING

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster as ClusterClient
from redis.retry import Retry

from tests.servers import (
    REQUIRE_SERVICES_ENV,
    RedisServer,
    ServerError,
    find_free_port,
    parse_cluster_url,
    skip_or_fail,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def redis_binary() -> None:
    """For the tests that start their own servers: skip (or fail) without redis-server."""
    if shutil.which("redis-server") is None:
        skip_or_fail("redis-server is not on PATH")


def client(url: str, *, timeout: float = 2.0) -> redis.Redis:
    """A client that gives up after one attempt of at most `timeout` seconds (no retries)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


@pytest.fixture
def connection(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with client(redis_server.url, timeout=0.3) as conn:
        yield conn


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True


# --- skip or fail -----------------------------------------------------------------------------


def test_skip_or_fail_skips_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_SERVICES_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no server here"):
        skip_or_fail("no server here")


def test_skip_or_fail_fails_when_services_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_SERVICES_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="no server here"):
        skip_or_fail("no server here")


def test_the_redis_fixtures_carry_the_redis_marker(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("redis") is None  # no Redis fixture here
    fixtures = {"redis_url", "redis_cluster_url", "redis_server"}
    users = [
        item for item in request.session.items if fixtures & set(getattr(item, "fixturenames", ()))
    ]
    assert all(item.get_closest_marker("redis") is not None for item in users)
    if not request.config.option.markexpr:  # with -m "not redis" they are all deselected
        assert any(item.name == "test_cluster_is_ok_and_serves_keys" for item in users)


# --- ports and URLs ---------------------------------------------------------------------------


def test_find_free_port_gives_a_bindable_port_outside_the_ephemeral_range() -> None:
    port = find_free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert 1024 < port < 32768


def test_parse_cluster_url() -> None:
    assert parse_cluster_url("redis+cluster://127.0.0.1:7000,localhost:7001/0") == [
        ("127.0.0.1", 7000),
        ("localhost", 7001),
    ]
    assert parse_cluster_url("redis+cluster://user:pw@h:1") == [("h", 1)]
    with pytest.raises(ValueError, match="redis\\+cluster"):
        parse_cluster_url("redis://127.0.0.1:6379")
    with pytest.raises(ValueError, match="host:port"):
        parse_cluster_url("redis+cluster://127.0.0.1")


# --- one server -------------------------------------------------------------------------------


def test_throwaway_server_answers_ping_on_its_url(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    with client(redis_server.url) as conn:
        assert conn.ping() is True
        assert conn.config_get("save") == {"save": ""}  # no persistence


def test_redis_url_fixture_answers_ping(redis_url: str) -> None:
    with client(redis_url) as conn:
        assert conn.ping() is True


def test_pause_times_out_and_resume_answers_again(
    redis_server: RedisServer, connection: redis.Redis
) -> None:
    assert connection.ping() is True
    redis_server.pause()
    assert redis_server.state == "paused"
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        connection.ping()
    assert time.monotonic() - started < 2.0
    redis_server.resume()
    assert redis_server.state == "running"
    assert connection.ping() is True


def test_restart_reuses_the_port_and_loses_the_data(
    redis_server: RedisServer, connection: redis.Redis
) -> None:
    port, pid = redis_server.port, redis_server.pid
    connection.set("quotaflow-test:key", "value")
    redis_server.restart()
    assert redis_server.port == port
    assert redis_server.pid != pid
    assert connection.get("quotaflow-test:key") is None  # reconnects: the old socket is dead
    assert connection.ping() is True


def test_stop_closes_the_port_and_start_brings_it_back(redis_server: RedisServer) -> None:
    redis_server.stop()
    assert not redis_server.running
    assert refuses_connections(redis_server.port)
    redis_server.start()
    with client(redis_server.url) as conn:
        assert conn.ping() is True


def test_kill_and_stop_of_a_paused_server(redis_server: RedisServer) -> None:
    redis_server.pause()
    redis_server.stop()  # a paused server still stops promptly
    assert refuses_connections(redis_server.port)
    redis_server.start()
    redis_server.kill()
    assert not redis_server.running
    assert refuses_connections(redis_server.port)


@pytest.mark.redis
@pytest.mark.usefixtures("redis_binary")
def test_a_server_that_cannot_start_reports_its_log() -> None:
    server = RedisServer(extra_args=("--no-such-directive", "yes"), startup_timeout=5)
    with pytest.raises(ServerError, match=r"(?s)failed to start.*Log tail:.*no-such-directive"):
        server.start()
    assert not server.running
    assert server.directory is None  # cleaned up


@pytest.mark.redis
@pytest.mark.usefixtures("redis_binary")
def test_a_taken_port_is_reported_after_the_bounded_wait() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = RedisServer(port, startup_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(ServerError, match="port stayed in use"):
            server.start()
        assert time.monotonic() - started < 3.0


@pytest.mark.redis
@pytest.mark.usefixtures("redis_binary")
def test_context_manager_closes_the_server() -> None:
    with RedisServer() as server:
        assert server.state == "running"
        directory = server.directory
        assert directory is not None
        assert directory.is_dir()
    assert server.state == "stopped"
    assert not directory.exists()
    assert refuses_connections(server.port)


# --- cluster ----------------------------------------------------------------------------------


def test_cluster_is_ok_and_serves_keys(redis_cluster_url: str) -> None:
    nodes = parse_cluster_url(redis_cluster_url)
    assert len(nodes) >= 3
    for host, port in nodes:
        with redis.Redis(host=host, port=port, socket_timeout=2) as conn:
            info = conn.cluster("INFO")
            assert info["cluster_state"] == "ok"
    startup = [ClusterNode(host, port) for host, port in nodes]  # type: ignore[no-untyped-call]
    with ClusterClient(startup_nodes=startup[:1], socket_timeout=2) as cluster:
        # keys on different slots, hence (with 3 masters) on different nodes
        keys = [f"quotaflow-test:{{slot{i}}}" for i in range(10)]
        for key in keys:
            cluster.set(key, key)
        assert len({cluster.keyslot(key) for key in keys}) > 1
    with ClusterClient(startup_nodes=startup[-1:], socket_timeout=2) as other:
        assert [other.get(key) for key in keys] == [key.encode() for key in keys]
        other.delete(*keys)
