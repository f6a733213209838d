"""Never run: type-checked to prove the public API reads well under mypy --strict."""

from __future__ import annotations

from quotaflow import (
    AcquireTimeoutError,
    Decision,
    Limiter,
    LimiterEvent,
    Reservation,
    ScopeStatus,
    SyncLimiter,
    SyncReservation,
    Usage,
    daily_quota,
    rpm,
    tpm,
)


def hook(event: LimiterEvent) -> None:
    print(event.kind, event.wait_time)  # noqa: T201


async def use_async() -> None:
    limiter = Limiter({"m": [rpm(10), tpm(1_000)], "user:*": daily_quota("cost", 5)}, hooks=[hook])
    reservation: Reservation = await limiter.acquire("m", input_tokens=1, output_tokens=2)
    await reservation.settle(output_tokens=1)
    async with limiter.reserve(["user:1", "m"], Usage(tokens=5), timeout=1.5) as held:
        slot: float = held.slot_time
        position: int = held.queue_position
        del slot, position
    decision: Decision[Reservation] = await limiter.try_acquire("m")
    if decision.reservation is not None:
        await decision.reservation.cancel()
    status: ScopeStatus = await limiter.status("m")
    remaining: int = status.limit("tokens").remaining
    del remaining
    try:
        await limiter.acquire("m", timeout=0)
    except AcquireTimeoutError as error:
        retry_after: float = error.retry_after
        del retry_after
    await limiter.aclose()


def use_sync() -> None:
    with SyncLimiter({"m": [rpm(10)]}) as limiter:
        reservation: SyncReservation = limiter.acquire("m")
        with reservation:
            reservation.settle(requests=1)
        maybe: Decision[SyncReservation] = limiter.try_acquire("m")
        del maybe
