"""Batches: many calls through the limiter, bounded, retried, resumable.

- :class:`BatchProcessor` runs any per-item function (subclass it) with bounded concurrency,
  per-item retries with backoff, graceful stopping, grouping by model and optional adaptive
  concurrency; :func:`process_chat_batch` runs chat requests through a
  :class:`~quotaflow.client.ChatLimiter` (see ``docs/batch.md``).
- :func:`run_batch_file` (``quotaflow batch IN.jsonl OUT.jsonl``) sends a JSONL file of
  requests, streaming, within a budget, and resumes where it stopped (see
  ``docs/batch-cli.md``).
"""

from __future__ import annotations

from quotaflow.batch._chat import ChatBatchProcessor, process_chat_batch, process_chat_batch_sync
from quotaflow.batch._config import BatchConfig
from quotaflow.batch._file_errors import (
    BatchRefusedError,
    BudgetExceededError,
    InputChangedError,
    InvalidInputError,
    OutputBusyError,
    OutputFormatError,
)
from quotaflow.batch._options import BatchFileOptions
from quotaflow.batch._processor import BatchProcessor
from quotaflow.batch._progress import Reporter
from quotaflow.batch._result import BatchResult
from quotaflow.batch._runner import StopControl, run_batch_file
from quotaflow.batch._summary import BatchSummary

__all__ = [
    "BatchConfig",
    "BatchFileOptions",
    "BatchProcessor",
    "BatchRefusedError",
    "BatchResult",
    "BatchSummary",
    "BudgetExceededError",
    "ChatBatchProcessor",
    "InputChangedError",
    "InvalidInputError",
    "OutputBusyError",
    "OutputFormatError",
    "Reporter",
    "StopControl",
    "process_chat_batch",
    "process_chat_batch_sync",
    "run_batch_file",
]
