"""The ``quotaflow batch`` command's body: settings, signals, tables, exit codes.

Exit codes: 0 every line done and ok; 1 some lines failed, were bad, or were left by
``--max-cost``; 2 bad usage or a refusal (nothing sent); 130 interrupted.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from rich.console import Console

from quotaflow._errors import ConfigurationError
from quotaflow.batch._file_config import load_config
from quotaflow.batch._file_errors import BatchRefusedError
from quotaflow.batch._options import BatchFileOptions
from quotaflow.batch._progress import RichReporter
from quotaflow.batch._runner import StopControl, run_batch_file
from quotaflow.batch._summary import EXIT_INTERRUPTED, BatchSummary
from quotaflow.batch._tables import summary_table

__all__ = ["EXIT_USAGE", "batch_command"]

#: Bad usage, or a refusal to start.
EXIT_USAGE: Final = 2


def batch_command(
    flags: Mapping[str, Any],
    *,
    config: Path | None,
    summary_json: Path | None,
    progress: bool,
) -> int:
    """Run ``quotaflow batch`` with the flags given (``None``: not given); its exit code."""
    out, err = Console(), Console(stderr=True)
    try:
        settings = load_config(config) if config is not None else {}
        settings.update({k: v for k, v in flags.items() if v is not None and k != "limits"})
        limits = {**settings.get("limits", {}), **flags.get("limits", {})}
        settings["limits"] = limits
        options = BatchFileOptions(**settings)
        listed = options.on_invalid == "fail" or options.dry_run
        reporter = RichReporter(out, err, progress=progress, list_bad_lines=listed)
        summary = asyncio.run(_run(options, reporter))
    except (BatchRefusedError, ConfigurationError) as error:
        err.print(f"quotaflow batch: {error}", markup=False, highlight=False, soft_wrap=True)
        _write_json(summary_json, {"exit_code": EXIT_USAGE, "error": error.reason,
                                   "message": str(error)})  # fmt: skip
        return EXIT_USAGE
    except KeyboardInterrupt:  # before the handlers were installed, or on a platform without
        err.print("quotaflow batch: interrupted before sending anything")
        return EXIT_INTERRUPTED
    if not summary.dry_run:
        out.print(summary_table(summary))
    _write_json(summary_json, summary.to_json())
    return summary.exit_code


def _write_json(path: Path | None, data: Mapping[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


async def _run(options: BatchFileOptions, reporter: RichReporter) -> BatchSummary:
    """Run with SIGINT (and SIGTERM) handled: first a graceful stop, then a cancellation."""
    control = StopControl()
    loop = asyncio.get_running_loop()
    presses = 0

    def interrupted() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            reporter.notice("interrupted: no new line starts (interrupt again to cancel)")
            control.stop()
        else:
            reporter.notice("cancelling the lines in flight; a rerun sends them again")
            control.cancel()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, interrupted)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # Windows: SIGINT stays KeyboardInterrupt
            continue
    try:
        return await run_batch_file(options, control=control, reporter=reporter)
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
