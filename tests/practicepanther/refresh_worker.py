"""A worker process for the refresh race: N threads call the API at the same moment.

Run as ``python -m tests.practicepanther.refresh_worker '<settings json>' <threads> <run id>``. It reports
readiness in the state store, waits for the test's go signal there, starts its threads together
and prints one JSON line: how many calls succeeded, the errors, and its token-endpoint calls.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from worker.practicepanther.client import PracticePantherClient
from worker.settings import Settings
from worker.state import key, open_store


def main() -> None:
    settings = Settings(**json.loads(sys.argv[1]))
    threads = int(sys.argv[2])
    run = sys.argv[3]
    store = open_store(settings.state_url)
    client = PracticePantherClient(settings, store)
    barrier = threading.Barrier(threads)
    results: list[str] = []
    lock = threading.Lock()

    def call() -> None:
        barrier.wait()
        try:
            name = client.me().get("display_name", "")
            outcome = f"ok:{name}"
        except Exception as exc:
            outcome = f"error:{type(exc).__name__}:{exc}"
        with lock:
            results.append(outcome)

    workers = [threading.Thread(target=call) for _ in range(threads)]
    store.incr(key(settings.connection_id, "test", run, "ready"), ttl=120)
    deadline = time.monotonic() + 60
    while store.get(key(settings.connection_id, "test", run, "go")) is None:
        if time.monotonic() > deadline:
            raise SystemExit("no go signal")
        time.sleep(0.005)
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(json.dumps({"results": results, "token_calls": client.oauth.token_requests}))
    client.close()
    store.close()


if __name__ == "__main__":
    main()
