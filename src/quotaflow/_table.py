"""Which limits apply to which scope.

Keys are exact scopes (``"openai:gpt-4o"``) or prefix patterns ending in ``*`` (``"user:*"``
gives every ``user:…`` scope its own copy of the limits). An exact key wins over a pattern and
a longer pattern over a shorter one. Replacing the limits of a key keeps the state of every
limit whose identity (metric, kind and period) is unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from quotaflow._errors import ConfigurationError
from quotaflow.core import Limit, Route
from quotaflow.core._limits import Concurrency, Quota, Rate

__all__ = ["LimitTable", "Scopes"]

#: One scope or several; an admission spans all of them.
Scopes = str | Sequence[str]

_MAX_SCOPES_PER_REQUEST: Final = 64
_MAX_SCOPE_LENGTH: Final = 512
_RESOLVED_CACHE_SIZE: Final = 16_384


def _check_limits(key: str, limits: Limit | Iterable[Limit]) -> tuple[Limit, ...]:
    items = (limits,) if isinstance(limits, Rate | Quota | Concurrency) else tuple(limits)
    seen: dict[str, Limit] = {}
    for limit in items:
        if not isinstance(limit, Rate | Quota | Concurrency):
            raise ConfigurationError(
                f"limits of {key!r} must be Rate, Quota or Concurrency, got {limit!r}"
            )
        if limit.key in seen:
            raise ConfigurationError(
                f"{key!r} has two limits of the same kind: {seen[limit.key]} and {limit}"
            )
        seen[limit.key] = limit
    return items


def _check_scope(scope: object) -> str:
    if not isinstance(scope, str) or not scope:
        raise ConfigurationError(f"a scope must be a non-empty string, got {scope!r}")
    if len(scope) > _MAX_SCOPE_LENGTH:
        raise ConfigurationError(
            f"scope {scope[:40]!r}… is longer than {_MAX_SCOPE_LENGTH} characters"
        )
    return scope


class LimitTable:
    """Scopes and patterns mapped to their limits; resolves a request's scopes to limits."""

    __slots__ = ("_exact", "_lock", "_patterns", "_resolved", "_version")

    def __init__(self, limits: Mapping[str, Limit | Iterable[Limit]]) -> None:
        self._exact: dict[str, tuple[Limit, ...]] = {}
        self._patterns: list[tuple[str, tuple[Limit, ...]]] = []
        self._resolved: dict[Scopes, Route] = {}
        self._lock = threading.Lock()
        self._version = 0  # changes with every set/remove, so a stale route is never cached
        for key, value in limits.items():
            self.set(key, value)

    def set(self, key: str, limits: Limit | Iterable[Limit]) -> None:
        """Set the limits of a scope or pattern, replacing any it had."""
        _check_scope(key)
        checked = _check_limits(key, limits)
        with self._lock:
            if key.endswith("*"):
                prefix = key[:-1]
                patterns = [(p, ls) for p, ls in self._patterns if p != prefix]
                patterns.append((prefix, checked))
                patterns.sort(key=lambda item: len(item[0]), reverse=True)
                self._patterns = patterns
            else:
                self._exact[key] = checked
            self._resolved = {}
            self._version += 1

    def remove(self, key: str) -> None:
        """Remove a scope or pattern; requests for it then fail with ``ConfigurationError``."""
        with self._lock:
            if key.endswith("*"):
                self._patterns = [(p, ls) for p, ls in self._patterns if p != key[:-1]]
            else:
                self._exact.pop(key, None)
            self._resolved = {}
            self._version += 1

    def limits_of(self, scope: str) -> tuple[Limit, ...]:
        """Return the limits that apply to ``scope``."""
        limits = self._exact.get(scope)
        if limits is not None:
            return limits
        for prefix, pattern_limits in self._patterns:
            if scope.startswith(prefix):
                return pattern_limits
        known = ", ".join(sorted([*self._exact, *(p + "*" for p, _ in self._patterns)])) or "none"
        raise ConfigurationError(
            f"no limits are configured for scope {scope!r} (configured: {known})"
        )

    def limits_of_or_none(self, scope: str) -> tuple[Limit, ...] | None:
        """The limits that apply to ``scope``, or ``None`` when none are configured."""
        try:
            return self.limits_of(scope)
        except ConfigurationError:
            return None

    def resolve(self, scopes: Scopes) -> Route:
        """Return the route (scopes and their limits) of a request; cached."""
        try:
            route = self._resolved.get(scopes)
        except TypeError:  # an unhashable sequence, such as a list
            route = None
        if route is not None:
            return route
        key = (scopes,) if isinstance(scopes, str) else tuple(scopes)
        if not key:
            raise ConfigurationError("a request must name at least one scope")
        if len(key) > _MAX_SCOPES_PER_REQUEST:
            raise ConfigurationError(
                f"a request spans at most {_MAX_SCOPES_PER_REQUEST} scopes, got {len(key)}"
            )
        for scope in key:
            _check_scope(scope)
        if len(set(key)) != len(key):
            raise ConfigurationError(f"a request names a scope twice: {key!r}")
        version = self._version
        route = Route([(scope, self.limits_of(scope)) for scope in key])
        with self._lock:
            if version == self._version:  # the limits did not change meanwhile
                if len(self._resolved) >= _RESOLVED_CACHE_SIZE:
                    self._resolved = {}
                self._resolved[key] = route
                if isinstance(scopes, str):
                    self._resolved[scopes] = route
        return route
