"""Per-model queues with priorities, admitted by quotaflow's engine.

A :class:`QueueManager` holds one queue per model. Each queue orders its waiting requests by
priority (with aging, so nothing starves, and optional minimum shares per priority class) and
admits them one reservation at a time under all of the model's limits: requests per minute
and per day, tokens, input and output tokens, and concurrency. See ``docs/queues.md``.
"""

from __future__ import annotations

from quotaflow.queue._errors import ModelNotRegisteredError, QueueClosedError, QueueFullError
from quotaflow.queue._manager import QueueManager
from quotaflow.queue._models import (
    ModelConfig,
    QueueRequest,
    QueueResponse,
    RateLimiterConfig,
    RateLimiterType,
    RequestStatus,
)
from quotaflow.queue._queue import ModelQueue, Processor, QueueInfo, UsageOf

__all__ = [
    "ModelConfig",
    "ModelNotRegisteredError",
    "ModelQueue",
    "Processor",
    "QueueClosedError",
    "QueueFullError",
    "QueueInfo",
    "QueueManager",
    "QueueRequest",
    "QueueResponse",
    "RateLimiterConfig",
    "RateLimiterType",
    "RequestStatus",
    "UsageOf",
]
