"""Jinja for rules: sandboxed, strict, bounded, and native where it should be.

* ``ImmutableSandboxedEnvironment``: no ``_``-attributes, no Python internals, no mutation of lists
  or dicts. ``StrictUndefined``: a misspelt name is an error, never an empty string.
* Limits per render (output size, wall time, total ``range`` items) and checked operators (``*``,
  ``**``, ``+``, ``%``, ``str.format`` widths, ``center``/``indent``/``replace``), so neither
  ``{{ 'x' * 10**9 }}`` nor nested ``range`` loops can take a worker down.
* Native values: a template that is exactly one ``{{ expression }}`` renders the value itself
  (a number stays a number, a mapping a mapping); anything else renders text.

Compile once (:meth:`RulesEnvironment.template`, :meth:`RulesEnvironment.expression`), render many.
"""

from __future__ import annotations

import contextvars
import string
import time
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, nodes, pass_eval_context
from jinja2.exceptions import SecurityError
from jinja2.filters import do_center, do_format, do_indent, do_replace
from jinja2.parser import Parser
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment, safe_range

from worker.calendar import Calendar
from worker.errors import PpwError
from worker.rules.filters import FILTERS, GLOBALS, TESTS
from worker.rules.views import LOOKUP_TYPES, Missing

#: Names every template can use (besides the loop variables it defines itself).
CONTEXT_NAMES = (
    "event",
    "record",
    "previous",
    "changes",
    "steps",
    "env",
    "now",
    "rule",
    "payload",
    "results",
    "slot",
)


@dataclass(frozen=True)
class Limits:
    """Per-render limits. ``output_chars`` bounds every string or list a template builds;
    ``loop_iterations`` all ``{% for %}`` iterations of one render together."""

    output_chars: int = 100_000
    seconds: float = 1.0
    range_items: int = 100_000
    loop_iterations: int = 1_000_000


class TemplateLimitError(PpwError, SecurityError):
    """A template went over a render limit (size, time, loop items)."""


class CompileError(PpwError):
    """A template or expression does not parse. ``line`` is 1-based within the template."""

    def __init__(self, message: str, line: int, source: str) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.source = source


class RenderError(PpwError):
    """Rendering failed. ``line`` is 1-based within the template; ``kind`` is ``undefined``,
    ``security``, ``limit`` or ``error``."""

    def __init__(self, message: str, line: int, source: str, kind: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.source = source
        self.kind = kind


class _Budget:
    __slots__ = ("deadline", "loops_left", "range_left")

    def __init__(self, limits: Limits) -> None:
        self.deadline = time.monotonic() + limits.seconds
        self.range_left = limits.range_items
        self.loops_left = limits.loop_iterations


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("ppw_template_budget", default=None)

_SIZED_METHODS = {"center", "ljust", "rjust", "zfill"}


class RulesEnvironment(ImmutableSandboxedEnvironment):
    """The one Jinja environment rules are compiled in (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(
        self, timezone: str = "UTC", limits: Limits | None = None, calendar: Calendar | None = None
    ) -> None:
        super().__init__(
            undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, finalize=_blank_none
        )
        self.firm_zone = ZoneInfo(timezone)
        #: business days for the date filters; weekends only unless the firm's calendar is given
        self.calendar = calendar if calendar is not None else Calendar(self.firm_zone)
        self.limits = limits or Limits()
        self.globals.pop("lipsum", None)
        self.globals["range"] = self._range
        self.globals[_LOOP_GUARD] = self._loop
        self.filters.update(FILTERS)
        self.tests.update(TESTS)
        self.globals.update(GLOBALS)
        self.filters.update(
            center=self._center, indent=self._indent, format=self._format, replace=self._replace
        )
        self.policies["json.dumps_kwargs"] = {"sort_keys": True, "ensure_ascii": False, "default": str}

    # -- limits ---------------------------------------------------------------------------------
    def _too_big(self, size: int) -> None:
        if size > self.limits.output_chars:
            raise TemplateLimitError(
                f"result would be {size:,} items long; templates are limited to {self.limits.output_chars:,}"
            )

    def _tick(self) -> None:
        budget = _BUDGET.get()
        if budget is not None and time.monotonic() > budget.deadline:
            raise TemplateLimitError(f"template ran longer than {self.limits.seconds:g}s")

    def _range(self, *args: int) -> range:
        try:
            rng = safe_range(*args)
        except OverflowError:
            raise TemplateLimitError(f"range() is limited to {MAX_RANGE:,} items") from None
        budget = _BUDGET.get()
        if budget is not None:
            budget.range_left -= len(rng)
            if budget.range_left < 0:
                raise TemplateLimitError(
                    f"loops went over {self.limits.range_items:,} range() items in one render"
                )
        return rng

    def _loop(self, iterable: Any) -> Iterator[Any]:
        """Every ``{% for %}`` iterates through this (see :func:`_guard_loops`): nested loops over
        long sequences would otherwise spin without ever reaching a checked operation."""
        budget = _BUDGET.get()
        if budget is None:
            yield from iterable
            return
        for count, item in enumerate(iterable):
            budget.loops_left -= 1
            if budget.loops_left < 0:
                raise TemplateLimitError(
                    f"loops went over {self.limits.loop_iterations:,} iterations in one render"
                )
            if count % 1024 == 0:
                self._tick()
            yield item

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        self._tick()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    self._too_big(len(seq) * times)
        elif (
            operator == "**"
            and isinstance(left, int)
            and isinstance(right, int)
            and abs(left) > 1
            and right * abs(left).bit_length() > 4096
        ):
            raise TemplateLimitError("number too large (more than 4096 bits)")
        elif operator == "+":
            if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
                self._too_big(len(left) + len(right))
        elif operator == "%" and isinstance(left, str):
            self._check_printf(left)
        return super().call_binop(context, operator, left, right)

    def _check_printf(self, pattern: str) -> None:
        import re

        for width in re.findall(r"%[-#0 +]*(\d+|\*)", pattern):
            if width == "*" or int(width) > self.limits.output_chars:
                raise TemplateLimitError("format width too large")

    def _check_format_spec(self, pattern: str) -> None:
        try:
            parsed = list(string.Formatter().parse(pattern))
        except ValueError:
            return
        for _literal, _field, spec, _conversion in parsed:
            if spec and ("{" in spec or any(int(n) > self.limits.output_chars for n in _numbers(spec))):
                raise TemplateLimitError("format width too large")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        self._check_format_spec(str(value.__self__))
        return wrapped

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        __self._tick()
        if isinstance(__obj, types.BuiltinMethodType) and isinstance(getattr(__obj, "__self__", None), str):
            text = str(__obj.__self__)
            name = __obj.__name__
            if name in _SIZED_METHODS and args and isinstance(args[0], int):
                __self._too_big(args[0])
            elif (
                name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str)
            ):
                occurrences = text.count(args[0]) if args[0] else len(text) + 1
                __self._too_big(len(text) + occurrences * len(args[1]))
            elif name == "expandtabs":
                size = args[0] if args and isinstance(args[0], int) else 8
                __self._too_big(len(text) + text.count("\t") * size)
        return super().call(__context, __obj, *args, **kwargs)

    # filters with a width ---------------------------------------------------------------------
    def _center(self, value: str, width: int = 80) -> str:
        self._too_big(int(width))
        return do_center(value, width)

    def _indent(self, value: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
        pad = width if isinstance(width, str) else " " * min(int(width), self.limits.output_chars + 1)
        self._too_big(len(value) + (value.count("\n") + 1) * len(pad))
        return do_indent(value, width, first, blank)

    def _format(self, value: str, *args: Any, **kwargs: Any) -> str:
        self._check_printf(value)
        return do_format(value, *args, **kwargs)

    @pass_eval_context
    def _replace(self, eval_ctx: Any, value: str, old: str, new: str, count: int | None = None) -> str:
        occurrences = str(value).count(old) if old else len(str(value)) + 1
        self._too_big(len(str(value)) + occurrences * len(str(new)))
        return do_replace(eval_ctx, value, old, new, count)

    # views ------------------------------------------------------------------------------------
    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, LOOKUP_TYPES):
            return self._lookup(obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, LOOKUP_TYPES) and isinstance(argument, str):
            return self._lookup(obj, argument)
        return super().getitem(obj, argument)

    def _lookup(self, obj: Any, name: str) -> Any:
        value = obj.lookup(name)
        if isinstance(value, Missing):
            return self.undefined(hint=value.describe(), obj=obj, name=name)
        return value

    # compiling ----------------------------------------------------------------------------------
    def template(self, source: str) -> CompiledTemplate:
        """Compile a ``with:`` value: native when it is exactly one ``{{ expression }}``."""
        try:
            tree = self.parse(source)
        except TemplateSyntaxError as exc:
            raise CompileError(exc.message or str(exc), exc.lineno or 1, source) from None
        expression = single_expression(tree, source)
        if expression is not None:
            return self._expression_template(expression, source)
        _guard_loops(tree)
        try:
            compiled = self.from_string(tree)
        except TemplateSyntaxError as exc:
            raise CompileError(exc.message or str(exc), exc.lineno or 1, source) from None
        return CompiledTemplate(self, compiled, source, native=False)

    def expression(self, source: str) -> CompiledTemplate:
        """Compile a bare expression (a condition, an ``if:``)."""
        return self._expression_template(parse_expression(self, source), source)

    def _expression_template(self, expression: nodes.Expr, source: str) -> CompiledTemplate:
        body = [nodes.Assign(nodes.Name("result", "store"), expression, lineno=expression.lineno)]
        tree = nodes.Template(body, lineno=1)
        tree.set_environment(self)
        _guard_loops(tree)
        try:
            compiled = self.from_string(tree)
        except TemplateSyntaxError as exc:
            raise CompileError(exc.message or str(exc), exc.lineno or 1, source) from None
        return CompiledTemplate(self, compiled, source, native=True)


_LOOP_GUARD = "_ppw_loop_guard"


def _guard_loops(tree: nodes.Node) -> None:
    """Route every ``{% for %}`` through :meth:`RulesEnvironment._loop`."""
    for loop in tree.find_all(nodes.For):
        loop.iter = nodes.Call(
            nodes.Name(_LOOP_GUARD, "load", lineno=loop.lineno),
            [loop.iter],
            [],
            None,
            None,
            lineno=loop.lineno,
        )


def _blank_none(value: Any) -> Any:
    """``{{ record.notes }}`` of an empty field prints nothing, not ``None``."""
    return "" if value is None else value


def _numbers(spec: str) -> list[str]:
    import re

    return re.findall(r"\d+", spec)


def parse_expression(env: RulesEnvironment, source: str) -> nodes.Expr:
    """The AST of a bare expression; a syntax error becomes :class:`CompileError`."""
    try:
        parser = Parser(env, source, state="variable")
        expression = parser.parse_expression()
        if not parser.stream.eos:
            token = parser.stream.current
            raise TemplateSyntaxError(
                f"unexpected {token.value!r} after the expression", token.lineno, None, None
            )
    except TemplateSyntaxError as exc:
        raise CompileError(exc.message or str(exc), exc.lineno or 1, source) from None
    return expression


def single_expression(tree: nodes.Template, source: str) -> nodes.Expr | None:
    """The expression when the template is exactly ``{{ expression }}`` (whitespace around allowed
    only inside the braces), else None."""
    text = source.strip()
    if text != source or not (text.startswith("{{") and text.endswith("}}")):
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    parts = tree.body[0].nodes
    if len(parts) != 1 or isinstance(parts[0], nodes.TemplateData):
        return None
    expression: nodes.Expr = parts[0]
    return expression


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value or "{#" in value


class CompiledTemplate:
    """One compiled template or expression, ready to render against a context."""

    __slots__ = ("_env", "_template", "native", "source")

    def __init__(self, env: RulesEnvironment, template: Any, source: str, *, native: bool) -> None:
        self._env = env
        self._template = template
        self.source = source
        self.native = native

    def __call__(self, variables: Mapping[str, Any]) -> Any:
        """Render; any failure comes back as :class:`RenderError` with the template line."""
        token = _BUDGET.set(_Budget(self._env.limits))
        try:
            if _LOOP_GUARD not in variables:  # callers that did not include the globals themselves
                variables = {**self._env.globals, **variables}
            # shared=True: the variables already hold the globals, so Jinja need not merge them
            # into a new mapping for every render (the costliest part of evaluating a condition).
            context = self._template.new_context(dict(variables), shared=True)
            if self.native:
                for _ in self._template.root_render_func(context):
                    pass
                value = context.vars["result"]
                if isinstance(value, Undefined):
                    value._fail_with_undefined_error()
                if isinstance(value, str | list | tuple | dict):
                    self._env._too_big(len(value))
                return value
            return self._text(context)
        except RenderError:
            raise
        except TemplateLimitError as exc:
            raise self._error(exc, "limit") from None
        except SecurityError as exc:
            raise self._error(exc, "security") from None
        except TemplateError as exc:
            kind = "undefined" if type(exc).__name__ == "UndefinedError" else "error"
            raise self._error(exc, kind) from None
        except RecursionError:
            raise RenderError("recursion too deep", 1, self.source, "limit") from None
        except Exception as exc:
            raise self._error(exc, "error") from None
        finally:
            _BUDGET.reset(token)

    def _text(self, context: Context) -> str:
        limit = self._env.limits.output_chars
        size = 0
        chunks: list[str] = []
        for chunk in self._template.root_render_func(context):
            size += len(chunk)
            if size > limit:
                raise TemplateLimitError(f"output is longer than {limit:,} characters")
            chunks.append(chunk)
            self._env._tick()
        return "".join(chunks)

    def _error(self, exc: BaseException, kind: str) -> RenderError:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        if kind == "error" and not isinstance(exc, TemplateError):
            message = f"{type(exc).__name__}: {message}"
        return RenderError(message, self._line(exc), self.source, kind)

    def _line(self, exc: BaseException) -> int:
        line = 1
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == "<template>":
                line = self._template.get_corresponding_lineno(tb.tb_lineno)
            tb = tb.tb_next
        return max(line, 1)

    def __repr__(self) -> str:
        kind = "expression" if self.native else "template"
        return f"<CompiledTemplate {kind} {self.source[:40]!r}>"


Compiled = Any  # a literal, a CompiledTemplate, or a dict/list of Compiled


def compile_value(env: RulesEnvironment, value: Any) -> Compiled:
    """Compile every template string inside ``value`` (dicts and lists walked)."""
    if isinstance(value, str):
        return env.template(value) if is_template(value) else value
    if isinstance(value, dict):
        return {key: compile_value(env, item) for key, item in value.items()}
    if isinstance(value, list):
        return [compile_value(env, item) for item in value]
    return value


def render_value(compiled: Compiled, variables: Mapping[str, Any]) -> Any:
    """Render what :func:`compile_value` compiled."""
    if isinstance(compiled, CompiledTemplate):
        return compiled(variables)
    if isinstance(compiled, dict):
        return {key: render_value(item, variables) for key, item in compiled.items()}
    if isinstance(compiled, list):
        return [render_value(item, variables) for item in compiled]
    return compiled


def iter_templates(
    compiled: Compiled, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], CompiledTemplate]]:
    """Every compiled template inside ``compiled`` with its path."""
    if isinstance(compiled, CompiledTemplate):
        yield path, compiled
    elif isinstance(compiled, dict):
        for key, item in compiled.items():
            yield from iter_templates(item, (*path, key))
    elif isinstance(compiled, list):
        for index, item in enumerate(compiled):
            yield from iter_templates(item, (*path, index))


@cache
def environment(timezone: str = "UTC", calendar: Calendar | None = None) -> RulesEnvironment:
    """The shared environment for a firm time zone and calendar (compiled templates keep a
    reference to it); without a calendar, business days skip weekends only."""
    return RulesEnvironment(timezone, calendar=calendar)
