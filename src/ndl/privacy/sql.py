"""A restricted SQL form for private queries, parsed with sqlglot into a :class:`PrivateQuery`.

The SQL text is never executed: it is tokenised and parsed, every node of the tree is checked
against a short list of allowed shapes, and what passes becomes the same spec a JSON query
would. Anything else — joins, subqueries, set operations, functions other than the
aggregates, ORDER BY / LIMIT / HAVING, comments, a second statement — is refused with
:data:`ALLOWED_SQL`, which says what is accepted.

Accepted::

    SELECT <aggregate> [AS label] [, ...] [, key1 [, key2]]
    FROM data
    [WHERE column op value [AND column op value ...]]
    [GROUP BY key1 [, key2]]

Aggregates: ``COUNT(*)``, ``SUM(x)``, ``AVG(x)``, ``MEDIAN(x)``, ``QUANTILE_CONT(x, q)``
(``APPROX_QUANTILE(x, q)`` is read the same way) and ``HISTOGRAM(x, [e0, e1, ...])``
(counts per band; ``HISTOGRAM(x, n)`` for equal bands, ``HISTOGRAM(x)`` for published values
or bands). Clamping bounds are written the way any SQL
engine would compute them, ``LEAST(GREATEST(x, lo), hi)``, e.g.
``SUM(LEAST(GREATEST(income, 0), 200000))``; without it the bounds come from the metadata.
Operators: ``= != <> < <= > >=`` and ``IN (v1, v2, ...)``; values are numbers, 'strings'
(dates as 'YYYY-MM-DD') or TRUE / FALSE. Output columns are the keys, then the aggregates.
"""

from __future__ import annotations

from typing import Any, NoReturn

import sqlglot
from sqlglot import TokenType, exp
from sqlglot.errors import ParseError, TokenError

from ndl.catalogue.metadata import DatasetMeta
from ndl.core.errors import InvalidInput
from ndl.privacy.spec import ALLOWED, Aggregate, Filter, PrivateQuery, check_query, parse_query

# Bands in one query, one spend: the edges are given (public), never taken from the data.
BANDS_EXAMPLE = "SELECT region, HISTOGRAM(age, [0, 18, 65, 120]) FROM data GROUP BY region"
ALLOWED_SQL = (
    "Allowed: SELECT <aggregates>[, key1[, key2]] FROM data [WHERE column op value "
    "[AND ...]] [GROUP BY key1[, key2]], where an aggregate is COUNT(*), SUM(col), AVG(col), "
    "MEDIAN(col), QUANTILE_CONT(col, q) or HISTOGRAM(col, [e0, e1, ...]) (a count per band "
    "between the edges; HISTOGRAM(col, n) for n equal bands within the bounds; "
    "HISTOGRAM(col) for a column's published values or bands), optionally AS label, e.g. "
    "SELECT region, HISTOGRAM(age, [0, 18, 65, 120]) FROM data GROUP BY region; clamp a "
    "column as "
    "LEAST(GREATEST(col, lo), hi) inside the aggregate; op is = != <> < <= > >= or "
    "IN (v1, v2, ...); values are numbers, 'strings' or TRUE/FALSE. No joins, subqueries, "
    "UNION, other functions, ORDER BY, LIMIT, HAVING, comments or second statements."
)
MAX_SQL_CHARS = 10_000

_SELECT_PARTS = frozenset({"expressions", "from_", "where", "group"})
_COMPARE: dict[type[exp.Expression], str] = {
    exp.EQ: "=", exp.NEQ: "!=", exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">=",
}
_CLAUSE_NAMES = {"joins": "JOIN", "order": "ORDER BY", "limit": "LIMIT", "offset": "OFFSET",
                 "having": "HAVING", "distinct": "DISTINCT", "with_": "WITH",
                 "qualify": "QUALIFY", "windows": "WINDOW", "into": "INTO"}


def _refuse(what: str) -> NoReturn:
    raise InvalidInput(f"{what}. {ALLOWED_SQL}")


def _set_args(node: exp.Expression) -> set[str]:
    """Arguments that carry something (flags such as COUNT's big_int say nothing here)."""
    return {k for k, v in node.args.items()
            if v is not None and v != [] and not isinstance(v, bool)}


def _only(node: exp.Expression, allowed: set[str], what: str) -> None:
    extra = _set_args(node) - allowed
    if extra:
        _refuse(f"{what} has parts that are not allowed ({', '.join(sorted(extra))})")


def _column(node: exp.Expression, where: str) -> str:
    if not isinstance(node, exp.Column) or not isinstance(node.this, exp.Identifier):
        _refuse(f"{where}: expected a plain column name, found {node.sql(dialect='duckdb')!r}")
    _only(node, {"this"}, f"{where}: column {node.sql(dialect='duckdb')!r}")
    return str(node.this.this)


def _literal(node: exp.Expression, where: str) -> Any:
    neg = False
    if isinstance(node, exp.Neg):
        neg, node = True, node.this
    if isinstance(node, exp.Boolean) and not neg:
        return bool(node.this)
    if isinstance(node, exp.Literal) and _set_args(node) <= {"this"}:
        if node.is_string:
            if neg:
                _refuse(f"{where}: '-' before a string")
            return str(node.this)
        text = str(node.this)
        try:
            value: int | float = int(text) if text.lstrip("+").isdigit() else float(text)
        except ValueError:
            _refuse(f"{where}: {text!r} is not a number")
        return -value if neg else value
    _refuse(f"{where}: expected a number, 'string' or TRUE/FALSE, found "
            f"{node.sql(dialect='duckdb')!r}")


def _number(node: exp.Expression, where: str) -> float:
    v = _literal(node, where)
    if isinstance(v, bool) or not isinstance(v, int | float):
        _refuse(f"{where}: expected a number")
    return float(v)


def _operand(node: exp.Expression, what: str) -> tuple[str, tuple[float, float] | None]:
    """A column, or a column clamped as LEAST(GREATEST(col, lo), hi)."""
    if isinstance(node, exp.Least):
        inner, his = node.this, node.expressions
        if isinstance(inner, exp.Greatest) and len(his) == 1 and len(inner.expressions) == 1:
            _only(node, {"this", "expressions"}, what)
            _only(inner, {"this", "expressions"}, what)
            lo = _number(inner.expressions[0], f"{what}: lower bound")
            hi = _number(his[0], f"{what}: upper bound")
            return _column(inner.this, what), (lo, hi)
        _refuse(f"{what}: clamp as LEAST(GREATEST(col, lo), hi)")
    return _column(node, what), None


def _aggregate(node: exp.Expression, label: str | None, i: int) -> Aggregate:
    what = f"select item {i + 1} ({node.sql(dialect='duckdb')})"
    if isinstance(node, exp.Count):
        if not isinstance(node.this, exp.Star) or _set_args(node) != {"this"}:
            _refuse(f"{what}: count rows with COUNT(*)")
        return Aggregate(op="count", label=label)
    if isinstance(node, exp.Sum | exp.Avg | exp.Median):
        _only(node, {"this"}, what)
        col, bounds = _operand(node.this, what)
        op = {exp.Sum: "sum", exp.Avg: "mean", exp.Median: "quantile"}[type(node)]
        return Aggregate(op=op, column=col, bounds=bounds, label=label,  # type: ignore[arg-type]
                         q=0.5 if op == "quantile" else None)
    if isinstance(node, exp.PercentileCont | exp.ApproxQuantile):
        key = "expression" if isinstance(node, exp.PercentileCont) else "quantile"
        _only(node, {"this", key}, what)
        if node.args.get(key) is None:
            _refuse(f"{what}: give the quantile, e.g. QUANTILE_CONT(col, 0.9)")
        col, bounds = _operand(node.this, what)
        q = _number(node.args[key], f"{what}: quantile")
        if not 0 < q < 1:
            _refuse(f"{what}: the quantile must be between 0 and 1")
        return Aggregate(op="quantile", column=col, bounds=bounds, q=q, label=label)
    if isinstance(node, exp.Anonymous) and str(node.this).upper() == "HISTOGRAM":
        return _histogram(node, label, what)
    if isinstance(node, exp.Case):
        _refuse(f"{what}: CASE is not allowed; count by bands with one HISTOGRAM(col, [e0, e1, "
                "...]) instead")
    _refuse(f"{what} is not one of the allowed aggregates")


def _histogram(node: exp.Anonymous, label: str | None, what: str) -> Aggregate:
    """HISTOGRAM(col), HISTOGRAM(col, n) or HISTOGRAM(col, [e0, e1, ...]): one released
    vector of counts, so banding costs one query and one spend."""
    _only(node, {"this", "expressions"}, what)
    args = node.expressions
    if not 1 <= len(args) <= 2:
        _refuse(f"{what}: write HISTOGRAM(col), HISTOGRAM(col, n) or "
                "HISTOGRAM(col, [e0, e1, ...])")
    col, bounds = _operand(args[0], what)
    bins: int | list[Any] | None = None
    if len(args) == 2:
        spec = args[1]
        if isinstance(spec, exp.Array):
            _only(spec, {"expressions"}, what)
            bins = [_number(v, f"{what}: band edge") for v in spec.expressions]
        else:
            n = _number(spec, f"{what}: number of bands")
            if not n.is_integer():
                _refuse(f"{what}: the number of bands must be a whole number")
            bins = int(n)
    return Aggregate(op="histogram", column=col, bounds=bounds, bins=bins, label=label)


def _predicates(node: exp.Expression) -> list[Filter]:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        _only(node, {"this", "expression"}, "WHERE")
        return _predicates(node.this) + _predicates(node.expression)
    what = f"WHERE condition {node.sql(dialect='duckdb')!r}"
    if isinstance(node, exp.In):
        _only(node, {"this", "expressions"}, what)
        values = [_literal(v, what) for v in node.expressions]
        return [Filter(column=_column(node.this, what), op="in", value=values)]
    op = _COMPARE.get(type(node))
    if op is None:
        _refuse(f"{what}: conditions are column op value joined by AND")
    _only(node, {"this", "expression"}, what)
    return [Filter(column=_column(node.this, what), op=op,  # type: ignore[arg-type]
                   value=_literal(node.expression, what))]


def _statement(sql: str) -> exp.Select:
    if not isinstance(sql, str) or not sql.strip():
        _refuse("the SQL is empty")
    if len(sql) > MAX_SQL_CHARS:
        _refuse(f"the SQL is longer than {MAX_SQL_CHARS} characters")
    try:
        tokens = sqlglot.tokenize(sql, dialect="duckdb")
        if any(t.comments for t in tokens):
            _refuse("comments are not allowed")
        semis = [i for i, t in enumerate(tokens) if t.token_type == TokenType.SEMICOLON]
        if semis and semis != [len(tokens) - 1]:
            _refuse("only one statement is allowed")
        parsed = [p for p in sqlglot.parse(sql, dialect="duckdb") if p is not None]
    except (ParseError, TokenError) as exc:
        _refuse(f"the SQL does not parse: {str(exc).splitlines()[0]}")
    if len(parsed) != 1:
        _refuse("only one statement is allowed")
    stmt = parsed[0]
    if not isinstance(stmt, exp.Select):
        _refuse(f"{stmt.key.upper()} statements are not allowed")
    for part in sorted(_set_args(stmt) - _SELECT_PARTS):
        _refuse(f"{_CLAUSE_NAMES.get(part, part.upper())} is not allowed")
    src = stmt.args.get("from_")
    table = src.this if isinstance(src, exp.From) and _set_args(src) == {"this"} else None
    if (not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier)
            or _set_args(table) != {"this"} or table.name != "data"):
        _refuse("read FROM data (the dataset), with nothing else in FROM")
    return stmt


def from_sql(sql: str, meta: DatasetMeta, *, rho: float, project: str | None = None,
             max_rows_per_person: int | None = None) -> PrivateQuery:
    """Translate restricted SQL into a checked :class:`PrivateQuery` (nothing is run)."""
    stmt = _statement(sql)
    group = stmt.args.get("group")
    keys: list[str] = []
    if group is not None:
        _only(group, {"expressions"}, "GROUP BY")
        for e in group.expressions:
            if not isinstance(e, exp.Column):
                _refuse(f"GROUP BY {e.sql(dialect='duckdb')!r}: group by a plain column (a key); "
                        "for bands of a number, select HISTOGRAM(col, [e0, e1, ...])")
        keys = [_column(e, "GROUP BY") for e in group.expressions]
    aggs: list[Aggregate] = []
    selected_keys: list[str] = []
    for i, item in enumerate(stmt.expressions):
        label = None
        if isinstance(item, exp.Alias):
            _only(item, {"this", "alias"}, f"select item {i + 1}")
            label, item = item.alias, item.this
        if isinstance(item, exp.Star):
            _refuse("SELECT * is not allowed: ask for aggregates")
        if isinstance(item, exp.Column):
            name = _column(item, f"select item {i + 1}")
            if name not in keys or label not in (None, name):
                _refuse(f"column {name!r} is selected but is not a GROUP BY key")
            selected_keys.append(name)
            continue
        aggs.append(_aggregate(item, label, i))
    if not aggs:
        _refuse("select at least one aggregate")
    where = _predicates(stmt.args["where"].this) if stmt.args.get("where") else []
    query = parse_query({"dataset": meta.name, "aggregates": aggs, "group_by": keys,
                         "where": where, "rho": rho, "project": project,
                         "max_rows_per_person": max_rows_per_person})
    try:
        check_query(query, meta)
    except InvalidInput as exc:
        # Speak SQL to someone who wrote SQL: the JSON form's grammar would only confuse.
        message = exc.message.replace(f"Allowed: {ALLOWED}", ALLOWED_SQL)
        raise InvalidInput(message, detail=exc.detail) from exc
    return query
