"""The soak harness (``make soak``), run for 20 seconds: every series is in the JSON, the PNG is one.

A short run says nothing about leaks (the verdicts are not asserted); it proves the harness starts
``ppw sandbox`` and ``ppw run`` as child processes, samples them, probes latency and writes its
report, so a 30-minute soak does not fail at the end for a reason a quick run would have shown.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from benchmarks import soak  # after the skip: the plot needs the bench extra

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.timeout(180)


def _png_chunks(data: bytes) -> list[bytes]:
    """The chunk types of a PNG, each CRC checked."""
    assert data[:8] == PNG_SIGNATURE
    kinds, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        kinds.append(kind)
        at += 12 + length
    return kinds


def test_a_short_soak_writes_every_series_and_a_plot(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    code = soak.main(
        [
            "--minutes",
            str(20 / 60),
            "--every",
            "1",
            "--poll-interval",
            "2",
            "--probe-every",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code in (0, 1)  # 1: a verdict says "not flat", which 20 seconds cannot settle
    result = json.loads(out.read_text())

    samples = result["samples"]
    assert len(samples) >= 10
    for name in ("rss_mb", "fds", "threads", "state_bytes", "state_file_bytes", "events_total"):
        assert all(sample[name] is not None for sample in samples), name
    assert samples[-1]["rss_mb"] > 10 and samples[-1]["threads"] > 1 and samples[-1]["fds"] > 3
    assert samples[-1]["state_bytes"] > 0 and samples[-1]["events_total"] > 0
    for name in (*soak.SERIES, *soak.WINDOWED):
        found = result["series"][name]
        assert {"slope_per_hour", "residual_stdev", "growth_over_span", "allowed", "flat"} <= set(found), name
    assert result["latency"]["probes"] > 5 and result["latency"]["p99_s"] is not None
    assert result["state_by_kind"]["end"]["event"]["keys"] > 0
    assert result["config"]["churn_per_minute"] == 50 * soak.BUSY_FIRM_PER_MINUTE

    png = Path(result["plot"])
    assert png == out.with_suffix(".png") and png.stat().st_size > 0
    chunks = _png_chunks(png.read_bytes())
    assert chunks[0] == b"IHDR" and b"IDAT" in chunks and chunks[-1] == b"IEND"
