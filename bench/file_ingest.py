"""``trend ingest FILE`` end to end, side by side with the engine's bare bulk path into the same table.

The file is JSON Lines as users send it: 3 event types, 4 segments, 20,000 Zipf-distributed keys,
70 % with a user_id, 10 % with an event_id, times over the last 3 hours (late data), half as ISO-8601
and half as epoch seconds. Each variant runs on a fresh database, in the same run:

* ``trend ingest FILE``: what the CLI runs (``file_ingest.ingest_stream``): reading, decoding,
  validation, normalization, duplicate checks, markers;
* ``bare bulk path``: the same events as ready tuples, put into ``fact_events`` (same indexes) by the
  backend's bulk path (``executemany`` on SQLite, COPY on PostgreSQL), one transaction per 5,000.

    python -m bench.file_ingest [--backend postgres] [--events 200000] [--repeat 5]
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.reference import clear_all

from bench.common import empty_log, machine, parser, scratch_trend, server_url
from trend.clock import FakeClock
from trend.file_ingest import CHUNK_LINES, ingest_stream
from trend.model import MINUTE_MS, floor_to
from trend.storage.write.events import COLUMNS, StoredEvent

NOW = 1_763_016_660_000


def write_file(path: Path, count: int) -> list[StoredEvent]:
    """Write ``count`` events to ``path``; returns them as fact_events tuples for the bare path."""
    rng = random.Random(11)
    ranks = [rng.paretovariate(1.1) for _ in range(count)]
    tuples: list[StoredEvent] = []
    with path.open("w", encoding="utf-8") as out:
        for n, rank in enumerate(ranks):
            ts = NOW - rng.randrange(3 * 3_600_000)
            event: dict[str, str | float] = {
                "event": rng.choice(("search", "view", "purchase")), "key": f"상품-{int(rank * 7) % 20_000}",
                "segment": rng.choice(("", "kr", "us", "jp"))}
            event["ts"] = (datetime.fromtimestamp(ts / 1000, UTC).isoformat().replace("+00:00", "Z")
                           if n % 2 else ts / 1000)
            if rng.random() < 0.7:
                event["user_id"] = f"user-{rng.randrange(100_000)}"
            if rng.random() < 0.1:
                event["event_id"] = f"e-{n}"
            out.write(json.dumps(event, ensure_ascii=False) + "\n")
            tuples.append((str(event["event_id"]) if "event_id" in event else None, ts, str(event["event"]),
                           str(event["segment"]), str(event["key"]),
                           str(event["user_id"]) if "user_id" in event else None, 1.0, NOW, floor_to(ts, MINUTE_MS)))
    return tuples


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--events", type=int, default=200_000)
    args = p.parse_args()
    trend = scratch_trend(args.backend, server_url(args), FakeClock(NOW))
    trend.db.ensure_schema()
    path = Path(tempfile.mkdtemp(prefix="trend-file-")) / "events.jsonl"
    tuples = write_file(path, args.events)

    def run_file() -> None:
        with path.open(encoding="utf-8", newline="") as stream:
            result = ingest_stream(trend, stream, "jsonl")
        assert result.accepted == args.events, result
        assert not result.rejected, result

    def run_bare() -> None:
        for start in range(0, len(tuples), CHUNK_LINES):
            with trend.db.write() as tx:
                trend.db.dialect.bulk_insert(tx.conn, "fact_events", COLUMNS, tuples[start:start + CHUNK_LINES])

    samples: dict[str, list[float]] = {"trend ingest FILE": [], "bare bulk path": []}
    for _ in range(args.repeat):
        for name, func in (("trend ingest FILE", run_file), ("bare bulk path", run_bare)):
            clear_all(trend)
            empty_log(trend)
            began = time.perf_counter()
            func()
            samples[name].append(args.events / (time.perf_counter() - began))
    bare = statistics.median(samples["bare bulk path"])
    print(f"# {machine()}; backend {trend.db.dialect.name}; {args.events:,} events from "
          f"{path.stat().st_size / 1e6:.1f} MB of JSON Lines; median of {args.repeat}")
    print("| variant | events/s | ÷ bare |")
    print("|---|---|---|")
    for name, values in samples.items():
        rate = statistics.median(values)
        print(f"| {name} | {rate:,.0f} | {rate / bare:.2f} |")
    trend.close()


if __name__ == "__main__":
    main()
