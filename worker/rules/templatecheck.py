"""Static checks of one template or expression: walk the Jinja AST, without rendering.

Catches what would otherwise fail at run time, with a hint: unknown names and filters, ``_``
attributes (sandbox escapes), field paths that do not exist on the record's definition (following
references: ``record.account_ref.display_name``), enum literals compared with enum fields,
``steps.X`` that is not an earlier step, ``env.X`` that is not allow-listed, and custom field labels
(``record.custom['Case Stage']``, ``changes['custom.Case Stage']``) that are not among the account's
definitions, when the check has them (:attr:`Scope.custom_labels`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from jinja2 import nodes

from worker.hints import did_you_mean, one_of, suggest
from worker.practicepanther import customfields
from worker.practicepanther.resources import Definition, FieldSpec, Resource
from worker.rules.context import EVENT_FIELDS, RULE_FIELDS
from worker.rules.fieldcheck import definition
from worker.rules.templating import CONTEXT_NAMES, RulesEnvironment

#: Attributes the sandbox refuses besides ``_``-names; reported statically with a clear message.
UNSAFE_ATTRIBUTES = frozenset(
    {
        "mro",
        "func_globals",
        "func_code",
        "gi_frame",
        "gi_code",
        "cr_frame",
        "cr_code",
        "ag_frame",
        "ag_code",
        "f_globals",
        "f_locals",
        "f_builtins",
        "tb_frame",
        "im_func",
        "im_self",
        "format_map",
    }
)


#: Names Jinja itself defines inside loops and macros.
_LOCAL_NAMES = frozenset({"loop", "caller", "varargs", "kwargs", "self"})


@dataclass(frozen=True)
class Finding:
    """A problem at ``line`` (1-based, inside the template); ``needle`` is the text to point at."""

    line: int
    message: str
    hint: str | None = None
    needle: str | None = None
    severity: str = "error"


@dataclass(frozen=True)
class StepInfo:
    """What an earlier step's result looks like to templates."""

    definition: Definition | None = None
    label: str = ""
    is_list: bool = False
    keys: frozenset[str] | None = None
    #: result keys besides the record's fields (``created`` of find_or_create)
    extra: frozenset[str] = frozenset()


@dataclass
class Scope:
    """What a template can see: the record's resource, earlier steps (None in conditions), and
    what the trigger provides (``kind``: ``record``, ``webhook``, ``schedule`` or ``query`` for the
    templates of a schedule's own query, which run before there are results)."""

    resource: Resource | None
    steps: dict[str, StepInfo] | None = None
    later_steps: list[str] = field(default_factory=list)
    env_allowlist: list[str] = field(default_factory=list)
    kind: str = "record"
    payload_schema: dict[str, Any] | None = None
    results: Resource | None = None
    #: the custom field labels of ``resource``, when the account's definitions are known
    custom_labels: tuple[str, ...] | None = None


#: Names that only some triggers provide, and what to say when a rule uses one it does not have.
_TRIGGER_NAMES: dict[str, tuple[frozenset[str], str]] = {
    "record": (
        frozenset({"record"}),
        "only record triggers have a record; a webhook's body is payload, a schedule's records are results",
    ),
    "previous": (frozenset({"record"}), "only record triggers have a previous version"),
    "changes": (frozenset({"record"}), "only record triggers have changes"),
    "payload": (
        frozenset({"webhook"}),
        "payload is the body of a webhook delivery (trigger: {webhook: ...})",
    ),
    "results": (
        frozenset({"schedule"}),
        "results are the records a schedule's query found (trigger: {schedule: ..., query: ...})",
    ),
    "slot": (frozenset({"schedule", "query"}), "slot is the time a schedule trigger fired"),
    "steps": (frozenset({"record", "webhook", "schedule"}), "a schedule's query runs before any step"),
}


# Types the resolver tracks through attribute chains -------------------------------------------


@dataclass(frozen=True)
class _Def:
    definition: Definition
    label: str
    extra: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _List:
    item: Any


@dataclass(frozen=True)
class _Scalar:
    spec: FieldSpec


@dataclass(frozen=True)
class _Changes:
    definition: Definition
    label: str


@dataclass(frozen=True)
class _Change:
    spec: FieldSpec


@dataclass(frozen=True)
class _Custom:
    """``record.custom``: values by label."""

    resource: str


@dataclass(frozen=True)
class _CustomChange:
    """``changes['custom.<label>']``."""


@dataclass(frozen=True)
class _Keys:
    keys: tuple[str, ...]
    what: str
    hint: str | None = None


@dataclass(frozen=True)
class _Steps:
    pass


@dataclass(frozen=True)
class _Schema:
    """A value described by (part of) a webhook's JSON Schema."""

    schema: dict[str, Any]
    label: str


def _field_type(spec: FieldSpec) -> Any:
    if spec.kind == "object":
        nested = definition(spec.ref)
        return _Def(nested, spec.name) if nested is not None else None
    if spec.kind == "array":
        nested = definition(spec.item_ref)
        return _List(_Def(nested, spec.name) if nested is not None else None)
    return _Scalar(spec)


class TemplateChecker:
    """Checks templates against a :class:`Scope`; see the module docstring."""

    def __init__(self, env: RulesEnvironment) -> None:
        self.env = env

    def check(self, tree: nodes.Node, scope: Scope) -> list[Finding]:
        if not isinstance(tree, nodes.Template):  # find_all() skips the root node itself
            tree = nodes.Template([nodes.Output([tree], lineno=1)], lineno=1)
        findings: list[Finding] = []
        findings.extend(self._names(tree, scope))
        findings.extend(self._filters_and_tests(tree))
        findings.extend(self._unsafe(tree))
        resolver = _Resolver(scope)
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            resolver.resolve(node)
        findings.extend(resolver.findings)
        findings.extend(self._enum_comparisons(tree, resolver))
        unique: dict[tuple[int, str], Finding] = {}
        for finding in findings:
            unique.setdefault((finding.line, finding.message), finding)
        return sorted(unique.values(), key=lambda f: f.line)

    def _names(self, tree: nodes.Node, scope: Scope) -> Iterator[Finding]:
        known = set(CONTEXT_NAMES) | set(self.env.globals) | _LOCAL_NAMES
        stored = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
        stored |= {m.name for m in tree.find_all(nodes.Macro)}
        undeclared = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"} - stored
        for name in sorted(undeclared - known):
            line = next((n.lineno for n in tree.find_all(nodes.Name) if n.name == name), 1)
            if name == "lipsum":
                yield Finding(line, "lipsum() is not available in rules", "write the text out", name)
                continue
            hint = did_you_mean(name, known) or f"templates can use {one_of(CONTEXT_NAMES)}"
            yield Finding(line, f"unknown name {name!r}", hint, name)
        for name in sorted(undeclared & set(_TRIGGER_NAMES)):
            kinds, hint = _TRIGGER_NAMES[name]
            line = next((n.lineno for n in tree.find_all(nodes.Name) if n.name == name), 1)
            if scope.kind not in kinds:
                where = "a schedule's query" if scope.kind == "query" else f"a {scope.kind} rule"
                yield Finding(line, f"{name!r} is not available in {where}", hint, name)
            elif name == "results" and scope.results is None:
                yield Finding(
                    line,
                    "results is always empty: this schedule has no query",
                    "add query: {resource: ..., filter: ...} to the trigger",
                    name,
                )
        if scope.steps is None and scope.kind != "query":
            for node in tree.find_all(nodes.Name):
                if node.name == "steps":
                    yield Finding(
                        node.lineno,
                        "steps are not available in conditions",
                        "conditions run before any step; use a step's 'if:' to test an earlier step's result",
                        "steps",
                    )
                    break

    def _filters_and_tests(self, tree: nodes.Node) -> Iterator[Finding]:
        for node in tree.find_all(nodes.Filter):
            if node.name not in self.env.filters:
                yield Finding(
                    node.lineno,
                    f"unknown filter {node.name!r}",
                    suggest(node.name, self.env.filters),
                    node.name,
                )
        for test in tree.find_all(nodes.Test):
            if test.name not in self.env.tests:
                yield Finding(
                    test.lineno, f"unknown test {test.name!r}", suggest(test.name, self.env.tests), test.name
                )

    def _unsafe(self, tree: nodes.Node) -> Iterator[Finding]:
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            name = node.attr if isinstance(node, nodes.Getattr) else _const_str(getattr(node, "arg", None))
            if name is not None and (name.startswith("_") or name in UNSAFE_ATTRIBUTES):
                yield Finding(
                    node.lineno,
                    f"access to {name!r} is not allowed in rules",
                    "templates run in a sandbox: Python internals and '_' attributes are off limits",
                    name,
                )

    def _enum_comparisons(self, tree: nodes.Node, resolver: _Resolver) -> Iterator[Finding]:
        for node in tree.find_all(nodes.Compare):
            left: nodes.Expr = node.expr
            for operand in node.ops:
                right = operand.expr
                if operand.op in ("eq", "ne"):
                    yield from self._enum_pair(left, right, resolver, node.lineno)
                    yield from self._enum_pair(right, left, resolver, node.lineno)
                elif operand.op in ("in", "notin") and isinstance(right, nodes.List | nodes.Tuple):
                    for item in right.items:
                        yield from self._enum_pair(left, item, resolver, node.lineno)
                left = right

    def _enum_pair(
        self, field_node: nodes.Expr, value_node: nodes.Expr, resolver: _Resolver, line: int
    ) -> Iterator[Finding]:
        value = _const_str(value_node)
        if value is None:
            return
        kind = resolver.known.get(id(field_node))
        spec = kind.spec if isinstance(kind, _Scalar | _Change) else None
        if spec is not None and spec.enum and value not in spec.enum:
            yield Finding(
                line,
                f"{value!r} is never a {spec.name}",
                did_you_mean(value, spec.enum) or f"{spec.name} is {one_of(spec.enum)}",
                value,
            )


def _const_str(node: nodes.Node | None) -> str | None:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return node.value
    return None


class _Resolver:
    """Resolves Getattr/Getitem chains to catalogue types, recording problems once each."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.known: dict[int, Any] = {}
        self.findings: list[Finding] = []

    def resolve(self, node: nodes.Node) -> Any:
        key = id(node)
        if key in self.known:
            return self.known[key]
        result = self._resolve(node)
        self.known[key] = result
        return result

    def _resolve(self, node: nodes.Node) -> Any:
        if isinstance(node, nodes.Name):
            return self._root(node.name)
        if isinstance(node, nodes.Getattr):
            return self._member(self.resolve(node.node), node.attr, node.lineno)
        if isinstance(node, nodes.Getitem):
            base = self.resolve(node.node)
            if isinstance(node.arg, nodes.Const):
                if isinstance(node.arg.value, str):
                    return self._member(base, node.arg.value, node.lineno)
                if isinstance(node.arg.value, int) and isinstance(base, _List):
                    return base.item
                if isinstance(node.arg.value, int) and isinstance(base, _Schema):
                    items = base.schema.get("items")
                    return _Schema(items, f"{base.label}[]") if isinstance(items, dict) else None
            return None
        return None

    def _root(self, name: str) -> Any:
        scope = self.scope
        resource = scope.resource
        if name == "payload" and scope.kind == "webhook" and scope.payload_schema is not None:
            return _Schema(scope.payload_schema, "payload")
        if name == "results" and scope.results is not None:
            return _List(_Def(scope.results.model, scope.results.name))
        if name in ("record", "previous"):
            return _Def(resource.model, resource.name) if resource is not None else None
        if name == "changes":
            return _Changes(resource.model, resource.name) if resource is not None else None
        if name == "event":
            return _Keys(EVENT_FIELDS, "event field")
        if name == "rule":
            return _Keys(RULE_FIELDS, "rule field")
        if name == "env":
            return _Keys(
                tuple(scope.env_allowlist),
                "allow-listed environment variable",
                "add it to PPW_ENV_ALLOWLIST (only allow-listed names are visible to templates)",
            )
        if name == "steps" and scope.steps is not None:
            return _Steps()
        return None

    def _member(self, base: Any, name: str, line: int) -> Any:
        if base is None or name.startswith("_"):
            return None
        if isinstance(base, _Def):
            if name == "custom" and base.label in customfields.VALUES_FIELDS:
                return _Custom(base.label)
            spec = base.definition.fields.get(name)
            if spec is None and name in base.extra:
                return None
            if spec is None:
                self._report(
                    line,
                    f"unknown field {name!r} on {base.label}",
                    suggest(name, base.definition.fields),
                    name,
                )
                return None
            return _field_type(spec)
        if isinstance(base, _Custom):
            self._custom_label(name, base.resource, line)
            return None
        if isinstance(base, _CustomChange):
            if name not in ("old", "new", "old_known"):
                self._report(
                    line, f"a change has 'old' and 'new', not {name!r}", "e.g. changes.status.new", name
                )
            return None
        if isinstance(base, _Changes):
            label = customfields.custom_label(name)
            if label is not None and base.label in customfields.VALUES_FIELDS:
                self._custom_label(label, base.label, line)
                return _CustomChange()
            spec = base.definition.fields.get(name)
            if spec is None:
                self._report(
                    line,
                    f"unknown field {name!r} in changes of {base.label}",
                    suggest(name, base.definition.fields),
                    name,
                )
                return None
            return _Change(spec)
        if isinstance(base, _Change):
            if name not in ("old", "new", "old_known"):
                self._report(
                    line,
                    f"a change has 'old', 'new' and 'old_known', not {name!r}",
                    "e.g. changes.status.new",
                    name,
                )
                return None
            return _field_type(base.spec)
        if isinstance(base, _Keys):
            if name not in base.keys:
                hint = did_you_mean(name, base.keys) or base.hint or f"expected {one_of(base.keys)}"
                severity = "warning" if base.what.startswith("allow-listed") else "error"
                self._report(line, f"no {base.what} {name!r}", hint, name, severity)
            return None
        if isinstance(base, _Steps):
            return self._step(name, line)
        if isinstance(base, _Schema):
            return self._schema_member(base, name, line)
        if isinstance(base, _List | _Scalar):
            return None
        return None

    def _custom_label(self, label: str, resource: str, line: int) -> None:
        """A custom field label must be one of the account's, when its definitions are known."""
        labels = self.scope.custom_labels
        if labels is None or label in labels:
            return
        self._report(
            line,
            f"no custom field {label!r} on {resource}",
            did_you_mean(label, labels) or f"expected {one_of(labels)}",
            label,
        )

    def _schema_member(self, base: _Schema, name: str, line: int) -> Any:
        """``payload.X`` checked against the schema's ``properties``: an error when the schema
        forbids other properties, a warning when it merely does not list ``X``."""
        properties = base.schema.get("properties")
        if not isinstance(properties, dict):
            return None
        if name in properties:
            nested = properties[name]
            return _Schema(nested, f"{base.label}.{name}") if isinstance(nested, dict) else None
        closed = base.schema.get("additionalProperties") is False
        hint = did_you_mean(name, list(properties)) or f"the schema lists {one_of(list(properties))}"
        self._report(
            line,
            f"{base.label} has no field {name!r} in the hook's schema",
            hint,
            name,
            "error" if closed else "warning",
        )
        return None

    def _step(self, name: str, line: int) -> Any:
        steps = self.scope.steps or {}
        info = steps.get(name)
        if info is None:
            if name in self.scope.later_steps:
                self._report(
                    line,
                    f"step {name!r} runs after this one",
                    "a step can only use results of earlier steps",
                    name,
                )
            else:
                known = list(steps)
                hint = did_you_mean(name, known) or (
                    f"earlier steps with an id: {', '.join(known)}"
                    if known
                    else "give the earlier step an id: to use its result"
                )
                self._report(line, f"no earlier step with id {name!r}", hint, name)
            return None
        if info.definition is not None:
            item = _Def(info.definition, info.label, info.extra)
            return _List(item) if info.is_list else item
        if info.keys is not None:
            return _Keys(tuple(sorted(info.keys)), f"result key of step {name!r}")
        return None

    def _report(
        self, line: int, message: str, hint: str | None, needle: str, severity: str = "error"
    ) -> None:
        self.findings.append(Finding(line, message, hint, needle, severity))
