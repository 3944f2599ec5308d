"""Access tokens expiring mid-poll, and PracticePanther's clock running ahead of or behind ours.

Tokens: every access token the sandbox has issued is expired again and again while ``ppw run``
primes with two-record pages (dozens of requests per poll) and then runs rules. Each expiry costs
one refresh, never two at once (a second refresh with the same single-use refresh token would lock
the integration out: ``invalid_grant``), and the rotated refresh token in the store keeps working.

Clocks: the sandbox stamps records ten minutes in the future, then a minute in the past. The
cursor never trusts a timestamp beyond ``now + overlap`` and the overlap covers a clock that is
behind, so every change is seen once, and changes after the clocks agree again are seen too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tests.chaos.conftest import Chaos
from tests.chaos.harness import eventually
from tests.fixtures.client import TEST_RETRY_WAIT
from worker.practicepanther.client import PracticePantherClient


def test_tokens_expire_mid_poll(chaos_factory: Callable[..., Chaos], redis_url: str) -> None:
    chaos = chaos_factory(state_url=redis_url, broker_url=redis_url, PPW_POLL_PAGE_SIZE="2")
    mark = chaos.admin.mark()
    stop = threading.Event()
    expiries = 0

    def expire_now_and_then() -> None:
        nonlocal expiries
        while not stop.wait(0.4):
            chaos.admin.faults(expire_tokens=True)
            expiries += 1

    chaos.admin.faults(latency=0.05)  # priming 43 matters two at a time now takes over a second
    storm = threading.Thread(target=expire_now_and_then, daemon=True)
    storm.start()
    try:
        worker = chaos.process("run").start(wait_ready=False)
        eventually(chaos.primed, 60, "priming through expiring tokens")
        chaos.admin.faults(latency=0)
        closed = chaos.close(chaos.open_matters(4))
        chaos.wait_done(closed)
    finally:
        stop.set()
        storm.join(5)
    chaos.assert_invariants(closed)

    log = chaos.admin.requests(mark)
    token_calls = [r for r in log["requests"] if r["path"] == "/OAuth/Token"]
    refreshes = [r for r in token_calls if r.get("grant_type") == "refresh_token"]
    assert refreshes, "expired tokens were refreshed"
    assert all(r["status"] == 200 for r in token_calls), "no refresh was refused (invalid_grant)"
    assert len(refreshes) <= expiries + 1, "at most one refresh per expiry, never two at once"
    # the first page of a poll has no $filter; later pages page on by updated_at ($filter ... ge ...)
    later_pages = [r for r in log["requests"] if r["path"] == "/api/v2/matters" and "filter" in r["query"]]
    assert [r for r in later_pages if r["status"] == 401], "a token expired in the middle of a poll"
    assert eventually(lambda: worker.ready()[0] == 200, 20, "/readyz to be green")

    # the refresh token left in the store is the live one: a new process can use it
    chaos.admin.faults(expire_tokens=True)
    with PracticePantherClient(
        chaos.settings, chaos.store, retry_wait=TEST_RETRY_WAIT, retry_wait_max=TEST_RETRY_WAIT
    ) as client:
        assert client.me()["id"]


def test_clock_skew_behind_then_ahead(chaos_factory: Callable[..., Chaos], redis_url: str) -> None:
    chaos = chaos_factory(state_url=redis_url, broker_url=redis_url)
    chaos.process("run").start()
    eventually(chaos.primed, 20, "the first poll to prime matters")
    matters = chaos.open_matters(6)

    chaos.admin.faults(clock_skew=-60)  # PracticePanther a minute behind: within the overlap
    behind = chaos.close(matters[:2])
    chaos.wait_done(behind, timeout=30)

    chaos.admin.faults(clock_skew=600)  # now ten minutes ahead
    ahead = chaos.close(matters[2:4])
    chaos.wait_done(ahead, timeout=30)
    cursor = chaos.cursor()
    assert cursor is not None and cursor.position is not None
    assert cursor.position <= datetime.now(UTC) + timedelta(seconds=chaos.settings.poll_overlap + 5), (
        "a timestamp from the future is not trusted as the cursor"
    )

    chaos.admin.faults(clock_skew=0)  # the clocks agree again
    agreed = chaos.close(matters[4:])
    chaos.assert_invariants(behind + ahead + agreed, cursor_from=agreed)
    chaos.assert_still_live()


def test_clock_skew_ahead_then_behind(chaos_factory: Callable[..., Chaos], redis_url: str) -> None:
    chaos = chaos_factory(state_url=redis_url, broker_url=redis_url)
    chaos.process("run").start()
    eventually(chaos.primed, 20, "the first poll to prime matters")
    matters = chaos.open_matters(4)

    chaos.admin.faults(clock_skew=600)
    ahead = chaos.close(matters[:2])
    chaos.wait_done(ahead, timeout=30)

    chaos.admin.faults(clock_skew=-60)  # corrected past ours, still within the overlap
    behind = chaos.close(matters[2:])
    chaos.wait_done(behind, timeout=15)
