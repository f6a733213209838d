"""Choosing a store by URL: ``memory://``, ``sqlite:///path.db`` and the Redis family.

Options go in the query string (``redis://host:6379/0?namespace=prod&pool_size=32``). Every
option is checked: an unknown scheme or option, or a value of the wrong kind, raises
:class:`~quotaflow.ConfigurationError` naming it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from quotaflow._clock import Clock
from quotaflow._errors import ConfigurationError
from quotaflow.stores._memory import MemoryStore

__all__ = ["SCHEMES", "open_store"]

_REDIS: Final = (
    "redis",
    "rediss",
    "redis+unix",
    "redis+cluster",
    "rediss+cluster",
    "redis+sentinel",
)

#: Every URL scheme :func:`open_store` accepts.
SCHEMES: Final = ("memory", "sqlite", *_REDIS)


def _integer(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(f"store option {name} must be an integer, got {text!r}") from None


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigurationError(f"store option {name} must be seconds, got {text!r}") from None
    if not math.isfinite(value):
        raise ConfigurationError(f"store option {name} must be finite, got {text!r}")
    return value


_REDIS_OPTIONS: Final[dict[str, Callable[[str, str], Any]]] = {
    "namespace": lambda _, text: text,
    "pool_size": _integer,
    "retries": _integer,
    "socket_timeout": _seconds,
    "connect_timeout": _seconds,
    "backoff_base": _seconds,
    "backoff_cap": _seconds,
}
_MEMORY_OPTIONS: Final[dict[str, Callable[[str, str], Any]]] = {"sweep_interval": _seconds}


def _options(url: str, query: str, known: dict[str, Callable[[str, str], Any]]) -> dict[str, Any]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ConfigurationError(f"bad query string in store URL {url!r}") from None
    options: dict[str, Any] = {}
    for name, text in pairs:
        if name not in known:
            raise ConfigurationError(
                f"unknown store option {name!r} in {url!r}; known: {', '.join(sorted(known))}"
            )
        if name in options:
            raise ConfigurationError(f"store option {name!r} given twice in {url!r}")
        options[name] = known[name](name, text)
    return options


def open_store(url: str, *, clock: Clock | None = None) -> Any:  # noqa: ANN401 (a store)
    """Return the store a URL names.

    ``memory://`` (options: ``sweep_interval``); ``sqlite:///relative.db`` or
    ``sqlite:////absolute.db`` (options: ``busy_timeout``, ``sweep_interval``);
    ``redis://``, ``rediss://``, ``redis+unix://``, ``redis+cluster://h1:p1,h2:p2`` and
    ``redis+sentinel://h1:p1,h2:p2/service`` (options: ``namespace``, ``pool_size``,
    ``socket_timeout``, ``connect_timeout``, ``retries``, ``backoff_base``, ``backoff_cap``).

    ``clock`` is used by the embedded stores; Redis keeps its own time unless a clock is
    given (tests).

    Raises:
        ConfigurationError: an unknown scheme or option, or a bad value.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"store URL must be a string, got {url!r}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        if parts.netloc or parts.path not in {"", "/"}:
            raise ConfigurationError(f"memory:// takes no host or path, got {url!r}")
        return MemoryStore(clock=clock, **_options(url, parts.query, _MEMORY_OPTIONS))
    if scheme == "sqlite":
        from quotaflow.stores._sqlite import SqliteStore  # noqa: PLC0415 (optional module)

        return SqliteStore.from_url(url, clock=clock)
    if scheme in _REDIS:
        try:
            from quotaflow.stores._redis import RedisStore  # noqa: PLC0415 (optional dependency)
            from quotaflow.stores._redis_clients import RedisOptions  # noqa: PLC0415
        except ImportError as error:  # pragma: no cover - redis is a test dependency
            raise ConfigurationError(
                f"{scheme}:// needs redis-py: pip install 'quotaflow[redis]' ({error})"
            ) from error
        options = _options(url, parts.query, _REDIS_OPTIONS)
        namespace = options.pop("namespace", "quotaflow")
        bare = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return RedisStore(bare, namespace=namespace, clock=clock, options=RedisOptions(**options))
    known = ", ".join(f"{name}://" for name in SCHEMES)
    raise ConfigurationError(f"unknown store URL scheme {parts.scheme!r} in {url!r}; use {known}")
