"""``quotaflow emulate``: options into a configuration, clear errors, and the missing extra."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from typer.testing import CliRunner

import quotaflow
from quotaflow.cli import app
from quotaflow.emulator import EmulatorConfig, Fault

runner = CliRunner()


def said(output: str) -> str:
    """The output as one line of words, without the boxes rich draws around errors."""
    return " ".join(output.replace("\u2502", " ").split())


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace serving with a record of what would have been served."""
    calls: list[dict[str, Any]] = []

    def serve(config: EmulatorConfig, **options: Any) -> None:
        calls.append({"config": config} | options)
        options["ready"]("http://127.0.0.1:8123")

    monkeypatch.setattr("quotaflow.emulator.serve", serve)
    return calls


def test_the_defaults_are_the_configurations(served: list[dict[str, Any]]) -> None:
    result = runner.invoke(app, ["emulate"])
    assert result.exit_code == 0, result.output
    (call,) = served
    assert call["config"] == EmulatorConfig()
    assert (call["host"], call["port"]) == ("127.0.0.1", 8_000)
    assert "base_url=http://127.0.0.1:8123/v1" in result.output
    assert "base_url=http://127.0.0.1:8123 " in result.output


def test_options_reach_the_configuration(served: list[dict[str, Any]]) -> None:
    result = runner.invoke(
        app,
        [
            "emulate", "--port", "0", "--host", "0.0.0.0", "--openai-rpm", "10",  # noqa: S104
            "--openai-tpm", "1000", "--openai-rpd", "99", "--anthropic-otpm", "5",
            "--latency", "0", "--token-latency", "0.01", "--output-min", "1",
            "--output-max", "2", "--seed", "9", "--fault", "503=0.1", "--fault", "drop=0.05",
            "--quota-exhausted-after", "3", "--api-key", "sk-test",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = served[0]["config"]
    assert (served[0]["host"], served[0]["port"]) == ("0.0.0.0", 0)  # noqa: S104
    assert (config.openai_rpm, config.openai_tpm, config.openai_rpd) == (10, 1_000, 99)
    assert (config.anthropic_otpm, config.latency, config.token_latency) == (5, 0.0, 0.01)
    assert (config.output_tokens, config.seed) == ((1, 2), 9)
    assert config.fault_rates == {Fault.UNAVAILABLE: 0.1, Fault.DROP: 0.05}
    assert (config.quota_exhausted_after, config.api_key) == (3, "sk-test")


@pytest.mark.parametrize("value", ["drop", "teapot=0.1", "503=2", "503=often"])
def test_bad_faults_are_usage_errors(served: list[dict[str, Any]], value: str) -> None:
    result = runner.invoke(app, ["emulate", "--fault", value])
    assert result.exit_code == 2
    text = said(result.output)
    assert "Invalid value for" in text
    assert "--fault" in text
    assert repr(value) in text
    assert served == []


def test_inconsistent_options_are_usage_errors(served: list[dict[str, Any]]) -> None:
    result = runner.invoke(app, ["emulate", "--output-min", "9", "--output-max", "3"])
    assert result.exit_code == 2
    assert "output_tokens must be a (low, high) pair" in said(result.output)
    result = runner.invoke(app, ["emulate", "--fault", "503=0.7", "--fault", "500=0.7"])
    assert result.exit_code == 2
    assert "fault_rates must add up to at most 1" in said(result.output)
    assert served == []


def test_without_the_extra_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "quotaflow.emulator", None)
    monkeypatch.delattr(quotaflow, "emulator")  # so that importing it looks it up again
    result = runner.invoke(app, ["emulate"])
    assert result.exit_code == 1
    assert "pip install 'quotaflow[emulator]'" in said(result.output)
