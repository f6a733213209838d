"""Notes: every store keeps them, with an expiry; the failover keeps them locally meanwhile."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from quotaflow import ConfigurationError, StoreUnavailableError, stores
from quotaflow.stores import AsyncNotes, FailoverStore, MemoryStore, Notes, SqliteStore
from quotaflow.testing import FakeClock


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "sqlite":
        sqlite = SqliteStore(tmp_path / "notes.db")
        yield sqlite
        sqlite.close()
    else:
        url = request.getfixturevalue("redis_url")
        redis = stores.RedisStore(url, namespace=f"notes-{secrets.token_hex(4)}")
        yield redis
        redis.close()


def test_every_store_keeps_notes(store: Any) -> None:
    assert isinstance(store, Notes)
    assert isinstance(store, AsyncNotes)
    assert store.get_note("limits|openai:gpt-4o") is None
    store.put_note("limits|openai:gpt-4o", '{"rpm": 500}', 60)
    assert store.get_note("limits|openai:gpt-4o") == '{"rpm": 500}'
    store.put_note("limits|openai:gpt-4o", "replaced", 60)
    assert store.get_note("limits|openai:gpt-4o") == "replaced"


@pytest.mark.asyncio
async def test_async_notes(store: Any) -> None:
    await store.aput_note("pause|a", "until", 60)
    assert await store.aget_note("pause|a") == "until"
    assert await store.aget_note("pause|b") is None
    await store.aclose()  # the asyncio client belongs to this test's loop


def test_notes_expire_on_the_store_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    for store in (MemoryStore(clock=clock), SqliteStore(tmp_path / "x.db", clock=clock)):
        store.put_note("k", "v", 2.0)
        clock.advance(1.999)
        assert store.get_note("k") == "v"
        clock.advance(0.001)
        assert store.get_note("k") is None
        store.close()


@pytest.mark.parametrize(
    ("key", "value", "ttl"),
    [("", "v", 1), ("k", 3, 1), ("k", "v", 0), ("k", "v", float("nan")), ("k", "x" * 20_000, 1)],
)
def test_bad_notes_are_refused(key: Any, value: Any, ttl: Any) -> None:
    with pytest.raises(ConfigurationError, match="note"):
        MemoryStore().put_note(key, value, ttl)


class _Down:
    """A shared store that is unreachable (notes included)."""

    # ruff: noqa: ARG002 (the arguments do not matter: every call fails)

    def get_note(self, key: str) -> str | None:
        raise StoreUnavailableError("down")

    def put_note(self, key: str, value: str, ttl: float) -> None:
        raise StoreUnavailableError("down")

    def reserve(self, *args: object) -> Any:
        raise StoreUnavailableError("down")

    def settle(self, *args: object) -> Any:
        raise StoreUnavailableError("down")

    def renew(self, *args: object) -> Any:
        raise StoreUnavailableError("down")

    def snapshot(self, *args: object) -> Any:
        raise StoreUnavailableError("down")

    def close(self) -> None:
        pass


def test_failover_keeps_notes_locally_while_the_store_is_down() -> None:
    changes: list[bool] = []
    store = FailoverStore(_Down(), "local", on_change=lambda up, _: changes.append(up))
    store.put_note("pause|s", "soon", 30)
    assert store.get_note("pause|s") == "soon"
    assert changes == [False]
