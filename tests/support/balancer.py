"""A round-robin TCP balancer: what a Kubernetes Service does in front of a Deployment's pods.
Each new connection goes to the next backend that accepts it, so a dead replica is skipped
and the connections it held are dropped (as kube-proxy's are when a pod dies)."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections.abc import Iterator

from tests.support.tcp_relay import _pump


@contextlib.contextmanager
def tcp_balancer(port: int, backends: list[tuple[str, int]]) -> Iterator[str]:
    """Listen on 127.0.0.1:`port`; yields the balancer's http:// base URL."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(128)
    turns = itertools.cycle(range(len(backends)))
    connections: list[socket.socket] = []

    def connect() -> socket.socket | None:
        for _ in backends:
            host, backend_port = backends[next(turns)]
            try:
                return socket.create_connection((host, backend_port), timeout=5)
            except OSError:
                continue  # down: the next one
        return None

    def serve() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = connect()
            if upstream is None:
                client.close()
                continue
            upstream.settimeout(None)
            connections.extend((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, name="tcp-balancer", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.close()
