"""OpenRouter's key endpoint (``GET /api/v1/key``): the credit limit and the usage so far."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from quotaflow.emulator._config import EmulatorConfig

__all__ = ["INPUT_PRICE", "OUTPUT_PRICE", "key_info"]

#: The emulator's fixed prices, USD per token: $1 per million input, $4 per million output.
INPUT_PRICE: Final = 1.0 / 1_000_000
OUTPUT_PRICE: Final = 4.0 / 1_000_000


def key_info(config: EmulatorConfig, input_tokens: int, output_tokens: int) -> dict[str, object]:
    """The ``{"data": {...}}`` body, the usage priced at the fixed prices.

    Every usage window (daily, weekly, monthly) reports the whole run; ``rate_limit`` (which
    OpenRouter deprecated) reports the OpenAI requests per minute.
    """
    usage = input_tokens * INPUT_PRICE + output_tokens * OUTPUT_PRICE
    limit = config.openrouter_credit_limit
    return {
        "data": {
            "label": "quotaflow-emulator",
            "limit": limit,
            "limit_remaining": None if limit is None else max(0.0, limit - usage),
            "limit_reset": None,
            "include_byok_in_limit": False,
            "usage": usage,
            "usage_daily": usage,
            "usage_weekly": usage,
            "usage_monthly": usage,
            "byok_usage": 0.0,
            "is_free_tier": False,
            "rate_limit": {"requests": config.openai_rpm, "interval": "1m"},
        }
    }
