"""OpenRouter's limits and credits, from its key endpoint (``GET /api/v1/key``).

OpenRouter sends no rate-limit headers on successful responses, so the governed client asks
the key endpoint once per scope instead. It reads the key's credit limit and what is left of
it, the daily request allowance of ``:free`` models, and the deprecated ``rate_limit``
(``{"requests": 10, "interval": "10s"}``), which some deployments still send.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from quotaflow.core import Metric
from quotaflow.providers import parse_duration

__all__ = ["OpenRouterKey", "key_url", "parse_key_info"]

_DAY: Final = 86_400.0
_RESETS: Final = {"daily", "weekly", "monthly"}


@dataclass(frozen=True, slots=True)
class OpenRouterKey:
    """What OpenRouter's key endpoint says about a key.

    Attributes:
        limits: rate limits, ``{(metric, window seconds): limit}``.
        credit_limit: the key's credit limit in USD (``None``: unlimited).
        credits_remaining: USD left under it (``None``: unlimited).
        limit_reset: ``"daily"``, ``"weekly"``, ``"monthly"`` or ``None`` (never).
    """

    limits: dict[tuple[Metric, float], int] = field(default_factory=dict)
    credit_limit: float | None = None
    credits_remaining: float | None = None
    limit_reset: str | None = None

    @property
    def exhausted(self) -> bool:
        """Whether the key's credit limit is used up."""
        return self.credits_remaining is not None and self.credits_remaining <= 0

    def resets_at(self, now: datetime) -> datetime | None:
        """When the credit limit resets (UTC boundaries), or ``None`` if it never does."""
        midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        if self.limit_reset == "daily":
            return midnight + timedelta(days=1)
        if self.limit_reset == "weekly":  # OpenRouter's weeks start on Monday
            return midnight + timedelta(days=7 - midnight.weekday())
        if self.limit_reset == "monthly":
            first = midnight.replace(day=1)
            return (first + timedelta(days=32)).replace(day=1)
        return None


def key_url(url: str) -> str:
    """The key endpoint next to a completion URL (``…/api/v1/chat/completions`` → ``…/key``)."""
    base = url.split("?", 1)[0].rstrip("/")
    for suffix in ("/chat/completions", "/responses", "/messages", "/completions"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base + "/key"


def parse_key_info(body: bytes | str) -> OpenRouterKey | None:
    """Read the key endpoint's ``{"data": {...}}``; ``None`` when it is not that."""
    try:
        data = json.loads(body).get("data")
    except (ValueError, AttributeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    limits: dict[tuple[Metric, float], int] = {}
    rate = data.get("rate_limit")
    if isinstance(rate, dict):
        requests, interval = _count(rate.get("requests")), parse_duration(rate.get("interval"))
        if requests and interval:
            limits[(Metric.REQUESTS, interval)] = requests
    free = data.get("free_model_daily_requests")
    daily = _count(free.get("limit")) if isinstance(free, dict) else None
    if daily:
        limits[(Metric.REQUESTS, _DAY)] = daily
    reset = data.get("limit_reset")
    return OpenRouterKey(
        limits=limits,
        credit_limit=_amount(data.get("limit")),
        credits_remaining=_amount(data.get("limit_remaining")),
        limit_reset=reset if reset in _RESETS else None,
    )


def _count(value: object) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 1:
        return int(value)
    return None


def _amount(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
