"""The command line and the simulated provider the demo runs against."""

from __future__ import annotations

from typer.testing import CliRunner

from quotaflow import __version__
from quotaflow.cli import app
from quotaflow.core import NS_PER_SECOND
from quotaflow.testing import SimulatedProvider

S = NS_PER_SECOND


def test_the_simulated_provider_refills_continuously_and_rejects_overdrafts() -> None:
    provider = SimulatedProvider({"requests": (2, 1.0), "tokens": (100, 10.0)})
    assert provider.call({"requests": 1, "tokens": 100}, 0)
    assert not provider.call({"requests": 1, "tokens": 1}, 0)  # tokens exhausted
    assert not provider.call({"requests": 1, "tokens": 10}, S // 2)  # 5 tokens refilled
    assert provider.call({"requests": 1, "tokens": 10}, S)  # 10 refilled, nothing charged before
    assert provider.calls == 4
    assert [(r.metric, r.wanted, r.available) for r in provider.rejections] == [
        ("tokens", 1, 0.0),
        ("tokens", 10, 5.0),
    ]
    assert provider.level("tokens", S) == 0.0
    assert provider.accepted == {"requests": 2, "tokens": 110}
    assert provider.admissible("tokens", 10.0) == 200


def test_the_demo_runs_the_sdk_through_the_transport_against_the_emulator() -> None:
    result = CliRunner().invoke(
        app, ["demo", "--requests", "30", "--concurrency", "8", "--latency", "0", "--sdk"]
    )
    assert result.exit_code == 0, result.output
    assert "openai SDK + AsyncQuotaflowTransport" in result.output
    assert "30 of 30" in result.output
    assert "tokens limit used" in result.output


def test_the_demo_falls_back_to_chat_limiter() -> None:
    result = CliRunner().invoke(
        app, ["demo", "--requests", "20", "--concurrency", "4", "--latency", "0", "--facade"]
    )
    assert result.exit_code == 0, result.output
    assert "ChatLimiter" in result.output
    assert "20 of 20" in result.output


def test_the_demo_rejects_bad_options() -> None:
    result = CliRunner().invoke(app, ["demo", "--requests", "0"])
    assert result.exit_code == 2
    assert "requests" in result.output


def test_version() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.output.strip() == __version__
