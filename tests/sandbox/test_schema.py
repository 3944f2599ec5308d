"""Every list and get-by-id answer validates against the swagger's own definitions.

The check is generated from the swagger: for every list path of the catalogue (custom field and
tag scopes included) and every get-by-id path, the records must match the definition the path
declares, with ``additionalProperties: false`` so no undeclared field (an internal attribute, a
``created_at`` on a contact) slips out. Swagger 2.0 has no ``nullable``; the API emits ``null``
for empty values, so optional properties also accept ``null``. ``format: date-time`` accepts the
naive ISO form the live API emits.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime
from typing import Any

import httpx
import jsonschema
import pytest
from jsonschema import Draft4Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT4

from worker.practicepanther import resources

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}$")
FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if isinstance(value, str):
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


@FORMATS.checks("uuid", raises=ValueError)
def _uuid(value: object) -> bool:
    if isinstance(value, str) and not re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", value):
        raise ValueError(value)
    return True


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A definition with closed properties and ``null`` allowed where the value is optional."""
    result = copy.deepcopy(schema)
    required = set(result.get("required", []))
    result["additionalProperties"] = False
    for name, prop in result.get("properties", {}).items():
        if name in required:
            continue
        if "$ref" in prop:
            result["properties"][name] = {"anyOf": [{"$ref": prop["$ref"]}, {"type": "null"}]}
        elif "type" in prop:
            prop["type"] = [prop["type"], "null"]
            if "enum" in prop:
                prop["enum"] = [*prop["enum"], None]
    return result


def _validator(definition: str) -> Draft4Validator:
    swagger = resources.swagger()
    document = {"definitions": {name: _strict(d) for name, d in swagger["definitions"].items()}}
    registry: Registry[Any] = Registry().with_resource("urn:swagger", DRAFT4.create_resource(document))
    schema = {"$ref": f"urn:swagger#/definitions/{definition}"}
    return Draft4Validator(schema, registry=registry, format_checker=FORMATS)


def _response_definition(path: str) -> str:
    schema = resources.swagger()["paths"][path]["get"]["responses"]["200"]["schema"]
    ref = schema.get("$ref") or schema.get("items", {}).get("$ref")
    return str(ref).rsplit("/", 1)[-1]


LIST_PATHS = sorted(
    (resource.name, path)
    for resource in resources.catalogue().values()
    for path in resource.list_paths.values()
)
ITEM_RESOURCES = sorted(r.name for r in resources.catalogue().values() if r.can_get)


def _check(validator: Draft4Validator, record: dict[str, Any], where: str) -> None:
    errors = sorted(validator.iter_errors(record), key=lambda e: list(e.path))
    assert not errors, f"{where}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


@pytest.mark.parametrize(("resource", "path"), LIST_PATHS)
def test_list_answers_follow_the_swagger(api: httpx.Client, resource: str, path: str) -> None:
    response = api.get(path.removeprefix("/api/v2"))
    assert response.status_code == 200
    records = response.json()
    assert isinstance(records, list) and records, f"{path} returned no records to check"
    validator = _validator(_response_definition(path))
    for record in records:
        _check(validator, record, path)
        for key in ("created_at", "updated_at"):
            if key in record:
                assert TIMESTAMP.match(record[key]), f"{path}: {key}={record[key]!r} is not naive ISO with ms"


@pytest.mark.parametrize("resource", ITEM_RESOURCES)
def test_get_by_id_answers_follow_the_swagger(api: httpx.Client, resource: str) -> None:
    res = resources.get(resource)
    listing = api.get(next(iter(res.list_paths.values())).removeprefix("/api/v2"), params={"$top": 3}).json()
    assert listing
    path = f"{res.path}/{{id}}"
    validator = _validator(_response_definition(path))
    for record in listing:
        response = api.get(f"/{res.segment}/{record['id']}")
        assert response.status_code == 200
        _check(validator, response.json(), path)


def test_payments_get_by_id_is_the_detail_model(api: httpx.Client) -> None:
    payment = api.get("/payments", params={"$top": 1}).json()[0]
    assert "refundedAmount" not in payment
    detail = api.get(f"/payments/{payment['id']}").json()
    assert detail["refundedAmount"] == 0.0
    assert {k: v for k, v in detail.items() if k != "refundedAmount"} == payment


def test_models_without_timestamps_never_emit_them(api: httpx.Client) -> None:
    for path in ("/contacts", "/relationships", "/bankaccounts", "/customfields/matter"):
        for record in api.get(path).json():
            assert "created_at" not in record and "updated_at" not in record, path


def test_users_me_is_a_user(api: httpx.Client) -> None:
    me = api.get("/users/me").json()
    _check(_validator("User"), me, "/users/me")
    assert me["display_name"] == "Alex Morgan"


def test_the_strict_check_catches_an_undeclared_field() -> None:
    with pytest.raises(jsonschema.ValidationError):
        _validator("Contact").validate({"id": "c6d8900f-d137-406e-bee3-e0ef8bf08f64", "created_at": "x"})


def test_the_strict_check_catches_a_bad_timestamp_and_a_wrong_type() -> None:
    with pytest.raises(jsonschema.ValidationError):
        _validator("Matter").validate({"created_at": "yesterday"})
    with pytest.raises(jsonschema.ValidationError):
        _validator("Matter").validate({"name": "x", "status": "Open", "number": "7"})
    _validator("Matter").validate({"name": "x", "status": "Open", "created_at": "2026-04-04T10:11:12.345"})
