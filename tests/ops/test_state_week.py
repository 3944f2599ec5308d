"""The verdict of the simulated week (``python -m benchmarks.state_week``) on made-up days.

The simulation itself takes minutes (it is a benchmark); what these pin is that its verdict can
fail: retained state that keeps growing, snapshots that grow faster than the records they mirror,
or waiting runs that get heavier each day are each reported as growing.
"""

from __future__ import annotations

from benchmarks.state_week import Day, analyse, table

FLAT = [5_000_000, 8_000_000, 8_010_000, 7_990_000, 8_005_000, 8_000_000, 7_995_000]


def _week(retained: list[int], *, snap_growth: float = 0.0, waiting_growth: float = 0.0) -> list[Day]:
    """Days whose retained bytes are ``retained``, with records and waiting runs growing each day;
    snapshot bytes per record and bytes per waiting run grow by the given amounts a day."""
    days = []
    for number, size in enumerate(retained, start=1):
        records, waiting = 1000 * number, 100 * number
        waiting_bytes = int(waiting * (4000 + waiting_growth * number))
        snaps = int(records * (500 + snap_growth * number))
        days.append(
            Day(
                day=number,
                changes=1440 * number,
                live_records=records,
                waiting_runs=waiting,
                waiting_bytes=waiting_bytes,
                bytes_by_kind={"run": size + waiting_bytes, "snap": snaps},
            )
        )
    return days


def test_state_that_stops_growing_after_the_warmup_is_flat() -> None:
    result = analyse(_week(FLAT), 1.0, 1.0)
    assert [d["kept"] for d in result["days"]] == FLAT
    assert result["flat"], result
    assert "GROWING" not in table(result)


def test_retained_state_that_keeps_growing_is_reported() -> None:
    result = analyse(_week([5_000_000 + 600_000 * day for day in range(7)]), 1.0, 1.0)
    assert not result["kept"]["flat"] and not result["flat"]
    assert "retained +600000 B/day (GROWING)" in table(result)


def test_snapshots_growing_faster_than_the_records_are_reported() -> None:
    result = analyse(_week(FLAT, snap_growth=100.0), 1.0, 1.0)
    assert result["kept"]["flat"] and not result["snapshot_bytes_per_record"]["flat"]
    assert not result["flat"]


def test_waiting_runs_that_get_heavier_each_day_are_reported() -> None:
    result = analyse(_week(FLAT, waiting_growth=1000.0), 1.0, 1.0)
    assert result["kept"]["flat"] and not result["bytes_per_waiting_run"]["flat"]
    assert not result["flat"]
