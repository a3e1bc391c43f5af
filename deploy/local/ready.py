"""Part of `make run` (deploy/local/supervisord.conf): prints `ready: http://localhost:8037/docs`
once the platform answers (the gateway and every service it routes to serve, and NATS answers
with JetStream), then exits. While it waits, it says every 30 s what it still waits for."""

from __future__ import annotations

import asyncio
import sys
import time

import httpx

from services.gateway.settings import GatewaySettings
from shared.bus.probe import jetstream_answers

POLL_S = 0.5
REMIND_S = 30.0
WILDCARDS = ("0.0.0.0", "::", "")  # noqa: S104 - addresses compared with, not bound to


def waiting_for(settings: GatewaySettings, gateway: str) -> list[str]:
    """The parts of the platform that do not answer yet (empty: ready)."""
    probes = {"gateway": gateway, **settings.upstreams()}
    missing = []
    for name, base_url in probes.items():
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2.0).status_code == 200:
                continue
        except httpx.HTTPError:
            pass
        missing.append(name)
    if not asyncio.run(jetstream_answers(settings.nats_url)):
        missing.append("nats")
    return missing


def main() -> int:
    settings = GatewaySettings()
    host = "localhost" if settings.host in WILDCARDS else settings.host
    gateway = f"http://{'127.0.0.1' if host == 'localhost' else host}:{settings.port}"
    reminded = time.monotonic()
    while missing := waiting_for(settings, gateway):
        if time.monotonic() - reminded >= REMIND_S:
            print(f"not ready yet; waiting for: {', '.join(missing)}", flush=True)
            reminded = time.monotonic()
        time.sleep(POLL_S)
    print(f"ready: http://{host}:{settings.port}/docs", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
