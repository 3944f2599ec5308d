"""OData ``$filter`` and ``$orderby`` over the sandbox's records (plain dicts shaped like the swagger).

Parsing is done by the maintained ``odata-query`` grammar (``ODataLexer``/``ODataParser``); this
module compiles its AST into a predicate over dicts, checking field names and operand types
against the swagger definition first, so a bad query answers 400 before any record is read,
as ASP.NET OData does.

Rules beyond the grammar, all taken from what the live API is known to do:

* A datetime literal must carry ``Z`` or an offset (``2026-04-06T00:00:00Z``); a naive one is a
  400. The grammar accepts both, so the check happens here.
* Field values that are datetimes are compared as UTC instants; a date literal (``2026-04-06``)
  compares with the date part.
* Nested paths use ``/`` (``matter_ref/id``, ``billed_by_user_ref/display_name``). For the help
  article's older spelling, a segment ``x`` that is not a field resolves to ``x_ref`` when that
  exists, ``user`` resolves to the record's ``billed_by_user_ref``, and ``name`` on a reference
  without a ``name`` resolves to ``display_name`` (so ``contains(user/name,'x')`` works).
* String comparison and ``contains``/``startswith``/``endswith`` are case-sensitive, as OData
  specifies; use ``tolower()`` for a case-insensitive match.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

from odata_query import ast
from odata_query.exceptions import ODataException
from odata_query.grammar import ODataLexer, ODataParser

from worker.practicepanther.resources import Definition, FieldSpec, definition
from worker.sandbox.clock import parse_timestamp

Env = dict[str, Any]
Evaluator = Callable[[dict[str, Any], Env], Any]
Predicate = Callable[[dict[str, Any]], bool]

_EDM = {
    "string": "Edm.String",
    "uuid": "Edm.Guid",
    "number": "Edm.Double",
    "integer": "Edm.Int32",
    "boolean": "Edm.Boolean",
    "datetime": "Edm.DateTimeOffset",
    "date": "Edm.Date",
    "null": "null",
    "object": "Complex",
    "array": "Collection",
    "list": "Collection",
}
_NUMERIC = {"number", "integer"}


class ODataError(ValueError):
    """The query is not valid: the API answers 400 with this message."""


@dataclass(frozen=True)
class _Typed:
    """A compiled expression: how to evaluate it and its static type (a FieldSpec kind or literal kind)."""

    evaluate: Evaluator
    kind: str
    ref: str | None = None  # definition of an object/array element, for navigation and lambdas
    item_kind: str | None = None


@cache
def _parser() -> tuple[ODataLexer, ODataParser]:
    return ODataLexer(), ODataParser()


def _parse(text: str) -> ast._Node:
    lexer, parser = _parser()
    try:
        node: ast._Node = parser.parse(lexer.tokenize(text))
    except ODataException as exc:
        raise ODataError(f"The query specified in the URI is not valid. {exc}") from None
    if node is None:
        raise ODataError("The query specified in the URI is not valid. The $filter is empty.")
    return node


def _field_for(model: Definition, name: str) -> FieldSpec | None:
    """The field ``name`` of ``model``, or the alias the help article's spelling stands for."""
    if name in model.fields:
        return model.fields[name]
    for alias in (f"{name}_ref", f"billed_by_{name}_ref" if name == "user" else ""):
        if alias and alias in model.fields:
            return model.fields[alias]
    if name == "name" and "display_name" in model.fields:
        return model.fields["display_name"]
    return None


def _unknown(name: str, model: Definition) -> ODataError:
    return ODataError(
        f"The query specified in the URI is not valid. Could not find a property named '{name}' "
        f"on type 'PracticePanther.{model.name}'."
    )


def _to_value(raw: Any, kind: str) -> Any:
    """A record value as the evaluator compares it (datetimes parsed, guids lower-cased)."""
    if raw is None:
        return None
    if kind == "datetime" and isinstance(raw, str):
        try:
            return parse_timestamp(raw)
        except ValueError:
            return None
    if kind == "uuid" and isinstance(raw, str):
        return raw.lower()
    return raw


class _Compiler:
    """Turns an odata-query AST into a typed evaluator over one definition's dicts."""

    def __init__(self, model: Definition) -> None:
        self.model = model
        self.scopes: dict[str, _Typed] = {}

    # -- entry points -------------------------------------------------------------------
    def compile(self, node: ast._Node) -> _Typed:
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise ODataError(
                f"The query specified in the URI is not valid. '{type(node).__name__}' is not supported."
            )
        typed: _Typed = method(node)
        return typed

    # -- member access ------------------------------------------------------------------
    def _segments(self, node: ast._Node) -> list[str]:
        if isinstance(node, ast.Identifier):
            if node.namespace:
                return [*node.namespace, node.name]
            return [node.name]
        if isinstance(node, ast.Attribute):
            return [*self._segments(node.owner), node.attr]
        raise ODataError("The query specified in the URI is not valid. Expected a property path.")

    def _path(self, segments: list[str]) -> _Typed:
        first, rest = segments[0], segments[1:]
        if first in self.scopes:
            base = self.scopes[first]
            getter = _variable(first)
            kind, ref = base.kind, base.ref
        else:
            spec = _field_for(self.model, first)
            if spec is None:
                raise _unknown(first, self.model)
            getter = _field(spec.name)
            kind, ref = spec.kind, spec.ref if spec.kind == "object" else spec.item_ref
            if spec.kind == "array":
                return self._walk(getter, "array", ref, rest, spec.item_kind)
        return self._walk(getter, kind, ref, rest, None)

    def _walk(
        self,
        getter: Evaluator,
        kind: str,
        ref: str | None,
        rest: list[str],
        item_kind: str | None,
    ) -> _Typed:
        for name in rest:
            if kind != "object" or ref is None:
                raise ODataError(
                    f"The query specified in the URI is not valid. '{name}' cannot follow a "
                    f"property of type {_EDM.get(kind, kind)}."
                )
            model = definition(ref)
            spec = _field_for(model, name)
            if spec is None:
                raise _unknown(name, model)
            getter = self._step(getter, spec.name)
            kind = spec.kind
            item_kind = spec.item_kind
            ref = spec.ref if spec.kind == "object" else spec.item_ref
        final_kind = kind

        def evaluate(record: dict[str, Any], env: Env) -> Any:
            return _to_value(getter(record, env), final_kind)

        return _Typed(evaluate, kind, ref, item_kind)

    @staticmethod
    def _step(getter: Evaluator, name: str) -> Evaluator:
        def step(record: dict[str, Any], env: Env) -> Any:
            owner = getter(record, env)
            return owner.get(name) if isinstance(owner, dict) else None

        return step

    def _Identifier(self, node: ast.Identifier) -> _Typed:
        return self._path(self._segments(node))

    def _Attribute(self, node: ast.Attribute) -> _Typed:
        return self._path(self._segments(node))

    # -- literals -----------------------------------------------------------------------
    @staticmethod
    def _constant(value: Any, kind: str) -> _Typed:
        return _Typed(lambda _record, _env: value, kind)

    def _String(self, node: ast.String) -> _Typed:
        return self._constant(node.py_val, "string")

    def _Integer(self, node: ast.Integer) -> _Typed:
        return self._constant(node.py_val, "integer")

    def _Float(self, node: ast.Float) -> _Typed:
        return self._constant(node.py_val, "number")

    def _Boolean(self, node: ast.Boolean) -> _Typed:
        return self._constant(node.py_val, "boolean")

    def _Null(self, node: ast.Null) -> _Typed:
        return self._constant(None, "null")

    def _GUID(self, node: ast.GUID) -> _Typed:
        return self._constant(node.val.lower(), "uuid")

    def _Date(self, node: ast.Date) -> _Typed:
        try:
            return self._constant(node.py_val, "date")
        except ValueError:
            raise ODataError(f"The query specified in the URI is not valid. Bad date '{node.val}'.") from None

    def _DateTime(self, node: ast.DateTime) -> _Typed:
        if not re.search(r"(Z|[+-]\d\d:\d\d)$", node.val, re.IGNORECASE):
            raise ODataError(
                "The query specified in the URI is not valid. The DateTimeOffset literal "
                f"'{node.val}' has no time zone: add 'Z' or an offset such as '+00:00'."
            )
        try:
            return self._constant(parse_timestamp(node.val), "datetime")
        except ValueError:
            raise ODataError(
                f"The query specified in the URI is not valid. Bad datetime '{node.val}'."
            ) from None

    def _List(self, node: ast.List) -> _Typed:
        raise ODataError("The query specified in the URI is not valid. A list is only allowed after 'in'.")

    # -- operators ----------------------------------------------------------------------
    def _Compare(self, node: ast.Compare) -> _Typed:
        name = type(node.comparator).__name__
        if isinstance(node.comparator, ast.In):
            return self._in(node)
        left, right = self.compile(node.left), self.compile(node.right)
        _check_compatible(left.kind, right.kind, name)
        compare = _COMPARATORS[name]
        return _Typed(lambda r, e: compare(left.evaluate(r, e), right.evaluate(r, e)), "boolean")

    def _in(self, node: ast.Compare) -> _Typed:
        left = self.compile(node.left)
        if not isinstance(node.right, ast.List):
            raise ODataError("The query specified in the URI is not valid. 'in' needs a list.")
        options = [self.compile(item) for item in node.right.val]
        for option in options:
            _check_compatible(left.kind, option.kind, "In")

        def evaluate(r: dict[str, Any], e: Env) -> bool:
            value = left.evaluate(r, e)
            return any(_equal(value, option.evaluate(r, e)) for option in options)

        return _Typed(evaluate, "boolean")

    def _BoolOp(self, node: ast.BoolOp) -> _Typed:
        left, right = self._boolean(node.left), self._boolean(node.right)
        if isinstance(node.op, ast.And):
            return _Typed(lambda r, e: bool(left.evaluate(r, e)) and bool(right.evaluate(r, e)), "boolean")
        return _Typed(lambda r, e: bool(left.evaluate(r, e)) or bool(right.evaluate(r, e)), "boolean")

    def _UnaryOp(self, node: ast.UnaryOp) -> _Typed:
        if isinstance(node.op, ast.Not):
            operand = self._boolean(node.operand)
            return _Typed(lambda r, e: not operand.evaluate(r, e), "boolean")
        operand = self.compile(node.operand)
        if operand.kind not in _NUMERIC:
            raise _incompatible(operand.kind, "number", "Negate")

        def negate(r: dict[str, Any], e: Env) -> Any:
            value = operand.evaluate(r, e)
            return None if value is None else -value

        return _Typed(negate, operand.kind)

    def _BinOp(self, node: ast.BinOp) -> _Typed:
        left, right = self.compile(node.left), self.compile(node.right)
        name = type(node.op).__name__
        for side in (left, right):
            if side.kind not in _NUMERIC | {"null"}:
                raise _incompatible(left.kind, right.kind, name)
        operation = _ARITHMETIC[name]

        def evaluate(r: dict[str, Any], e: Env) -> Any:
            a, b = left.evaluate(r, e), right.evaluate(r, e)
            if a is None or b is None:
                return None
            try:
                return operation(a, b)
            except ZeroDivisionError:
                return None

        kind = "integer" if left.kind == right.kind == "integer" and name != "Div" else "number"
        return _Typed(evaluate, kind)

    def _boolean(self, node: ast._Node) -> _Typed:
        typed = self.compile(node)
        if typed.kind not in ("boolean", "null"):
            raise ODataError(
                "The query specified in the URI is not valid. A boolean expression was expected, "
                f"found {_EDM.get(typed.kind, typed.kind)}."
            )
        return typed

    # -- functions ----------------------------------------------------------------------
    def _Call(self, node: ast.Call) -> _Typed:
        name = node.func.full_name().lower()
        spec = _FUNCTIONS.get(name)
        if spec is None:
            raise ODataError(f"The query specified in the URI is not valid. Unknown function '{name}'.")
        arg_kinds, result_kind, function = spec
        args = [self.compile(arg) for arg in node.args]
        if len(args) not in (len(arg_kinds), len(arg_kinds) - 1 if name == "substring" else -1):
            raise ODataError(f"The query specified in the URI is not valid. Wrong arguments to '{name}'.")
        for arg, expected in zip(args, arg_kinds, strict=False):
            if arg.kind != "null" and arg.kind not in expected:
                raise ODataError(
                    f"The query specified in the URI is not valid. No function signature for '{name}' "
                    f"accepts an argument of type {_EDM.get(arg.kind, arg.kind)}."
                )

        def evaluate(r: dict[str, Any], e: Env) -> Any:
            values = [arg.evaluate(r, e) for arg in args]
            if any(v is None for v in values) and name not in ("concat",):
                return None
            return function(*values)

        return _Typed(evaluate, result_kind)

    # -- lambdas ------------------------------------------------------------------------
    def _CollectionLambda(self, node: ast.CollectionLambda) -> _Typed:
        owner = self._path(self._segments(node.owner))
        if owner.kind != "array":
            raise ODataError("The query specified in the URI is not valid. any/all need a collection.")
        is_any = isinstance(node.operator, ast.Any)
        if node.lambda_ is None:
            return _Typed(lambda r, e: bool(owner.evaluate(r, e)), "boolean")
        variable = node.lambda_.identifier.name
        item_kind = owner.item_kind or "object"
        self.scopes[variable] = _Typed(lambda _r, e: e[variable], item_kind, owner.ref)
        try:
            body = self._boolean(node.lambda_.expression)
        finally:
            del self.scopes[variable]

        def evaluate(r: dict[str, Any], e: Env) -> bool:
            items = owner.evaluate(r, e) or []
            results = (bool(body.evaluate(r, {**e, variable: _to_value(item, item_kind)})) for item in items)
            return any(results) if is_any else all(results)

        return _Typed(evaluate, "boolean")


def _variable(name: str) -> Evaluator:
    return lambda _record, env: env[name]


def _field(name: str) -> Evaluator:
    return lambda record, _env: record.get(name)


def _reader(evaluate: Evaluator) -> Callable[[dict[str, Any]], Any]:
    return lambda record: evaluate(record, {})


def _incompatible(left: str, right: str, operator: str) -> ODataError:
    return ODataError(
        "The query specified in the URI is not valid. A binary operator with incompatible types was "
        f"detected. Found operand types '{_EDM.get(left, left)}' and '{_EDM.get(right, right)}' "
        f"for operator kind '{operator}'."
    )


_COMPATIBLE = [
    {"integer", "number"},
    {"string"},
    {"uuid", "string"},
    {"boolean"},
    {"datetime", "date"},
]


def _check_compatible(left: str, right: str, operator: str) -> None:
    if "null" in (left, right):
        if {left, right} & {"object", "array"} and operator not in ("Eq", "NotEq"):
            raise _incompatible(left, right, operator)
        return
    if any(left in group and right in group for group in _COMPATIBLE):
        return
    raise _incompatible(left, right, operator)


def _align(a: Any, b: Any) -> tuple[Any, Any]:
    """Bring a datetime and a date literal to the same footing (the date part)."""
    if isinstance(a, datetime) and not isinstance(b, datetime) and isinstance(b, date):
        return a.astimezone(UTC).date(), b
    if isinstance(b, datetime) and not isinstance(a, datetime) and isinstance(a, date):
        return a, b.astimezone(UTC).date()
    return a, b


def _ordered(operation: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        if a is None or b is None:
            return False
        a, b = _align(a, b)
        try:
            return operation(a, b)
        except TypeError:
            return False

    return compare


def _equal(a: Any, b: Any) -> bool:
    a, b = _align(a, b)
    return bool(a == b)


_COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "Eq": _equal,
    "NotEq": lambda a, b: not _equal(a, b),
    "Lt": _ordered(lambda a, b: a < b),
    "LtE": _ordered(lambda a, b: a <= b),
    "Gt": _ordered(lambda a, b: a > b),
    "GtE": _ordered(lambda a, b: a >= b),
}

_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "Add": lambda a, b: a + b,
    "Sub": lambda a, b: a - b,
    "Mult": lambda a, b: a * b,
    "Div": lambda a, b: a / b,
    "Mod": lambda a, b: a % b,
}

_STR = {"string", "uuid"}
_NUM = _NUMERIC
_DT = {"datetime"}


def _substring(text: str, start: int, length: int | None = None) -> str:
    return text[start:] if length is None else text[start : start + length]


_FUNCTIONS: dict[str, tuple[list[set[str]], str, Callable[..., Any]]] = {
    "contains": ([_STR, _STR], "boolean", lambda a, b: b in a),
    "startswith": ([_STR, _STR], "boolean", lambda a, b: a.startswith(b)),
    "endswith": ([_STR, _STR], "boolean", lambda a, b: a.endswith(b)),
    "tolower": ([_STR], "string", str.lower),
    "toupper": ([_STR], "string", str.upper),
    "trim": ([_STR], "string", str.strip),
    "length": ([_STR], "integer", len),
    "indexof": ([_STR, _STR], "integer", lambda a, b: a.find(b)),
    "substring": ([_STR, _NUM, _NUM], "string", _substring),
    "concat": ([_STR, _STR], "string", lambda a, b: (a or "") + (b or "")),
    "year": ([_DT], "integer", lambda d: d.year),
    "month": ([_DT], "integer", lambda d: d.month),
    "day": ([_DT], "integer", lambda d: d.day),
    "hour": ([_DT], "integer", lambda d: d.hour),
    "minute": ([_DT], "integer", lambda d: d.minute),
    "second": ([_DT], "integer", lambda d: d.second),
    "date": ([_DT], "date", lambda d: d.date()),
    "now": ([], "datetime", lambda: datetime.now(UTC)),
    "round": ([_NUM], "number", lambda x: math.floor(x + 0.5)),
    "floor": ([_NUM], "number", math.floor),
    "ceiling": ([_NUM], "number", math.ceil),
}


def compile_filter(text: str, definition_name: str) -> Predicate:
    """A predicate for ``$filter=text`` over records of ``definition_name``; ``ODataError`` if invalid."""
    compiler = _Compiler(definition(definition_name))
    typed = compiler._boolean(_parse(text))

    def predicate(record: dict[str, Any]) -> bool:
        return bool(typed.evaluate(record, {}))

    return predicate


def lower_bound(text: str, field: str) -> tuple[datetime, bool] | None:
    """The tightest ``field ge|gt <datetime literal>`` that every match of ``$filter=text`` meets.

    Only terms joined by ``and`` at the top level count (under ``or`` or ``not`` a term does not
    bind every match), and only the ``field op literal`` spelling. Returns ``(moment, strict)``,
    ``strict`` for ``gt``; ``None`` when no such term exists. Call after :func:`compile_filter`
    accepted ``text``, so the literal is known to be valid.
    """
    bounds: list[tuple[datetime, bool]] = []
    pending = [_parse(text)]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
            pending += [node.left, node.right]
        elif (
            isinstance(node, ast.Compare)
            and isinstance(node.comparator, ast.Gt | ast.GtE)
            and node.left == ast.Identifier(field)
            and isinstance(node.right, ast.DateTime)
        ):
            bounds.append((parse_timestamp(node.right.val), isinstance(node.comparator, ast.Gt)))
    return max(bounds, default=None)


@dataclass(frozen=True)
class OrderKey:
    """One ``$orderby`` key: how to read it from a record and its direction."""

    read: Callable[[dict[str, Any]], Any]
    descending: bool


def compile_orderby(text: str, definition_name: str) -> list[OrderKey]:
    """The keys of ``$orderby=a/b desc, c``; ``ODataError`` for unknown or non-sortable fields."""
    compiler = _Compiler(definition(definition_name))
    keys: list[OrderKey] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise ODataError("The query specified in the URI is not valid. Empty $orderby clause.")
        words = part.split()
        direction = words[1].lower() if len(words) == 2 else "asc"
        if len(words) > 2 or direction not in ("asc", "desc"):
            raise ODataError(f"The query specified in the URI is not valid. Bad $orderby clause '{part}'.")
        typed = compiler._path(words[0].split("/"))
        if typed.kind in ("object", "array"):
            raise ODataError(
                f"The query specified in the URI is not valid. '{words[0]}' is not a sortable property."
            )
        keys.append(OrderKey(_reader(typed.evaluate), direction == "desc"))
    return keys


def sort_records(records: list[dict[str, Any]], keys: list[OrderKey]) -> list[dict[str, Any]]:
    """Stable multi-key sort; nulls sort first ascending (and last descending), like SQL Server."""
    result = list(records)
    for key in reversed(keys):

        def sort_key(record: dict[str, Any], read: Callable[[dict[str, Any]], Any] = key.read) -> Any:
            value = read(record)
            return (0, 0) if value is None else (1, value)

        result.sort(key=sort_key, reverse=key.descending)
    return result
