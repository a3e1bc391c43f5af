"""`python -m shared.bus.probe [URL]`: exit 0 when a NATS server with JetStream answers at URL.

`make run` uses it to decide between the NATS at `NATS_URL` and one of its own.
"""

from __future__ import annotations

import asyncio
import os
import sys

import nats


async def _quiet(_: Exception) -> None:
    """nats-py prints every failed attempt by default; a probe only wants the verdict."""


async def _jetstream_answers(url: str) -> bool:
    # nats-py keeps trying servers when a connect fails; the outer timeout ends that.
    nc = await nats.connect(
        url, connect_timeout=1, allow_reconnect=False, max_reconnect_attempts=0, error_cb=_quiet
    )
    try:
        await nc.jetstream().account_info()
    finally:
        await nc.close()
    return True


async def jetstream_answers(url: str, timeout: float = 3.0) -> bool:
    try:
        return await asyncio.wait_for(_jetstream_answers(url), timeout)
    except Exception:
        return False


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    return 0 if asyncio.run(jetstream_answers(url)) else 1


if __name__ == "__main__":
    sys.exit(main())
