"""`trend demo`: realistic traffic, rolled up, so a new user sees trends at once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.reference import assert_levels_equal, closed_markers, stored_events
from tests.servers import environment
from trend.cli import main
from trend.demo import KEYWORDS
from trend.rollup.shell import HOST
from trend.service import Trend
from trend.storage.write.runs import RunRecord, record_run

pytestmark = pytest.mark.slow  # real trend processes: make test, not make check


class TestDemo:
    def test_generates_varied_traffic_and_rolls_it_up(self, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TREND_DATABASE_URL", database_url)
        result = CliRunner().invoke(main, ["demo", "--minutes", "90", "--rate", "60", "--json"],
                                    catch_exceptions=False)
        assert result.exit_code == 0
        summary = json.loads(result.stdout)
        assert summary["minutes"] == 90
        assert summary["duplicates"] > 0  # some retried event_ids
        with Trend(database_url=database_url) as trend:
            events = stored_events(trend)
            assert len(events) == summary["accepted"]
            assert {e["event"] for e in events} == {"search", "view", "purchase"}
            assert len({e["segment"] for e in events}) >= 3
            keys = {e["key"] for e in events}
            assert any("\uac00" <= ch <= "\ud7a3" for key in keys for ch in key)  # Korean keywords
            assert any(key.isascii() for key in keys)
            assert keys - set(KEYWORDS)  # bursting keywords beyond the everyday ones
            now = trend.clock.now_ms()
            assert closed_markers(trend, now - 60_000) == []  # rolled up, so the charts are full at once
            assert_levels_equal(trend, events, now - 60_000)
            top = trend.top("search", window="1h", limit=3)
            assert len(top.items) == 3


class TestLiveAfterHistory:
    def test_live_continues_the_history_instead_of_writing_it_again(self, tmp_path: Path) -> None:
        """`trend demo`, then `trend demo --live` (as the README says): the live run adds the few minutes
        since the newest event and then live traffic, not a second copy of the history; SIGTERM ends it
        cleanly."""
        url = f"sqlite:///{tmp_path / 't.db'}"
        first = subprocess.run([sys.executable, "-m", "trend", "demo", "--minutes", "60", "--rate", "100", "--json"],
                               env=environment(url), capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        history = json.loads(first.stdout)["accepted"]
        live = subprocess.Popen([sys.executable, "-m", "trend", "demo", "--live", "--minutes", "60", "--rate", "100"],
                                env=environment(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert live.stdout is not None
            lines = [live.stdout.readline(), live.stdout.readline()]  # the summary, then the first live batch
            live.send_signal(signal.SIGTERM)
            live.communicate(timeout=30)
            assert live.returncode == 0
        finally:
            if live.poll() is None:
                live.kill()
                live.communicate()
        assert "live: +" in lines[1], lines
        with Trend(database_url=url) as trend:
            stored = len(stored_events(trend))
        assert history < stored < history * 1.1, (history, stored)

    def test_live_traffic_starts_where_the_history_ends(self, tmp_path: Path) -> None:
        """No hole where live traffic begins: the history includes the current minute up to now, and
        each live batch starts where the one before ended. At 1200 events a minute, a gap of 3 s has a
        chance of about e^-60."""
        url = f"sqlite:///{tmp_path / 't.db'}"
        live = subprocess.Popen([sys.executable, "-m", "trend", "demo", "--live", "--minutes", "5", "--rate", "1200"],
                                env=environment(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert live.stdout is not None
            lines = [live.stdout.readline() for _ in range(3)]  # the summary, then two live batches
            live.send_signal(signal.SIGTERM)
            live.communicate(timeout=30)
        finally:
            if live.poll() is None:
                live.kill()
                live.communicate()
        assert all("live: +" in line for line in lines[1:]), lines
        with Trend(database_url=url) as trend:
            times = sorted(int(e["ts"]) for e in stored_events(trend))
        newest = times[-1]
        recent = [t for t in times if t >= newest - 4 * 60_000]  # the history's last minutes, then live
        assert max(b - a for a, b in pairwise(recent)) < 3_000


class TestDemoBesideAServer:
    def test_the_demo_waits_for_a_rollup_another_process_claimed(self, tmp_path: Path) -> None:
        """A server's worker running while `trend demo` writes: its claimed bucket made the demo skip it,
        and the hourly 1h job left an hour-long lag. The demo now waits for the claim to end and rolls
        everything up itself."""
        url = f"sqlite:///{tmp_path / 't.db'}"
        holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            with Trend(database_url=url, worker_enabled=False) as trend:
                trend.db.ensure_schema()
                with trend.db.write() as tx:
                    now = trend.clock.now_ms()
                    record_run(tx, RunRecord("agg_1h", f"{HOST}:{holder.pid}", now, None, "running", 0, 0, None))
            demo = subprocess.Popen([sys.executable, "-m", "trend", "demo", "--minutes", "90", "--rate", "60",
                                     "--json"], env=environment(url), stdout=subprocess.PIPE, text=True)
            time.sleep(4)  # the demo has written (2 s) and met the claim by now
            assert demo.poll() is None  # still waiting for it
        finally:
            holder.kill()  # the claiming process ends: its record is abandoned, its buckets free
            holder.wait()
        out, _ = demo.communicate(timeout=120)
        # As of the demo's last look: the minute it was writing in may have closed since.
        ended = int(time.time() * 1000) - 2_000
        assert demo.returncode == 0
        assert json.loads(out)["waiting"] == {}
        with Trend(database_url=url) as trend:
            assert closed_markers(trend, ended) == []
            assert_levels_equal(trend, stored_events(trend), ended)
