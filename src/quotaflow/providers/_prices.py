"""Prices, from genai-prices' bundled data (offline), as integer micro-USD costs."""

from __future__ import annotations

import importlib
import math
import threading
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Final

from quotaflow._errors import ConfigurationError
from quotaflow.providers._exceptions import MissingDependencyError, UnknownModelError
from quotaflow.providers._log import logger
from quotaflow.providers._provider import Provider

if TYPE_CHECKING:
    from datetime import datetime
    from types import ModuleType

    from quotaflow.providers._usage import ReportedUsage

__all__ = ["DEFAULT_FALLBACK", "FallbackPrice", "PriceBook", "price"]

_MICRO: Final = Decimal(1_000_000)
_MAX_WARNED: Final = 4096
#: Seconds a model's flat per-token rates are reused before genai-prices is asked again
#: (prices change on dates; an hour is fresh enough for costs rounded to micro-USD).
_RATES_TTL: Final = 3600.0
_MAX_RATES: Final = 4096
#: The price fields a flat (untiered, token-only) price may have.
_FLAT_FIELDS: Final = frozenset(
    {"input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok"}
)
_PER_MILLION: Final = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class _FlatRates:
    """USD per million tokens of a model whose price is linear in the token counts."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal

    def usd(self, usage: ReportedUsage) -> Decimal:
        uncached = usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens
        return (
            uncached * self.input
            + usage.cache_read_tokens * self.cache_read
            + usage.cache_write_tokens * self.cache_write
            + usage.output_tokens * self.output
        ) / _PER_MILLION


def _flat_rates(model_price: object) -> _FlatRates | None:
    """The flat rates of a genai-prices ``ModelPrice``, or ``None`` if it is tiered or other."""
    fields = {k: v for k, v in vars(model_price).items() if v is not None and k.endswith("mtok")}
    if not fields.keys() <= _FLAT_FIELDS or not all(
        isinstance(v, Decimal) for v in fields.values()
    ):
        return None
    if "input_mtok" not in fields or "output_mtok" not in fields:
        return None
    return _FlatRates(
        input=fields["input_mtok"],
        output=fields["output_mtok"],
        cache_read=fields.get("cache_read_mtok", fields["input_mtok"]),
        cache_write=fields.get("cache_write_mtok", fields["input_mtok"]),
    )


# quotaflow provider -> genai-prices provider id.
_PROVIDER_IDS: Final = {
    Provider.OPENAI: "openai",
    Provider.AZURE: "azure",
    Provider.ANTHROPIC: "anthropic",
    Provider.OPENROUTER: "openrouter",
    Provider.GROQ: "groq",
    Provider.GEMINI: "google",
    Provider.VERTEX: "google",
    Provider.BEDROCK: "aws",
}


def _usd(name: str, value: Decimal | float | str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ConfigurationError(f"{name} must be a number of USD, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ConfigurationError(f"{name} must be a finite, non-negative price, got {value!r}")
    return amount


@dataclass(frozen=True, slots=True)
class FallbackPrice:
    """The price charged for a model genai-prices does not know, in USD per million tokens.

    Cache reads are charged at ``cache_read_per_mtok`` (by default the input price: an
    unknown model is not assumed to discount them).
    """

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cache_read_per_mtok: Decimal | None = None

    def __init__(
        self,
        input_per_mtok: Decimal | float | str,
        output_per_mtok: Decimal | float | str,
        cache_read_per_mtok: Decimal | float | str | None = None,
    ) -> None:
        set_ = object.__setattr__
        set_(self, "input_per_mtok", _usd("input_per_mtok", input_per_mtok))
        set_(self, "output_per_mtok", _usd("output_per_mtok", output_per_mtok))
        cache = (
            None
            if cache_read_per_mtok is None
            else _usd("cache_read_per_mtok", cache_read_per_mtok)
        )
        set_(self, "cache_read_per_mtok", cache)

    def cost_usd(self, usage: ReportedUsage) -> Decimal:
        """The fallback cost of ``usage``, in USD."""
        cache_rate = (
            self.input_per_mtok if self.cache_read_per_mtok is None else self.cache_read_per_mtok
        )
        fresh = usage.input_tokens - usage.cache_read_tokens
        total = (
            fresh * self.input_per_mtok
            + usage.cache_read_tokens * cache_rate
            + usage.output_tokens * self.output_per_mtok
        )
        return total / _MICRO


#: Deliberately high (a frontier model's list price, $15 in / $75 out per million tokens), so
#: that an unknown model over-spends a budget's estimate rather than silently under-spending.
DEFAULT_FALLBACK: Final = FallbackPrice(15, 75)


def _genai_prices() -> ModuleType:
    try:
        return importlib.import_module("genai_prices")
    except ImportError:
        raise MissingDependencyError(
            "prices need the genai-prices package: pip install 'quotaflow[providers]'"
        ) from None


class PriceBook:
    """Turns usage into integer micro-USD costs, with a fallback for unknown models.

    Args:
        fallback: the price of a model genai-prices does not know, or ``None`` to raise
            :class:`UnknownModelError` instead. Either way an unknown model is reported by one
            warning log line per model, never a silent zero.

    Example:
        >>> from quotaflow.providers import ReportedUsage
        >>> PriceBook().cost("gpt-4o", ReportedUsage(1000, 500), provider="openai")
        7500
    """

    def __init__(self, *, fallback: FallbackPrice | None = DEFAULT_FALLBACK) -> None:
        if fallback is not None and not isinstance(fallback, FallbackPrice):
            raise ConfigurationError(f"fallback must be a FallbackPrice or None, got {fallback!r}")
        self._fallback = fallback
        self._warned: set[tuple[str | None, str]] = set()
        self._lock = threading.Lock()
        # Flat per-token rates by (provider, model), learned from genai-prices and checked
        # against its own result once: genai-prices takes ~0.3 ms per call, this ~5 us.
        self._rates: dict[tuple[str | None, str], tuple[float, _FlatRates | None]] = {}

    def cost(
        self,
        model: str,
        usage: ReportedUsage,
        *,
        provider: Provider | str | None = None,
        at: datetime | None = None,
    ) -> int:
        """The cost of ``usage`` on ``model``, in micro-USD, rounded up.

        Cached input is charged at the cache-read price, cache writes at the cache-write
        price, reasoning tokens as output (or at their own price where a model has one).

        Args:
            model: the model, as the provider names it.
            usage: what the call used.
            provider: the provider, to pick its price list (resellers differ); by default
                genai-prices guesses from the model name.
            at: when the call was made, for historic prices (aware); ``None`` uses the
                prices in force now.

        Raises:
            UnknownModelError: no price is known and no fallback was configured.
            MissingDependencyError: genai-prices is not installed.
        """
        if not isinstance(model, str) or not model.strip():
            raise ConfigurationError(f"model must be a non-empty string, got {model!r}")
        provider_id = None if provider is None else _PROVIDER_IDS.get(Provider.parse(provider))
        if at is None:
            cached = self._rates.get((provider_id, model))
            if cached is not None and cached[1] is not None and cached[0] > time.monotonic():
                return math.ceil(cached[1].usd(usage) * _MICRO)
        usd = self._lookup(model, usage, provider_id, at)
        if usd is None:
            usd = self._fall_back(model, usage, provider_id)
        return math.ceil(usd * _MICRO)

    def _lookup(
        self, model: str, usage: ReportedUsage, provider_id: str | None, at: datetime | None
    ) -> Decimal | None:
        genai_prices = _genai_prices()
        values = {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "output_reasoning_tokens": usage.reasoning_tokens,
        }
        request = genai_prices.Usage(**{k: v for k, v in values.items() if v})
        for candidate in dict.fromkeys((provider_id, None)):
            try:
                calculation = genai_prices.calc_price(
                    request, model, provider_id=candidate, genai_request_timestamp=at
                )
            except LookupError:
                continue
            total: Decimal = calculation.total_price
            if at is None:
                self._remember(model, provider_id, calculation.model_price, usage, total)
            return total
        return None

    def _remember(
        self,
        model: str,
        provider_id: str | None,
        model_price: object,
        usage: ReportedUsage,
        total: Decimal,
    ) -> None:
        """Keep the model's flat rates, if its price is flat and they reproduce ``total``."""
        rates = _flat_rates(model_price)
        if rates is not None and abs(rates.usd(usage) - total) > Decimal("1e-9"):
            rates = None  # genai-prices computes it some other way: always ask it
        with self._lock:
            if len(self._rates) >= _MAX_RATES:
                self._rates.clear()
            self._rates[(provider_id, model)] = (time.monotonic() + _RATES_TTL, rates)

    def _fall_back(self, model: str, usage: ReportedUsage, provider_id: str | None) -> Decimal:
        key = (provider_id, model)
        with self._lock:
            first = key not in self._warned
            if first and len(self._warned) < _MAX_WARNED:
                self._warned.add(key)
        if self._fallback is None:
            raise UnknownModelError(
                f"no price known for model {model!r} (provider {provider_id or 'any'}) and no "
                "fallback price is configured"
            )
        if first:
            logger.warning(
                "no price known for model %r (provider %s); charging the fallback price of "
                "$%s/$%s per million input/output tokens",
                model,
                provider_id or "any",
                self._fallback.input_per_mtok,
                self._fallback.output_per_mtok,
            )
        return self._fallback.cost_usd(usage)


_DEFAULT_BOOK: Final = PriceBook()


def price(
    model: str,
    usage: ReportedUsage,
    *,
    provider: Provider | str | None = None,
    at: datetime | None = None,
) -> int:
    """The cost of ``usage`` on ``model`` in micro-USD, with the default fallback price.

    See :meth:`PriceBook.cost`; use a :class:`PriceBook` to configure the fallback.
    """
    return _DEFAULT_BOOK.cost(model, usage, provider=provider, at=at)
