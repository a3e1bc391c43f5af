"""The read-only SQL guard: which statements are admitted, and why the others are refused."""

from __future__ import annotations

import pytest

from services.datasources.sql_guard import UnsafeQuery, admit, check_read_only

MY, PG = "mysql", "postgres"

ADMITTED = [
    (MY, "SELECT 1", "select"),
    (PG, "SELECT 1", "select"),
    (MY, "select * from t where a = 'x; DROP TABLE t'", "select"),
    (MY, "SELECT 1 -- ; DROP TABLE t", "select"),
    (PG, "SELECT 1 -- ; DROP TABLE t", "select"),
    (MY, "SELECT 1 # ; DROP TABLE t", "select"),
    (PG, "/* leading comment */ SELECT 1", "select"),
    (MY, "  \n\t  SeLeCt 1 FrOm dual", "select"),
    (PG, "SELECT 1;", "select"),
    (MY, "SELECT a FROM t UNION ALL SELECT b FROM u", "select"),
    (PG, "SELECT 1 INTERSECT SELECT 1 EXCEPT SELECT 2", "select"),
    (PG, "(SELECT 1) UNION (SELECT 2)", "select"),
    (MY, "SELECT * FROM (SELECT 1 AS a) AS x WHERE a IN (SELECT 1)", "select"),
    (PG, "WITH a AS (SELECT 1 AS n) SELECT * FROM a", "select"),
    (
        PG,
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) "
        "SELECT * FROM r",
        "select",
    ),
    (PG, "VALUES (1), (2)", "select"),
    (PG, "SELECT x::int, j->>'a', j @> '{}' FROM t WHERE n ILIKE 'a%'", "select"),
    (PG, "SELECT $$ ; DROP TABLE t $$", "select"),
    (MY, "SELECT `a` FROM `t` LIMIT 10, 20", "select"),
    (MY, "SELECT SLEEP(1), BENCHMARK(10, 1)", "select"),
    (PG, "SELECT pg_sleep(1)", "select"),
    (MY, "SHOW TABLES", "show"),
    (MY, "show create table t", "show"),
    (PG, "SHOW search_path", "show"),
    (MY, "DESCRIBE t", "describe"),
    (MY, "DESC t", "describe"),
    (MY, "EXPLAIN SELECT * FROM t", "explain"),
    (MY, "EXPLAIN FORMAT=JSON SELECT 1", "explain"),
    (PG, "EXPLAIN SELECT * FROM t", "explain"),
    (PG, "EXPLAIN (FORMAT JSON, COSTS false) SELECT 1", "explain"),
    (PG, "EXPLAIN VERBOSE SELECT 1", "explain"),
]

REFUSED = [
    # nothing to run
    (MY, "", "empty"),
    (PG, "   ;  ", "empty"),
    (MY, "-- just a comment", "empty"),
    # cannot be parsed: refused rather than guessed
    (MY, "SELECT 'unterminated", "syntax"),
    (PG, "SELEC 1", "not_read_only"),
    (PG, "SELECT FROM WHERE (", "syntax"),
    # stacked statements
    (MY, "SELECT 1; DROP TABLE t", "multiple_statements"),
    (PG, "SELECT 1; SELECT 2", "multiple_statements"),
    (PG, "select 1;delete from t", "multiple_statements"),
    # writes and DDL
    (MY, "INSERT INTO t VALUES (1)", "not_read_only"),
    (PG, "insert into t select * from u", "not_read_only"),
    (MY, "UPDATE t SET a = 1", "not_read_only"),
    (PG, "  DELETE FROM t", "not_read_only"),
    (PG, "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", "not_read_only"),
    (MY, "REPLACE INTO t VALUES (1)", "not_read_only"),
    (PG, "INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING", "not_read_only"),
    (MY, "CREATE TABLE x (a int)", "not_read_only"),
    (PG, "CREATE TABLE x AS SELECT 1", "not_read_only"),
    (MY, "DROP TABLE t", "not_read_only"),
    (PG, "ALTER TABLE t ADD COLUMN c int", "not_read_only"),
    (MY, "TRUNCATE t", "not_read_only"),
    (MY, "RENAME TABLE a TO b", "not_read_only"),
    (PG, "COMMENT ON TABLE t IS 'x'", "not_read_only"),
    (MY, "GRANT ALL ON *.* TO x", "not_read_only"),
    (PG, "REVOKE ALL ON t FROM x", "not_read_only"),
    (MY, "SET @a = 1", "not_read_only"),
    (PG, "SET default_transaction_read_only = off", "not_read_only"),
    (MY, "CALL p()", "not_read_only"),
    (PG, "DO $$ BEGIN DELETE FROM t; END $$", "not_read_only"),
    (PG, "EXECUTE p", "not_read_only"),
    (PG, "COPY t TO '/tmp/x'", "not_read_only"),
    (MY, "LOAD DATA INFILE '/etc/passwd' INTO TABLE t", "not_read_only"),
    (MY, "LOCK TABLES t WRITE", "not_read_only"),
    (PG, "LOCK TABLE t", "not_read_only"),
    (PG, "VACUUM", "not_read_only"),
    (PG, "ANALYZE t", "not_read_only"),
    (MY, "BEGIN", "not_read_only"),
    (PG, "COMMIT", "not_read_only"),
    (PG, "CHECKPOINT", "not_read_only"),
    (PG, "LISTEN x", "not_read_only"),
    (MY, "HANDLER t OPEN", "not_read_only"),
    (MY, "KILL 5", "not_read_only"),
    (MY, "USE other", "not_read_only"),
    (MY, "EXPLAIN DELETE FROM t", "not_read_only"),
    (PG, "EXPLAIN UPDATE t SET a = 1", "not_read_only"),
    # data-modifying CTEs, at the top or nested
    (PG, "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "not_read_only"),
    (PG, "WITH a AS (INSERT INTO t VALUES (1) RETURNING *) SELECT 1", "not_read_only"),
    (
        PG,
        "SELECT * FROM t WHERE id IN (WITH d AS (UPDATE t SET a = 1 RETURNING id) "
        "SELECT id FROM d)",
        "not_read_only",
    ),
    # EXPLAIN ANALYZE runs what it explains
    (PG, "EXPLAIN ANALYZE DELETE FROM t", "explain_analyze"),
    (PG, "explain analyze select 1", "explain_analyze"),
    (PG, "EXPLAIN (ANALYZE, BUFFERS) SELECT 1", "explain_analyze"),
    (PG, "EXPLAIN /* x */ ANALYZE SELECT 1", "explain_analyze"),
    (MY, "EXPLAIN ANALYZE SELECT 1", "explain_analyze"),
    # SELECT ... INTO
    (MY, "SELECT * INTO OUTFILE '/tmp/x' FROM t", "into"),
    (MY, "SELECT * FROM t INTO DUMPFILE '/tmp/x'", "into"),
    (MY, "SELECT a INTO @x FROM t", "into"),
    (PG, "SELECT * INTO new_table FROM t", "into"),
    (PG, "SELECT * INTO TEMP x FROM t", "into"),
    # locking reads
    (MY, "SELECT * FROM t FOR UPDATE", "locking"),
    (MY, "SELECT * FROM t LOCK IN SHARE MODE", "locking"),
    (PG, "SELECT * FROM t FOR SHARE", "locking"),
    (PG, "select * from t for no key update skip locked", "locking"),
    (MY, "SELECT * FROM t WHERE x = (SELECT 1 FOR UPDATE)", "locking"),
    # MySQL executable comments and optimizer hints
    (MY, "/*!50000 DROP TABLE t */", "executable_comment"),
    (MY, "SELECT 1 /*! , LOAD_FILE('/etc/passwd') */", "executable_comment"),
    (MY, "SELECT /*+ MAX_EXECUTION_TIME(1) */ 1", "executable_comment"),
    (MY, "SELECT 1 /*M!100000 , 2 */", "executable_comment"),
    # side-effecting or dangerous functions
    (PG, "SELECT pg_read_file('/etc/passwd')", "forbidden_function"),
    (PG, "SELECT pg_catalog.pg_read_binary_file('/etc/passwd')", "forbidden_function"),
    (PG, "SELECT * FROM pg_ls_dir('.')", "forbidden_function"),
    (PG, "SELECT lo_import('/etc/passwd')", "forbidden_function"),
    (PG, "SELECT lo_export(1, '/tmp/x')", "forbidden_function"),
    (PG, "SELECT * FROM dblink('host=x', 'select 1') AS t(a int)", "forbidden_function"),
    (PG, "SELECT dblink_exec('host=x', 'drop table t')", "forbidden_function"),
    (PG, "SELECT pg_terminate_backend(1)", "forbidden_function"),
    (PG, "SELECT pg_cancel_backend(1)", "forbidden_function"),
    (PG, "SELECT set_config('default_transaction_read_only', 'off', false)", "forbidden_function"),
    (PG, "SELECT nextval('s')", "forbidden_function"),
    (PG, "SELECT setval('s', 1)", "forbidden_function"),
    (PG, "SELECT pg_advisory_lock(1)", "forbidden_function"),
    (PG, "SELECT pg_try_advisory_xact_lock(1)", "forbidden_function"),
    (PG, "SELECT query_to_xml('delete from t', true, true, '')", "forbidden_function"),
    (PG, "SELECT \"pg_read_file\"('/etc/passwd')", "forbidden_function"),
    (MY, "SELECT LOAD_FILE('/etc/passwd')", "forbidden_function"),
    (MY, "SELECT 1 --1, LOAD_FILE(0x2f6574632f706173737764)", "forbidden_function"),
    (MY, "SELECT GET_LOCK('a', 1)", "forbidden_function"),
    (MY, "select release_lock('a')", "forbidden_function"),
]


@pytest.mark.parametrize(("dialect", "sql", "kind"), ADMITTED)
def test_admitted(dialect: str, sql: str, kind: str) -> None:
    assert admit(sql, dialect) == kind  # type: ignore[arg-type]
    check_read_only(sql, dialect)  # type: ignore[arg-type]


@pytest.mark.parametrize(("dialect", "sql", "reason"), REFUSED)
def test_refused(dialect: str, sql: str, reason: str) -> None:
    with pytest.raises(UnsafeQuery) as caught:
        check_read_only(sql, dialect)  # type: ignore[arg-type]
    assert caught.value.reason_code == reason
    # A bilingual reason, rendered without leftover placeholders.
    for language in ("zh", "en"):
        text = caught.value.render(language)
        assert text
        assert "{" not in text


def test_enough_cases() -> None:
    assert len(ADMITTED) + len(REFUSED) >= 40
    codes = {reason for _, _, reason in REFUSED}
    assert codes >= {
        "empty", "syntax", "multiple_statements", "not_read_only", "explain_analyze",
        "into", "locking", "executable_comment", "forbidden_function",
    }  # fmt: skip


def test_reasons_name_the_statement() -> None:
    with pytest.raises(UnsafeQuery) as caught:
        check_read_only("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "postgres")
    assert "DELETE" in caught.value.render("en")
    with pytest.raises(UnsafeQuery) as caught:
        check_read_only("VACUUM FULL", "postgres")
    assert "VACUUM" in caught.value.render("zh")
    with pytest.raises(UnsafeQuery) as caught:
        check_read_only("SELECT pg_read_file('/etc/passwd')", "postgres")
    assert "PG_READ_FILE" in caught.value.render("en")


@pytest.mark.parametrize(
    ("dialect", "sql"),
    [
        (MY, "SELECT * FROM t WHERE a = %s AND b LIKE 'x%%' AND c = %(name)s"),
        (PG, "SELECT %s::int, %(a)s, x FROM t WHERE y IN (%s, %s) LIMIT %s"),
        (PG, "EXPLAIN SELECT * FROM t WHERE a = %s"),
    ],
)
def test_placeholders_in_value_positions(dialect: str, sql: str) -> None:
    admit(sql, dialect, placeholders=True)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("dialect", "sql"),
    [
        (MY, "SELECT '%s'"),
        (MY, "SELECT 1 /* %s */"),
        (MY, "SELECT 1 -- %(x)s"),
        (PG, "SELECT 'a %(x)s b'"),
    ],
)
def test_placeholders_inside_strings_or_comments_are_refused(dialect: str, sql: str) -> None:
    """MySQL's driver splices escaped values into the text: inside a string a value could
    close it and add SQL the guard never saw."""
    with pytest.raises(UnsafeQuery) as caught:
        admit(sql, dialect, placeholders=True)  # type: ignore[arg-type]
    assert caught.value.reason_code == "placeholder"


def test_without_parameters_percent_is_plain_text() -> None:
    assert admit("SELECT * FROM t WHERE n LIKE 'a%'", "postgres") == "select"
    with pytest.raises(UnsafeQuery):
        admit("SELECT * FROM t WHERE a = %s", "mysql")  # no parameters: not SQL


def test_unknown_dialect() -> None:
    with pytest.raises(ValueError, match="dialect"):
        check_read_only("SELECT 1", "oracle")  # type: ignore[arg-type]
