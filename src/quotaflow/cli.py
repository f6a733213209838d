"""The ``quotaflow`` command line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from quotaflow import __version__

app = typer.Typer(
    name="quotaflow",
    help="Never exceed an LLM provider's limits, while using nearly all of them.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def demo(
    requests: Annotated[int, typer.Option(min=1, max=100_000, help="Calls to send.")] = 300,
    concurrency: Annotated[int, typer.Option(min=1, max=10_000, help="Concurrent workers.")] = 64,
    rpm: Annotated[int, typer.Option(min=1, help="The emulator's requests per minute.")] = 1_000,
    tpm: Annotated[int, typer.Option(min=1, help="The emulator's tokens per minute.")] = 30_000,
    max_tokens: Annotated[int, typer.Option(min=1, help="max_tokens of each call.")] = 400,
    latency: Annotated[float, typer.Option(min=0, max=60, help="Emulator latency, s.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the prompts and answer lengths.")] = 7,
    sdk: Annotated[
        bool | None,
        typer.Option("--sdk/--facade", help="Force the openai SDK or ChatLimiter."),
    ] = None,
) -> None:
    """Send a few hundred calls through the governed client to a local emulator, live."""
    try:
        from quotaflow._demo import DemoSettings, run_demo  # noqa: PLC0415
        from quotaflow.emulator import EmulatorConfig  # noqa: F401, PLC0415 (needs the extra)
    except ImportError as error:
        typer.echo(f"quotaflow demo: {error}", err=True)
        raise typer.Exit(code=2) from None
    settings = DemoSettings(
        requests=requests, concurrency=concurrency, rpm=rpm, tpm=tpm, max_tokens=max_tokens,
        latency=latency, seed=seed, sdk=sdk,
    )  # fmt: skip
    figures = asyncio.run(run_demo(settings))
    if figures["provider_429s"] or figures["calls_ok"] < requests:
        raise typer.Exit(code=1)


@app.command()
def emulate(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65_535, help="Port (0: a free one).")] = 8_000,
    openai_rpm: Annotated[int, typer.Option(min=1, help="OpenAI requests/min per model.")] = 500,
    openai_tpm: Annotated[int, typer.Option(min=1, help="OpenAI tokens/min per model.")] = 30_000,
    openai_rpd: Annotated[int | None, typer.Option(min=1, help="OpenAI requests/day.")] = None,
    openai_tpd: Annotated[int | None, typer.Option(min=1, help="OpenAI tokens/day.")] = None,
    anthropic_rpm: Annotated[int, typer.Option(min=1, help="Anthropic requests/min.")] = 50,
    anthropic_itpm: Annotated[
        int, typer.Option(min=1, help="Anthropic input tokens/min per model.")
    ] = 30_000,
    anthropic_otpm: Annotated[
        int, typer.Option(min=1, help="Anthropic output tokens/min per model.")
    ] = 8_000,
    latency: Annotated[float, typer.Option(min=0.0, help="Seconds before the first byte.")] = 0.05,
    token_latency: Annotated[
        float, typer.Option(min=0.0, help="Seconds per generated token.")
    ] = 0.0,
    output_min: Annotated[int, typer.Option(min=0, help="Fewest output tokens drawn.")] = 20,
    output_max: Annotated[int, typer.Option(min=0, help="Most output tokens drawn.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the output lengths and faults.")] = 0,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME=RATE",
            help="Inject a fault at this rate (repeatable). NAME: 500, 503, 529, "
            "insufficient_quota, rate_limit, drop, cut_stream.",
        ),
    ] = None,
    quota_exhausted_after: Annotated[
        int | None,
        typer.Option(min=0, help="Quota error for every call after this many admitted ones."),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(help="Accept only this key (others get a 401).")
    ] = None,
) -> None:
    """Serve the provider emulator: OpenAI and Anthropic APIs with their rate limits, offline."""
    try:
        from quotaflow import emulator  # noqa: PLC0415 (needs the optional 'emulator' extra)
    except ImportError as exc:
        typer.echo(f"{exc}. Install it with: pip install 'quotaflow[emulator]'", err=True)
        raise typer.Exit(code=1) from None
    rates = _fault_rates(fault or [], [item.value for item in emulator.Fault])
    try:
        config = emulator.EmulatorConfig(
            openai_rpm=openai_rpm,
            openai_tpm=openai_tpm,
            openai_rpd=openai_rpd,
            openai_tpd=openai_tpd,
            anthropic_rpm=anthropic_rpm,
            anthropic_itpm=anthropic_itpm,
            anthropic_otpm=anthropic_otpm,
            latency=latency,
            token_latency=token_latency,
            output_tokens=(output_min, output_max),
            seed=seed,
            fault_rates=rates,
            quota_exhausted_after=quota_exhausted_after,
            api_key=api_key,
        )
    except ValueError as exc:  # ConfigurationError
        raise typer.BadParameter(str(exc)) from None

    def ready(url: str) -> None:
        typer.echo(f"quotaflow provider emulator listening on {url}")
        typer.echo(f"  OpenAI SDK:    base_url={url}/v1   (OPENAI_BASE_URL={url}/v1)")
        typer.echo(f"  Anthropic SDK: base_url={url}   (ANTHROPIC_BASE_URL={url})")
        typer.echo(f"  Statistics:    GET {url}/emulator/stats")
        typer.echo("Press Ctrl-C to stop.")

    emulator.serve(config, host=host, port=port, ready=ready)


def _fault_rates(items: list[str], names: list[str]) -> dict[str, float]:
    """Read ``--fault NAME=RATE`` options; a bad one is a usage error naming it."""
    rates: dict[str, float] = {}
    for item in items:
        name, sep, rate = item.partition("=")
        name = name.strip()
        if not sep or name not in names:
            raise typer.BadParameter(
                f"{item!r}: expected NAME=RATE with NAME one of {', '.join(names)}",
                param_hint="--fault",
            )
        try:
            value = float(rate)
        except ValueError:
            value = -1.0
        if not 0 <= value <= 1:
            raise typer.BadParameter(
                f"{item!r}: RATE must be a probability in [0, 1]", param_hint="--fault"
            )
        rates[name] = value
    return rates


_LIMIT_HELP = "Limit for every model (overrides --config and --preset)."


@app.command()
def batch(
    input_path: Annotated[
        Path, typer.Argument(metavar="IN.jsonl", help="Input: one request per line.")
    ],
    output_path: Annotated[
        Path, typer.Argument(metavar="OUT.jsonl", help="Output: appended to; rerun to resume.")
    ],
    provider: Annotated[
        str | None, typer.Option(help="openai, anthropic or openrouter (default: openai).")
    ] = None,
    base_url: Annotated[str | None, typer.Option(help="The API's base URL.")] = None,
    api_key: Annotated[
        str | None, typer.Option(help="The key (default: the provider's env variable).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model of lines that name none.")] = None,
    max_tokens: Annotated[
        int | None, typer.Option(min=1, help="Output cap of bodies that set none.")
    ] = None,
    models: Annotated[
        str | None, typer.Option(metavar="A,B,C", help="Allowed models; others are invalid.")
    ] = None,
    rpm: Annotated[int | None, typer.Option(min=1, help=_LIMIT_HELP)] = None,
    rpd: Annotated[int | None, typer.Option(min=1, help=_LIMIT_HELP)] = None,
    tpm: Annotated[int | None, typer.Option(min=1, help=_LIMIT_HELP)] = None,
    tpd: Annotated[int | None, typer.Option(min=1, help=_LIMIT_HELP)] = None,
    itpm: Annotated[int | None, typer.Option(min=1, help=_LIMIT_HELP)] = None,
    otpm: Annotated[int | None, typer.Option(min=1, help=_LIMIT_HELP)] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Most calls in flight, shared through --store.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML settings ([limits], provider...); flags win.")
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help="Published limits, e.g. openai:tier-3, anthropic:tier-2.")
    ] = None,
    headroom: Annotated[
        float | None, typer.Option(min=0.01, max=1.0, help="Fraction of each limit to use.")
    ] = None,
    store: Annotated[
        str | None, typer.Option(help="Store URL shared with other workers (redis://...).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, max=10_000, help="Most lines in flight (default: 64).")
    ] = None,
    max_retries: Annotated[
        int | None, typer.Option(min=0, max=100, help="Retries per line.")
    ] = None,
    max_cost: Annotated[
        float | None, typer.Option(metavar="USD", help="Budget; refuse or stop before it.")
    ] = None,
    allow_partial: Annotated[
        bool, typer.Option(help="With --max-cost: start anyway, stop cleanly at the budget.")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Pre-flight only: check, estimate, exit.")] = False,
    on_invalid: Annotated[
        str, typer.Option(metavar="record|fail", help="Record bad lines, or fail before sending.")
    ] = "record",
    retry_failed: Annotated[bool, typer.Option(help="Redo every failed line of OUT.")] = False,
    grace: Annotated[
        float | None, typer.Option(min=0, help="Seconds in-flight lines get after Ctrl-C.")
    ] = None,
    timeout: Annotated[float | None, typer.Option(min=0, help="Seconds per request.")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
    summary_json: Annotated[
        Path | None, typer.Option(help="Also write the summary here, as JSON.")
    ] = None,
) -> None:
    """Send a JSONL file of requests under the provider's limits; resumable, within a budget.

    Exit codes: 0 all done and ok, 1 some lines failed (or were left by --max-cost),
    2 bad usage or refused (nothing sent), 130 interrupted.
    """
    from quotaflow.batch._command import batch_command  # noqa: PLC0415 (loaded on use)

    limits = {
        name: value
        for name, value in (
            ("rpm", rpm), ("rpd", rpd), ("tpm", tpm), ("tpd", tpd), ("itpm", itpm),
            ("otpm", otpm), ("concurrency", concurrency),
        )
        if value is not None
    }  # fmt: skip
    allowed = None if models is None else frozenset(filter(None, map(str.strip, models.split(","))))
    flags = {
        "input": input_path, "output": output_path, "provider": provider, "base_url": base_url,
        "api_key": api_key, "model": model, "max_tokens": max_tokens, "models": allowed,
        "limits": limits, "preset": preset, "headroom": headroom, "store": store,
        "workers": workers, "max_retries": max_retries, "max_cost": max_cost,
        "allow_partial": allow_partial, "dry_run": dry_run, "on_invalid": on_invalid,
        "retry_failed": retry_failed, "grace": grace, "timeout": timeout,
    }  # fmt: skip
    code = batch_command(flags, config=config, summary_json=summary_json, progress=not no_progress)
    raise typer.Exit(code=code)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    """Entry point of the ``quotaflow`` script."""
    app()
