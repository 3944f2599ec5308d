"""Adaptive Cards as Microsoft Teams accepts them: the schema ``teams.post``'s ``card:`` is checked
against, when rules are checked and again when the rendered card is sent.

The schema is a small vendored subset of the Adaptive Card schema, version 1.5
(https://adaptivecards.io/schemas/1.5.0/adaptive-card.json, the element reference at
https://adaptivecards.io/explorer/): the card's ``type`` and ``version``, the element, container,
input and action types that version defines and the properties each one requires. Other properties
are left to Teams, which ignores what it does not know. Teams renders versions up to 1.5 (Microsoft's
"Cards reference" for Teams: "Adaptive Card 1.5 ... supported"), so a higher ``version`` is refused
here rather than shown as an error card in the channel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from worker.hints import suggest

__all__ = ["ACTIONS", "ELEMENTS", "MAX_VERSION", "VERSIONS", "card_problem", "editor_schema", "text_card"]

#: What Teams renders (Workflows webhooks and bots alike); "1.5" is the highest.
VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5")
MAX_VERSION = VERSIONS[-1]
#: The version of the card ``teams.post`` builds around a plain ``text``: every Teams client shows it.
TEXT_CARD_VERSION = "1.4"

_ACTION_KINDS: dict[str, dict[str, Any]] = {
    "Action.OpenUrl": {"required": ["url"], "properties": {"url": {"type": "string"}}},
    "Action.Submit": {},
    "Action.Execute": {},
    "Action.ShowCard": {"required": ["card"], "properties": {"card": {"$ref": "#/$defs/card"}}},
    "Action.ToggleVisibility": {
        "required": ["targetElements"],
        "properties": {"targetElements": {"type": "array"}},
    },
}


def _items(ref: str) -> dict[str, Any]:
    return {"type": "array", "items": {"$ref": f"#/$defs/{ref}"}}


def _titled_values() -> dict[str, Any]:
    return {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["title", "value"],
            "properties": {"title": {"type": "string"}, "value": {"type": "string"}},
        },
    }


_ELEMENT_KINDS: dict[str, dict[str, Any]] = {
    "TextBlock": {"required": ["text"], "properties": {"text": {"type": "string"}}},
    "Image": {"required": ["url"], "properties": {"url": {"type": "string"}}},
    "Media": {
        "required": ["sources"],
        "properties": {
            "sources": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "object", "required": ["url"], "properties": {"url": {"type": "string"}}},
            }
        },
    },
    "RichTextBlock": {
        "required": ["inlines"],
        "properties": {
            "inlines": {
                "type": "array",
                "items": {
                    "anyOf": [
                        {"type": "string"},
                        {
                            "type": "object",
                            "required": ["text"],
                            "properties": {"type": {"const": "TextRun"}, "text": {"type": "string"}},
                        },
                    ]
                },
            }
        },
    },
    "Container": {"required": ["items"], "properties": {"items": _items("element")}},
    "ColumnSet": {
        "properties": {
            "columns": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"type": {"const": "Column"}, "items": _items("element")},
                },
            }
        }
    },
    "FactSet": {"required": ["facts"], "properties": {"facts": _titled_values()}},
    "ImageSet": {"required": ["images"], "properties": {"images": _items("element")}},
    "ActionSet": {"required": ["actions"], "properties": {"actions": _items("action")}},
    "Table": {
        "properties": {
            "columns": {"type": "array", "items": {"type": "object"}},
            "rows": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {"const": "TableRow"},
                        "cells": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["items"],
                                "properties": {"type": {"const": "TableCell"}, "items": _items("element")},
                            },
                        },
                    },
                },
            },
        }
    },
    "Input.Text": {"required": ["id"]},
    "Input.Number": {"required": ["id"]},
    "Input.Date": {"required": ["id"]},
    "Input.Time": {"required": ["id"]},
    "Input.Toggle": {"required": ["id", "title"]},
    "Input.ChoiceSet": {"required": ["id"], "properties": {"choices": _titled_values()}},
}

ELEMENTS = tuple(_ELEMENT_KINDS)
ACTIONS = tuple(_ACTION_KINDS)


def _dispatch(kinds: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """An object whose ``type`` is one of ``kinds``, then checked as that kind."""
    return {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"enum": list(kinds)}},
        "allOf": [
            {"if": {"properties": {"type": {"const": name}}}, "then": {"type": "object", **rules}}
            for name, rules in kinds.items()
            if rules
        ],
    }


SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$comment": "A subset of https://adaptivecards.io/schemas/1.5.0/adaptive-card.json",
    "type": "object",
    "required": ["type", "version", "body"],
    "allOf": [{"$ref": "#/$defs/card"}],
    "properties": {"version": {"enum": list(VERSIONS)}},
    "$defs": {
        # a card inside Action.ShowCard needs no version of its own
        "card": {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"const": "AdaptiveCard"},
                "body": _items("element"),
                "actions": _items("action"),
                "fallbackText": {"type": "string"},
                "msteams": {"type": "object"},
            },
        },
        "element": _dispatch(_ELEMENT_KINDS),
        "action": _dispatch(_ACTION_KINDS),
    },
}


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    Draft202012Validator.check_schema(SCHEMA)
    return Draft202012Validator(SCHEMA)


def normalise(card: Mapping[str, Any]) -> dict[str, Any]:
    """``card`` with a number ``version`` as the string the schema wants: YAML reads ``version: 1.5``
    as a float, and writing it unquoted is the usual slip."""
    out = dict(card)
    version = out.get("version")
    if isinstance(version, int | float) and not isinstance(version, bool):
        out["version"] = f"{float(version):.1f}"
    return out


def card_problem(
    card: Any, *, keep: Callable[[ValidationError], bool] = lambda _e: True
) -> tuple[str, str] | None:
    """``(message, hint)`` of the first thing wrong with ``card``, or None when Teams will take it.

    The message names the place (``card.body[1].text``) as a rule's author would look for it; only
    the errors ``keep`` accepts count (the rules check passes over unrendered templates).
    """
    error = best_match(e for e in _validator().iter_errors(card) if keep(e))
    if error is None:
        return None
    return _explain(error)


def _where(error: ValidationError) -> str:
    where = "card"
    for part in error.absolute_path:
        where += f"[{part}]" if isinstance(part, int) else f".{part}"
    return where


def _explain(error: ValidationError) -> tuple[str, str]:
    where = _where(error)
    path = list(error.absolute_path)
    if path == ["version"] and error.validator == "enum":
        return (
            f"{where}: {error.instance!r} is not an Adaptive Card version Teams accepts",
            f"use version: '{MAX_VERSION}' or lower (Teams renders Adaptive Cards up to {MAX_VERSION})",
        )
    if path and path[-1] == "type" and error.validator in ("enum", "const"):
        value: Any = error.validator_value
        expected = [str(v) for v in (value if error.validator == "enum" else [value])]
        kind = "action" if any(e.startswith("Action.") for e in expected) else "element"
        if path == ["type"]:
            kind = "card"
        return f"{where}: unknown {kind} type {error.instance!r}", suggest(str(error.instance), expected)
    if error.validator == "required" and not path:
        return (
            f"{where}: {error.message}",
            f"a card needs type: AdaptiveCard, version ('{MAX_VERSION}' or lower) and body",
        )
    if error.validator == "required":
        return (
            f"{where}: {error.message}",
            "see https://adaptivecards.io/explorer/ for what each element needs",
        )
    return f"{where}: {error.message}", "see https://adaptivecards.io/explorer/"


def text_card(text: str) -> dict[str, Any]:
    """The card ``teams.post`` sends for a plain ``text``: one wrapping TextBlock."""
    return {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": TEXT_CARD_VERSION,
        "body": [{"type": "TextBlock", "text": text, "wrap": True}],
    }


def editor_schema() -> dict[str, Any]:
    """The shallow schema the rule editor gets for ``card:`` (the checker applies the whole one)."""
    return {
        "type": "object",
        "description": f"An Adaptive Card (version {MAX_VERSION} or lower), as YAML; texts may be templates",
        "required": ["type", "version", "body"],
        "properties": {
            "type": {"const": "AdaptiveCard"},
            "version": {"enum": [*VERSIONS, *(float(v) for v in VERSIONS)]},
            "body": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {"type": {"enum": list(ELEMENTS)}},
                },
            },
            "actions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {"type": {"enum": list(ACTIONS)}},
                },
            },
        },
    }
