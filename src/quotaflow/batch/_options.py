"""What a file batch run does: :class:`BatchFileOptions`, checked on construction."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from quotaflow._errors import ConfigurationError
from quotaflow.batch._input import RequestLine
from quotaflow.batch._limits import check_limit_names, check_preset
from quotaflow.client import ClientConfig
from quotaflow.providers import Provider

__all__ = ["PROVIDERS", "BatchFileOptions", "OnInvalid"]

#: The providers a file batch can send to.
PROVIDERS: Final = (Provider.OPENAI, Provider.ANTHROPIC, Provider.OPENROUTER)
OnInvalid = Literal["record", "fail"]
_MAX_WORKERS: Final = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchFileOptions:
    """Options of :func:`~quotaflow.batch.run_batch_file` (the ``quotaflow batch`` flags).

    Attributes:
        input: the JSONL input.
        output: the JSONL output; appended to, and read first to resume.
        provider: ``"openai"``, ``"anthropic"`` or ``"openrouter"``.
        base_url: the API's base URL (default: the provider's).
        api_key: the key (default: the provider's environment variable).
        model: the model of lines that name none.
        max_tokens: the output cap of bodies that set none.
        models: the models lines may use; others are invalid lines (``None``: any).
        limits: limits by name (``rpm rpd tpm tpd itpm otpm concurrency``) for every model.
        preset: published limits, as ``openai:tier-3`` or ``anthropic:tier-2`` (the
            provider's family; OpenRouter has ``openrouter:free`` only).
        headroom: the fraction of each limit to use.
        store: a store URL shared with other workers (``redis://...``).
        workers: the most requests in flight.
        max_retries: retries per request (default: the provider's).
        max_cost: the budget in USD; lines with unpriced models are then invalid.
        allow_partial: start even when the worst case exceeds ``max_cost`` (the run stops
            cleanly at the budget).
        dry_run: the pre-flight only.
        on_invalid: ``"record"`` bad lines in OUT, or ``"fail"`` before sending anything.
        retry_failed: redo every failed line of OUT, final failures too.
        grace: seconds in-flight requests get to finish after a stop.
        timeout: seconds per HTTP request.
        index_dir: where the temporary index goes (default: OUT's folder).
        client_config: the governed client's options, replacing those built from these
            options and ``QUOTAFLOW_*`` variables.
        request_headers: extra headers per line (a hook for tests and gateways).
    """

    input: Path
    output: Path
    provider: str = "openai"
    base_url: str | None = None
    api_key: str | None = None
    model: str | None = None
    max_tokens: int | None = None
    models: frozenset[str] | None = None
    limits: Mapping[str, int] = field(default_factory=dict)
    preset: str | None = None
    headroom: float | None = None
    store: str | None = None
    workers: int = 64
    max_retries: int | None = None
    max_cost: float | None = None
    allow_partial: bool = False
    dry_run: bool = False
    on_invalid: OnInvalid = "record"
    retry_failed: bool = False
    grace: float = 30.0
    timeout: float = 600.0
    index_dir: Path | None = None
    client_config: ClientConfig | None = None
    request_headers: Callable[[RequestLine], Mapping[str, str]] | None = None

    def __post_init__(self) -> None:  # noqa: C901, PLR0912 (one check per option)
        object.__setattr__(self, "input", Path(self.input))
        object.__setattr__(self, "output", Path(self.output))
        if self.provider_enum not in PROVIDERS:
            raise ConfigurationError(f"provider must be one of {_names()}, got {self.provider!r}")
        if self.input.resolve() == self.output.resolve():
            raise ConfigurationError("the output file must not be the input file")
        if not 1 <= self.workers <= _MAX_WORKERS:
            raise ConfigurationError(f"workers must be in [1, {_MAX_WORKERS}], got {self.workers}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ConfigurationError(f"max_tokens must be positive, got {self.max_tokens}")
        check_limit_names(self.limits)
        for name, amount in self.limits.items():
            if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
                raise ConfigurationError(f"limit {name} must be a positive integer, got {amount!r}")
        if self.preset is not None:
            check_preset(self.preset, self.provider_enum)
        if self.max_cost is not None and not (math.isfinite(self.max_cost) and self.max_cost > 0):
            raise ConfigurationError(f"max_cost must be a positive amount, got {self.max_cost}")
        if self.on_invalid not in {"record", "fail"}:
            raise ConfigurationError(
                f"on_invalid must be 'record' or 'fail', got {self.on_invalid!r}"
            )
        for name in ("grace", "timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigurationError(f"{name} must be non-negative seconds, got {value!r}")
        if self.max_retries is not None and self.max_retries < 0:
            raise ConfigurationError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.models is not None and not self.models:
            raise ConfigurationError("models must name at least one model")

    @property
    def provider_enum(self) -> Provider:
        """The provider, parsed."""
        try:
            return Provider.parse(self.provider)
        except (ValueError, ConfigurationError):
            raise ConfigurationError(
                f"provider must be one of {_names()}, got {self.provider!r}"
            ) from None

    @property
    def max_cost_micros(self) -> int | None:
        """``max_cost`` in micro-USD."""
        return None if self.max_cost is None else math.floor(self.max_cost * 1_000_000)


def _names() -> str:
    return ", ".join(p.value for p in PROVIDERS)
