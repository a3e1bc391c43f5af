"""The SQL connectors against the real MariaDB and PostgreSQL servers; each test its own tables."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pymysql
import pytest

from services.datasources.configs import MySQLConfig, PostgresConfig
from services.datasources.connectors import (
    ConnectorError,
    ConnectorSettings,
    QueryResult,
    build_connector,
)
from services.datasources.connectors.sql import MySQLConnector, PostgresConnector
from shared.net.outbound import OutboundPolicy
from tests.support.processes import free_port

# The test servers listen on 127.0.0.1, which the operator has to allow (as the platform's
# tests do with AGENTFLOW_OUTBOUND_ALLOW_NETWORKS).
LOOPBACK = OutboundPolicy.from_strings(["127.0.0.1/32"])
SETTINGS = ConnectorSettings(
    connect_timeout_s=3, statement_timeout_s=1, max_rows=100, outbound=LOOPBACK
)
# Slow but allowed: the guard refuses SLEEP and pg_sleep.
MYSQL_SLOW = (
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000) "
    "SELECT COUNT(*) FROM c AS a, c AS b, c AS d"
)
POSTGRES_SLOW = "SELECT count(*) FROM generate_series(1, 10000000000)"


def _table() -> str:
    return f"t_{uuid.uuid4().hex[:10]}"


# -- MariaDB -------------------------------------------------------------------------------


def _mysql_run(info: dict[str, Any], *statements: str) -> None:
    with (
        pymysql.connect(
            host=info["host"],
            port=info["port"],
            user=info["username"],
            password=info["password"],
            database=info["database"],
            autocommit=True,
            charset="utf8mb4",
        ) as conn,
        conn.cursor() as cursor,
    ):
        for statement in statements:
            cursor.execute(statement)


def _mysql_count(info: dict[str, Any], table: str) -> int:
    with (
        pymysql.connect(
            host=info["host"],
            port=info["port"],
            user=info["username"],
            password=info["password"],
            database=info["database"],
        ) as conn,
        conn.cursor() as cursor,
    ):
        cursor.execute(f"SELECT COUNT(*) FROM `{table}`")  # noqa: S608 - a name made above
        row = cursor.fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
async def mysql(mariadb_source: dict[str, Any]) -> AsyncIterator[MySQLConnector]:
    connector = build_connector("mysql", MySQLConfig(**mariadb_source), SETTINGS)
    assert isinstance(connector, MySQLConnector)
    yield connector
    await connector.close()


@pytest.fixture
def mysql_people(mariadb_source: dict[str, Any]) -> Iterator[str]:
    """A table of 5 people (ids 1..5)."""
    table = _table()
    _mysql_run(
        mariadb_source,
        f"CREATE TABLE `{table}` (id INT PRIMARY KEY, name VARCHAR(50), city VARCHAR(50))",
        f"INSERT INTO `{table}` VALUES (1, '张三', '北京'), (2, '李四', '上海'), "  # noqa: S608
        "(3, 'Ann', 'Paris'), (4, 'Bob', 'Paris'), (5, 'Eve', NULL)",
    )
    yield table
    _mysql_run(mariadb_source, f"DROP TABLE IF EXISTS `{table}`")


async def test_mysql_test_reports_the_server(mysql: MySQLConnector) -> None:
    version = await mysql.test()
    assert version.startswith(("MariaDB 1", "MySQL ")), version


async def _failure(connector: Any) -> ConnectorError:
    try:
        with pytest.raises(ConnectorError) as caught:
            await connector.test()
        with pytest.raises(ConnectorError) as again:
            await connector.query("SELECT 1", None, max_rows=1)
        assert again.value.kind == caught.value.kind
        return caught.value
    finally:
        await connector.close()


async def test_mysql_bad_password_is_auth(mariadb_source: dict[str, Any]) -> None:
    config = MySQLConfig(**{**mariadb_source, "password": "wrong-Secret-123"})
    error = await _failure(build_connector("mysql", config, SETTINGS))
    assert error.kind == "auth"
    assert "用户名或密码错误" in error.render("zh")
    assert "wrong-Secret-123" not in error.render("zh") + error.render("en") + repr(error)


async def test_mysql_unknown_host_is_unreachable(mariadb_source: dict[str, Any]) -> None:
    config = MySQLConfig(**{**mariadb_source, "host": "no-such-db.invalid"})
    error = await _failure(build_connector("mysql", config, SETTINGS))
    assert error.kind == "unreachable"
    assert "找不到主机 no-such-db.invalid" in error.render("zh")


async def test_mysql_closed_port_is_unreachable(mariadb_source: dict[str, Any]) -> None:
    port = free_port()
    config = MySQLConfig(**{**mariadb_source, "port": port})
    error = await _failure(build_connector("mysql", config, SETTINGS))
    assert error.kind == "unreachable"
    assert f"127.0.0.1:{port}" in error.render("en")


async def test_mysql_unknown_database_is_not_found(mariadb_source: dict[str, Any]) -> None:
    config = MySQLConfig(**{**mariadb_source, "database": "no_such_database_x"})
    error = await _failure(build_connector("mysql", config, SETTINGS))
    assert error.kind == "not_found"
    assert "no_such_database_x" in error.render("en")


async def test_mysql_types_are_json_safe(
    mysql: MySQLConnector, mariadb_source: dict[str, Any]
) -> None:
    table = _table()
    _mysql_run(
        mariadb_source,
        f"""CREATE TABLE `{table}` (
            i INT, big BIGINT, d DECIMAL(12, 2), f DOUBLE, s VARCHAR(50), day DATE,
            at DATETIME(3), tm TIME, flag BOOLEAN, bin VARBINARY(8), doc JSON, nothing INT
        ) CHARACTER SET utf8mb4""",
        f"""INSERT INTO `{table}` VALUES (
            7, 9007199254740993, 12.50, 1.5, '你好,世界', '2024-05-01',
            '2024-05-01 08:30:00.125', '08:30:05', TRUE, X'00FF10', '{{"a": [1, 2]}}', NULL
        )""",  # noqa: S608 - a name made above
    )
    result = await mysql.query(f"SELECT * FROM `{table}`", None, max_rows=10)  # noqa: S608
    assert result.columns == [
        "i", "big", "d", "f", "s", "day", "at", "tm", "flag", "bin", "doc", "nothing",
    ]  # fmt: skip
    assert result.rows == [
        {
            "i": 7,
            "big": 9007199254740993,  # exact: a Python int, not a float
            "d": "12.50",  # Decimal as an exact string
            "f": 1.5,
            "s": "你好,世界",
            "day": "2024-05-01",
            "at": "2024-05-01T08:30:00.125000",
            "tm": 30605.0,  # MySQL TIME is a duration: seconds
            "flag": 1,  # BOOLEAN is TINYINT(1) in MySQL
            "bin": "AP8Q",  # base64 of 00 ff 10
            "doc": '{"a": [1, 2]}',  # MariaDB's JSON is text underneath
            "nothing": None,
        }
    ]
    assert (result.count, result.truncated) == (1, False)


async def test_mysql_named_and_positional_parameters(
    mysql: MySQLConnector, mysql_people: str
) -> None:
    named = await mysql.query(
        f"SELECT id, name FROM `{mysql_people}` WHERE city = %(city)s ORDER BY id",  # noqa: S608
        {"city": "Paris"},
        max_rows=10,
    )
    assert named.rows == [{"id": 3, "name": "Ann"}, {"id": 4, "name": "Bob"}]
    positional = await mysql.query(
        f"SELECT name FROM `{mysql_people}` WHERE id > %s AND name LIKE '%%e%%'",  # noqa: S608
        [3],
        max_rows=10,
    )
    assert positional.rows == [{"name": "Eve"}]
    sql = f"SELECT city FROM `{mysql_people}` WHERE name = %s"  # noqa: S608 - made name
    chinese = await mysql.query(sql, ["张三"], max_rows=10)
    assert chinese.rows == [{"city": "北京"}]
    # A value that tries to end the string stays a value.
    sneaky = await mysql.query(
        f"SELECT COUNT(*) AS n FROM `{mysql_people}` WHERE name = %s",  # noqa: S608
        ["x' OR '1'='1"],
        max_rows=10,
    )
    assert sneaky.rows == [{"n": 0}]


async def test_mysql_parameter_mistakes_are_bad_queries(
    mysql: MySQLConnector, mysql_people: str
) -> None:
    sql = f"SELECT * FROM `{mysql_people}` WHERE id = %(id)s"  # noqa: S608
    with pytest.raises(ConnectorError) as caught:
        await mysql.query(sql, {"other": 1}, max_rows=10)
    assert caught.value.kind == "bad_query"
    assert "id" in caught.value.render("en")
    with pytest.raises(ConnectorError) as caught:
        await mysql.query(f"SELECT '%s' FROM `{mysql_people}`", [1], max_rows=10)  # noqa: S608
    assert caught.value.kind == "refused"  # a placeholder inside a string


async def test_mysql_row_limit(mysql: MySQLConnector, mysql_people: str) -> None:
    sql = f"SELECT id FROM `{mysql_people}` ORDER BY id"  # noqa: S608
    limited = await mysql.query(sql, None, max_rows=2)
    assert limited == QueryResult(
        rows=[{"id": 1}, {"id": 2}], count=2, truncated=True, columns=["id"]
    )
    exact = await mysql.query(sql, None, max_rows=5)
    assert (exact.count, exact.truncated) == (5, False)
    # The connection left with unread rows was not pooled again: the next query works.
    again = await mysql.query(sql, None, max_rows=1)
    assert again.rows == [{"id": 1}]


async def test_mysql_duplicate_columns(mysql: MySQLConnector) -> None:
    result = await mysql.query("SELECT 1 AS a, 2 AS a, 3 AS a_2", None, max_rows=1)
    assert result.columns == ["a", "a_3", "a_2"]
    assert result.rows == [{"a": 1, "a_3": 2, "a_2": 3}]


async def test_mysql_show_describe_explain(mysql: MySQLConnector, mysql_people: str) -> None:
    tables = await mysql.query("SHOW TABLES", None, max_rows=100)
    assert any(mysql_people in row.values() for row in tables.rows)
    described = await mysql.query(f"DESCRIBE `{mysql_people}`", None, max_rows=10)
    assert [row["Field"] for row in described.rows] == ["id", "name", "city"]
    sql = f"EXPLAIN SELECT * FROM `{mysql_people}`"  # noqa: S608 - a name made by the fixture
    explained = await mysql.query(sql, None, max_rows=10)
    assert explained.count >= 1


async def test_mysql_statement_timeout(mysql: MySQLConnector) -> None:
    with pytest.raises(ConnectorError) as caught:
        await mysql.query(MYSQL_SLOW, None, max_rows=1)
    assert caught.value.kind == "timeout"
    assert "1 秒" in caught.value.render("zh")
    after = await mysql.query("SELECT 1 AS ok", None, max_rows=1)
    assert after.rows == [{"ok": 1}]


async def test_mysql_server_errors(mysql: MySQLConnector) -> None:
    with pytest.raises(ConnectorError) as caught:
        await mysql.query("SELECT * FROM no_such_table", None, max_rows=1)
    assert caught.value.kind == "not_found"
    with pytest.raises(ConnectorError) as caught:
        await mysql.query("SELECT no_such_column FROM (SELECT 1 AS a) AS x", None, max_rows=1)
    assert caught.value.kind == "bad_query"


async def test_mysql_writes_are_refused_by_the_guard(
    mysql: MySQLConnector, mysql_people: str, mariadb_source: dict[str, Any]
) -> None:
    for sql in (
        f"DELETE FROM `{mysql_people}`",  # noqa: S608
        f"SELECT 1; DELETE FROM `{mysql_people}`",  # noqa: S608
        f"/*!50000 DELETE FROM `{mysql_people}` */",  # noqa: S608
    ):
        with pytest.raises(ConnectorError) as caught:
            await mysql.query(sql, None, max_rows=1)
        assert caught.value.kind == "refused", sql
    assert _mysql_count(mariadb_source, mysql_people) == 5


async def test_mysql_read_only_transaction_is_the_second_line(
    mysql: MySQLConnector, mysql_people: str, mariadb_source: dict[str, Any]
) -> None:
    """Past the guard (called directly), the server itself refuses to write."""
    with pytest.raises(ConnectorError) as caught:
        await mysql._execute_unchecked(
            f"INSERT INTO `{mysql_people}` VALUES (6, 'Mallory', NULL)",  # noqa: S608
            None,
            max_rows=1,
        )
    assert caught.value.kind == "refused"
    assert "read-only" in caught.value.render("en")
    # And one call runs one statement (aiomysql's multi-statements are switched off).
    with pytest.raises(ConnectorError) as caught:
        await mysql._execute_unchecked(f"SELECT 1; DROP TABLE `{mysql_people}`", None, max_rows=1)
    assert caught.value.kind == "bad_query"
    assert _mysql_count(mariadb_source, mysql_people) == 5


# -- PostgreSQL ----------------------------------------------------------------------------


def _pg_run(info: dict[str, Any], *statements: str) -> None:
    with psycopg.connect(
        host=info["host"],
        port=info["port"],
        dbname=info["database"],
        user=info["username"],
        autocommit=True,
    ) as conn:
        for statement in statements:
            conn.execute(statement)


def _pg_count(info: dict[str, Any], table: str) -> int:
    with psycopg.connect(
        host=info["host"], port=info["port"], dbname=info["database"], user=info["username"]
    ) as conn:
        sql = f'SELECT COUNT(*) FROM "{table}"'  # noqa: S608 - a name made by the fixture
        row = conn.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
async def postgres(postgres_source: dict[str, Any]) -> AsyncIterator[PostgresConnector]:
    connector = build_connector("postgresql", PostgresConfig(**postgres_source), SETTINGS)
    assert isinstance(connector, PostgresConnector)
    yield connector
    await connector.close()


@pytest.fixture
def pg_people(postgres_source: dict[str, Any]) -> Iterator[str]:
    """A table of 5 people (ids 1..5)."""
    table = _table()
    _pg_run(
        postgres_source,
        f'CREATE TABLE "{table}" (id INT PRIMARY KEY, name TEXT, city TEXT)',
        f"INSERT INTO \"{table}\" VALUES (1, '张三', '北京'), (2, '李四', '上海'), "  # noqa: S608
        "(3, 'Ann', 'Paris'), (4, 'Bob', 'Paris'), (5, 'Eve', NULL)",
    )
    yield table
    _pg_run(postgres_source, f'DROP TABLE IF EXISTS "{table}"')


async def test_postgres_test_reports_the_server(postgres: PostgresConnector) -> None:
    version = await postgres.test()
    assert version.startswith("PostgreSQL 1"), version


async def test_postgres_unknown_user_is_auth(postgres_source: dict[str, Any]) -> None:
    """The local server trusts every password, so a role that does not exist stands in for
    bad credentials: the server refuses them the same way (SQLSTATE class 28)."""
    config = PostgresConfig(**{**postgres_source, "username": "nobody_x", "password": "pw-123"})
    error = await _failure(build_connector("postgresql", config, SETTINGS))
    assert error.kind == "auth"
    assert "用户名或密码错误" in error.render("zh")
    assert "pw-123" not in error.render("zh") + error.render("en")


async def test_postgres_unknown_host_is_unreachable(postgres_source: dict[str, Any]) -> None:
    config = PostgresConfig(**{**postgres_source, "host": "no-such-db.invalid"})
    error = await _failure(build_connector("postgresql", config, SETTINGS))
    assert error.kind == "unreachable"
    assert "no-such-db.invalid" in error.render("en")


async def test_postgres_closed_port_is_unreachable(postgres_source: dict[str, Any]) -> None:
    port = free_port()
    config = PostgresConfig(**{**postgres_source, "port": port})
    error = await _failure(build_connector("postgresql", config, SETTINGS))
    assert error.kind == "unreachable"
    assert f"127.0.0.1:{port}" in error.render("en")


async def test_postgres_unknown_database_is_not_found(postgres_source: dict[str, Any]) -> None:
    config = PostgresConfig(**{**postgres_source, "database": "no_such_database_x"})
    error = await _failure(build_connector("postgresql", config, SETTINGS))
    assert error.kind == "not_found"
    assert "no_such_database_x" in error.render("zh")


async def test_postgres_types_are_json_safe(
    postgres: PostgresConnector, postgres_source: dict[str, Any]
) -> None:
    table = _table()
    _pg_run(
        postgres_source,
        f"""CREATE TABLE "{table}" (
            i INT, big BIGINT, d NUMERIC(12, 2), tiny NUMERIC(12, 10), f DOUBLE PRECISION,
            s VARCHAR(50), day DATE, at TIMESTAMP, atz TIMESTAMPTZ, tm TIME, flag BOOLEAN,
            bin BYTEA, doc JSON, docb JSONB, id UUID, nums INT[], span INTERVAL, nothing INT
        )""",
        f"""INSERT INTO "{table}" VALUES (
            7, 9007199254740993, 12.50, 0, 1.5, '你好,世界', '2024-05-01',
            '2024-05-01 08:30:00.125', '2024-05-01 08:30:00+02', '08:30:05', TRUE,
            '\\x00ff10', '{{"a": [1, 2]}}', '{{"b": null}}',
            'a8098c1a-f86e-11da-bd1a-00112444be1e', '{{1,2,3}}', '1 hour 30 seconds', NULL
        )""",  # noqa: S608 - a name made above
    )
    result = await postgres.query(f'SELECT * FROM "{table}"', None, max_rows=10)  # noqa: S608
    # In the session's time zone, whichever it is; the offset says which.
    atz = datetime.fromisoformat(result.rows[0].pop("atz"))
    assert atz == datetime(2024, 5, 1, 6, 30, tzinfo=UTC)
    assert result.rows == [
        {
            "i": 7,
            "big": 9007199254740993,
            "d": "12.50",
            "tiny": "0.0000000000",  # plain notation, never 0E-10
            "f": 1.5,
            "s": "你好,世界",
            "day": "2024-05-01",
            "at": "2024-05-01T08:30:00.125000",
            "tm": "08:30:05",
            "flag": True,
            "bin": "AP8Q",
            "doc": {"a": [1, 2]},
            "docb": {"b": None},
            "id": "a8098c1a-f86e-11da-bd1a-00112444be1e",
            "nums": [1, 2, 3],
            "span": 3630.0,
            "nothing": None,
        }
    ]


async def test_postgres_named_and_positional_parameters(
    postgres: PostgresConnector, pg_people: str
) -> None:
    named = await postgres.query(
        f'SELECT id, name FROM "{pg_people}" WHERE city = %(city)s ORDER BY id',  # noqa: S608
        {"city": "Paris"},
        max_rows=10,
    )
    assert named.rows == [{"id": 3, "name": "Ann"}, {"id": 4, "name": "Bob"}]
    positional = await postgres.query(
        f"SELECT name FROM \"{pg_people}\" WHERE id > %s AND name LIKE '%%e%%'",  # noqa: S608
        [3],
        max_rows=10,
    )
    assert positional.rows == [{"name": "Eve"}]
    listed = await postgres.query(
        f'SELECT name FROM "{pg_people}" WHERE id = ANY(%s) ORDER BY id',  # noqa: S608
        [[1, 2]],
        max_rows=10,
    )
    assert listed.rows == [{"name": "张三"}, {"name": "李四"}]


async def test_postgres_parameter_mistakes_are_bad_queries(
    postgres: PostgresConnector, pg_people: str
) -> None:
    sql = f'SELECT * FROM "{pg_people}" WHERE id = %(id)s'  # noqa: S608
    with pytest.raises(ConnectorError) as caught:
        await postgres.query(sql, {"other": 1}, max_rows=10)
    assert caught.value.kind == "bad_query"
    with pytest.raises(ConnectorError) as caught:
        await postgres.query(sql, [1], max_rows=10)
    assert caught.value.kind == "bad_query"


async def test_postgres_row_limit(postgres: PostgresConnector, pg_people: str) -> None:
    sql = f'SELECT id FROM "{pg_people}" ORDER BY id'  # noqa: S608
    limited = await postgres.query(sql, None, max_rows=2)
    assert limited == QueryResult(
        rows=[{"id": 1}, {"id": 2}], count=2, truncated=True, columns=["id"]
    )
    exact = await postgres.query(sql, None, max_rows=5)
    assert (exact.count, exact.truncated) == (5, False)
    many = await postgres.query("SELECT generate_series(1, 100000) AS n", None, max_rows=3)
    assert (many.rows, many.truncated) == ([{"n": 1}, {"n": 2}, {"n": 3}], True)


async def test_postgres_duplicate_columns(postgres: PostgresConnector) -> None:
    result = await postgres.query("SELECT 1 AS a, 2 AS a, 3 AS a", None, max_rows=1)
    assert result.columns == ["a", "a_2", "a_3"]
    assert result.rows == [{"a": 1, "a_2": 2, "a_3": 3}]


async def test_postgres_show_and_explain(postgres: PostgresConnector, pg_people: str) -> None:
    shown = await postgres.query("SHOW default_transaction_read_only", None, max_rows=1)
    assert shown.rows == [{"default_transaction_read_only": "on"}]
    explained = await postgres.query(
        f'EXPLAIN SELECT * FROM "{pg_people}" WHERE id = %s',  # noqa: S608
        [1],
        max_rows=10,
    )
    assert explained.columns == ["QUERY PLAN"]


async def test_postgres_statement_timeout(postgres: PostgresConnector) -> None:
    with pytest.raises(ConnectorError) as caught:
        await postgres.query(POSTGRES_SLOW, None, max_rows=1)
    assert caught.value.kind == "timeout"
    after = await postgres.query("SELECT 1 AS ok", None, max_rows=1)
    assert after.rows == [{"ok": 1}]


async def test_postgres_server_errors(postgres: PostgresConnector) -> None:
    with pytest.raises(ConnectorError) as caught:
        await postgres.query("SELECT * FROM no_such_table", None, max_rows=1)
    assert caught.value.kind == "not_found"
    with pytest.raises(ConnectorError) as caught:
        await postgres.query("SELECT no_such_column FROM (SELECT 1 AS a) AS x", None, max_rows=1)
    assert caught.value.kind == "bad_query"


async def test_postgres_writes_are_refused_by_the_guard(
    postgres: PostgresConnector, pg_people: str, postgres_source: dict[str, Any]
) -> None:
    for sql in (
        f'DELETE FROM "{pg_people}"',  # noqa: S608
        f'WITH d AS (DELETE FROM "{pg_people}" RETURNING *) SELECT * FROM d',  # noqa: S608
        "SELECT set_config('default_transaction_read_only', 'off', false)",
    ):
        with pytest.raises(ConnectorError) as caught:
            await postgres.query(sql, None, max_rows=1)
        assert caught.value.kind == "refused", sql
    assert _pg_count(postgres_source, pg_people) == 5


async def test_postgres_read_only_session_is_the_second_line(
    postgres: PostgresConnector, pg_people: str, postgres_source: dict[str, Any]
) -> None:
    """Past the guard (called directly), the server itself refuses to write."""
    for sql in (
        f"INSERT INTO \"{pg_people}\" VALUES (6, 'Mallory', NULL)",  # noqa: S608
        f'WITH d AS (DELETE FROM "{pg_people}" RETURNING *) SELECT * FROM d',  # noqa: S608
    ):
        with pytest.raises(ConnectorError) as caught:
            await postgres._execute_unchecked(sql, None, max_rows=1)
        assert caught.value.kind == "refused", sql
        assert "read-only" in caught.value.render("en")
    # One call runs one statement (the extended protocol), so no COMMIT can end the
    # read-only transaction halfway.
    with pytest.raises(ConnectorError):
        await postgres._execute_unchecked(
            "SELECT 1; COMMIT; SET default_transaction_read_only = off", None, max_rows=1
        )
    assert _pg_count(postgres_source, pg_people) == 5


async def test_connector_repr_has_no_password(mariadb_source: dict[str, Any]) -> None:
    connector = build_connector("mysql", MySQLConfig(**mariadb_source), SETTINGS)
    assert mariadb_source["password"] not in repr(connector)
    await connector.close()
