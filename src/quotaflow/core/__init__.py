"""Pure limit math: no I/O, no clock reads, no asyncio. Every operation takes ``now`` in ns."""

from quotaflow.core._engine import Claim, Engine, ReserveResult, Route, State, plan_claims
from quotaflow.core._lease_state import LeaseState
from quotaflow.core._limits import (
    NS_PER_SECOND,
    BoundLimit,
    Concurrency,
    Limit,
    Quota,
    QuotaPeriod,
    Rate,
)
from quotaflow.core._metrics import Metric
from quotaflow.core._quota_state import QuotaState, period_bounds
from quotaflow.core._rate_state import RateState
from quotaflow.core._snapshot import LimitSnapshot
from quotaflow.core._usage import MAX_AMOUNT, Usage, check_amount

__all__ = [
    "MAX_AMOUNT",
    "NS_PER_SECOND",
    "BoundLimit",
    "Claim",
    "Concurrency",
    "Engine",
    "LeaseState",
    "Limit",
    "LimitSnapshot",
    "Metric",
    "Quota",
    "QuotaPeriod",
    "QuotaState",
    "Rate",
    "RateState",
    "ReserveResult",
    "Route",
    "State",
    "Usage",
    "check_amount",
    "period_bounds",
    "plan_claims",
]
