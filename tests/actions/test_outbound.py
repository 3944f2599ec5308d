"""The delivery client (urllib3) against real local servers: answers, failures, proxies."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest
from urllib3.exceptions import LocationValueError

from tests.fixtures.stubs import Reply, StubServer
from worker.actions.outbound import USER_AGENT, Outbound, TransportFailure


@pytest.fixture
def clients() -> Iterator[Callable[[float], Outbound]]:
    """Outbound clients with a given timeout, closed after the test."""
    made: list[Outbound] = []

    def make(timeout: float) -> Outbound:
        made.append(Outbound(timeout))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def outbound(clients: Callable[[float], Outbound]) -> Outbound:
    return clients(5.0)


def test_post_sends_compact_json_with_the_user_agent(outbound: Outbound, stub_server: StubServer) -> None:
    reply = outbound.post(f"{stub_server.url}/hook", json={"name": "Jörg", "n": 1}, headers={"X-A": "1"})
    assert reply.status_code == 200 and reply.text == "ok"
    [seen] = stub_server.requests
    assert seen.body == '{"name":"Jörg","n":1}'.encode()
    assert seen.header("Content-Type") == "application/json"
    assert seen.header("User-Agent") == USER_AGENT
    assert seen.header("X-A") == "1"


def test_answers_are_read_in_full_with_their_headers(outbound: Outbound, stub_server: StubServer) -> None:
    stub_server.script("/j", Reply(201, {"id": 7}, headers={"Retry-After": "3"}))
    reply = outbound.request("PUT", f"{stub_server.url}/j", body=b"{}")
    assert reply.status_code == 201
    assert reply.json() == {"id": 7}
    assert reply.headers["retry-after"] == "3"  # case-insensitive


def test_the_charset_of_the_answer_is_honoured(outbound: Outbound, stub_server: StubServer) -> None:
    body = "café".encode("latin-1")
    stub_server.script("/l", Reply(200, body, headers={"Content-Type": "text/plain; charset=ISO-8859-1"}))
    assert outbound.request("GET", f"{stub_server.url}/l").text == "café"
    stub_server.script("/x", Reply(200, b"caf\xc3\xa9", headers={"Content-Type": "text/plain; charset=nope"}))
    assert outbound.request("GET", f"{stub_server.url}/x").text == "café"  # unknown charset: UTF-8


def test_redirects_are_not_followed(outbound: Outbound, stub_server: StubServer) -> None:
    stub_server.script("/r", Reply(302, "", headers={"Location": "/elsewhere"}))
    reply = outbound.request("POST", f"{stub_server.url}/r", body=b"x")
    assert reply.status_code == 302
    assert [r.path for r in stub_server.requests] == ["/r"]


def test_a_refused_connection_was_surely_not_sent(outbound: Outbound) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens once it is closed
    with pytest.raises(TransportFailure) as failed:
        outbound.request("POST", f"http://127.0.0.1:{port}/hook", body=b"x")
    assert failed.value.sent is False
    assert failed.value.kind == "NewConnectionError"


def test_a_read_timeout_may_have_reached_the_receiver(
    clients: Callable[[float], Outbound], stub_server: StubServer
) -> None:
    stub_server.script("/slow", Reply(200, "late", delay=2.0))
    with pytest.raises(TransportFailure) as failed:
        clients(0.3).request("POST", f"{stub_server.url}/slow", body=b"x")
    assert failed.value.sent is True
    assert failed.value.kind == "ReadTimeoutError"


def test_a_connection_closed_mid_answer_may_have_applied(outbound: Outbound) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def hang_up() -> None:
            conn, _ = server.accept()
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
            conn.close()

        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        with pytest.raises(TransportFailure) as failed:
            outbound.request("POST", f"http://127.0.0.1:{server.getsockname()[1]}/", body=b"x")
        thread.join(5)
    assert failed.value.sent is True


def test_proxies_from_the_environment_are_used_unless_no_proxy_says_otherwise(
    clients: Callable[[float], Outbound], stub_server: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", stub_server.url)
    monkeypatch.setenv("NO_PROXY", "direct.invalid")
    client = clients(5.0)  # made after the environment is set: it reads its proxies once
    client.post("http://hooks.invalid/in", json={})
    with pytest.raises(TransportFailure):  # not sent through the proxy: resolving it fails
        client.post("http://direct.invalid/in", json={})
    assert [r.path for r in stub_server.requests] == ["http://hooks.invalid/in"]


def test_a_path_is_sent_percent_encoded_with_its_query(outbound: Outbound, stub_server: StubServer) -> None:
    outbound.request("GET", f"{stub_server.url}/matters/Jörg Smith?q=a b#ignored")
    assert [r.path for r in stub_server.requests] == ["/matters/J%C3%B6rg%20Smith?q=a%20b"]


def test_a_destination_whose_pool_was_dropped_gets_a_new_one(
    outbound: Outbound, stub_server: StubServer
) -> None:
    outbound.post(f"{stub_server.url}/a", json={})
    outbound._direct.clear()  # what the manager does to the least used pool past 32 destinations
    assert outbound.post(f"{stub_server.url}/b", json={}).status_code == 200
    assert [r.path for r in stub_server.requests] == ["/a", "/b"]


def test_a_url_without_a_host_is_refused_before_anything_is_sent(outbound: Outbound) -> None:
    with pytest.raises(LocationValueError):
        outbound.request("POST", "http:///hook", body=b"x")
