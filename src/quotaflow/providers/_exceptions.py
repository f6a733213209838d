"""The errors this package adds to quotaflow's hierarchy."""

from __future__ import annotations

from quotaflow._errors import QuotaflowError

__all__ = ["MissingDependencyError", "UnknownModelError"]


class MissingDependencyError(QuotaflowError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    reason = "missing_dependency"


class UnknownModelError(QuotaflowError, LookupError):
    """No price is known for a model and no fallback price was configured."""

    reason = "unknown_model"
