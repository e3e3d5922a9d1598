"""Which open-data SQL may run: one SELECT over ``data``, built from allow-listed functions.

The SQL is parsed by DuckDB itself (``json_serialize_sql``), so what is checked is the very tree
DuckDB will run, not a second parser's guess at it. Every node of that tree is then checked:

* tables: only ``data`` (and the query's own CTEs, named as plain identifiers that shadow no
  system view), never with a schema or catalog, never a file name in quotes;
* table functions: only ``range``, ``generate_series`` and ``unnest`` (nothing that reads files,
  lists folders, runs SQL from a string or reports on the server: no ``read_*``, ``glob``,
  ``query``, ``duckdb_*``, ``pragma_*``);
* functions: only the ordinary scalar, aggregate and window functions named below. It is an
  allow-list, not a deny-list, on purpose: a DuckDB upgrade adds functions, and a new one must
  not become reachable (a macro such as ``pg_get_viewdef`` expands into catalog queries; scalar
  functions such as ``current_setting`` and ``version`` report server paths and versions);
* no ``DESCRIBE``/``SHOW``/``SUMMARIZE``, no ``$1`` parameters.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import duckdb

from ndl.core.errors import InvalidInput
from ndl.datasite.engine import scrub

_OPERATORS = frozenset({
    "+", "-", "*", "/", "//", "%", "**", "^", "&", "|", "<<", ">>", "~", "!__postfix", "@",
    "||", "~~", "!~~", "~~*", "!~~*", "~~~", "^@", "&&", "@>", "<@", "->>", "<->",
    "like_escape", "not_like_escape", "ilike_escape", "not_ilike_escape",
})
_NUMERIC = frozenset({
    "abs", "acos", "acosh", "add", "asin", "asinh", "atan", "atan2", "atanh", "bit_count", "cbrt",
    "ceil", "ceiling", "cos", "cosh", "cot", "degrees", "divide", "even", "exp", "factorial",
    "fdiv", "floor", "fmod", "gamma", "gcd", "greatest", "greatest_common_divisor", "isfinite",
    "isinf", "isnan", "lcm", "least", "least_common_multiple", "lgamma", "ln", "log", "log10",
    "log2", "mod", "multiply", "nextafter", "pi", "pow", "power", "radians", "random", "round",
    "round_even", "roundbankers", "sign", "signbit", "sin", "sinh", "sqrt", "subtract", "tan",
    "tanh", "trunc", "xor", "equi_width_bins", "to_base", "bin", "hex", "unbin", "unhex",
})
_TEXT = frozenset({
    "ascii", "bar", "base64", "bit_length", "char_length", "character_length", "chr", "concat",
    "concat_ws", "contains", "damerau_levenshtein", "decode", "editdist3", "encode", "ends_with",
    "format", "format_bytes", "formatreadabledecimalsize", "formatreadablesize", "from_base64",
    "hamming", "hash", "instr", "jaccard", "jaro_similarity", "jaro_winkler_similarity", "lcase",
    "left", "left_grapheme", "len", "length", "length_grapheme", "levenshtein", "lower", "lpad",
    "ltrim", "md5", "md5_number", "md5_number_lower", "md5_number_upper", "mismatches",
    "nfc_normalize", "octet_length", "ord", "overlay", "position", "prefix", "printf",
    "regexp_escape", "regexp_extract", "regexp_extract_all", "regexp_full_match",
    "regexp_matches", "regexp_replace", "regexp_split_to_array", "regexp_split_to_table",
    "repeat", "replace", "reverse", "right", "right_grapheme", "rpad", "rtrim", "sha1", "sha256",
    "split", "split_part", "starts_with", "str_split", "str_split_regex", "strip_accents",
    "string_split", "string_split_regex", "string_to_array", "strlen", "strpos", "substr",
    "substring", "substring_grapheme", "suffix", "to_base64", "to_hex", "translate", "trim",
    "ucase", "unicode", "upper", "url_decode", "url_encode", "get_bit", "set_bit",
    "bit_position", "bitstring", "to_binary", "from_binary", "from_hex",
})
_TIME = frozenset({
    "age", "century", "current_date", "current_localtime", "current_localtimestamp",
    "date_add", "date_diff", "date_part", "date_sub", "date_trunc", "datediff", "datepart",
    "datesub", "datetrunc", "day", "dayname", "dayofmonth", "dayofweek", "dayofyear",
    "days_in_month", "decade", "epoch", "epoch_ms", "epoch_ns", "epoch_us", "era",
    "get_current_time", "get_current_timestamp", "hour", "isodow", "isoyear", "julian",
    "last_day", "make_date", "make_time", "make_timestamp", "make_timestamp_ms",
    "make_timestamp_ns", "make_timestamptz", "microsecond", "millennium", "millisecond",
    "minute", "month", "monthname", "nanosecond", "normalized_interval", "now", "quarter",
    "second", "strftime", "strptime", "time_bucket", "timezone", "timezone_hour",
    "timezone_minute", "to_centuries", "to_days", "to_decades", "to_hours", "to_microseconds",
    "to_millennia", "to_milliseconds", "to_minutes", "to_months", "to_quarters", "to_seconds",
    "to_timestamp", "to_weeks", "to_years", "today", "transaction_timestamp", "try_strptime",
    "week", "weekday", "weekofyear", "year", "yearweek",
})
_NESTED = frozenset({
    "array_append", "array_cat", "array_concat", "array_contains", "array_distinct",
    "array_extract", "array_filter", "array_has", "array_has_all", "array_has_any",
    "array_indexof", "array_intersect", "array_length", "array_position", "array_prepend",
    "array_reverse", "array_slice", "array_sort", "array_to_string", "array_transform",
    "array_value", "array_where", "array_zip", "cardinality", "element_at", "flatten",
    "generate_series", "range", "list_aggr", "list_aggregate", "list_append", "list_apply",
    "list_avg", "list_cat", "list_concat", "list_contains", "list_count", "list_distinct",
    "list_element", "list_extract", "list_filter", "list_first", "list_has", "list_has_all",
    "list_has_any", "list_indexof", "list_intersect", "list_last", "list_max", "list_min",
    "list_pack", "list_position", "list_prepend", "list_reduce", "list_reverse",
    "list_reverse_sort", "list_select", "list_slice", "list_sort", "list_sum", "list_transform",
    "list_unique", "list_value", "list_where", "list_zip", "map", "map_concat", "map_contains",
    "map_entries", "map_extract", "map_extract_value", "map_from_entries", "map_keys",
    "map_values", "struct_extract", "struct_extract_at", "struct_insert", "struct_pack", "row",
    "unnest", "json_array", "json_array_length", "json_contains", "json_exists", "json_extract",
    "json_extract_path", "json_extract_path_text", "json_extract_string", "json_keys",
    "json_object", "json_quote", "json_structure", "json_type", "json_valid", "json_value",
    "to_json", "from_json", "array_to_json", "row_to_json",
})
_CONDITIONAL = frozenset({
    "if", "nullif", "typeof", "uuid", "gen_random_uuid", "uuidv4", "uuidv7",
})
_AGGREGATE = frozenset({
    "any_value", "approx_count_distinct", "approx_quantile", "arbitrary", "arg_max", "arg_min",
    "argmax", "argmin", "array_agg", "avg", "bit_and", "bit_or", "bit_xor", "bool_and",
    "bool_or", "corr", "count", "count_if", "count_star", "countif", "covar_pop", "covar_samp",
    "entropy", "favg", "first", "fsum", "geomean", "geometric_mean", "group_concat", "histogram",
    "json_group_array", "json_group_object", "kahan_sum", "kurtosis", "kurtosis_pop", "last",
    "list", "listagg", "mad", "max", "max_by", "mean", "median", "min", "min_by", "mode",
    "product", "quantile", "quantile_cont", "quantile_disc", "regr_avgx", "regr_avgy",
    "regr_count", "regr_intercept", "regr_r2", "regr_slope", "regr_sxx", "regr_sxy", "regr_syy",
    "reservoir_quantile", "sem", "skewness", "stddev", "stddev_pop", "stddev_samp",
    "string_agg", "sum", "sumkahan", "var_pop", "var_samp", "variance", "wavg", "weighted_avg",
})
_WINDOW = frozenset({
    "cume_dist", "dense_rank", "first_value", "lag", "last_value", "lead", "nth_value", "ntile",
    "percent_rank", "rank", "rank_dense", "row_number",
})
ALLOWED_FUNCTIONS = (_OPERATORS | _NUMERIC | _TEXT | _TIME | _NESTED | _CONDITIONAL
                     | _AGGREGATE | _WINDOW)
ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})

_EXPRESSION_CLASSES = frozenset({
    "BETWEEN", "CASE", "CAST", "COLLATE", "COLUMN_REF", "COMPARISON", "CONJUNCTION", "CONSTANT",
    "FUNCTION", "LAMBDA", "LAMBDA_REF", "OPERATOR", "POSITIONAL_REFERENCE", "STAR", "SUBQUERY",
    "TYPE", "WINDOW",
})
_TABLE_REFS = frozenset({"BASE_TABLE", "JOIN", "SUBQUERY", "TABLE_FUNCTION", "EXPRESSION_LIST",
                         "EMPTY", "EMPTY_FROM", "PIVOT"})
_QUERY_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE",
                          "CTE_NODE"})
# Every other table reference or query node type (SHOW_REF for DESCRIBE/SHOW/SUMMARIZE,
# COLUMN_DATA, DELIM_GET, ...) is refused.
_ALL_TABLE_REFS = frozenset({"SHOW_REF", "COLUMN_DATA", "DELIM_GET", "BOUND_TABLE_REF", "CTE"})
_CTE_NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")
HELP = ("open-data SQL is one SELECT over the table `data` using ordinary scalar, aggregate and "
        "window functions (and range/generate_series/unnest); see ALLOWED_FUNCTIONS in "
        "ndl.datasite.sql_guard")

_parser: duckdb.DuckDBPyConnection | None = None
_catalog_names: frozenset[str] = frozenset()
_parser_lock = threading.Lock()


def _parse(sql: str) -> dict[str, Any]:
    """DuckDB's own parse tree of ``sql`` (only SELECT statements serialise)."""
    global _parser, _catalog_names
    with _parser_lock:
        if _parser is None:
            _parser = duckdb.connect(":memory:", config={"autoload_known_extensions": False,
                                                         "autoinstall_known_extensions": False})
            # Names a CTE must not take: out of its scope it would resolve to the system view.
            names = _parser.execute(
                "SELECT lower(view_name) FROM duckdb_views() UNION "
                "SELECT lower(table_name) FROM duckdb_tables()").fetchall()
            _catalog_names = frozenset(n for (n,) in names)
            _parser.execute("SET enable_external_access = false")
            _parser.execute("SET lock_configuration = true")
        cur = _parser.cursor()
    try:
        row = cur.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchone()
    finally:
        cur.close()
    tree: dict[str, Any] = json.loads(row[0]) if row else {"error": True}
    return tree


def _refuse(what: str) -> InvalidInput:
    return InvalidInput(f"{what} is not allowed: {HELP}")


_PLAIN = re.compile(r"[\w$.+\-*<>=!~@#%^&|]{1,64}\Z")


def _shown(name: str) -> str:
    """A refused name as the error may echo it: plain names only, never a path-like string."""
    return repr(name) if _PLAIN.match(name) else "(a quoted name or file)"


def check_select(sql: str) -> None:
    """Raise :class:`InvalidInput` unless ``sql`` is one SELECT built only from allowed parts."""
    tree = _parse(sql)
    if tree.get("error"):
        message = str(tree.get("error_message") or "")
        if "Only SELECT" in message or len(tree.get("statements") or []) > 1:
            raise InvalidInput("only one SELECT statement is allowed, e.g. SELECT region, "
                               "count(*) FROM data GROUP BY region")
        # DuckDB's message quotes the SQL near the error: scrubbed like every other error.
        raise InvalidInput(f"the SQL does not parse: {scrub(message)}")
    statements = tree.get("statements") or []
    if len(statements) != 1:
        raise InvalidInput("only one SELECT statement is allowed, e.g. SELECT region, count(*) "
                           "FROM data GROUP BY region")
    ctes: set[str] = set()
    _collect_ctes(statements[0], ctes)
    for name in sorted(ctes):
        if not _CTE_NAME.match(name) or name in _catalog_names:
            raise _refuse(f"the CTE name {_shown(name)} (use a plain name such as t1 that is not a "
                          "system table)")
    _check(statements[0], ctes)


def _collect_ctes(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            for entry in cte_map.get("map") or []:
                out.add(str(entry.get("key", "")).lower())
        for value in node.values():
            _collect_ctes(value, out)
    elif isinstance(node, list):
        for value in node:
            _collect_ctes(value, out)


def _check(node: Any, ctes: set[str]) -> None:
    if isinstance(node, list):
        for value in node:
            _check(value, ctes)
        return
    if not isinstance(node, dict):
        return
    if "class" in node:
        _check_expression(node)
    else:
        kind = node.get("type")
        if isinstance(kind, str):
            if kind in _TABLE_REFS or kind in _ALL_TABLE_REFS:
                _check_table_ref(node, ctes)
            elif kind.endswith("_NODE") and kind not in _QUERY_NODES:
                raise _refuse(f"this kind of statement ({kind.lower()})")
    for value in node.values():
        _check(value, ctes)


def _qualified(node: dict[str, Any], *keys: str) -> bool:
    return any(node.get(k) for k in keys) or len((node.get("qualified_name") or {}).get(
        "path") or [None]) > 1


def _check_expression(node: dict[str, Any]) -> None:
    cls = node["class"]
    if cls == "PARAMETER":
        raise _refuse("a parameter ($1, ?)")
    if cls not in _EXPRESSION_CLASSES:
        raise _refuse(f"this kind of expression ({str(cls).lower()})")
    if cls in ("FUNCTION", "WINDOW"):
        name = str(node.get("function_name", "")).lower()
        if _qualified(node, "schema", "catalog"):
            raise _refuse(f"the qualified function name {_shown(name)} (call functions by their "
                          "plain name)")
        if name not in ALLOWED_FUNCTIONS:
            raise _refuse(f"the function {_shown(name)}")


def _check_table_ref(node: dict[str, Any], ctes: set[str]) -> None:
    kind = node["type"]
    if kind == "BASE_TABLE":
        name = str(node.get("table_name", ""))
        if _qualified(node, "schema_name", "catalog_name"):
            raise _refuse(f"the table {_shown(name)} with a schema or catalog (the table is "
                          "data)")
        if name.lower() != "data" and name.lower() not in ctes:
            raise _refuse(f"the table {_shown(name)} (the only table is data)")
    elif kind == "TABLE_FUNCTION":
        fn = node.get("function") or {}
        name = str(fn.get("function_name", "")).lower()
        if _qualified(fn, "schema", "catalog") or name not in ALLOWED_TABLE_FUNCTIONS:
            raise _refuse(f"the table function {_shown(name)} (allowed: "
                          f"{', '.join(sorted(ALLOWED_TABLE_FUNCTIONS))})")
    elif kind not in _TABLE_REFS:
        raise _refuse(f"this kind of table ({kind.lower()}: DESCRIBE, SHOW and SUMMARIZE "
                      "included)")
