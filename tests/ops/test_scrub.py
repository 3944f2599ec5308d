"""The scrubber masks secrets by value and by shape, in text and in nested structures."""

from __future__ import annotations

from typing import Any

import pytest

from worker.observability.scrub import MASK, Scrubber

from .conftest import CLIENT_SECRET, SLACK_URL


@pytest.fixture
def scrubber() -> Scrubber:
    return Scrubber([CLIENT_SECRET, "short", "ab"])


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        ("Authorization: Bearer eyJhbGciOi.J9.abc-def_ghi", "eyJhbGciOi.J9.abc-def_ghi"),
        ("auth header 'Basic dXNlcjpwYXNz'", "dXNlcjpwYXNz"),
        ("GET /callback?state=xyz&code=Spl0xAuthCode123&x=1", "Spl0xAuthCode123"),
        ("POST /OAuth/Token grant_type=refresh_token&refresh_token=rt-42abc&client_id=c1", "rt-42abc"),
        ('{"access_token": "at-secret-1", "expires_in": 86400}', "at-secret-1"),
        ("{'refresh_token': 'rt-secret-2', 'token_type': 'bearer'}", "rt-secret-2"),
        ('{"code":"authcode-7"}', "authcode-7"),
        ('{"client_secret" : "with \\"quote\\" inside"}', "inside"),
        ("TokenSet(access_token=at-repr-3, refresh_token=rt-repr-4)", "rt-repr-4"),
        (f"posting to {SLACK_URL} failed", "XXXXXXXXXXXXXXXXXXXXXXXX"),
        ("https://hooks.slack.com/workflows/T1/A2/345/abcdef", "abcdef"),
        ("broker amqp://ppw:rabbit-pass@mq:5672/", "rabbit-pass"),
        (f"token endpoint said invalid_client for {CLIENT_SECRET}", CLIENT_SECRET),
        ("password=hunter22;", "hunter22"),
    ],
)
def test_text_masks_secret_shapes(scrubber: Scrubber, text: str, leaked: str) -> None:
    masked = scrubber.text(text)
    assert leaked not in masked
    assert MASK in masked


def test_text_keeps_what_the_value_is(scrubber: Scrubber) -> None:
    masked = scrubber.text("GET /api?x=1&code=abc123 with Bearer tok.en and refresh_token=r1")
    assert masked == f"GET /api?x=1&code={MASK} with Bearer {MASK} and refresh_token={MASK}"


def test_text_leaves_ordinary_words_alone(scrubber: Scrubber) -> None:
    text = "exit code=3 for matter 'Smith v. Jones' status_code=200 (about 5 minutes)"
    assert scrubber.text(text) == text


def test_short_secrets_are_not_masked_by_value(scrubber: Scrubber) -> None:
    # "ab" is below the minimum length; "short" is not.
    assert scrubber.text("about a short note") == f"about a {MASK} note"


def test_longest_secret_wins() -> None:
    scrubber = Scrubber(["abcd", "abcdefgh"])
    assert scrubber.text("x abcdefgh y") == f"x {MASK} y"


def test_add_learns_runtime_tokens() -> None:
    scrubber = Scrubber()
    assert scrubber.text("issued at-7f6e5d") == "issued at-7f6e5d"
    scrubber.add("at-7f6e5d")
    assert scrubber.text("issued at-7f6e5d") == f"issued {MASK}"


def test_value_masks_secret_keys_and_nested_text(scrubber: Scrubber) -> None:
    data: dict[str, Any] = {
        "headers": {"Authorization": "Bearer abc", "X-Api-Key": "k-1", "Accept": "application/json"},
        "form": [("grant_type", "refresh_token"), {"refresh_token": 12345}],
        "note": f"secret is {CLIENT_SECRET}",
        "empty_token": "",
        "count": 3,
    }
    masked = scrubber.value(data)
    assert masked["headers"] == {"Authorization": MASK, "X-Api-Key": MASK, "Accept": "application/json"}
    assert masked["form"][1] == {"refresh_token": MASK}
    assert masked["note"] == f"secret is {MASK}"
    assert masked["empty_token"] == ""
    assert masked["count"] == 3
    assert data["headers"]["Authorization"] == "Bearer abc", "the input is not modified"


def test_repr_does_not_show_secrets(scrubber: Scrubber) -> None:
    assert CLIENT_SECRET not in repr(scrubber)
