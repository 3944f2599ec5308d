"""One scheduler replica for the failover test, run as its own process.

It is what ``ppw run`` wires up (the poll scheduler's leader lease and the schedule runner beside it,
emitting into the configured broker), with two test-only differences given on the command line: a
short leader lease, and a clock that runs ``speed`` times faster than the real one from a common
start, so every replica agrees on the time and one-minute slots come every second.

    python -m tests.triggers.scheduler_replica <epoch> <fake start ISO> <speed>

Prints ``{"leader": true|false}`` whenever its leadership changes. Settings come from ``PPW_*``.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time

from worker.polling.scheduler import PollScheduler
from worker.process.runtime import Runtime
from worker.settings import Settings
from worker.triggers import ScheduleRunner, TriggerOptions


def main() -> None:
    epoch, start, speed = float(sys.argv[1]), dt.datetime.fromisoformat(sys.argv[2]), float(sys.argv[3])

    def clock() -> dt.datetime:
        return start + dt.timedelta(seconds=(time.time() - epoch) * speed)

    settings = Settings()
    runtime = Runtime.create(settings)
    registry = runtime.registry
    assert registry is not None
    scheduler = PollScheduler(
        runtime.app.store, lambda _c, _r: None, lambda: [], connection=settings.connection_id, leader_ttl=1.0
    )
    runner = ScheduleRunner(
        settings,
        runtime.app.store,
        runtime.actors.emit,
        lambda: registry.engine,
        lambda: runtime.app.services.pp(settings.connection_id),
        lambda: scheduler.is_leader,
        options=TriggerOptions(schedule_tick=0.1),
        clock=clock,
        events=runtime.app.events,
    )
    scheduler.start()
    runner.start()
    leading: bool | None = None
    while True:
        if scheduler.is_leader != leading:
            leading = scheduler.is_leader
            print(json.dumps({"leader": leading}), flush=True)
        time.sleep(0.05)


if __name__ == "__main__":
    main()
