"""OData on list endpoints: every operator, function and literal kind, ordering, paging, $count."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

OURS = "startswith(name,'QQ')"


def _post(api: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post(path, json=body)
    assert response.status_code == 200, response.text
    record: dict[str, Any] = response.json()
    return record


@pytest.fixture
def data(api: httpx.Client) -> dict[str, Any]:
    account = _post(api, "/accounts", {"company_name": "QQ Holdings", "primary_contact": {"first_name": "Q"}})
    user = api.get("/users", params={"$filter": "first_name eq 'Priya'"}).json()[0]
    specs = [
        ("QQ Alpha", "Open", "2026-03-01T00:00:00", "first", ["Litigation"]),
        ("QQ Beta", "Closed", "2026-03-05T00:00:00", None, []),
        ("QQ gamma", "Pending", "2026-03-10T00:00:00", "third", ["Urgent", "Litigation"]),
        ("QQ Delta", "Open", "2026-03-10T00:00:00", "fourth", []),
    ]
    matters = {}
    for name, status, opened, notes, tags in specs:
        body: dict[str, Any] = {
            "name": name,
            "status": status,
            "open_date": opened,
            "notes": notes,
            "tags": tags,
        }
        body["account_ref"] = {"id": account["id"]}
        matters[name.split()[1].lower()] = _post(api, "/matters", body)
    entries = []
    for hours, billable, rate in ((0.5, True, 100.0), (1.0, False, 200.0), (2.5, True, 300.0)):
        body = {
            "matter_ref": {"id": matters["alpha"]["id"]},
            "billed_by_user_ref": {"id": user["id"]},
            "date": "2026-03-02T00:00:00",
            "hours": hours,
            "rate": rate,
            "is_billable": billable,
            "description": f"QQ work {hours}",
        }
        entries.append(_post(api, "/timeentries", body))
    return {"account": account, "matters": matters, "entries": entries, "user": user}


def _names(api: httpx.Client, condition: str, **params: Any) -> list[str]:
    response = api.get("/matters", params={"$filter": f"{OURS} and ({condition})", **params})
    assert response.status_code == 200, response.text
    return [m["name"] for m in response.json()]


def _bad(api: httpx.Client, path: str, **params: Any) -> str:
    response = api.get(path, params=params)
    assert response.status_code == 400, response.text
    message: str = response.json()["message"]
    return message


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("status eq 'Open'", {"QQ Alpha", "QQ Delta"}),
        ("status ne 'Open'", {"QQ Beta", "QQ gamma"}),
        ("open_date gt 2026-03-05T00:00:00Z", {"QQ gamma", "QQ Delta"}),
        ("open_date ge 2026-03-05T00:00:00Z", {"QQ Beta", "QQ gamma", "QQ Delta"}),
        ("open_date lt 2026-03-05T00:00:00Z", {"QQ Alpha"}),
        ("open_date le 2026-03-05T00:00:00Z", {"QQ Alpha", "QQ Beta"}),
        ("open_date eq 2026-03-05T02:00:00+02:00", {"QQ Beta"}),
        ("open_date eq 2026-03-10", {"QQ gamma", "QQ Delta"}),
        ("notes eq null", {"QQ Beta"}),
        ("notes ne null", {"QQ Alpha", "QQ gamma", "QQ Delta"}),
        ("status eq 'Open' and notes eq 'fourth'", {"QQ Delta"}),
        ("status eq 'Closed' or notes eq 'first'", {"QQ Alpha", "QQ Beta"}),
        ("not (status eq 'Open')", {"QQ Beta", "QQ gamma"}),
        ("(status eq 'Open' or status eq 'Closed') and not (notes eq null)", {"QQ Alpha", "QQ Delta"}),
        ("contains(name,'mm')", {"QQ gamma"}),
        ("contains(name,'GAMMA')", set()),
        ("contains(tolower(name),'gamma')", {"QQ gamma"}),
        ("toupper(name) eq 'QQ GAMMA'", {"QQ gamma"}),
        ("endswith(name,'ta')", {"QQ Beta", "QQ Delta"}),
        ("startswith(name,'QQ A')", {"QQ Alpha"}),
        ("length(name) eq 8", {"QQ Alpha", "QQ gamma", "QQ Delta"}),
        ("status in ('Closed','Pending')", {"QQ Beta", "QQ gamma"}),
        ("tags/any(t: t eq 'Litigation')", {"QQ Alpha", "QQ gamma"}),
        ("tags/any()", {"QQ Alpha", "QQ gamma"}),
        ("year(open_date) eq 2026 and day(open_date) eq 1", {"QQ Alpha"}),
        ("contains(account_ref/display_name,'QQ Hold')", {"QQ Alpha", "QQ Beta", "QQ gamma", "QQ Delta"}),
        ("name eq 'QQ ''quoted'''", set()),
    ],
)
def test_filter_operators_functions_and_literals(
    api: httpx.Client, data: dict[str, Any], condition: str, expected: set[str]
) -> None:
    assert set(_names(api, condition)) == expected


def test_guid_literal_and_nested_reference_paths(api: httpx.Client, data: dict[str, Any]) -> None:
    alpha = data["matters"]["alpha"]["id"]
    found = api.get("/timeentries", params={"$filter": f"matter_ref/id eq {alpha}"}).json()
    assert {e["id"] for e in found} == {e["id"] for e in data["entries"]}
    quoted = api.get("/timeentries", params={"$filter": f"matter_ref/id eq '{alpha}'"}).json()
    assert len(quoted) == 3
    assert len(api.get("/matters", params={"$filter": f"id eq {alpha}"}).json()) == 1


def test_numbers_booleans_and_arithmetic(api: httpx.Client, data: dict[str, Any]) -> None:
    alpha = data["matters"]["alpha"]["id"]

    def hours(condition: str) -> list[float]:
        params = {"$filter": f"matter_ref/id eq {alpha} and ({condition})", "$orderby": "hours"}
        response = api.get("/timeentries", params=params)
        assert response.status_code == 200, response.text
        return [e["hours"] for e in response.json()]

    assert hours("hours gt 0.5") == [1.0, 2.5]
    assert hours("hours le 1") == [0.5, 1.0]
    assert hours("is_billable eq true") == [0.5, 2.5]
    assert hours("is_billable") == [0.5, 2.5]
    assert hours("not is_billable") == [1.0]
    assert hours("hours mul rate gt 100") == [1.0, 2.5]
    assert hours("hours add 1 eq 2") == [1.0]
    assert hours("-hours lt -2") == [2.5]
    assert hours("round(hours) eq 3") == [2.5]


def test_help_article_queries(api: httpx.Client, data: dict[str, Any]) -> None:
    count = api.get("/timeentries/$count")
    assert count.status_code == 200 and count.headers["content-type"].startswith("text/plain")
    assert int(count.text) == len(api.get("/timeentries").json())
    dates = [e["date"] for e in api.get("/timeentries", params={"$orderby": "date desc"}).json()]
    assert dates == sorted(dates, reverse=True)
    priya = api.get(
        "/timeentries", params={"$filter": "contains(billed_by_user_ref/display_name,'Priya')"}
    ).json()
    assert priya and all(e["billed_by_user_ref"]["display_name"] == "Priya Shah" for e in priya)
    assert {e["id"] for e in data["entries"]} <= {e["id"] for e in priya}
    legacy = api.get("/timeentries", params={"$filter": "contains(user/name, 'Priya')"}).json()
    assert legacy == priya
    everyone = api.get("/timeentries", params={"$filter": "contains(user/name, '')"}).json()
    assert len(everyone) == int(count.text)


def test_orderby_several_keys(api: httpx.Client, data: dict[str, Any]) -> None:
    names = _names(api, "true eq true", **{"$orderby": "open_date desc,name asc"})
    assert names == ["QQ Delta", "QQ gamma", "QQ Beta", "QQ Alpha"]
    names = _names(api, "true eq true", **{"$orderby": "status, open_date desc"})
    assert names == ["QQ Beta", "QQ Delta", "QQ Alpha", "QQ gamma"]
    nulls_first = _names(api, "true eq true", **{"$orderby": "notes asc"})
    assert nulls_first[0] == "QQ Beta"
    by_account = api.get("/matters", params={"$orderby": "account_ref/display_name desc", "$top": 5}).json()
    shown = [m["account_ref"]["display_name"] for m in by_account]
    assert shown == sorted(shown, reverse=True)


def test_top_skip_and_count(api: httpx.Client, data: dict[str, Any]) -> None:
    params = {"$filter": OURS, "$orderby": "name"}
    everything = [m["name"] for m in api.get("/matters", params=params).json()]
    assert everything == ["QQ Alpha", "QQ Beta", "QQ Delta", "QQ gamma"]
    assert [m["name"] for m in api.get("/matters", params={**params, "$top": 2}).json()] == everything[:2]
    page = api.get("/matters", params={**params, "$top": 2, "$skip": 1}).json()
    assert [m["name"] for m in page] == everything[1:3]
    assert api.get("/matters", params={**params, "$skip": 10}).json() == []
    assert api.get("/matters", params={**params, "$top": 0}).json() == []
    count = api.get("/matters/$count", params={"$filter": OURS, "$top": 1})
    assert count.text == "4"
    assert api.get("/matters/$count", params={"status": "Closed", "$filter": OURS}).text == "1"


def test_select_projects_fields(api: httpx.Client, data: dict[str, Any]) -> None:
    rows = api.get("/matters", params={"$filter": OURS, "$select": "id,name"}).json()
    assert rows and all(set(r) == {"id", "name"} for r in rows)
    _bad(api, "/matters", **{"$select": "nonsense"})


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"$filter": "updated_at gt 2026-04-06T00:00:00"}, "time zone"),
        ({"$filter": "no_such_field eq 1"}, "no_such_field"),
        ({"$filter": "account_ref/nope eq 'x'"}, "nope"),
        ({"$filter": "updated_at gt 'yesterday'"}, "incompatible"),
        ({"$filter": "number eq 'one'"}, "incompatible"),
        ({"$filter": "name eq"}, "not valid"),
        ({"$filter": "contains(number, 'x')"}, "contains"),
        ({"$filter": "nosuchfunction(name)"}, "not valid"),
        ({"$filter": "name"}, "boolean"),
        ({"$orderby": "nope desc"}, "nope"),
        ({"$orderby": "name sideways"}, "orderby"),
        ({"$orderby": "assigned_to_users"}, "sortable"),
        ({"$top": "-1"}, "$top"),
        ({"$top": "lots"}, "$top"),
        ({"$skip": "-3"}, "$skip"),
        ({"$expand": "account_ref"}, "$expand"),
    ],
)
def test_invalid_queries_are_400(api: httpx.Client, params: dict[str, str], fragment: str) -> None:
    assert fragment.lower() in _bad(api, "/matters", **params).lower()


def test_timezone_aware_literal_is_accepted(api: httpx.Client) -> None:
    everything = api.get("/matters/$count").text
    since_epoch = api.get("/matters/$count", params={"$filter": "updated_at gt 2000-01-01T00:00:00Z"}).text
    assert since_epoch == everything
    offset = api.get("/matters/$count", params={"$filter": "updated_at gt 2000-01-01T00:00:00.000+05:30"})
    assert offset.text == everything


def test_filters_apply_to_scoped_lists(api: httpx.Client) -> None:
    fields = api.get("/customfields/matter", params={"$filter": "value_type eq 'Date'"}).json()
    assert [f["label"] for f in fields] == ["Court Date", "Statute of Limitations"]
    tags = api.get("/tags/matter", params={"$filter": "name eq 'Urgent'"}).json()
    assert [t["name"] for t in tags] == ["Urgent"]


def test_lambdas_over_reference_collections(api: httpx.Client) -> None:
    user = api.get("/users", params={"$filter": "first_name eq 'Priya'"}).json()[0]
    by_param = api.get("/tasks", params={"assigned_to_user_id": user["id"]}).json()
    by_lambda = api.get(
        "/tasks", params={"$filter": f"assigned_to_users/any(u: u/id eq {user['id']})"}
    ).json()
    assert by_lambda and by_lambda == by_param
    only_priya = api.get(
        "/tasks", params={"$filter": "assigned_to_users/all(u: startswith(u/display_name,'Priya'))"}
    ).json()
    assert all({u["display_name"] for u in t["assigned_to_users"]} <= {"Priya Shah"} for t in only_priya)
    solo = [t for t in by_param if [u["id"] for u in t["assigned_to_users"]] == [user["id"]]]
    assert solo and {t["id"] for t in solo} <= {t["id"] for t in only_priya}
    assert _bad(api, "/tasks", **{"$filter": "assigned_to_users/any(u: u/nope eq 1)"})
