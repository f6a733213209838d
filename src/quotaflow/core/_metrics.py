"""What a limit counts."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Metric"]


class Metric(StrEnum):
    """The quantities a limit can count.

    ``TOKENS`` is input plus output (the combined TPM of OpenAI and Anthropic); ``INPUT_TOKENS``
    and ``OUTPUT_TOKENS`` are the split limits of Vertex AI or Anthropic's ITPM/OTPM. ``COST`` is
    in integer micro-USD (1 USD = 1,000,000), never a float. ``CONCURRENT`` counts calls in
    flight.
    """

    REQUESTS = "requests"
    TOKENS = "tokens"
    INPUT_TOKENS = "input_tokens"
    OUTPUT_TOKENS = "output_tokens"
    COST = "cost"
    CONCURRENT = "concurrent"

    @classmethod
    def parse(cls, value: str | Metric) -> Metric:
        """Return the metric named ``value``; raise ``ConfigurationError`` naming it otherwise."""
        try:
            return cls(value)
        except ValueError:
            from quotaflow._errors import ConfigurationError  # noqa: PLC0415 (avoid an import cycle)

            known = ", ".join(m.value for m in cls)
            raise ConfigurationError(
                f"unknown metric {value!r}; expected one of: {known}"
            ) from None
