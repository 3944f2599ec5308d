"""Loading rule files: YAML -> model -> checks, every problem a located diagnostic.

A file holds one rule (a mapping) or several (a list). Each rule is loaded or rejected on its own:
a broken rule (reported with file:line:column and its id) never stops the other rules of its file,
or of other files, from loading. Rule ids are unique across all files: a rule reusing an id taken by
an earlier rule (in its file or an earlier file) is rejected, the earlier one loads. A file that
cannot be read or parsed as YAML at all contributes no rules (and is one broken entry).
"""

from __future__ import annotations

import copy
import dataclasses
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from worker.actions.base import all_step_types
from worker.hints import did_you_mean, one_of, suggest
from worker.practicepanther.customfields import Definitions
from worker.rules import branches
from worker.rules.checker import CheckConfig, RuleChecker
from worker.rules.diagnostics import Diagnostic
from worker.rules.model import RULE_KEYS, STEP_ID_RE, Rule
from worker.rules.ruleset import BrokenRule, LoadedRule, RuleSet, version_of
from worker.rules.source import Document, Path_, SourceMap, parse, read
from worker.rules.templating import RulesEnvironment, environment
from worker.settings import Settings, get_settings

RULE_SUFFIXES = (".yaml", ".yml")


@dataclass
class FileRules:
    """The outcome of loading one file: every rule of it, loaded or broken, in file order.

    ``readable`` is False when the file could not be read or parsed, or holds neither a rule nor a
    list of rules: nothing is known about the rules in it, so a hot reload keeps the last good
    version of each (see :mod:`worker.rules.watcher`).
    """

    file: str
    entries: list[LoadedRule | BrokenRule] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    readable: bool = True

    @property
    def rules(self) -> list[LoadedRule]:
        return [e for e in self.entries if isinstance(e, LoadedRule)]

    @property
    def broken(self) -> list[BrokenRule]:
        return [e for e in self.entries if isinstance(e, BrokenRule)]

    @property
    def ok(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)

    def _unreadable(self, error: Diagnostic) -> FileRules:
        self.diagnostics.append(error)
        self.entries.append(BrokenRule(None, (error,)))
        self.readable = False
        return self


def discover(paths: Iterable[Path]) -> list[Path]:
    """Rule files under ``paths`` (directories searched recursively; hidden files skipped)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix in RULE_SUFFIXES
                    and p.is_file()
                    and not any(part.startswith(".") for part in p.parts)
                )
            )
        else:
            found.append(path)
    return found


def load_document(document: Document, *, env: RulesEnvironment, config: CheckConfig) -> FileRules:
    """Validate and check every rule of a parsed file, each on its own: a rule with an error is a
    :class:`BrokenRule` entry and the rules around it still load."""
    result = FileRules(file=document.file)
    if document.error is not None:
        return result._unreadable(document.error)
    data, source = document.data, document.source
    result.diagnostics.extend(source.warnings)
    if data is None:
        result.diagnostics.append(
            source.diagnostic(
                (), "the file holds no rules", severity="warning", hint="a rule or a list of rules"
            )
        )
        return result
    if not isinstance(data, dict | list):
        return result._unreadable(
            source.diagnostic(
                (), "a rule file holds a rule (id, trigger, steps) or a list of rules", hint=_START_HINT
            )
        )
    items: list[tuple[Path_, Any]] = (
        [((index,), item) for index, item in enumerate(data)] if isinstance(data, list) else [((), data)]
    )
    seen: dict[str, Path_] = {}
    for base, item in items:
        entry, found = _entry(item, base, source, env, config, seen)
        result.diagnostics.extend(found)
        if isinstance(entry, LoadedRule):
            seen[entry.id] = base
        result.entries.append(entry)
    return result


_START_HINT = "start the rule with 'id:'"


def _entry(
    item: Any,
    base: Path_,
    source: SourceMap,
    env: RulesEnvironment,
    config: CheckConfig,
    seen: Mapping[str, Path_],
) -> tuple[LoadedRule | BrokenRule, list[Diagnostic]]:
    """One rule of a file, loaded or broken, and all it was told (each diagnostic naming its id)."""
    found: list[Diagnostic] = []
    loaded = _load_rule(item, base, source, env, config, found)
    rule_id = loaded.id if loaded is not None else _id_of(item)
    found = [dataclasses.replace(d, rule=rule_id) if d.rule is None else d for d in found]
    if loaded is not None and not any(d.is_error for d in found) and loaded.id in seen:
        first = source.value((*seen[loaded.id], "id"))
        found.append(
            source.diagnostic(
                (*base, "id"),
                f"duplicate rule id {loaded.id!r}",
                hint=f"already used at line {first[0] + 1}; rule ids must be unique",
                rule=loaded.id,
            )
        )
    errors = tuple(d for d in found if d.is_error)
    if loaded is not None and not errors:
        return loaded, found
    if not errors:  # never expected: a rule that did not validate always says why
        errors = (source.diagnostic(base, "this rule could not be loaded", hint=_START_HINT, rule=rule_id),)
        found.extend(errors)
    return BrokenRule(rule_id, errors), found


def _id_of(item: Any) -> str | None:
    rule_id = item.get("id") if isinstance(item, dict) else None
    return rule_id if isinstance(rule_id, str) and rule_id else None


def _load_rule(
    item: Any,
    base: Path_,
    source: SourceMap,
    env: RulesEnvironment,
    config: CheckConfig,
    out: list[Diagnostic],
) -> LoadedRule | None:
    if not isinstance(item, dict):
        message = "a rule is a mapping with id, trigger and steps"
        out.append(source.diagnostic(base, message, hint=_START_HINT))
        return None
    rule_id = item.get("id") if isinstance(item.get("id"), str) else None
    try:
        rule = Rule.model_validate(item)
    except ValidationError as exc:
        out.extend(model_errors(exc, item, source, base, rule_id))
        _check_rest(item, exc, source, base, env, config, out)
        return None
    problems = RuleChecker(rule, item, source, base, env, config).run()
    out.extend(problems)
    return LoadedRule(rule=rule, file=source.file, base=base, version=version_of(item), source=source)


_OPTIONAL_KEYS = frozenset({"description", "enabled", "mode", "rate_limit", "allow_own_changes", "dry_run"})


def _check_rest(
    item: dict[str, Any],
    exc: ValidationError,
    source: SourceMap,
    base: Path_,
    env: RulesEnvironment,
    config: CheckConfig,
    out: list[Diagnostic],
) -> None:
    """Report the catalogue and template problems of the parts that are valid too, so one run of
    ``rules check`` shows everything: the broken parts are swapped for neutral stand-ins (which
    cannot produce diagnostics of their own) and the rest is checked as usual."""
    lenient = copy.deepcopy(item)
    steps = lenient["steps"] if isinstance(lenient.get("steps"), list) else None
    conditions = lenient["conditions"] if isinstance(lenient.get("conditions"), list) else None
    for error in exc.errors():
        path = _data_path(item, tuple(error["loc"]))
        head = path[0] if path else None
        index = path[1] if len(path) > 1 and isinstance(path[1], int) else None
        if head in _OPTIONAL_KEYS:
            lenient.pop(str(head), None)
        elif head == "steps" and steps is not None and index is not None:
            _stand_in(lenient, _step_path(path))
        elif head == "conditions" and conditions is not None and index is not None:
            conditions[index] = "true"
        else:
            return
    try:
        rule = Rule.model_validate(lenient)
    except ValidationError:
        return
    out.extend(RuleChecker(rule, lenient, source, base, env, config).run())


def _step_path(path: Path_) -> Path_:
    """The step an error is in: the innermost one, a step of a decline branch
    (``steps, 0, with, on_decline, 1``) rather than the approval holding it."""
    found, keys = path[:2], branches.all_branch_fields()
    for at in range(3, len(path)):
        if isinstance(path[at], int) and path[at - 2] == "with" and path[at - 1] in keys:
            found = path[: at + 1]
    return found


def _stand_in(rule: dict[str, Any], path: Path_) -> None:
    """Swap the step at ``path`` for a neutral one (keeping a usable id, so later steps' uses of it
    are not reported too)."""
    parent: Any = rule
    for part in path[:-1]:
        parent = parent[part]
    original = parent[path[-1]]
    stand_in: dict[str, Any] = {"type": "log", "with": {"message": "-"}}
    if isinstance(original, dict) and _usable_step_id(original.get("id")):
        stand_in["id"] = original["id"]
    parent[path[-1]] = stand_in


def _usable_step_id(value: Any) -> bool:
    return isinstance(value, str) and bool(STEP_ID_RE.match(value))


def load_file(
    path: Path,
    *,
    display: str | None = None,
    env: RulesEnvironment | None = None,
    config: CheckConfig | None = None,
) -> FileRules:
    """Load one file from disk."""
    config = config or CheckConfig.from_settings(get_settings())
    return load_document(read(path, display), env=env or environment(config.timezone), config=config)


def load_text(text: str, file: str = "<rules>", *, config: CheckConfig | None = None) -> FileRules:
    """Load rules from a string (tests, ``ppw rules test`` on stdin)."""
    config = config or CheckConfig()
    return load_document(parse(text, file), env=environment(config.timezone), config=config)


def load_rules(
    paths: Sequence[Path] | None = None,
    *,
    settings: Settings | None = None,
    custom_fields: Definitions | None = None,
) -> RuleSet:
    """Load every rule file under ``paths`` (default: ``settings.rules_dir``) into a :class:`RuleSet`.

    ``custom_fields`` (``ppw rules check``) checks custom field labels and dropdown values against
    the account's definitions; a running worker loads without them, so a label renamed in
    PracticePanther is reported at refresh instead of breaking the rule.

    Rules with errors are left out (their diagnostics say why, and :attr:`RuleSet.broken` lists
    them); the other rules of their files load. Rule ids must be unique across files (a rule of a
    later file reusing an id is in error and left out).
    """
    settings = settings or get_settings()
    config = CheckConfig.from_settings(settings, custom_fields)
    env = environment(config.timezone)
    roots = list(paths) if paths else [settings.rules_dir]
    diagnostics: list[Diagnostic] = []
    for root in roots:
        if not root.exists():
            diagnostics.append(
                Diagnostic(
                    str(root),
                    1,
                    1,
                    "no such file or directory",
                    hint="check the path (default: PPW_RULES_DIR)",
                    code="io",
                )
            )
    files = [load_file(path, display=display_name(path), env=env, config=config) for path in discover(roots)]
    return assemble(files, diagnostics)


def assemble(files: Sequence[FileRules], diagnostics: Sequence[Diagnostic] = ()) -> RuleSet:
    """Combine loaded files; a rule reusing an id defined in an earlier file is left out (broken),
    the rest of its file still loads."""
    all_diagnostics = list(diagnostics)
    owners: dict[str, LoadedRule] = {}
    rules: list[LoadedRule] = []
    broken: list[BrokenRule] = []
    for file_rules in files:
        all_diagnostics.extend(file_rules.diagnostics)
        for entry in file_rules.entries:
            if isinstance(entry, LoadedRule) and (clash := id_clash(entry, owners)) is not None:
                all_diagnostics.append(clash)
                entry = BrokenRule(entry.id, (clash,))
            if isinstance(entry, BrokenRule):
                broken.append(entry)
                continue
            owners[entry.id] = entry
            rules.append(entry)
    return RuleSet(
        rules=tuple(rules),
        diagnostics=tuple(sorted(all_diagnostics, key=lambda d: (d.file, d.line, d.column))),
        files=tuple(f.file for f in files),
        broken=tuple(broken),
    )


def duplicate_ids(candidates: Iterable[LoadedRule], existing: Iterable[LoadedRule]) -> list[Diagnostic]:
    """Errors for rules in ``candidates`` whose id is already taken by a rule in ``existing``."""
    taken = {rule.id: rule for rule in existing}
    return [clash for loaded in candidates if (clash := id_clash(loaded, taken)) is not None]


def id_clash(loaded: LoadedRule, taken: Mapping[str, LoadedRule]) -> Diagnostic | None:
    """The error for ``loaded`` when a rule of another file in ``taken`` already has its id."""
    other = taken.get(loaded.id)
    if other is None or other.file == loaded.file:
        return None
    return loaded.source.diagnostic(
        (*loaded.base, "id"),
        f"duplicate rule id {loaded.id!r}",
        hint=f"also defined at {other.location}; rule ids must be unique across files",
        rule=loaded.id,
    )


def display_name(path: Path) -> str:
    """The path as shown in diagnostics: relative to the working directory when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# -- pydantic errors to diagnostics -------------------------------------------------------------------


def model_errors(
    exc: ValidationError, data: dict[str, Any], source: SourceMap, base: Path_, rule_id: str | None
) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    seen: set[tuple[Path_, str]] = set()
    for error in exc.errors():
        loc = tuple(error["loc"])
        path = _data_path(data, loc)
        message, hint, at_key, target = _describe(error, loc, path, data)
        hint = hint or _section_hint(target)
        if (target, message) in seen:
            continue
        seen.add((target, message))
        out.append(
            source.diagnostic(
                (*base, *target), message, hint=hint, rule=rule_id, at_key=at_key, code="schema"
            )
        )
    return out


def _data_path(data: Any, loc: tuple[Any, ...]) -> Path_:
    """The path in the rule's data that pydantic's ``loc`` points at.

    ``loc`` mixes data keys with union tags (``record``, ``log``, ``schedule`` ...), and a tag can
    also be a key (a schedule trigger has a ``schedule:`` key); the reading that follows the most
    of ``loc`` wins.
    """
    return tuple(_best_path(data, loc)[1])


def _best_path(node: Any, loc: tuple[Any, ...]) -> tuple[int, list[str | int]]:
    if not loc:
        return 0, []
    part, rest = loc[0], loc[1:]
    skipped = _best_path(node, rest)
    in_dict = isinstance(node, dict) and part in node
    in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
    if not (in_dict or in_list):
        return skipped
    score, path = _best_path(node[part], rest)
    if score + 1 > skipped[0]:
        return score + 1, [part, *path]
    return skipped


def _field_label(loc: tuple[Any, ...]) -> str:
    tags = {*_TAGS, *all_step_types()}
    names = [str(p) for p in loc if isinstance(p, str) and p not in tags]
    return names[-1] if names else "rule"


#: Union tags in error locations besides the step types (those come from the registry, which a step
#: type defined later extends).
_TAGS = {"record", "webhook", "schedule", "expr", "any", "all", "not", "choice", "branch"}


def _describe(
    error: Any, loc: tuple[Any, ...], path: Path_, data: Any
) -> tuple[str, str | None, bool, Path_]:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    hint = ctx.get("hint")
    label = _field_label(loc)
    on_mapping = bool(path) and isinstance(_node_at(data, path), dict)
    if "hint" in ctx and kind not in ("extra_forbidden", "missing"):
        return error["msg"], hint, on_mapping, path
    if kind == "extra_forbidden":
        key = str(loc[-1])
        known = _known_keys(loc[:-1])
        return (
            f"unknown key {key!r} in {_where(loc[:-1], path)}",
            suggest(key, known) if known else None,
            True,
            path,
        )
    if kind == "missing":
        key = str(loc[-1])
        if not path:
            where = "the rule"
        elif path[0] == "steps" and len(path) == 2:
            where = f"step {path[1] + 1}" if isinstance(path[1], int) else "the step"
        else:
            where = repr(_field_label(loc[:-1]))
        return f"{where} is missing {key!r}", _missing_hint(key), False, path
    if kind == "union_tag_invalid":
        tag = str(ctx.get("tag"))
        if loc and loc[0] == "steps":
            return f"unknown step type {tag!r}", suggest(tag, all_step_types()), False, (*path, "type")
        return f"{tag!r} is not valid here", None, False, path
    if kind == "union_tag_not_found":
        if loc and loc[0] == "steps":
            return "a step needs a 'type'", f"one of {', '.join(all_step_types())}", False, path
        return error["msg"], hint, False, path
    if kind == "literal_error":
        expected = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        value = error.get("input")
        near = did_you_mean(str(value), expected) if expected else None
        return (
            f"{value!r} is not a valid {_LABELS.get(label, label)}",
            near or (f"expected {one_of(expected)}" if expected else None),
            False,
            path,
        )
    if kind == "too_short" and label == "steps":
        return "a rule needs at least one step", None, False, path
    if kind in ("bool_type", "bool_parsing"):
        return f"{label} must be true or false", None, False, path
    if kind in ("string_type",):
        return f"{label} must be text", "quote the value", False, path
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{label} must be a mapping (key: value lines)", hint, False, path
    if kind == "list_type":
        return f"{label} must be a list", "write items as '- item' lines or [a, b]", False, path
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if (
        kind.endswith(
            (
                "_type",
                "_parsing",
                "too_short",
                "too_long",
                "greater_than",
                "less_than_equal",
                "greater_than_equal",
                "less_than",
            )
        )
        or message[:1].isupper()
    ):
        message = f"{label}: {message[0].lower()}{message[1:]}" if message else label
    return message, hint, False, path


def _node_at(data: Any, path: Path_) -> Any:
    node = data
    for part in path:
        node = node[part]
    return node


def _where(loc: tuple[Any, ...], path: Path_) -> str:
    """Which mapping an unknown key is in, in words: ``rule``, ``trigger``, ``with: of a log step``."""
    if len(path) <= 1:
        return "rule"
    if loc and loc[-1] == "with" and len(loc) >= 2 and isinstance(loc[-2], str):
        return f"the with: of a {loc[-2]} step"
    return _field_label(loc)


_LABELS = {
    "on": "event type (on:)",
    "per": "period",
    "not_found": "not_found choice",
    "result": "result choice",
    "verify": "verify scheme",
    "auth": "auth scheme",
}


def _section_hint(path: Path_) -> str:
    head = path[0] if path else None
    section = {"trigger": "Triggers", "steps": "Steps", "conditions": "Conditions"}.get(str(head))
    return f"see {section} in docs/rules.md" if section else "see docs/rules.md"


def _missing_hint(key: str) -> str | None:
    examples = {
        "id": "id: matter-closed-followup",
        "trigger": "trigger: {resource: matters, on: updated}",
        "steps": "steps: [{type: log, with: {message: ...}}]",
        "with": "every step has a with: block with its parameters",
        "resource": "e.g. resource: matters",
    }
    return examples.get(key)


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    model = _model_at(loc)
    if model is None:
        return list(RULE_KEYS) if not loc else []
    return [info.alias or name for name, info in model.model_fields.items()]


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    current: Any = Rule
    for part in loc:
        current = _descend(current, part)
        if current is None:
            return None
    current = _strip(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _strip(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _descend(tp: Any, part: Any) -> Any:
    tp = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, info in tp.model_fields.items():
            if part in (name, info.alias):
                return (
                    info.annotation
                    if not info.metadata
                    else typing.Annotated[(info.annotation, *info.metadata)]
                )
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is list and isinstance(part, int):
        return args[0]
    if origin is dict:
        return args[1]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for member in args:
            if typing.get_origin(member) is typing.Annotated:
                for meta in typing.get_args(member)[1:]:
                    if getattr(meta, "tag", None) == part:
                        return member
        for member in args:
            found = _descend(member, part)
            if found is not None:
                return found
    return None
