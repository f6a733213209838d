"""The queue manager's errors."""

from __future__ import annotations

from quotaflow._errors import ConfigurationError, QuotaflowError

__all__ = ["ModelNotRegisteredError", "QueueClosedError", "QueueFullError"]


class ModelNotRegisteredError(ConfigurationError, KeyError):
    """No queue is registered for the model."""

    def __init__(self, model_id: str, known: list[str]) -> None:
        self.model_id = model_id
        names = ", ".join(repr(k) for k in known) or "none"
        super().__init__(f"no queue is registered for model {model_id!r} (registered: {names})")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class QueueClosedError(QuotaflowError):
    """The queue is shutting down or shut down: it accepts no new request."""


class QueueFullError(QuotaflowError):
    """The queue holds ``max_queue_size`` waiting requests already."""
