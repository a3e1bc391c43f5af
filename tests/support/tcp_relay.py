"""A TCP relay: a port on one loopback address that forwards every connection to a server on
another. Lets a test reach the local MariaDB/PostgreSQL (which listen on 127.0.0.1 only)
through an address such as 127.0.0.3, when only that address is in the platform's
`AGENTFLOW_OUTBOUND_ALLOW_NETWORKS`."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def tcp_relay(listen_host: str, target_host: str, target_port: int) -> Iterator[tuple[str, int]]:
    """(host, port) to connect to instead of (target_host, target_port)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((listen_host, 0))
    server.listen(64)
    connections: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((target_host, target_port), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            connections.extend((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listen_host, server.getsockname()[1]
    finally:
        server.close()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.close()
