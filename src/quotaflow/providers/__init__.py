"""Provider intelligence for the LLM APIs quotaflow governs.

Rate-limit headers, retry hints, error classes, usage, estimates, prices and presets.

Everything here is pure: no network, no clock reads (pass ``now``), and parsers of provider
output never raise on what a provider sends; they skip it and log once in a while.
"""

from __future__ import annotations

from quotaflow.providers import presets
from quotaflow.providers._accounting import (
    AccountingRule,
    accounting_rule,
    admission_usage,
    counted_usage,
    quota_reset,
)
from quotaflow.providers._classify import (
    ErrorClass,
    ErrorKind,
    NamedLimit,
    classify_error,
    classify_exception,
    classify_stream_error,
)
from quotaflow.providers._durations import (
    parse_delay,
    parse_duration,
    parse_http_date,
    parse_protobuf_duration,
    parse_rfc3339,
)
from quotaflow.providers._estimate import Estimate, default_counter, estimate_request_tokens
from quotaflow.providers._exceptions import MissingDependencyError, UnknownModelError
from quotaflow.providers._headers import LimitState, RateLimitSnapshot, parse_rate_limit_headers
from quotaflow.providers._learning import LearnedModel, UsageLearner
from quotaflow.providers._prices import DEFAULT_FALLBACK, FallbackPrice, PriceBook, price
from quotaflow.providers._provider import Provider
from quotaflow.providers._retry import (
    DEFAULT_MAX_DELAY,
    HintSource,
    RetryHint,
    backoff,
    body_retry_delay,
    retry_hint,
)
from quotaflow.providers._sse import SSEDecoder, SSEEvent
from quotaflow.providers._stream import StreamUsage, StreamUsageAccumulator
from quotaflow.providers._tokenizers import (
    HeuristicCounter,
    TokenCounter,
    encoding_for_model,
    exact_counter,
)
from quotaflow.providers._usage import ReportedUsage, extract_usage

__all__ = [
    "DEFAULT_FALLBACK",
    "DEFAULT_MAX_DELAY",
    "AccountingRule",
    "ErrorClass",
    "ErrorKind",
    "Estimate",
    "FallbackPrice",
    "HeuristicCounter",
    "HintSource",
    "LearnedModel",
    "LimitState",
    "MissingDependencyError",
    "NamedLimit",
    "PriceBook",
    "Provider",
    "RateLimitSnapshot",
    "ReportedUsage",
    "RetryHint",
    "SSEDecoder",
    "SSEEvent",
    "StreamUsage",
    "StreamUsageAccumulator",
    "TokenCounter",
    "UnknownModelError",
    "UsageLearner",
    "accounting_rule",
    "admission_usage",
    "backoff",
    "body_retry_delay",
    "classify_error",
    "classify_exception",
    "classify_stream_error",
    "counted_usage",
    "default_counter",
    "encoding_for_model",
    "estimate_request_tokens",
    "exact_counter",
    "extract_usage",
    "parse_delay",
    "parse_duration",
    "parse_http_date",
    "parse_protobuf_duration",
    "parse_rate_limit_headers",
    "parse_rfc3339",
    "presets",
    "price",
    "quota_reset",
    "retry_hint",
]
