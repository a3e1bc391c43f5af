"""The functions a query may call, per dialect: an allowlist of functions known to only compute
a value from their arguments (or read the clock, or the current user's name).

Anything else is refused by name, `sql_guard`'s `forbidden_function`: files
(`pg_read_file`, `lo_export`, `LOAD_FILE`), other sessions (`pg_terminate_backend`), settings
(`set_config`), sequences (`nextval`), locks (`pg_advisory_lock`, `GET_LOCK`), waiting
(`pg_sleep`, `SLEEP`, `BENCHMARK`), SQL in strings (`query_to_xml`, `dblink`), extensions'
functions (`pg_stat_statements_reset`), statistics resets, user-defined functions, and whatever
a future server version adds. A function missing here that is read-only can be added: it has to
compute from its arguments alone, write nothing and reach nothing outside the query.

Names are compared in lower case, as written in the query (a schema-qualified call is admitted
only as `pg_catalog.<allowed name>` on PostgreSQL). Syntax that sqlglot represents as a function
but that is not a call by name (`CAST`, `CASE`, `EXTRACT`, `x -> 'a'`, `CURRENT_DATE`, ...) is
judged by `sql_guard` itself.
"""

from __future__ import annotations

from typing import Final

# Standard SQL and common to MySQL/MariaDB and PostgreSQL.
_COMMON: Final = frozenset(
    {
        # aggregates
        "count", "sum", "avg", "min", "max", "bit_and", "bit_or", "bit_xor", "stddev",
        "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp", "any_value",
        # window functions
        "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag",
        "lead", "first_value", "last_value", "nth_value",
        # conditional
        "coalesce", "nullif", "greatest", "least",
        # math
        "abs", "acos", "asin", "atan", "atan2", "ceil", "ceiling", "cos", "cot", "degrees",
        "exp", "floor", "ln", "log", "log10", "mod", "pi", "power", "radians", "round",
        "sign", "sin", "sqrt", "tan",
        # strings
        "ascii", "bit_length", "char_length", "character_length", "concat", "concat_ws",
        "left", "length", "lower", "lpad", "ltrim", "md5", "octet_length", "position",
        "regexp_replace", "regexp_substr", "regexp_instr", "regexp_like", "repeat", "replace",
        "reverse", "right", "rpad", "rtrim", "substr", "substring", "trim", "upper", "format",
        # date and time
        "current_date", "current_time", "current_timestamp", "localtime", "localtimestamp",
        "now", "extract", "date_add", "date_sub",
        # current user and database (names only)
        "current_user", "session_user", "version",
    }
)  # fmt: skip

_MYSQL: Final = _COMMON | frozenset(
    {
        # aggregates
        "group_concat", "std", "json_arrayagg", "json_objectagg",
        # conditional
        "if", "ifnull", "isnull", "nvl", "interval",
        # math
        "conv", "crc32", "div", "log2", "pow", "rand", "truncate",
        # strings
        "bin", "char", "elt", "export_set", "field", "find_in_set", "from_base64", "hex",
        "insert", "instr", "lcase", "locate", "make_set", "mid", "oct", "ord", "quote",
        "soundex", "space", "strcmp", "substring_index", "to_base64", "ucase", "unhex",
        "weight_string", "sha", "sha1", "sha2", "uuid", "inet_aton", "inet_ntoa",
        "inet6_aton", "inet6_ntoa", "is_ipv4", "is_ipv6", "is_uuid", "bit_count", "chr",
        "natural_sort_key", "sformat", "collation", "charset", "coercibility",
        # date and time
        "adddate", "addtime", "convert_tz", "curdate", "curtime", "date", "date_format",
        "datediff", "day", "dayname", "dayofmonth", "dayofweek", "dayofyear", "from_days",
        "from_unixtime", "get_format", "hour", "last_day", "makedate", "maketime",
        "microsecond", "minute", "month", "monthname", "period_add", "period_diff", "quarter",
        "sec_to_time", "second", "str_to_date", "subdate", "subtime", "sysdate", "time",
        "time_format", "time_to_sec", "timediff", "timestamp", "timestampadd",
        "timestampdiff", "to_days", "to_seconds", "unix_timestamp", "utc_date", "utc_time",
        "utc_timestamp", "week", "weekday", "weekofyear", "year", "yearweek",
        # json (values only: JSON_SET and friends return a changed copy)
        "json_array", "json_object", "json_quote", "json_contains", "json_contains_path",
        "json_extract", "json_keys", "json_length", "json_depth", "json_type", "json_valid",
        "json_unquote", "json_search", "json_value", "json_overlaps", "json_pretty",
        "json_merge", "json_merge_patch", "json_merge_preserve", "json_set", "json_insert",
        "json_replace", "json_remove", "json_array_append", "json_array_insert", "json_compact",
        "json_detailed", "json_loose", "json_exists", "json_query", "json_normalize",
        "json_equals",
        # current user and database (names only)
        "database", "schema", "user", "system_user", "connection_id",
    }
)  # fmt: skip

_POSTGRES: Final = _COMMON | frozenset(
    {
        # aggregates
        "bool_and", "bool_or", "every", "string_agg", "array_agg", "json_agg", "jsonb_agg",
        "json_object_agg", "jsonb_object_agg", "corr", "covar_pop", "covar_samp",
        "regr_avgx", "regr_avgy", "regr_count", "regr_intercept", "regr_r2", "regr_slope",
        "regr_sxx", "regr_sxy", "regr_syy", "percentile_cont", "percentile_disc", "mode",
        "range_agg", "range_intersect_agg",
        # conditional
        "num_nonnulls", "num_nulls",
        # math
        "cbrt", "div", "factorial", "gcd", "lcm", "scale", "trunc", "width_bucket",
        "random", "min_scale", "trim_scale", "acosd", "asind", "atand", "atan2d", "cosd",
        "cotd", "sind", "tand", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh",
        # strings
        "btrim", "chr", "initcap", "overlay", "quote_ident", "quote_literal",
        "quote_nullable", "regexp_count", "regexp_match", "regexp_matches",
        "regexp_split_to_array", "regexp_split_to_table", "split_part", "starts_with",
        "strpos", "to_hex", "translate", "encode", "decode", "sha224", "sha256", "sha384",
        "sha512", "string_to_array", "string_to_table", "array_to_string", "normalize",
        "to_ascii", "unistr", "gen_random_uuid", "uuidv4", "uuidv7",
        # date and time
        "age", "clock_timestamp", "date_bin", "date_part", "date_trunc", "date_subtract",
        "isfinite", "justify_days", "justify_hours", "justify_interval", "make_date",
        "make_interval", "make_time", "make_timestamp", "make_timestamptz",
        "statement_timestamp", "timeofday", "transaction_timestamp", "to_char", "to_date",
        "to_number", "to_timestamp", "timezone",
        # json
        "to_json", "to_jsonb", "array_to_json", "row_to_json", "json_build_array",
        "jsonb_build_array", "json_build_object", "jsonb_build_object", "json_object",
        "jsonb_object", "json_array_elements", "jsonb_array_elements",
        "json_array_elements_text", "jsonb_array_elements_text", "json_array_length",
        "jsonb_array_length", "json_each", "jsonb_each", "json_each_text", "jsonb_each_text",
        "json_extract_path", "jsonb_extract_path", "json_extract_path_text",
        "jsonb_extract_path_text", "json_object_keys", "jsonb_object_keys",
        "json_populate_record", "jsonb_populate_record", "json_populate_recordset",
        "jsonb_populate_recordset", "json_to_record", "jsonb_to_record",
        "json_to_recordset", "jsonb_to_recordset", "json_strip_nulls", "jsonb_strip_nulls",
        "jsonb_set", "jsonb_set_lax", "jsonb_insert", "jsonb_pretty", "json_typeof",
        "jsonb_typeof", "jsonb_path_exists", "jsonb_path_match", "jsonb_path_query",
        "jsonb_path_query_array", "jsonb_path_query_first", "json_scalar", "json_serialize",
        "json_array", "json_exists", "json_query", "json_value",
        # arrays and ranges
        "array_append", "array_cat", "array_dims", "array_fill", "array_length",
        "array_lower", "array_ndims", "array_position", "array_positions", "array_prepend",
        "array_remove", "array_replace", "array_upper", "array_reverse", "array_sample",
        "array_shuffle", "array_sort", "cardinality", "trim_array", "unnest",
        "generate_series", "generate_subscripts", "isempty", "lower_inc", "upper_inc",
        "lower_inf", "upper_inf", "range_merge",
        # full-text search
        "to_tsvector", "to_tsquery", "plainto_tsquery", "phraseto_tsquery",
        "websearch_to_tsquery", "ts_rank", "ts_rank_cd", "ts_headline", "setweight",
        "strip", "numnode", "querytree", "tsvector_to_array", "array_to_tsvector",
        # types and the current session (names only)
        "pg_typeof", "format_type", "current_schema", "current_schemas", "current_database",
        "current_catalog", "current_role", "current_setting",
    }
)  # fmt: skip

ALLOWED_FUNCTIONS: Final[dict[str, frozenset[str]]] = {"mysql": _MYSQL, "postgres": _POSTGRES}

# The one schema a PostgreSQL query may name before a function: the built-ins' own.
ALLOWED_SCHEMAS: Final[dict[str, frozenset[str]]] = {
    "mysql": frozenset(),
    "postgres": frozenset({"pg_catalog"}),
}
