"""SQLite writes a big bucket in pieces, one short transaction each (storage/write/staged.py).

Between two pieces the app may ingest, read, or another runner may take the bucket: each test does
one of those at a chosen gap, through the connection-level seam ``Pinned.write``, and checks that
every level still equals the ground truth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.conftest import T0, TrendFactory
from tests.reference import Reference, assert_levels_equal, markers, ref_top, table_rows
from trend.clock import FakeClock
from trend.model import LEVELS, MINUTE_MS
from trend.rollup import writes
from trend.service import Trend
from trend.storage.engine import Pinned
from trend.storage.shared.markers import release
from trend.storage.shared.schema import rollup_dirty
from trend.storage.write import staged
from trend.storage.write.rollups import recompute

L1M = LEVELS[0]
KEYS = 10
PIECE = 3  # rows per piece here, so a minute of ten keys takes four pieces

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture(autouse=True)
def _small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staged, "PIECE_ROWS", PIECE)


Gap = Callable[[int], None]


@pytest.fixture
def gaps(monkeypatch: pytest.MonkeyPatch) -> list[Gap]:
    """Functions called before each write transaction of a staged bucket, with its number (-1: the
    claim of its marker, before the stage; 0: the first piece). They run between transactions: the
    runner holds no lock then."""
    found: list[Gap] = []
    original = Pinned.write
    count = -1

    @contextmanager
    def write(self: Pinned) -> Iterator[Any]:
        nonlocal count
        for gap in found:
            gap(count)
        count += 1
        with original(self) as tx:
            yield tx

    monkeypatch.setattr(Pinned, "write", write)
    return found


def _minute(trend: Trend, reference: Reference, minute: int, users: str = "u") -> None:
    """Ten keys in one minute, key n seen n % 3 + 1 times."""
    batch = []
    for n in range(KEYS):
        for repeat in range(n % 3 + 1):
            ts = minute + n * 1000 + repeat
            reference.add(ts, "search", f"k{n}", value=float(n), user_id=f"{users}{repeat}")
            batch.append({"event": "search", "key": f"k{n}", "ts": ts / 1000, "value": float(n),
                          "user_id": f"{users}{repeat}"})
    trend.ingest(batch)


def test_a_big_bucket_is_written_in_pieces_and_reads_stay_exact_between_them(
        trend: Trend, make_trend: TrendFactory, clock: FakeClock, gaps: list[Gap]) -> None:
    reference = Reference()
    _minute(trend, reference, T0)
    clock.set(T0 + MINUTE_MS + 5_000)
    app = make_trend()  # another connection pool on the same file, as the app's
    seen: list[int] = []

    def between(piece: int) -> None:
        seen.append(piece)
        if piece <= 0:
            return
        # Half the bucket is written; the marker still says dirty, so the read answers from raw events.
        assert table_rows(trend, L1M), "the first piece is committed"
        top = app.top(event="search", window="5m", at_ms=T0 + MINUTE_MS, limit=KEYS)
        expected = ref_top(reference.events, "search", None, T0 - 4 * MINUTE_MS, T0 + MINUTE_MS, KEYS)
        assert [(item.key, item.count) for item in top.items] == expected

    gaps.append(between)
    [report] = trend.rollup("1m")
    assert (report.outcome, report.buckets, report.rows) == ("ran", 1, KEYS)
    assert seen == [-1, 0, 1, 2, 3]  # the claim, then ten rows in pieces of three
    assert ("1m", T0) not in markers(trend)
    assert_levels_equal(trend, reference.events, clock.now_ms())


def test_a_rollup_of_whole_buckets_writes_each_in_one_transaction(
        trend: Trend, clock: FakeClock, gaps: list[Gap]) -> None:
    """``trend rollup --whole-buckets``: no piece is written, for a new bucket or a recomputed one,
    and every level equals the ground truth."""
    reference = Reference()
    _minute(trend, reference, T0)
    clock.set(T0 + MINUTE_MS + 5_000)
    pieces: list[int] = []
    gaps.append(pieces.append)
    [report] = trend.rollup("1m", whole_buckets=True)
    assert (report.outcome, report.buckets, report.rows) == ("ran", 1, KEYS)
    trend.ingest([{"event": "search", "key": "late", "ts": (T0 + 59_000) / 1000}])
    reference.add(T0 + 59_000, "search", "late")
    reports = trend.rollup(whole_buckets=True)
    assert pieces == []
    assert reports[0].rows == KEYS + 1
    assert_levels_equal(trend, reference.events, clock.now_ms())
    trend.ingest([{"event": "search", "key": "later", "ts": (T0 + 59_500) / 1000}])
    trend.rollup("1m")
    assert pieces, "without the flag the same bucket is written in pieces"


def test_a_bucket_recomputed_clears_its_old_rows_in_pieces_too(
        trend: Trend, make_trend: TrendFactory, clock: FakeClock, gaps: list[Gap]) -> None:
    """Deleting a big bucket's old rows is a long hold of the lock as well: it is done in pieces,
    before the new rows go in, and reads stay exact meanwhile."""
    reference = Reference()
    _minute(trend, reference, T0)
    clock.set(T0 + MINUTE_MS + 5_000)
    trend.rollup("1m")
    trend.ingest([{"event": "search", "key": "late", "ts": (T0 + 59_000) / 1000}])
    reference.add(T0 + 59_000, "search", "late")
    app = make_trend()
    rows_seen: list[int] = []

    def between(piece: int) -> None:
        rows_seen.append(len(table_rows(trend, L1M)))
        top = app.top(event="search", window="5m", at_ms=T0 + MINUTE_MS, limit=KEYS + 1)
        expected = ref_top(reference.events, "search", None, T0 - 4 * MINUTE_MS, T0 + MINUTE_MS, KEYS + 1)
        assert [(item.key, item.count) for item in top.items] == expected

    gaps.append(between)
    [report] = trend.rollup("1m")
    assert (report.outcome, report.rows) == ("ran", KEYS + 1)
    # The claim of the marker, then ten old rows go three at a time, then eleven new ones come in
    # three at a time.
    assert rows_seen == [10, 10, 7, 4, 1, 0, 3, 6, 9]
    assert_levels_equal(trend, reference.events, clock.now_ms())


@pytest.mark.parametrize("gap", [0, 2], ids=["before the first piece", "between two pieces"])
def test_an_ingest_between_pieces_is_counted(trend: Trend, make_trend: TrendFactory, clock: FakeClock,
                                             gaps: list[Gap], gap: int) -> None:
    """The app's write gets the lock after the stage or between two pieces; the bucket is recomputed
    with it."""
    reference = Reference()
    _minute(trend, reference, T0)
    clock.set(T0 + MINUTE_MS + 5_000)
    app = make_trend(sqlite_busy_timeout_ms=50)  # would fail if the run held the write lock

    def between(piece: int) -> None:
        if piece == gap:
            app.ingest([{"event": "search", "key": "late", "ts": (T0 + 59_000) / 1000, "user_id": "x"}])
            reference.add(T0 + 59_000, "search", "late", user_id="x")

    gaps.append(between)
    trend.rollup()
    assert ("1m", T0) not in markers(trend)
    assert_levels_equal(trend, reference.events, clock.now_ms())
    assert table_rows(trend, L1M)[(T0, "search", "", "late")][0] == 1


@pytest.mark.parametrize("gap", [0, 1], ids=["after-the-stage", "between-pieces"])
def test_a_marker_released_and_made_again_between_pieces_is_not_released(
        trend: Trend, make_trend: TrendFactory, clock: FakeClock, gaps: list[Gap], gap: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another runner finishes the bucket after this run staged it (before its first piece, or between
    two), then a late event makes its marker again at version 1, the version this run staged at: the
    run must not take that marker for its own. The first gap is the one two `trend worker` processes
    met in the replicas test: the 1h level lost late events, with no marker left to heal it."""
    reference = Reference()
    _minute(trend, reference, T0)
    clock.set(T0 + MINUTE_MS + 5_000)
    other = make_trend()
    with trend.db.read() as tx:
        [version] = tx.execute(rollup_dirty.select().with_only_columns(rollup_dirty.c.version)).scalars()
    assert version == 1

    # Writes are counted from the stage on (0: the first write after it), whatever comes before.
    after_stage: list[int] = []
    real_stage = staged.stage

    def stage(*args: Any) -> staged.Staged:
        after_stage.append(0)
        return real_stage(*args)

    monkeypatch.setattr(writes, "stage", stage)

    def between(_piece: int) -> None:
        if not after_stage:
            return
        after_stage[0] += 1
        if after_stage[0] - 1 != gap:
            return
        with other.db.write() as tx:
            version = tx.execute(rollup_dirty.select().with_only_columns(rollup_dirty.c.version).where(
                rollup_dirty.c.level == "1m")).scalar_one()
            recompute(tx, L1M, T0)
            assert release(tx, "1m", T0, version)
        other.ingest([{"event": "search", "key": "late", "ts": (T0 + 30_000) / 1000}])
        reference.add(T0 + 30_000, "search", "late")
        with other.db.read() as tx:
            assert tx.execute(rollup_dirty.select().with_only_columns(rollup_dirty.c.version)).scalar_one() == 1

    gaps.append(between)
    [report] = trend.rollup("1m")
    assert report.outcome == "ran"
    assert ("1m", T0) not in markers(trend)
    assert_levels_equal(trend, reference.events, clock.now_ms())
    assert table_rows(trend, L1M)[(T0, "search", "", "late")][0] == 1


def test_a_run_killed_between_pieces_leaves_the_bucket_dirty_and_the_next_run_heals_it(
        trend: Trend, make_trend: TrendFactory, clock: FakeClock, gaps: list[Gap]) -> None:
    reference = Reference()
    _minute(trend, reference, T0)
    _minute(trend, reference, T0, users="v")  # every key twice: the half-written rows would be wrong
    clock.set(T0 + MINUTE_MS + 5_000)

    class KilledError(BaseException):  # a kill: no handler of the code may catch it
        pass

    def between(piece: int) -> None:
        if piece == 2:
            raise KilledError

    gaps.append(between)
    with pytest.raises(KilledError):
        trend.rollup("1m")
    assert ("1m", T0) in markers(trend)
    assert len(table_rows(trend, L1M)) == 2 * PIECE  # two pieces were committed
    top = make_trend().top(event="search", window="5m", at_ms=T0 + MINUTE_MS, limit=KEYS)
    expected = ref_top(reference.events, "search", None, T0 - 4 * MINUTE_MS, T0 + MINUTE_MS, KEYS)
    assert [(i.key, i.count) for i in top.items] == expected
    gaps.clear()
    trend.rollup()
    assert ("1m", T0) not in markers(trend)
    assert_levels_equal(trend, reference.events, clock.now_ms())
