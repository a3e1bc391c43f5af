"""SQL sources go through the outbound policy: the host is resolved once, checked, and the
driver connects to that checked address. Refused targets all look the same, whatever listens
there; allowed ones work (the real MariaDB and PostgreSQL on 127.0.0.1, once allowed)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from services.datasources.configs import MySQLConfig, PostgresConfig
from services.datasources.connectors import ConnectorError, ConnectorSettings, build_connector
from services.datasources.connectors.sql import _tls_context
from shared.net.outbound import OutboundPolicy
from tests.support.processes import free_port
from tests.support.tcp_relay import tcp_relay

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
NOTHING_ALLOWED = ConnectorSettings(connect_timeout_s=2, statement_timeout_s=1)
REBOUND = "db.rebind.invalid"  # .invalid: the system's resolver never answers it


class Listener:
    """A TCP port on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


class RebindingDNS:
    """Answers each name with the next of its answers (the last one from then on)."""

    def __init__(self, *answers: Sequence[str]) -> None:
        self._answers = [[ipaddress.ip_address(a) for a in answer] for answer in answers]
        self.asked = 0

    async def __call__(self, host: str) -> list[IPAddress]:
        self.asked += 1
        if host != REBOUND:
            raise OSError(f"unknown host {host}")
        return self._answers[min(self.asked, len(self._answers)) - 1]


async def _refusal(source_type: str, config: dict[str, Any]) -> tuple[str, str]:
    """What test() and query() say, in both languages; they must agree and be `refused`."""
    model = MySQLConfig(**config) if source_type == "mysql" else PostgresConfig(**config)
    connector = build_connector(source_type, model, NOTHING_ALLOWED)
    try:
        with pytest.raises(ConnectorError) as tested:
            await connector.test()
        with pytest.raises(ConnectorError) as queried:
            await connector.query("SELECT 1", None, max_rows=1)
    finally:
        await connector.close()
    assert (tested.value.kind, queried.value.kind) == ("refused", "refused")
    both = (tested.value.render("zh"), tested.value.render("en"))
    assert (queried.value.render("zh"), queried.value.render("en")) == both
    return both


async def test_loopback_databases_are_refused_alike_whatever_listens(
    mariadb_source: dict[str, Any], postgres_source: dict[str, Any], listener: Listener
) -> None:
    """The review's attack: 127.0.0.1:3306 with the right password, with a wrong one, the
    PostgreSQL port, a port nothing listens on, a port that accepts: one answer for all."""
    closed = free_port()
    answers = {
        "mariadb, right password": await _refusal("mysql", mariadb_source),
        "mariadb, wrong password": await _refusal(
            "mysql", {**mariadb_source, "password": "guess-1"}
        ),
        "postgresql port as mysql": await _refusal("mysql", {**mariadb_source, "port": 5432}),
        "postgresql": await _refusal("postgresql", postgres_source),
        "postgresql, unknown role": await _refusal(
            "postgresql", {**postgres_source, "username": "nobody_x", "password": "guess-2"}
        ),
        "closed port": await _refusal("mysql", {**mariadb_source, "port": closed}),
        "listening port": await _refusal("postgresql", {**postgres_source, "port": listener.port}),
    }
    assert len(set(answers.values())) == 1, answers
    zh, en = next(iter(answers.values()))
    assert "127.0.0.1" in en
    assert "not allowed" in en
    assert "不允许" in zh
    for text in (zh, en):
        for leak in ("3306", "5432", str(closed), str(listener.port), "password", "role"):
            assert leak not in text, (leak, text)
    assert listener.accepted == 0  # refused before any connection


@pytest.mark.parametrize(
    "host",
    ["localhost", "127.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
     "100.64.0.1", "::1", "0.0.0.0", "::ffff:127.0.0.1", "fd00::1"],
)  # fmt: skip
async def test_private_targets_are_refused(host: str) -> None:
    for source_type in ("mysql", "postgresql"):
        config = {"host": host, "database": "d", "username": "u", "password": "p"}
        zh, en = await _refusal(source_type, config)
        assert "not allowed" in en
        assert "不允许" in zh


async def test_an_allowed_network_is_reached_and_only_it(
    mariadb_source: dict[str, Any], postgres_source: dict[str, Any]
) -> None:
    """With 127.0.0.3/32 allowed, the databases are reached through a relay there, while
    127.0.0.1 itself stays refused."""
    policy = OutboundPolicy.from_strings(["127.0.0.3/32"])
    settings = ConnectorSettings(connect_timeout_s=3, statement_timeout_s=5, outbound=policy)
    for source_type, info in (("mysql", mariadb_source), ("postgresql", postgres_source)):
        model = MySQLConfig if source_type == "mysql" else PostgresConfig
        with tcp_relay("127.0.0.3", info["host"], info["port"]) as (host, port):
            relayed = build_connector(
                source_type, model(**{**info, "host": host, "port": port}), settings
            )
            try:
                assert await relayed.test()
            finally:
                await relayed.close()
        direct = build_connector(source_type, model(**info), settings)
        with pytest.raises(ConnectorError) as caught:
            await direct.test()
        await direct.close()
        assert caught.value.kind == "refused"


async def test_every_address_of_a_name_must_be_allowed() -> None:
    dns = RebindingDNS(["203.0.113.9", "10.0.0.7"])
    policy = OutboundPolicy.from_strings(["203.0.113.0/24"], resolver=dns)
    settings = ConnectorSettings(connect_timeout_s=2, outbound=policy)
    connector = build_connector(
        "mysql", MySQLConfig(host=REBOUND, database="d", username="u"), settings
    )
    with pytest.raises(ConnectorError) as caught:
        await connector.test()
    await connector.close()
    assert caught.value.kind == "refused"
    assert "10.0.0.7" not in caught.value.render("en")  # the address is never told


async def test_mysql_connects_to_the_address_it_checked(mariadb_source: dict[str, Any]) -> None:
    """DNS rebinding: the first answer (allowed) is checked, later ones would be private. The
    name itself resolves nowhere, so working at all proves the driver got the checked
    address and never asked DNS again."""
    dns = RebindingDNS(["127.0.0.1"], ["10.0.0.1"])
    policy = OutboundPolicy.from_strings(["127.0.0.1/32"], resolver=dns)
    settings = ConnectorSettings(connect_timeout_s=3, statement_timeout_s=5, outbound=policy)
    connector = build_connector(
        "mysql", MySQLConfig(**{**mariadb_source, "host": REBOUND}), settings
    )
    try:
        assert (await connector.test()).startswith(("MariaDB", "MySQL"))
        result = await connector.query("SELECT 1 AS one", None, max_rows=1)
        assert result.rows == [{"one": 1}]
        assert dns.asked == 1
    finally:
        await connector.close()
    # A new pool asks again, and the private answer is refused, not connected to.
    again = build_connector("mysql", MySQLConfig(**{**mariadb_source, "host": REBOUND}), settings)
    with pytest.raises(ConnectorError) as caught:
        await again.test()
    await again.close()
    assert caught.value.kind == "refused"


async def test_postgres_checks_every_connection(postgres_source: dict[str, Any]) -> None:
    dns = RebindingDNS(["127.0.0.1"], ["10.0.0.1"])
    policy = OutboundPolicy.from_strings(["127.0.0.1/32"], resolver=dns)
    settings = ConnectorSettings(connect_timeout_s=1, statement_timeout_s=5, outbound=policy)
    connector = build_connector(
        "postgresql", PostgresConfig(**{**postgres_source, "host": REBOUND}), settings
    )
    try:
        assert (await connector.test()).startswith("PostgreSQL")
        assert dns.asked == 1
        # The pool's next connection resolves again: now a private address, refused.
        with pytest.raises(ConnectorError) as caught:
            await connector.query("SELECT 1 AS one", None, max_rows=1)
        assert caught.value.kind == "refused"
    finally:
        await connector.close()


def test_tls_verifies_the_name_not_the_address() -> None:
    """aiomysql hands TLS the address it connects to; the context puts the name back."""
    context = _tls_context("db.example.com")
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    tls = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="203.0.113.9")
    assert tls.server_hostname == "db.example.com"
    literal = _tls_context("203.0.113.9")
    assert literal.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="203.0.113.9")
