"""Configuration: defaults, validation naming the bad value, and pickling (for the process)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from quotaflow import ConfigurationError
from quotaflow.emulator import EmulatorConfig, Fault, ModelLimits


def test_the_defaults_are_tier_one_limits() -> None:
    config = EmulatorConfig()
    assert (config.openai_rpm, config.openai_tpm) == (500, 30_000)
    assert (config.anthropic_rpm, config.anthropic_itpm, config.anthropic_otpm) == (
        50,
        30_000,
        8_000,
    )
    assert config.output_tokens == (20, 200)
    assert config.fault_rates == {}


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("openai_rpm", 0, "openai_rpm must be a positive integer, got 0"),
        ("openai_tpm", -5, "got -5"),
        ("openai_tpm", 1.5, "got 1.5"),
        ("openai_rpd", 0, "openai_rpd must be a positive integer or None"),
        ("anthropic_otpm", True, "anthropic_otpm must be a positive integer, got True"),
        ("latency", -0.1, "latency must be a finite number of seconds >= 0, got -0.1"),
        ("latency", float("nan"), "got nan"),
        ("token_latency", float("inf"), "token_latency must be"),
        ("output_tokens", (10, 5), "got (10, 5)"),
        ("output_tokens", (-1, 5), "got (-1, 5)"),
        ("output_tokens", (1, 2, 3), "got (1, 2, 3)"),
        ("seed", "seven", "seed must be an integer or None, got 'seven'"),
        ("fault_rates", {"teapot": 0.1}, "unknown fault 'teapot'"),
        (
            "fault_rates",
            {"503": 1.5},
            "fault_rates['503'] must be a probability in [0, 1], got 1.5",
        ),
        ("fault_rates", {"503": 0.6, "drop": 0.6}, "must add up to at most 1, got 1.2"),
        ("quota_exhausted_after", -1, "quota_exhausted_after must be an integer >= 0"),
        ("refund_unused", "yes", "refund_unused must be a bool, got 'yes'"),
        ("openrouter_credit_limit", -1.0, "openrouter_credit_limit must be"),
        ("api_key", "", "api_key must be a non-empty string"),
        ("model_limits", {"gpt-4o": {"tpm": 5}}, "model_limits['gpt-4o'] must be a ModelLimits"),
    ],
)
def test_bad_values_raise_a_configuration_error_naming_them(
    field: str, value: Any, named: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        EmulatorConfig(**{field: value})
    assert named in str(caught.value)


def test_model_limits_are_validated_too() -> None:
    with pytest.raises(ConfigurationError, match=r"ModelLimits\.tpm must be a positive integer"):
        ModelLimits(tpm=0)


def test_fault_rates_accept_names_and_enum_members_and_drop_zero_rates() -> None:
    config = EmulatorConfig(fault_rates={"503": 0.25, Fault.DROP: 0.5, "529": 0.0})
    assert config.fault_rates == {Fault.UNAVAILABLE: 0.25, Fault.DROP: 0.5}


def test_the_config_pickles_for_the_child_process() -> None:
    config = EmulatorConfig(
        model_limits={"gpt-4o": ModelLimits(tpm=100)}, fault_rates={"drop": 0.1}, seed=None
    )
    assert pickle.loads(pickle.dumps(config)) == config  # noqa: S301 (our own data)
    assert hash(config) == hash(pickle.loads(pickle.dumps(config)))  # noqa: S301
