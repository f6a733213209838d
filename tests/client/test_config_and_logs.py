"""Configuration from code and QUOTAFLOW_* variables; structured, rate-limited logs."""

from __future__ import annotations

import json
import logging

import pytest

from quotaflow import ConfigurationError, SyncLimiter, Usage, rpm, tpm
from quotaflow._logs import JsonFormatter, LogThrottle, configure_logging
from quotaflow.client import ClientConfig, RetryPolicy, parse_limits
from quotaflow.providers import Provider
from quotaflow.testing import FakeClock


def test_defaults_need_no_environment() -> None:
    config = ClientConfig.from_env({})
    assert config == ClientConfig()
    assert config.headroom == 0.98
    assert config.retry == RetryPolicy()


def test_variables_are_read_and_code_wins() -> None:
    env = {
        "QUOTAFLOW_PROVIDER": "Anthropic",
        "QUOTAFLOW_STORE": "redis://cache:6379/0",
        "QUOTAFLOW_HEADROOM": "0.9",
        "QUOTAFLOW_PROBE": "off",
        "QUOTAFLOW_ACQUIRE_TIMEOUT": "none",
        "QUOTAFLOW_MAX_RETRIES": "7",
        "QUOTAFLOW_RETRY_CAP": "12.5",
        "QUOTAFLOW_LIMITS": "user:*=daily_cost:2000000 ; openai:gpt-4o=rpm:500,tpm:30_000",
        "QUOTAFLOW_LOG_LEVEL": "debug",  # read by configure_logging, not refused
        "OTHER": "ignored",
    }
    config = ClientConfig.from_env(env, headroom=0.95)
    assert config.provider is Provider.ANTHROPIC
    assert config.store == "redis://cache:6379/0"
    assert config.headroom == 0.95  # code wins over the environment
    assert config.probe is False
    assert config.acquire_timeout is None
    assert (config.retry.max_retries, config.retry.cap) == (7, 12.5)
    assert config.limits["openai:gpt-4o"] == (rpm(500), tpm(30_000))
    assert set(config.limits) == {"user:*", "openai:gpt-4o"}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("QUOTAFLOW_HEADROOM", "1.5", "headroom must be in"),
        ("QUOTAFLOW_HEADROOM", "lots", "QUOTAFLOW_HEADROOM='lots' is not a valid number"),
        ("QUOTAFLOW_PROBE", "maybe", "boolean"),
        ("QUOTAFLOW_MAX_RETRIES", "-1", "max_retries must be an integer"),
        ("QUOTAFLOW_PROVIDER", "acme", "provider must be one of"),
        ("QUOTAFLOW_LIMITS", "openai=rpm:lots", "needs a whole amount"),
        ("QUOTAFLOW_LIMITS", "openai=qpm:5", "unknown limit 'qpm'"),
        ("QUOTAFLOW_LIMITS", "rpm:5", "expected 'scope=rpm:500"),
        ("QUOTAFLOW_HEADROM", "0.9", "unknown variable QUOTAFLOW_HEADROM"),
        ("QUOTAFLOW_DEFAULT_PAUSE", "-3", "default_pause must be non-negative"),
        ("QUOTAFLOW_SCOPE", "{provider}:{user}", "scope must be a template"),
        ("QUOTAFLOW_SCOPE", "{provider}}x", "scope must be a template"),
    ],
)
def test_bad_variables_are_refused_with_their_name(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace("*", r"\*")):
        ClientConfig.from_env({name: value})


def test_bad_code_options_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown options: headrom"):
        ClientConfig.from_env({}, headrom=0.9)
    with pytest.raises(ConfigurationError, match="jitter"):
        RetryPolicy(jitter=2)
    with pytest.raises(ConfigurationError, match="limits"):
        ClientConfig(limits={"a": ["rpm"]})  # type: ignore[dict-item]


def test_parse_limits_reads_every_shorthand() -> None:
    limits = parse_limits("rpm:10, itpm:5, otpm:6, concurrency:3, daily_cost:7, monthly_tokens:8")
    assert [str(limit.metric) for limit in limits] == [
        "requests", "input_tokens", "output_tokens", "concurrent", "cost", "tokens",
    ]  # fmt: skip


def test_throttled_logs_say_how_many_lines_they_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    throttle = LogThrottle(logging.getLogger("quotaflow.test"), 10.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="quotaflow.test"):
        for _ in range(1000):
            throttle.log(logging.INFO, "scope_paused", scope="openai:gpt-4o", seconds=1)
        now[0] = 10.0
        throttle.log(logging.INFO, "scope_paused", scope="openai:gpt-4o", seconds=1)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "scope_paused scope=openai:gpt-4o seconds=1",
        "scope_paused scope=openai:gpt-4o seconds=1 suppressed=999",
    ]
    assert caplog.records[1].quotaflow == {  # type: ignore[attr-defined]
        "event": "scope_paused", "scope": "openai:gpt-4o", "seconds": 1, "suppressed": 999,
    }  # fmt: skip


def test_json_formatter_renders_the_structured_fields() -> None:
    record = logging.LogRecord("quotaflow.client", logging.INFO, __file__, 1, "x %s", ("y",), None)
    record.quotaflow = {"event": "limits_learned", "scope": "s"}
    data = json.loads(JsonFormatter().format(record))
    assert data["message"] == "x y"
    assert data["event"] == "limits_learned"
    assert data["level"] == "INFO"


def test_configure_logging_validates_its_variables() -> None:
    with pytest.raises(ConfigurationError, match="QUOTAFLOW_LOG_FORMAT"):
        configure_logging(environ={"QUOTAFLOW_LOG_FORMAT": "xml"})
    with pytest.raises(ConfigurationError, match="QUOTAFLOW_LOG_LEVEL"):
        configure_logging(environ={"QUOTAFLOW_LOG_LEVEL": "loud"})
    configure_logging(environ={"QUOTAFLOW_LOG_FORMAT": "json", "QUOTAFLOW_LOG_LEVEL": "warning"})
    logger = logging.getLogger("quotaflow")
    assert logger.level == logging.WARNING
    assert sum(getattr(h, "_quotaflow", False) for h in logger.handlers) == 1
    configure_logging(environ={})  # replaces its own handler, never stacks them
    assert sum(getattr(h, "_quotaflow", False) for h in logger.handlers) == 1
    for handler in [h for h in logger.handlers if getattr(h, "_quotaflow", False)]:
        logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


def test_debit_charges_usage_from_outside_as_debt() -> None:
    clock = FakeClock()
    limiter = SyncLimiter({"s": [rpm(60), tpm(600)]}, clock=clock)
    assert limiter.debit("s", Usage(requests=0, tokens=900))
    status = {str(s.metric): s for s in limiter.status("s").limits}
    assert status["tokens"].remaining == 0
    assert status["tokens"].resets_in == pytest.approx(90.0)  # 300 over the bucket
    assert limiter.try_acquire("s", tokens=1).reservation is None
    clock.advance(30.1)  # the debt refilled; one token fits again
    assert limiter.try_acquire("s", tokens=1).reservation is not None
    assert not limiter.debit("s", Usage(requests=0))  # nothing to charge
