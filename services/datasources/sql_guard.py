"""Read-only SQL admission: one statement that reads, judged on sqlglot's parse tree.

Admitted: exactly one SELECT (set operations, subqueries, VALUES and WITH included, every CTE
itself a read-only query), SHOW, DESCRIBE/DESC, or EXPLAIN of such a query (not EXPLAIN
ANALYZE, which runs the statement). Refused, each with a `reason_code`:

- `empty`: no statement, only blanks or comments;
- `syntax`: sqlglot cannot parse it (the guard fails closed: what it cannot read, it refuses);
- `multiple_statements`: `SELECT 1; DROP TABLE t`;
- `not_read_only`: anything else, anywhere in the tree: INSERT/UPDATE/DELETE/MERGE/REPLACE,
  DDL, GRANT/REVOKE, SET, CALL/EXEC/DO, COPY, LOAD DATA, LOCK, VACUUM/ANALYZE, transactions,
  a data-modifying CTE (`WITH d AS (DELETE ... RETURNING *) SELECT ...`), and every statement
  sqlglot only knows as an opaque `Command`, except the SHOW and EXPLAIN admitted above;
- `explain_analyze`: EXPLAIN ANALYZE (it executes the statement it explains);
- `into`: `SELECT ... INTO` a table, variables or a file (OUTFILE/DUMPFILE);
- `locking`: `FOR UPDATE`, `FOR SHARE`, `LOCK IN SHARE MODE`, ...;
- `executable_comment` (MySQL): `/*! ... */`, `/*M! ... */` and `/*+ ... */` hints, which the
  server executes; found in the raw text (a string holding one is refused too);
- `forbidden_function`: a function call by a name not on the dialect's allowlist of read-only
  functions (`sql_functions.ALLOWED_FUNCTIONS`), named in the reason: files, sessions,
  settings, sequences, locks, sleeping, SQL in strings, extensions' and user-defined
  functions are all refused that way, and so is a schema-qualified call (but
  `pg_catalog.<allowed>`). The name is the one written in the query; syntax sqlglot models as a
  function without a call by name (CAST, CASE, EXTRACT, JSON operators, CURRENT_DATE, ...)
  is not a call;
- `unicode_identifier` (PostgreSQL): a `U&"..."` identifier, whose escapes could spell any
  name (`U&"pg\005fread\005ffile"`);
- `placeholder`: with parameters, a `%s`/`%(name)s` inside a string or a comment, where the
  MySQL driver would splice the escaped value into the text instead of a value position.

The guard is the first line; the connectors add a second (read-only transaction, one statement
per call) and the database user's privileges are the real boundary.
"""

from __future__ import annotations

import itertools
import logging
import re
from typing import Any, Final, Literal

import sqlglot
from sqlglot import Token, TokenType, exp
from sqlglot.errors import ParseError, SqlglotError

from services.datasources.sql_functions import ALLOWED_FUNCTIONS, ALLOWED_SCHEMAS
from shared.i18n import LocalizedError, Message

# sqlglot warns, with the SQL text, each time it falls back to `Command`; user queries are not
# log material and the fallback is handled here.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

Dialect = Literal["mysql", "postgres"]
StatementKind = Literal["select", "show", "describe", "explain"]
ReasonCode = Literal[
    "empty",
    "syntax",
    "multiple_statements",
    "not_read_only",
    "explain_analyze",
    "into",
    "locking",
    "executable_comment",
    "forbidden_function",
    "unicode_identifier",
    "placeholder",
]

MESSAGES: Final[dict[ReasonCode, Message]] = {
    "empty": Message("查询为空", "the query is empty"),
    "syntax": Message("无法解析 SQL:{detail}", "the SQL cannot be parsed: {detail}"),
    "multiple_statements": Message(
        "一次只能执行一条语句(发现 {count} 条)",
        "only one statement may run at a time ({count} found)",
    ),
    "not_read_only": Message(
        "只允许只读查询(SELECT、SHOW、DESCRIBE、EXPLAIN),不允许 {statement}",
        "only read-only queries (SELECT, SHOW, DESCRIBE, EXPLAIN) are allowed, not {statement}",
    ),
    "explain_analyze": Message(
        "不允许 EXPLAIN ANALYZE(它会真正执行语句),请去掉 ANALYZE",
        "EXPLAIN ANALYZE is not allowed (it runs the statement): leave out ANALYZE",
    ),
    "into": Message(
        "不允许 SELECT … INTO(写入表、变量或文件)",
        "SELECT … INTO (writing to a table, variables or a file) is not allowed",
    ),
    "locking": Message(
        "不允许加锁读取({clause})",
        "locking reads ({clause}) are not allowed",
    ),
    "executable_comment": Message(
        "不允许 MySQL 可执行注释或优化器提示(/*! … */、/*+ … */)",
        "MySQL executable comments and optimizer hints (/*! … */, /*+ … */) are not allowed",
    ),
    "forbidden_function": Message(
        "不允许调用函数 {function}:只能调用已知只读的函数",
        "the function {function} is not allowed: only functions known to be read-only may be "
        "called",
    ),
    "unicode_identifier": Message(
        '不允许 Unicode 转义标识符(U&"…")',
        'Unicode-escaped identifiers (U&"…") are not allowed',
    ),
    "placeholder": Message(
        "参数占位符只能用在值的位置,不能写在字符串或注释里",
        "a parameter placeholder must stand where a value goes, not inside a string or comment",
    ),
}


class UnsafeQuery(LocalizedError):
    """The query is not admitted; `reason_code` says why (stable English identifier)."""

    def __init__(self, reason_code: ReasonCode, **params: Any) -> None:
        super().__init__(MESSAGES[reason_code], **params)
        self.reason_code: ReasonCode = reason_code


# Statements (and parts of statements) that are never read-only, wherever they appear.
_WRITES: Final[tuple[type[exp.Expr], ...]] = tuple(
    cls
    for cls in (
        getattr(exp, name, None)
        for name in (
            "DML", "DDL", "Insert", "Update", "Delete", "Merge", "Copy", "Create", "Drop",
            "Alter", "AlterRename", "TruncateTable", "Set", "Transaction", "Commit", "Rollback",
            "Grant", "Revoke", "Use", "Kill", "Analyze", "Comment", "Pragma", "LoadData",
            "NextValueFor", "Cache", "Uncache", "Refresh", "Declare", "Execute", "Attach",
            "Detach", "Export", "Put", "Get", "Install", "Command", "Show", "Describe",
        )
    )
    if isinstance(cls, type)
)  # fmt: skip
_STATEMENT_NAMES: Final = {
    "TruncateTable": "TRUNCATE",
    "Transaction": "BEGIN",
    "LoadData": "LOAD DATA",
    "NextValueFor": "NEXT VALUE FOR",
    "AlterRename": "RENAME",
    "Describe": "EXPLAIN",
}
_QUERIES: Final = (exp.Select, exp.SetOperation, exp.Values)
_EXECUTABLE_COMMENT: Final = re.compile(r"/\*(?:!|\+|[Mm]!)")
_EXPLAIN_OPTIONS: Final = frozenset({"VERBOSE"})
_ANALYZE: Final = frozenset({"ANALYZE", "ANALYSE"})
_READ_KEYWORDS: Final = frozenset(
    {"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "VALUES", "TABLE", "("}
)
_MARK: Final = "__afp"


def check_read_only(sql: str, dialect: Dialect) -> None:
    """UnsafeQuery unless `sql` is one read-only statement (see the module's docstring)."""
    admit(sql, dialect)


def admit(sql: str, dialect: Dialect, *, placeholders: bool = False) -> StatementKind:
    """What kind of read-only statement `sql` is; UnsafeQuery if it is not one.

    `placeholders`: the query will run with parameters (DB-API pyformat, `%s`/`%(name)s`, and
    `%%` for a literal `%`); each placeholder must then stand in a value position."""
    if dialect not in ("mysql", "postgres"):
        raise ValueError(f"unknown SQL dialect {dialect!r}")
    if dialect == "mysql" and _EXECUTABLE_COMMENT.search(sql):
        raise UnsafeQuery("executable_comment")
    text, marks = _mark_placeholders(sql, dialect) if placeholders else (sql, [])
    if dialect == "postgres" and _unicode_identifier(text, dialect):
        raise UnsafeQuery("unicode_identifier")
    statements = _parse(text, dialect)
    if not statements:
        raise UnsafeQuery("empty")
    if len(statements) > 1:
        raise UnsafeQuery("multiple_statements", count=len(statements))
    kind, tree, tree_text = _statement(statements[0], text, dialect)
    if tree is not None:
        _check_tree(tree, tree_text, dialect)
    if marks:
        found = [] if tree is None else _placeholder_names(tree)
        if sorted(found) != sorted(marks):
            raise UnsafeQuery("placeholder")
    return kind


# -- parsing -------------------------------------------------------------------------------


def _mark_placeholders(sql: str, dialect: Dialect) -> tuple[str, list[str]]:
    """The SQL as the driver reads it with parameters: `%%` is `%`, each placeholder a mark."""
    letters = "s" if dialect == "mysql" else "sbt"  # psycopg also has %b and %t
    pattern = re.compile(rf"%%|%\([^)]*\)[{letters}]|%[{letters}]")
    marks: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group() == "%%":
            return "%"
        marks.append(f"{_MARK}{len(marks)}")
        return f" :{marks[-1]} "

    return pattern.sub(replace, sql), marks


def _tokens(sql: str, dialect: Dialect) -> list[Token]:
    try:
        return list(sqlglot.Dialect.get_or_raise(dialect).tokenize(sql))
    except SqlglotError:
        return []


def _unicode_identifier(sql: str, dialect: Dialect) -> bool:
    """Whether `sql` holds `U&"..."` (the tokenizer reads it as U, &, a quoted identifier)."""
    tokens = _tokens(sql, dialect)
    for u, amp, name in zip(tokens, tokens[1:], tokens[2:], strict=False):
        if (
            u.text.upper() == "U"
            and amp.token_type == TokenType.AMP
            and name.token_type == TokenType.IDENTIFIER
            and u.end + 1 == amp.start
            and amp.end + 1 == name.start
        ):
            return True
    return False


def _first_word(sql: str, dialect: Dialect) -> str:
    tokens = _tokens(sql, dialect)
    return tokens[0].text.upper()[:40] if tokens else ""


def _parse(sql: str, dialect: Dialect) -> list[exp.Expr]:
    try:
        parsed = sqlglot.parse(sql, read=dialect)
    except SqlglotError as exc:
        raise _unparsable(sql, dialect, exc) from None
    return [statement for statement in parsed if statement is not None]


def _unparsable(sql: str, dialect: Dialect, exc: SqlglotError) -> UnsafeQuery:
    """Why a statement sqlglot cannot parse is refused, as precisely as its tokens tell."""
    tokens = _tokens(sql, dialect)
    words = [token.text.upper() for token in tokens]
    for before, after in itertools.pairwise(words):
        if before == "INTO" and after in ("OUTFILE", "DUMPFILE"):
            return UnsafeQuery("into")
    if words and words[0] not in _READ_KEYWORDS:
        return UnsafeQuery("not_read_only", statement=words[0][:40])
    if isinstance(exc, ParseError) and exc.errors:
        error = exc.errors[0]
        detail = f"{error.get('description')} (line {error.get('line')}, column {error.get('col')})"
    else:
        detail = str(exc).splitlines()[0][:200]
    return UnsafeQuery("syntax", detail=detail)


def _statement(
    node: exp.Expr, text: str, dialect: Dialect, *, nested: bool = False
) -> tuple[StatementKind, exp.Expr | None, str]:
    """The kind of an admitted top-level statement, the tree to check and the text that tree
    was parsed from (its positions point there); UnsafeQuery if none.

    `nested`: the statement is what an EXPLAIN explains, which must be a query."""
    while isinstance(node, exp.Subquery):
        node = node.this
    if isinstance(node, _QUERIES):
        return "select", node, text
    if nested:
        raise UnsafeQuery("not_read_only", statement=_name(node, text, dialect))
    if isinstance(node, exp.Show):
        return "show", node, text
    if isinstance(node, exp.Describe):
        if str(node.args.get("style") or "").upper() in _ANALYZE:
            raise UnsafeQuery("explain_analyze")
        target = node.this
        if isinstance(target, exp.Table):
            return "describe", node, text
        _statement(target, text, dialect, nested=True)
        return "explain", node, text
    if isinstance(node, exp.Command):
        command = str(node.this).upper()
        if command == "SHOW":
            _no_calls_in(text, dialect)  # an opaque SHOW: its text is all there is to judge
            return "show", None, text
        if command == "EXPLAIN":
            inner = _explained(text, dialect)
            statements = _parse(inner, dialect)
            if len(statements) != 1:
                raise UnsafeQuery("syntax", detail="EXPLAIN needs one statement")
            _, tree, _ = _statement(statements[0], inner, dialect, nested=True)
            return "explain", tree, inner
    raise UnsafeQuery("not_read_only", statement=_name(node, text, dialect))


def _explained(text: str, dialect: Dialect) -> str:
    """The statement after `EXPLAIN [options]` (sqlglot keeps PostgreSQL's EXPLAIN opaque)."""
    tokens = _tokens(text, dialect)
    if not tokens or tokens[0].text.upper() != "EXPLAIN":
        raise UnsafeQuery("syntax", detail="EXPLAIN expected")
    rest = text[tokens[0].end + 1 :]
    options = _tokens(rest, dialect)
    position = 0
    if options and options[0].token_type == TokenType.L_PAREN:
        depth = 0
        while position < len(options):
            token = options[position]
            position += 1
            if token.token_type == TokenType.L_PAREN:
                depth += 1
            elif token.token_type == TokenType.R_PAREN:
                depth -= 1
                if depth == 0:
                    break
            elif token.text.upper() in _ANALYZE:
                raise UnsafeQuery("explain_analyze")
    else:
        while position < len(options) and options[position].text.upper() in (
            _ANALYZE | _EXPLAIN_OPTIONS
        ):
            if options[position].text.upper() in _ANALYZE:
                raise UnsafeQuery("explain_analyze")
            position += 1
    if position >= len(options):
        raise UnsafeQuery("syntax", detail="EXPLAIN needs a statement")
    return rest[options[position].start :]


# -- the tree ------------------------------------------------------------------------------


def _name(node: exp.Expr, text: str, dialect: Dialect) -> str:
    """How a refused statement is named to people: its keyword."""
    if isinstance(node, exp.Command):
        return str(node.this).upper()[:40]
    cls = type(node).__name__
    if isinstance(node, _WRITES):
        return _STATEMENT_NAMES.get(cls, cls.upper())
    return _first_word(text, dialect) or cls.upper()


def _no_calls_in(text: str, dialect: Dialect) -> None:
    """Refuse any `name(` in a statement sqlglot keeps opaque."""
    tokens = _tokens(text, dialect)
    for before, token in itertools.pairwise(tokens):
        if token.token_type == TokenType.L_PAREN:
            raise UnsafeQuery("forbidden_function", function=before.text.upper()[:60])


def _unquoted(name: str) -> str:
    return name.replace('"', "").replace("`", "").lower()


def _written_name(node: exp.Func, text: str) -> str | None:
    """The name a function call was written with (lower case), or None for syntax that is not
    a call by name. sqlglot marks the name token's position on every node it parses from
    `name(...)`; CAST, EXTRACT, CASE, operators and the like carry no such mark."""
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    start, end = node.meta.get("start"), node.meta.get("end")
    if isinstance(start, int) and isinstance(end, int) and 0 <= start <= end < len(text):
        return _unquoted(text[start : end + 1])
    return None


def _qualifier(node: exp.Func, dialect: Dialect) -> str | None:
    """`schema` for a call written `schema.name(...)`, None for a plain call."""
    parent = node.parent
    if isinstance(parent, exp.Dot) and parent.expression is node:
        return _unquoted(parent.this.sql(dialect=dialect))
    return None


def _check_function(node: exp.Func, text: str, dialect: Dialect) -> None:
    name = _written_name(node, text)
    if name is None:
        return
    qualifier = _qualifier(node, dialect)
    if qualifier is not None and qualifier not in ALLOWED_SCHEMAS[dialect]:
        raise UnsafeQuery("forbidden_function", function=f"{qualifier}.{name}".upper()[:60])
    if name not in ALLOWED_FUNCTIONS[dialect]:
        raise UnsafeQuery("forbidden_function", function=name.upper()[:60])


def _check_tree(tree: exp.Expr, text: str, dialect: Dialect) -> None:
    for node in tree.walk():
        if node is not tree and isinstance(node, _WRITES):
            name = _STATEMENT_NAMES.get(type(node).__name__, type(node).__name__.upper())
            if isinstance(node, exp.Command):
                name = str(node.this).upper()[:40]
            raise UnsafeQuery("not_read_only", statement=name)
        if isinstance(node, exp.Into) or node.args.get("into"):
            raise UnsafeQuery("into")
        locks = [node] if isinstance(node, exp.Lock) else node.args.get("locks") or []
        if locks:
            clause = locks[0].sql(dialect=dialect) if isinstance(locks[0], exp.Expr) else ""
            raise UnsafeQuery("locking", clause=clause[:60] or "FOR UPDATE")
        if isinstance(node, exp.Func):
            _check_function(node, text, dialect)


def _placeholder_names(tree: exp.Expr) -> list[str]:
    return [
        node.name
        for node in tree.walk()
        if isinstance(node, exp.Placeholder) and node.name.startswith(_MARK)
    ]
