"""The governed client: calls of any httpx-based client, paced under the provider's limits.

Every call is retried correctly and accounted for, across every worker sharing a store.

Pass a transport to the official SDKs (they are built on ``httpx2``; plain ``httpx`` clients
work the same)::

    import httpx2, openai
    from quotaflow.client import QuotaflowTransport

    client = openai.OpenAI(
        max_retries=0,  # quotaflow owns the retries
        http_client=httpx2.Client(transport=QuotaflowTransport()),
    )

or use :class:`ChatLimiter` without an SDK.
"""

from __future__ import annotations

from quotaflow.client._config import ENV_PREFIX, ClientConfig, RetryPolicy, parse_limits
from quotaflow.client._facade import ChatLimiter, ChatResponse, ProviderConfig
from quotaflow.client._governor import CallPlan, Governor, default_limits
from quotaflow.client._stats import ClientStats, StatsSnapshot
from quotaflow.client._transport import SCOPE_HEADER, AsyncQuotaflowTransport, QuotaflowTransport

__all__ = [
    "ENV_PREFIX",
    "SCOPE_HEADER",
    "AsyncQuotaflowTransport",
    "CallPlan",
    "ChatLimiter",
    "ChatResponse",
    "ClientConfig",
    "ClientStats",
    "Governor",
    "ProviderConfig",
    "QuotaflowTransport",
    "RetryPolicy",
    "StatsSnapshot",
    "default_limits",
    "parse_limits",
]
