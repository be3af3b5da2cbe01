"""A corpus' `where` filter is one boolean expression over its columns, and nothing else.

    sql = where_expression("star >= 3 AND topic <> '广告'", "corpora.webtext2019zh.where")
    # "((star >= 3) AND (topic != '广告'))": DuckDB's own text of the parsed expression, safe to embed in a query
    where_expression("(SELECT count(*) FROM read_csv('/etc/passwd')) > 0", "corpora.x.where")    # ConfigError

A `where` comes from pipelines.yaml or from a flow parameter (anyone who reaches the Prefect API sets those), so
it is parsed by DuckDB's parser (json_serialize_sql) without running anything, and accepted only as a single
expression built from columns, constants, comparisons, AND/OR/NOT, IN, BETWEEN, IS NULL, LIKE/ILIKE/GLOB, CASE,
casts and the scalar functions of FUNCTIONS (text, numbers, JSON fields). Statements, subqueries, table functions,
window and aggregate functions, lambdas, parameters and every other function are refused with one line naming the
key. The accepted expression is re-written by DuckDB from its parse tree (json_deserialize_sql), so no comment or
stray parenthesis of the original can change the query it is embedded in; and that query runs on a connection that
reads only its own input file, with external access disabled and its configuration locked (parallel.DuckDBLimits).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import duckdb

from gpt.config import ConfigError
from tasks.corpus.settings import FUNCTIONS

_CLASSES = frozenset({"CONJUNCTION", "COMPARISON", "CONSTANT", "OPERATOR", "BETWEEN", "CASE", "CAST", "TYPE"})
"""Expression kinds allowed as they are (TYPE: a cast's target); functions and column references are checked."""
_EMPTY_SELECT = {"modifiers": [], "cte_map": {"map": []}, "where_clause": None, "group_expressions": [],
                 "group_sets": [], "having": None, "sample": None, "qualify": None}  # fmt: skip


def _nodes(tree) -> Iterator[dict]:
    """Every node of a parse tree that carries an expression class."""
    if isinstance(tree, dict):
        if "class" in tree:
            yield tree
        for value in tree.values():
            yield from _nodes(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _nodes(value)


def _refusal(node: dict) -> str | None:
    """Why an expression node is not allowed in a filter, or None."""
    kind = node["class"]
    if kind == "FUNCTION":
        name = node.get("function_name", "")
        plain = not (node.get("schema") or node.get("catalog") or node.get("filter") or node.get("distinct"))
        plain = plain and not node.get("order_bys", {}).get("orders") and not node.get("export_state")
        return None if name.lower() in FUNCTIONS and plain else f"the function {name}() is not allowed"
    if kind == "COLUMN_REF":
        names = node.get("column_names", [])
        return None if len(names) == 1 else f"{'.'.join(names)} is not a column of the corpus"
    if kind in _CLASSES:
        return None
    return {"SUBQUERY": "a subquery is not allowed", "STAR": "* is not allowed"}.get(
        kind, f"{kind.lower()} expressions are not allowed"
    )


def where_expression(where: str, key_path: str) -> str:
    """The filter `where` as DuckDB writes it back from its parse tree, once it is found to be one allowed
    expression; a ConfigError naming `key_path` otherwise."""

    def refuse(why: str) -> ConfigError:
        return ConfigError(
            f"{key_path}: not a valid filter: {why}. A filter is one condition over the corpus' columns, e.g. "
            "star >= 3 AND topic <> '广告'"
        )

    con = duckdb.connect(config={"enable_external_access": False, "lock_configuration": True})
    try:
        parsed = json.loads(con.execute("SELECT json_serialize_sql(?)", [f"SELECT {where}"]).fetchone()[0])
        if parsed.get("error") and parsed.get("error_type") == "not implemented":
            raise refuse("it holds a statement, not only an expression")  # what follows a `;`
        if parsed.get("error"):
            raise refuse(parsed.get("error_message", "it does not parse").splitlines()[0])
        statements = parsed["statements"]
        if len(statements) != 1:
            raise refuse("it holds more than one statement")
        node = statements[0]["node"]
        shape = {key: node.get(key) for key in _EMPTY_SELECT}
        if node.get("type") != "SELECT_NODE" or shape != _EMPTY_SELECT or node["from_table"]["type"] != "EMPTY":
            raise refuse("it is more than one expression")
        if len(node["select_list"]) != 1:
            raise refuse("it is a list of expressions, not one condition")
        for found in _nodes(node["select_list"]):
            if (why := _refusal(found)) is not None:
                raise refuse(why)
        node["select_list"][0]["alias"] = ""
        text = con.execute("SELECT json_deserialize_sql(?::JSON)", [json.dumps(parsed)]).fetchone()[0]
    finally:
        con.close()
    return text.removeprefix("SELECT ")
