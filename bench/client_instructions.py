"""Instructions per governed call, counted by callgrind: a repeatable overhead measure.

Times on a shared VM drift by 2x; instruction counts do not. This runs four processes under
``valgrind --tool=callgrind``: the governed transport and the bare inner transport, each for
100 and for 1,100 calls (after the same warm-up), and reports the per-call difference of the
two, in which imports and set-up cancel out.

The inner transport answers at once with a canned OpenAI chat completion and rate-limit
headers that never bind; the governed one is ``AsyncQuotaflowTransport(inner,
config=ClientConfig())`` on the memory store. Needs valgrind on PATH; takes about 2 minutes.

Run: ``python bench/client_instructions.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from quotaflow.client import AsyncQuotaflowTransport, ClientConfig

HEADERS = {
    "x-ratelimit-limit-requests": "60000", "x-ratelimit-remaining-requests": "59999",
    "x-ratelimit-reset-requests": "1ms", "x-ratelimit-limit-tokens": "10000000",
    "x-ratelimit-remaining-tokens": "9999000", "x-ratelimit-reset-tokens": "6ms",
    "content-type": "application/json",
}  # fmt: skip
BODY = json.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! " * 40},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 20, "completion_tokens": 80, "total_tokens": 100},
}).encode()  # fmt: skip
REQUEST = json.dumps({
    "model": "gpt-4o-mini", "max_tokens": 500,
    "messages": [{"role": "system", "content": "You are helpful."},
                 {"role": "user", "content": "Explain rate limits in one paragraph please."}],
}).encode()  # fmt: skip
WARM_UP = 100
CALLS = 1_000


class Canned(httpx.AsyncBaseTransport):
    """Answers every request at once with the canned completion."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:  # noqa: ARG002
        """The canned answer."""
        return httpx.Response(200, headers=HEADERS, stream=httpx.ByteStream(BODY))


async def calls(governed: bool, count: int) -> None:
    transport: httpx.AsyncBaseTransport = (
        AsyncQuotaflowTransport(Canned(), config=ClientConfig()) if governed else Canned()
    )
    for _ in range(WARM_UP + count):
        request = httpx.Request(
            "POST", "https://api.openai.com/v1/chat/completions",
            content=REQUEST, headers={"content-type": "application/json"},
        )  # fmt: skip
        response = await transport.handle_async_request(request)
        await response.aread()


def instructions(governed: bool, count: int, folder: Path) -> int:
    out = folder / f"cg.{int(governed)}.{count}"
    done = subprocess.run(  # noqa: S603 (our own interpreter and script)
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",  # noqa: S607
         sys.executable, __file__, "--child", str(int(governed)), str(count)],
        capture_output=True, text=True, check=True, timeout=900,
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in callgrind's output:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        asyncio.run(calls(sys.argv[2] == "1", int(sys.argv[3])))
        return
    if shutil.which("valgrind") is None:
        sys.exit("client_instructions: valgrind is not on PATH")
    with tempfile.TemporaryDirectory() as folder:
        per_call = {}
        for governed in (False, True):
            few = instructions(governed, 0, Path(folder))
            many = instructions(governed, CALLS, Path(folder))
            per_call[governed] = (many - few) // CALLS
    print("| subject | instructions per call |\n|---|---|")
    print(f"| inner transport alone | {per_call[False]:,} |")
    print(f"| governed (AsyncQuotaflowTransport) | {per_call[True]:,} |")
    print(f"| the transport's own | {per_call[True] - per_call[False]:,} |")


if __name__ == "__main__":
    main()
