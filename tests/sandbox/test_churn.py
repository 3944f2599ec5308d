"""Churn's custom field changes and deletes, driven one step at a time and checked over HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from worker.practicepanther import customfields
from worker.sandbox import SandboxServer, obtain_tokens
from worker.sandbox.churn import STEPS, Churn

CUSTOM_STEPS = ("case_stage", "statute", "conflict_check", "delete_record")


@contextmanager
def _api(server: SandboxServer) -> Iterator[httpx.Client]:
    config = server.config
    token = obtain_tokens(server.url, config.client_id, config.client_secret, config.redirect_uris[0])
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    with httpx.Client(base_url=f"{server.url}/api/v2", headers=headers, timeout=10) as client:
        yield client


def _custom(api: httpx.Client, matter_id: str) -> dict[str, Any]:
    return customfields.typed_values("matters", api.get(f"/matters/{matter_id}").json())


@pytest.fixture
def server(sandbox_factory: Callable[..., SandboxServer]) -> SandboxServer:
    return sandbox_factory(seed=1)


def test_churn_moves_case_stage_sets_statute_and_ticks_conflict_check(server: SandboxServer) -> None:
    churn = Churn(server.state, 0)
    with _api(server) as api:
        for _ in range(5):
            done = churn.step("case_stage")
            _, matter_id, _, _, _, stage = done.split(" ")
            assert _custom(api, matter_id)["Case Stage"] == stage
        done = churn.step("statute")
        matter_id, day = done.split(" ")[1], done.rsplit(" ", 1)[1]
        assert _custom(api, matter_id)["Statute of Limitations"].date().isoformat() == day[:10]
        matter_id = churn.step("conflict_check").split(" ")[1]
        custom = _custom(api, matter_id)
        assert custom["Conflict Check"] is True
        assert "Case Number" in custom  # the matter's other values are kept


def test_churn_deletes_records_from_listings_and_get(server: SandboxServer) -> None:
    churn = Churn(server.state, 0)
    with _api(server) as api:
        paths = {"task": "/tasks", "note": "/notes"}
        counts = {kind: int(api.get(f"{path}/$count").text) for kind, path in paths.items()}
        deleted: dict[str, list[str]] = {"task": [], "note": []}
        for _ in range(6):
            kind, record_id, verb = churn.step("delete_record").split(" ")
            assert verb == "deleted"
            deleted[kind].append(record_id)
        for kind, path in paths.items():
            listed = {r["id"] for r in api.get(path).json()}
            assert not listed & set(deleted[kind])
            assert int(api.get(f"{path}/$count").text) == counts[kind] - len(deleted[kind])
            for record_id in deleted[kind]:
                response = api.get(f"{path}/{record_id}")
                assert response.status_code == 404
                assert response.json() == {"message": "No record was found with the given id."}


def test_churn_is_deterministic_with_the_seed(sandbox_factory: Callable[..., SandboxServer]) -> None:
    def run(server: SandboxServer) -> tuple[list[str], list[Any]]:
        churn = Churn(server.state, 0)
        done = [churn.step(kind) for kind in CUSTOM_STEPS * 4]
        with _api(server) as api:
            return done, [m["custom_field_values"] for m in api.get("/matters").json()]

    first, second = run(sandbox_factory(seed=3)), run(sandbox_factory(seed=3))
    assert first == second
    assert all(entry != "nothing" for entry in first[0])


def test_unweighted_steps_are_refused_and_the_new_ones_are_drawn() -> None:
    assert set(CUSTOM_STEPS) <= set(STEPS)
    assert all(weight > 0 for _method, weight in STEPS.values())
    with pytest.raises(ValueError, match="unknown churn step"):
        Churn.step(object.__new__(Churn), "nap")
