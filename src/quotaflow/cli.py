"""The ``quotaflow`` command line."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from quotaflow import __version__
from quotaflow._demo import DemoSettings, run_demo

app = typer.Typer(
    name="quotaflow",
    help="Never exceed an LLM provider's limits, while using nearly all of them.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def demo(
    requests: Annotated[int, typer.Option(min=1, max=100_000, help="Calls to send.")] = 200,
    concurrency: Annotated[int, typer.Option(min=1, max=10_000, help="Concurrent workers.")] = 64,
    rpm: Annotated[int, typer.Option(min=1, help="Requests per minute.")] = 1_200,
    tpm: Annotated[int, typer.Option(min=1, help="Tokens per minute.")] = 360_000,
    burst: Annotated[
        float, typer.Option(min=0.001, max=1.0, help="Bucket size as a fraction of a minute.")
    ] = 0.05,
    max_tokens: Annotated[int, typer.Option(min=1, help="Output tokens reserved per call.")] = 512,
    seed: Annotated[int, typer.Option(help="Seed of the simulated traffic.")] = 7,
) -> None:
    """Pace a burst of simulated LLM calls under RPM and TPM on the memory store, live."""
    settings = DemoSettings(
        requests=requests,
        concurrency=concurrency,
        rpm=rpm,
        tpm=tpm,
        burst=burst,
        max_tokens=max_tokens,
        seed=seed,
    )
    figures = asyncio.run(run_demo(settings))
    if figures["provider_429s"]:
        raise typer.Exit(code=1)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    """Entry point of the ``quotaflow`` script."""
    app()
