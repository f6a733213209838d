"""``quotaflow batch --config FILE``: the run's settings in TOML (flags override them).

::

    provider = "openai"  # and base_url, model, max_tokens, models = ["a", "b"],
    model = "gpt-4o-mini"  # preset, headroom, store, workers, max_retries, max_cost,
    workers = 32  # grace, timeout
    [limits]  # rpm rpd tpm tpd itpm otpm concurrency
    rpm = 500
    tpm = 200000

A top-level ``concurrency`` is the same as ``[limits] concurrency``. No secrets here: the
API key comes from ``--api-key`` or the provider's environment variable.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Final

from quotaflow._errors import ConfigurationError
from quotaflow.batch._limits import check_limit_names

__all__ = ["load_config"]

_STRINGS: Final = ("provider", "base_url", "model", "preset", "store")
_INTS: Final = ("max_tokens", "workers", "max_retries")
_NUMBERS: Final = ("headroom", "max_cost", "grace", "timeout")


def load_config(path: Path) -> dict[str, Any]:
    """The settings of ``path`` by option name (``limits`` as a mapping of numbers).

    Raises:
        ConfigurationError: the file cannot be read, or has an unknown key or a bad value.
    """
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise ConfigurationError(f"cannot read {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"{path} is not valid TOML: {error}") from None
    settings: dict[str, Any] = {}
    limits = _limits(path, data.pop("limits", {}))
    if "concurrency" in data:
        limits.setdefault("concurrency", _int(path, "concurrency", data.pop("concurrency")))
    if limits:
        settings["limits"] = limits
    if "models" in data:
        settings["models"] = _models(path, data.pop("models"))
    for key, value in data.items():
        settings[key] = _value(path, key, value)
    return settings


def _value(path: Path, key: str, value: object) -> object:
    if key in _STRINGS:
        if not isinstance(value, str):
            raise ConfigurationError(f"{path}: {key} must be a string, got {value!r}")
        return value
    if key in _INTS:
        return _int(path, key, value)
    if key in _NUMBERS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigurationError(f"{path}: {key} must be a number, got {value!r}")
        return float(value)
    known = ", ".join((*_STRINGS, *_INTS, *_NUMBERS, "models", "concurrency", "[limits]"))
    raise ConfigurationError(f"{path}: unknown setting {key!r}; known: {known}")


def _int(path: Path, key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{path}: {key} must be a whole number, got {value!r}")
    return value


def _limits(path: Path, table: object) -> dict[str, int]:
    if not isinstance(table, dict):
        raise ConfigurationError(f"{path}: [limits] must be a table")
    check_limit_names(table, f"{path}: ")
    return {name: _int(path, f"limits.{name}", value) for name, value in table.items()}


def _models(path: Path, value: object) -> frozenset[str]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(m, str) for m in value):
        raise ConfigurationError(f"{path}: models must be a list of model names")
    return frozenset(value)
