"""The emulator's state and its decision on each generation request, taken at arrival.

All of it runs on one event loop, without awaiting, so no lock is needed.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import TYPE_CHECKING

from quotaflow.core import NS_PER_SECOND
from quotaflow.emulator._admission import admit_anthropic, admit_openai, count_request
from quotaflow.emulator._call import Api, Call
from quotaflow.emulator._errors import (
    ErrorReply,
    invalid_request,
    quota_exhausted,
    rate_limit_fault,
    rate_limited,
    server_fault,
    unauthorized,
)
from quotaflow.emulator._faults import AFTER_ADMISSION, Fault, draw_fault
from quotaflow.emulator._ids import Ids
from quotaflow.emulator._meter import Meter
from quotaflow.emulator._output import draw_output
from quotaflow.emulator._rate_headers import anthropic_rate_headers, openai_rate_headers
from quotaflow.emulator._requests import BadRequestError, ParsedRequest, parse_request
from quotaflow.emulator._state import ModelState
from quotaflow.emulator._timefmt import http_date
from quotaflow.providers import Provider, estimate_request_tokens

if TYPE_CHECKING:
    from collections.abc import Mapping

    from quotaflow.emulator._clock import TimeSource
    from quotaflow.emulator._config import EmulatorConfig

__all__ = ["Emulator"]

_BEARER = "bearer "


class Emulator:
    """Buckets per (family, model), counters and seeded generators, behind the endpoints.

    Args:
        config: what to enforce.
        clock: the time source (``now_ns()``).
    """

    def __init__(self, config: EmulatorConfig, clock: TimeSource) -> None:
        self.config = config
        self.clock = clock
        self._rates = {Fault(name): rate for name, rate in config.fault_rates.items()}
        self.models: dict[tuple[Provider, str], ModelState] = {}
        self.errors: Counter[str] = Counter()
        self.admitted: Counter[Provider] = Counter()
        self.rng = random.Random(config.seed)  # noqa: S311 (a simulation, not security)
        self.ids = Ids(config.seed)
        self.reset()

    def reset(self) -> None:
        """Forget everything: fresh (full) buckets, zero counters, generators reseeded."""
        self.models = {}
        self.errors = Counter()
        self.admitted = Counter()
        self.rng = random.Random(self.config.seed)  # noqa: S311
        self.ids = Ids(self.config.seed)

    def state(self, family: Provider, model: str, now_ns: int) -> ModelState:
        """The buckets and counters of ``model`` under ``family``, created (full) on first use."""
        key = (family, model)
        state = self.models.get(key)
        if state is None:
            state = self.models[key] = ModelState(self.config, family, model, now_ns)
        return state

    def rate_headers(self, state: ModelState, now_ns: int) -> dict[str, str]:
        """The family's rate-limit headers for ``state`` at ``now_ns``."""
        if state.family is Provider.ANTHROPIC:
            return anthropic_rate_headers(
                state, now_ns, round_remaining=self.config.round_anthropic_remaining
            )
        return openai_rate_headers(state, now_ns)

    def authorized(self, family: Provider, headers: Mapping[str, str]) -> bool:
        """Whether the request carries the configured key (always, when none is configured).

        OpenAI and OpenRouter send ``Authorization: Bearer``; Anthropic ``x-api-key`` (its
        bearer form is accepted too).
        """
        expected = self.config.api_key
        if expected is None:
            return True
        authorization = headers.get("authorization", "")
        bearer = authorization[: len(_BEARER)].lower() == _BEARER
        if bearer and authorization[len(_BEARER) :].strip() == expected:
            return True
        return family is Provider.ANTHROPIC and headers.get("x-api-key") == expected

    def receive(self, api: Api, headers: Mapping[str, str], raw: bytes) -> ErrorReply | Call:
        """Decide on a request at its arrival: an error reply, or an admitted call.

        Order: the key (401), the body (400), the exhausted quota, a fault that strikes before
        admission, admission (429), then the output draw. Faults before admission: ``500``,
        ``503`` and ``529`` count one request (when the request buckets hold one) and no
        tokens; ``insufficient_quota`` and ``rate_limit`` count nothing.
        """
        family = api.family
        now = self.clock.now_ns()
        request_id = self.ids.request_id(family)
        base = {
            "date": http_date(now),
            "request-id" if family is Provider.ANTHROPIC else "x-request-id": request_id,
        }
        if not self.authorized(family, headers):
            self.errors["401"] += 1
            return _with(unauthorized(family, request_id), base)
        try:
            request = parse_request(api, headers, raw)
        except BadRequestError as exc:
            self.errors["400"] += 1
            return _with(invalid_request(family, exc.message, request_id, exc.param), base)
        state = self.state(family, request.model, now)
        fault = request.fault if request.fault is not None else draw_fault(self.rng, self._rates)
        reply = self._before_admission(family, request, state, fault, now, request_id)
        input_tokens = 0
        if reply is None:
            input_tokens = estimate_request_tokens(family, request.body).input_tokens
            reply = self._admit(family, request, state, input_tokens, now, request_id)
        if reply is not None:
            return _with(reply, base | self.rate_headers(state, now))
        if fault is Fault.CUT_STREAM and not request.stream:
            fault = None  # cutting a stream means nothing to a non-streamed call
        if fault is not None:
            state.stats.faults[fault.value] += 1
        output = draw_output(
            self.rng, self.config.output_tokens, request.max_tokens, request.forced_output
        )
        meter = Meter(
            state,
            self.clock,
            max_tokens=request.max_tokens,
            refund_unused=self.config.refund_unused,
        )
        return Call(
            api=api,
            model=request.model,
            request=request.body,
            stream=request.stream,
            include_usage=request.include_usage,
            input_tokens=input_tokens,
            max_tokens=request.max_tokens,
            output=output,
            id=self.ids.response_id(api),
            created=now // NS_PER_SECOND,
            headers=base | self.rate_headers(state, now),
            fault=fault,
            meter=meter,
        )

    def _before_admission(
        self,
        family: Provider,
        request: ParsedRequest,
        state: ModelState,
        fault: Fault | None,
        now: int,
        request_id: str,
    ) -> ErrorReply | None:
        quota = self.config.quota_exhausted_after
        if quota is not None and self.admitted[family] >= quota:
            state.stats.quota_exhausted += 1
            return quota_exhausted(family, request_id)
        if fault is None or fault in AFTER_ADMISSION:
            return None
        state.stats.faults[fault.value] += 1
        if fault is Fault.INSUFFICIENT_QUOTA:
            return quota_exhausted(family, request_id)
        if fault is Fault.RATE_LIMIT:
            rpm = state.bucket("requests").limit
            return rate_limit_fault(family, request.model, rpm, request_id)
        count_request(state, now)
        return server_fault(family, fault, request_id)

    def _admit(
        self,
        family: Provider,
        request: ParsedRequest,
        state: ModelState,
        input_tokens: int,
        now: int,
        request_id: str,
    ) -> ErrorReply | None:
        if family is Provider.ANTHROPIC:
            refusal = admit_anthropic(state, input_tokens, now)
        else:
            refusal = admit_openai(state, input_tokens, request.max_tokens, now)
        if refusal is not None:
            state.stats.rate_limited[refusal.label] += 1
            return rate_limited(family, request.model, refusal, now, request_id)
        state.stats.admit(input_tokens, now)
        self.admitted[family] += 1
        return None

    def stats(self) -> dict[str, object]:
        """``GET /emulator/stats``: per family and model, counters and buckets."""
        now = self.clock.now_ns()
        families: dict[str, dict[str, object]] = {}
        for (family, model), state in self.models.items():
            families.setdefault(family.value, {})[model] = state.stats.as_json(state.buckets, now)
        return {
            "now_ns": now,
            "families": families,
            "admitted": {family.value: count for family, count in self.admitted.items()},
            "errors": dict(self.errors),
        }

    def token_totals(self) -> tuple[int, int]:
        """Input and output tokens counted so far, over every family and model."""
        states = self.models.values()
        return (
            sum(s.stats.input_tokens for s in states),
            sum(s.stats.output_tokens for s in states),
        )


def _with(reply: ErrorReply, headers: dict[str, str]) -> ErrorReply:
    return ErrorReply(reply.status, reply.body, headers | reply.headers)
