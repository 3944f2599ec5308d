"""PracticePanther goes down, then storms (429 with Retry-After, 5xx, slow answers), then recovers.

``ppw run`` keeps polling through it: while every call fails, nothing advances and ``/readyz``
says the polls are failing; during the storm the retries get through; afterwards every change
made during the trouble has fired its rule exactly once and the cursor is where it should be.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.chaos.conftest import Chaos
from tests.chaos.harness import eventually


def test_outage_and_storm_lose_nothing_and_are_reported(
    chaos_factory: Callable[..., Chaos], redis_url: str
) -> None:
    chaos = chaos_factory(state_url=redis_url, broker_url=redis_url)
    worker = chaos.process("run").start()
    watch = chaos.watch(worker)
    eventually(chaos.primed, 20, "the first poll to prime matters")
    before = chaos.cursor()
    first, second = chaos.open_matters(6)[:3], chaos.open_matters(6)[3:]

    # outage: every API call answers 5xx
    chaos.admin.faults(rate_5xx=1.0)
    outage_started = time.time()
    closed = chaos.close(first)
    watch.wait_for("polls", timeout=20)
    assert chaos.cursor() == before, "a failed poll must not move the cursor"
    assert not [r for r in chaos.runs() if r.rule_id == "chaos-closed-matter"], "nothing fires while down"
    failing = watch.reported("polls", outage_started, time.time())[-1]
    assert "not polled successfully" in failing.failing["polls"]

    # storm: a third of the calls rate-limited, a third failing, all of them slow
    storm = chaos.admin.mark()
    chaos.admin.faults(rate_5xx=0.3, rate_429=0.3, retry_after=1, latency=0.2)
    closed += chaos.close(second)

    def weathered() -> bool:  # runs got through, and the storm really hit them with both kinds
        served = chaos.admin.requests(storm)["by_status"]
        hit = served.get("429") and any(served.get(code) for code in ("500", "502", "503"))
        return bool(hit) and len(chaos.deliveries()) >= 3

    eventually(weathered, 60, "some runs to get through a storm of 429s and 5xx")
    chaos.admin.faults(rate_5xx=0, rate_429=0, latency=0)
    watch.wait_healthy(30)
    chaos.assert_invariants(closed)
    chaos.assert_still_live()
