"""The store conformance suite on a real Redis and on a real 3-node Redis Cluster."""

from __future__ import annotations

import uuid

import pytest

from quotaflow.conformance import StoreConformance
from quotaflow.stores import RedisStore
from quotaflow.testing import FakeClock


class TestRedisStore(StoreConformance):
    """A standalone server (``REDIS_URL`` or a throwaway one); a fresh namespace per store."""

    max_examples = 30
    resolution_ns = 1_000  # Redis TIME has microseconds: the store's clock never shows less
    url: str

    @pytest.fixture(autouse=True)
    def _server(self, redis_url: str) -> None:
        self.url = redis_url

    def make_store(self, clock: FakeClock) -> RedisStore:
        return RedisStore(self.url, namespace=f"conformance-{uuid.uuid4().hex}", clock=clock)


class TestRedisClusterStore(StoreConformance):
    """Three masters; each store's namespace hashes to one slot, on whichever node owns it."""

    max_examples = 15
    resolution_ns = 1_000
    url: str

    @pytest.fixture(autouse=True)
    def _cluster(self, redis_cluster_url: str) -> None:
        self.url = redis_cluster_url

    def make_store(self, clock: FakeClock) -> RedisStore:
        return RedisStore(self.url, namespace=f"conformance-{uuid.uuid4().hex}", clock=clock)
