"""A local stand-in for the OpenAI and Anthropic APIs that enforces their rate limits.

Run pipelines, tests, demos and benchmarks offline: the emulator answers Chat Completions,
Responses and Messages requests (streamed or not) in the providers' own formats, admits them
with continuously refilling token buckets as the providers describe theirs, sends their
rate-limit headers and error bodies, and injects faults on demand. See docs/emulator.md.

Needs the ``emulator`` extra (starlette and uvicorn): ``pip install 'quotaflow[emulator]'``.
"""

from quotaflow.emulator._config import EmulatorConfig, ModelLimits
from quotaflow.emulator._faults import FAULT_HEADER, Fault
from quotaflow.emulator._output import OUTPUT_HEADER
from quotaflow.providers import MissingDependencyError

try:
    from quotaflow.emulator._app import create_app
    from quotaflow.emulator._process import EmulatorProcess
    from quotaflow.emulator._server import EmulatorServer, serve
except ModuleNotFoundError as exc:  # pragma: no cover (depends on the installed extras)
    if exc.name not in {"starlette", "uvicorn"}:
        raise
    raise MissingDependencyError(
        "the provider emulator needs starlette and uvicorn: pip install 'quotaflow[emulator]'"
    ) from exc

__all__ = [
    "FAULT_HEADER",
    "OUTPUT_HEADER",
    "EmulatorConfig",
    "EmulatorProcess",
    "EmulatorServer",
    "Fault",
    "ModelLimits",
    "create_app",
    "serve",
]
