"""The queue manager: one priority queue per model, all admitted through one limiter."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Generic, Self, TypeVar

from quotaflow._clock import Clock, SystemClock
from quotaflow._errors import ConfigurationError
from quotaflow._limiter import Limiter
from quotaflow.queue._errors import ModelNotRegisteredError
from quotaflow.queue._models import ModelConfig, QueueRequest, QueueResponse, RequestStatus
from quotaflow.queue._queue import ModelQueue, Processor, QueueInfo, UsageOf
from quotaflow.stores import AsyncStore, FaultMode, FaultPolicy

__all__ = ["QueueManager"]

P = TypeVar("P")
T = TypeVar("T")


class QueueManager(Generic[P, T]):
    """Queues per model with their own limits and priorities, admitted by quotaflow's engine.

    Each registered model gets a queue. A request waits in its model's queue until the
    scheduler picks it (by priority, with aging and minimum shares) and every limit of the
    model admits it in one reservation; then its processor runs, and the reservation is
    settled with the actual usage.

    Args:
        store: where the limits' state lives (a store or a URL); share one store, and the same
            ``ModelConfig.scope``, across processes to share the limits.
        limiter: an existing :class:`~quotaflow.Limiter` to admit through instead (its other
            scopes are left alone); its clock is the queues' clock.
        clock: the time source (a :class:`~quotaflow.testing.FakeClock` in tests); with a
            ``limiter``, it must be that limiter's clock.
        fault_policy: what to do while a shared store is unreachable (see ``Limiter``).

    Example:
        >>> manager = QueueManager()
        >>> await manager.register_queue(ModelConfig("gpt-4o", rpm=500, tpm=30_000), call_model)
        >>> response = await manager.submit(
        ...     QueueRequest(
        ...         "gpt-4o",
        ...         params={"prompt": "Hi"},
        ...         estimated_input_tokens=12,
        ...         estimated_output_tokens=200,
        ...         priority=1,
        ...     )
        ... )
    """

    def __init__(
        self,
        *,
        store: AsyncStore | str | None = None,
        limiter: Limiter | None = None,
        clock: Clock | None = None,
        fault_policy: FaultPolicy | FaultMode | str | None = None,
    ) -> None:
        if limiter is not None and (store is not None or fault_policy is not None):
            raise ConfigurationError("give a limiter or a store (and fault_policy), not both")
        if limiter is not None and not isinstance(limiter, Limiter):
            raise ConfigurationError(f"limiter must be a quotaflow Limiter, got {limiter!r}")
        # The queues time deadlines and reports on the limiter's clock.
        self._clock: Clock = clock or (limiter.clock if limiter is not None else SystemClock())
        self._own_limiter = limiter is None
        self._limiter = limiter or Limiter(
            {}, store=store, clock=self._clock, fault_policy=fault_policy
        )
        self._queues: dict[str, ModelQueue[P, T]] = {}

    @property
    def limiter(self) -> Limiter:
        """The limiter admitting every queue's requests."""
        return self._limiter

    @property
    def registered_models(self) -> list[str]:
        """The models with a queue, in registration order."""
        return list(self._queues)

    async def register_queue(
        self,
        model_config: ModelConfig,
        processor: Processor,
        *,
        usage_of: UsageOf | None = None,
    ) -> None:
        """Create the queue of a model.

        Args:
            model_config: the model's limits and ordering.
            processor: ``async def processor(request) -> result``, run once per admitted
                request. It may set ``request.actual_input_tokens`` / ``actual_output_tokens``.
            usage_of: reads ``(input_tokens, output_tokens)`` from a result, when the
                processor does not set them (e.g. from an OpenAI response's ``usage``).
        """
        if not isinstance(model_config, ModelConfig):
            raise ConfigurationError(f"model_config must be a ModelConfig, got {model_config!r}")
        if not callable(processor):
            raise ConfigurationError(f"processor must be an async callable, got {processor!r}")
        model = model_config.model_id
        if model in self._queues:
            raise ConfigurationError(f"a queue for model {model!r} is already registered")
        self._limiter.set_limits(model_config.queue_scope, model_config.limits())
        self._queues[model] = ModelQueue(
            model_config, processor, self._limiter, self._clock, usage_of
        )

    async def register_all_queues(
        self,
        model_configs: Iterable[ModelConfig],
        processor: Processor,
        *,
        usage_of: UsageOf | None = None,
    ) -> None:
        """Register several models with one processor (see :meth:`register_queue`)."""
        for config in model_configs:
            await self.register_queue(config, processor, usage_of=usage_of)

    def queue(self, model_id: str) -> ModelQueue[P, T]:
        """The queue of ``model_id``; raises :class:`ModelNotRegisteredError`."""
        try:
            return self._queues[model_id]
        except KeyError:
            raise ModelNotRegisteredError(model_id, list(self._queues)) from None

    def submit_nowait(self, request: QueueRequest[P]) -> asyncio.Future[QueueResponse[T]]:
        """Queue ``request`` and return a future of its response at once.

        Raises :class:`ConfigurationError` for a bad request, :class:`ModelNotRegisteredError`,
        :class:`QueueClosedError` while shutting down, :class:`QueueFullError`.
        Cancelling the future withdraws a request that has not started.
        """
        if not isinstance(request, QueueRequest):
            raise ConfigurationError(f"request must be a QueueRequest, got {request!r}")
        return self.queue(request.model_id).enqueue(request)

    async def submit(self, request: QueueRequest[P]) -> QueueResponse[T]:
        """Queue ``request`` and wait for its response (see :meth:`submit_nowait`)."""
        return await self.submit_nowait(request)

    async def update_token_usage(
        self, model_id: str, request_id: str, input_tokens: int, output_tokens: int
    ) -> bool:
        """Report a request's actual usage; its reservation is settled with it.

        Call it while the request runs or after its processor returned (within
        ``ModelConfig.usage_report_timeout``). Returns ``False`` when the request was already
        settled.
        """
        return await self.queue(model_id).update_token_usage(
            request_id, input_tokens, output_tokens
        )

    def get_status(self, model_id: str, request_id: str) -> RequestStatus | None:
        """Where a request is (``None`` if unknown or long finished)."""
        return self.queue(model_id).status_of(request_id)

    def get_response(self, model_id: str, request_id: str) -> QueueResponse[T] | None:
        """The response of a finished request, while it is remembered."""
        return self.queue(model_id).response_of(request_id)

    async def get_queue_info(self, model_id: str) -> QueueInfo:
        """The state of a model's queue: every limit's status, depth, in flight, outcomes."""
        return await self.queue(model_id).info()

    async def get_all_queues_info(self) -> Mapping[str, QueueInfo]:
        """:meth:`get_queue_info` of every queue."""
        return {model: await queue.info() for model, queue in self._queues.items()}

    async def shutdown(self, *, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting requests and end every accepted one (see ``ModelQueue.shutdown``).

        Then close the limiter if the manager made it.
        """
        await asyncio.gather(
            *(q.shutdown(drain=drain, timeout=timeout) for q in self._queues.values())
        )
        if self._own_limiter:
            await self._limiter.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()
