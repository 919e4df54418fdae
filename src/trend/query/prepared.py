"""Window totals made ready for the coming hour, so a new process answers its first read as a warm one.

A warm process keeps every key's total over the full hours of a window (storage/read/kept.py) and
reads only the window's edges; a new one (a restart, a new replica, every CLI call) would sum every
hour's rows first: 250 of the 325 ms of a first ``top`` 24h over a week of 10M events and 20,000 keys
on SQLite (docs/benchmarks.md). After each run of the
hourly job, the full hours of the windows a ``top`` reads in the coming hour (each named window of
6 hours or more, and the window before it, which ``top`` ranks against) are summed once per event,
over every segment, by count, and stored with the data versions they were read at. A read whose
plan has the same full hours and whose snapshot sees the same versions uses them; any other reads
as before, so the stored totals can make a read faster but never different.
"""

from __future__ import annotations

from trend import measures
from trend.logging import get_logger
from trend.model import HOUR_MS, Span
from trend.query.plan import Planner
from trend.query.windows import WINDOWS, Window
from trend.storage.engine import Database
from trend.storage.read.reads import Filters, key_totals
from trend.storage.shared import data_versions, stored_totals
from trend.storage.shared.markers import markers_between
from trend.storage.write.events import known_dimensions

log = get_logger("rollup")
COUNT = measures.by_read("count")

# Windows with full hours to keep: a shorter one is read from its few finer buckets anyway.
PREPARED_WINDOWS = {name: width for name, width in WINDOWS.items() if width >= 6 * HOUR_MS}
# A part of more keys than a process keeps in memory (storage/shared/read_cache.py) is not stored:
# it would not stay kept, and its row would outgrow what a server takes in one statement.
MOST_KEYS = 200_000


def prepare_window_totals(db: Database, now: int) -> int:
    """Store the full hours' totals that reads in the hour of ``now`` will ask for and are not stored
    yet; delete the others. Returns how many parts were summed (0 when every one was current)."""
    top = db.levels.top.name
    widest = max(PREPARED_WINDOWS.values())
    with db.read() as tx:
        if tx.cache is None:  # the backend keeps no totals between reads (Citus): nothing would read them
            return 0
        wanted: dict[str, tuple[Filters, list[Span]]] = {}
        planner = Planner(tx.levels, markers_between(tx, Window.ending_at(now, 2 * widest).start, now + HOUR_MS),
                          now)
        for event in known_dimensions(tx):
            filters = Filters(event)
            for width in PREPARED_WINDOWS.values():
                current = Window.ending_at(now, width)
                for window in (current, current.before()):
                    hours = [span for span in planner.cover(window.start, window.end) if span.source == top]
                    if hours:
                        wanted[stored_totals.part_name(event, None, COUNT.column, hours)] = (filters, hours)
        stamps = {part: data_versions.of_spans(tx, hours) for part, (_, hours) in wanted.items()}
        ready = stored_totals.current(tx, stamps)
        made = [(part, stamps[part], totals) for part, (filters, hours) in wanted.items() if part not in ready
                if len(totals := key_totals(tx, hours, filters, COUNT)) <= MOST_KEYS]
    with db.write() as tx:
        stored_totals.save(tx, made, now)
        stored_totals.keep_only(tx, wanted)
    if made:
        log.debug("Stored the full hours' totals of %d windows", len(made))
    return len(made)
