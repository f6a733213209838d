"""The providers quotaflow knows, and the provider families that share wire formats."""

from __future__ import annotations

from enum import StrEnum

from quotaflow._errors import ConfigurationError

__all__ = ["Provider"]


class Provider(StrEnum):
    """An LLM API whose headers, errors and usage reports quotaflow understands.

    ``GROQ`` stands for the OpenAI-compatible clones that copy OpenAI's header names; ``GENERIC``
    is any other server: only the IETF ``RateLimit`` fields, the conventional
    ``X-RateLimit-*`` headers, OpenAI-style headers and ``Retry-After`` are read.
    """

    OPENAI = "openai"
    AZURE = "azure"
    ANTHROPIC = "anthropic"
    OPENROUTER = "openrouter"
    GROQ = "groq"
    GEMINI = "gemini"
    VERTEX = "vertex"
    BEDROCK = "bedrock"
    GENERIC = "generic"

    @classmethod
    def parse(cls, value: str | Provider) -> Provider:
        """Return the provider named ``value``; raise ``ConfigurationError`` otherwise."""
        if isinstance(value, Provider):
            return value
        try:
            return cls(value.strip().lower())
        except (ValueError, AttributeError):
            known = ", ".join(p.value for p in cls)
            raise ConfigurationError(
                f"unknown provider {value!r}; expected one of: {known}"
            ) from None

    @property
    def openai_compatible(self) -> bool:
        """Whether error bodies and usage follow OpenAI's Chat Completions shapes."""
        return self in _OPENAI_COMPATIBLE

    @property
    def google(self) -> bool:
        """Whether errors use the ``google.rpc`` status shape (Gemini API, Vertex AI)."""
        return self in {Provider.GEMINI, Provider.VERTEX}


_OPENAI_COMPATIBLE = frozenset(
    {Provider.OPENAI, Provider.AZURE, Provider.OPENROUTER, Provider.GROQ, Provider.GENERIC}
)
