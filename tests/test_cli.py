"""The ``trend`` command line: ingest from files, rollup, backfill, status, settings errors."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tests.reference import assert_levels_equal, stored_events
from trend.cli import main
from trend.service import Trend
from trend.validation import EventIn


@pytest.fixture
def env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TREND_DATABASE_URL", database_url)
    return database_url


def _run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


NOW = time.time()


def _line(key: str, minutes_ago: float = 30, **extra: object) -> str:
    return json.dumps({"event": "search", "key": key, "ts": NOW - minutes_ago * 60, **extra})


def test_every_command_loads_under_its_own_name() -> None:
    """Commands are imported on use, by name: each name must lead to the command of that name."""
    context = click.Context(main)
    names = main.list_commands(context)
    assert {"top", "serve", "ingest", "erase-user", "alerts"} <= set(names)
    for name in names:
        command = main.get_command(context, name)
        assert command is not None
        assert command.name == name
    assert main.get_command(context, "nope") is None


def _leaves(group: click.Group, context: click.Context, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None
        found += _leaves(command, context, (*path, name)) if isinstance(command, click.Group) else [(*path, name)]
    return found


def test_every_command_that_answers_and_exits_takes_json() -> None:
    """serve and worker run until stopped (their logs take TREND_LOG_FORMAT=json); every other command,
    the alerts' included, prints its answer as JSON with --json."""
    context = click.Context(main)
    lacking = []
    for path in _leaves(main, context):
        command: click.Command | None = main
        for name in path:
            assert isinstance(command, click.Group)
            command = command.get_command(context, name)
        assert command is not None
        if not any(param.name == "as_json" for param in command.params):
            lacking.append(path)
    assert lacking == [("serve",), ("worker",)]


@pytest.mark.slow
@pytest.mark.parametrize(("typed", "hint"), [("tpo", "Did you mean 'top'?"),
                                             ("erase-usr", "Did you mean 'erase-user'?"),
                                             ("serv", "(Possible commands: serve, series)")])
def test_a_mistyped_command_is_told_the_one_it_meant(typed: str, hint: str) -> None:
    """Through a real ``trend`` process, with and without --json: commands load on use, yet the
    suggestion comes from all of them."""
    plain = subprocess.run([sys.executable, "-m", "trend", typed], capture_output=True, text=True, timeout=60)
    assert plain.returncode == 2
    assert f"No such command '{typed}'. {hint}" in plain.stderr
    as_json = subprocess.run([sys.executable, "-m", "trend", typed, "--json"], capture_output=True, text=True,
                             timeout=60)
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["error"]["message"] == f"No such command '{typed}'. {hint}"


class TestIngestCommand:
    def test_good_lines_are_stored_and_bad_lines_reported_by_number(self, env: str, tmp_path: Path) -> None:
        path = tmp_path / "events.jsonl"
        path.write_text("\n".join([_line("a"), '{"event": "search"}', "", "not json", _line("b"),
                                   _line("c", colour="red")]) + "\n")
        code, out, err = _run("ingest", str(path))
        assert code == 1
        assert "line 2: key: required" in err
        assert "line 4: not valid JSON" in err
        assert "line 6: colour: unknown field" in err
        assert "2 accepted, 0 duplicates, 3 rejected" in out
        with Trend(database_url=env) as trend:
            assert sorted(e["key"] for e in stored_events(trend)) == ["a", "b"]
        again = tmp_path / "again.jsonl"
        again.write_text("\n".join([_line("d", event_id="x1"), _line("d", event_id="x1")]) + "\n")
        assert "1 accepted, 1 duplicate, 0 rejected" in _run("ingest", str(again))[1]

    def test_strict_stores_nothing_when_any_line_is_bad(self, env: str, tmp_path: Path) -> None:
        path = tmp_path / "events.jsonl"
        path.write_text("\n".join([_line("a"), _line("b"), '{"event": "search"}']) + "\n")
        code, out, _ = _run("ingest", "--strict", "--json", str(path))
        assert code == 1
        assert json.loads(out) == {"accepted": 0, "duplicates": 0, "rejected": 1,
                                   "errors": [{"line": 3, "field": "key", "message": "required"}],
                                   "resumed_after": 0, "last_line": 0, "ingested_before": False}  # rolled back
        with Trend(database_url=env) as trend:
            assert stored_events(trend) == []

    def test_csv_from_standard_input(self, env: str) -> None:
        csv_text = ("event,key,ts,value,segment\n"
                    f"search,우산,{NOW - 60},2.5,kr\n"
                    f"search,\"a, b\",{NOW - 60},,\n"
                    f"search,bad,{NOW - 60},lots,\n")
        code, out, _ = _run("ingest", "--format", "csv", "--json", "-", stdin=csv_text)
        assert code == 1
        summary = json.loads(out)
        assert (summary["accepted"], summary["rejected"]) == (2, 1)
        assert summary["errors"][0]["line"] == 4
        assert summary["errors"][0]["field"] == "value"
        with Trend(database_url=env) as trend:
            rows = {e["key"]: (e["value"], e["segment"]) for e in stored_events(trend)}
        assert rows == {"우산": (2.5, "kr"), "a, b": (1.0, "")}

    def test_an_unknown_csv_column_is_refused_before_anything_is_stored(self, env: str) -> None:
        code, _, err = _run("ingest", "--format", "csv", "-", stdin="event,key,colour\nsearch,a,red\n")
        assert code == 2
        assert "unknown CSV column(s) colour" in err

    def test_a_large_file_in_many_chunks(self, env: str, tmp_path: Path) -> None:
        path = tmp_path / "many.jsonl"
        path.write_text("\n".join(_line(f"k{n % 50}", minutes_ago=1 + n % 100, event_id=f"e{n % 11_000}")
                                  for n in range(12_000)) + "\n")
        code, out, _ = _run("ingest", "--json", str(path))
        assert code == 0
        assert json.loads(out)["accepted"] == 11_000
        assert json.loads(out)["duplicates"] == 1_000


class TestRollupCommands:
    def test_rollup_status_and_backfill(self, env: str, tmp_path: Path) -> None:
        path = tmp_path / "events.jsonl"
        path.write_text("\n".join(_line(k, minutes_ago=m) for k in "abc" for m in (20, 40, 90)) + "\n")
        assert _run("ingest", str(path))[0] == 0
        code, out, _ = _run("status", "--json")
        before = {level["level"]: level for level in json.loads(out)["levels"]}
        assert before["1m"]["dirty"] == 3
        assert before["1m"]["last_run"] is None
        code, out, _ = _run("rollup", "--json")
        levels = json.loads(out)["levels"]
        assert code == 0
        assert (levels[0]["level"], levels[0]["outcome"], levels[0]["buckets"], levels[0]["rows"]) == (
            "1m", "ran", 3, 9)
        code, out, _ = _run("status", "--json")
        after = {level["level"]: level for level in json.loads(out)["levels"]}
        assert after["1m"]["dirty"] == 0
        assert after["1m"]["last_run"]["outcome"] == "ran"
        assert after["1m"]["last_run"]["started"].endswith("+00:00")
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - 3 * 3600))
        code, out, _ = _run("backfill", "--start", start, "--end", str(int(NOW)), "--json")
        assert code == 0
        assert json.loads(out)["levels"][0]["buckets"] >= 170
        with Trend(database_url=env) as trend:
            assert_levels_equal(trend, stored_events(trend), int(time.time() * 1000))

    def test_rollup_of_whole_buckets(self, env: str, tmp_path: Path) -> None:
        """``--whole-buckets`` (a catch-up with no app beside it) rolls up every level to the same rows."""
        path = tmp_path / "events.jsonl"
        path.write_text("\n".join(_line(k, minutes_ago=m) for k in "abcd" for m in (15, 70, 130)) + "\n")
        assert _run("ingest", str(path))[0] == 0
        code, out, _ = _run("rollup", "--whole-buckets", "--json")
        assert code == 0
        first = json.loads(out)["levels"][0]
        assert (first["level"], first["outcome"], first["buckets"], first["rows"]) == ("1m", "ran", 3, 12)
        with Trend(database_url=env) as trend:
            assert_levels_equal(trend, stored_events(trend), int(time.time() * 1000))

    def test_status_shows_times_in_the_display_zone(self, env: str, monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
        path = tmp_path / "e.jsonl"
        path.write_text(_line("a") + "\n")
        _run("ingest", str(path))
        monkeypatch.setenv("TREND_TIMEZONE", "Asia/Seoul")
        _, out, _ = _run("status", "--json")
        assert json.loads(out)["levels"][0]["oldest_dirty"].endswith("+09:00")

    def test_a_bad_setting_stops_the_command_with_its_name(self, env: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TREND_WORKER_THREADS", "zero")
        code, _, err = _run("status")
        assert code == 2
        assert "TREND_WORKER_THREADS" in err

    def test_backfill_refuses_an_inverted_range(self, env: str) -> None:
        code, _, err = _run("backfill", "--start", str(int(NOW)), "--end", str(int(NOW) - 60))
        assert code == 2
        assert "end: must be after start" in err


class TestQueryCommands:
    @pytest.fixture
    def seeded(self, env: str, tmp_path: Path) -> str:
        path = tmp_path / "e.jsonl"
        lines = [_line(k, minutes_ago=m) for k, n in (("우산", 4), ("coat", 2)) for m in range(n)]
        lines += [_line("coat", minutes_ago=90)]
        path.write_text("\n".join(lines) + "\n")
        assert _run("ingest", str(path))[0] == 0
        return env

    def test_top_as_json_and_table(self, seeded: str) -> None:
        code, out, _ = _run("top", "--event", "search", "--window", "1h", "--json")
        assert code == 0
        items = json.loads(out)["items"]
        assert [(i["key"], i["count"], i["is_new"]) for i in items] == [("우산", 4, True), ("coat", 2, False)]
        code, out, _ = _run("top", "--event", "search", "--window", "1h")
        assert "우산" in out
        assert "NEW" in out

    def test_series_and_rising(self, seeded: str) -> None:
        code, out, _ = _run("series", "--event", "search", "--key", "coat", "--interval", "1h", "--json")
        assert code == 0
        assert sum(p["count"] for p in json.loads(out)["points"]) == 3
        code, out, _ = _run("rising", "--event", "search", "--window", "15m", "--min-count", "1", "--json",
                            "--score", "zscore")
        assert [i["key"] for i in json.loads(out)["items"]] == ["우산", "coat"]
        code, out, _ = _run("rising", "--event", "search", "--window", "15m", "--min-count", "1", "--json")
        shape = json.loads(out)
        assert shape["score"] == "poisson"
        assert {i["key"]: (i["breakout"], i["growth_pct"]) for i in shape["items"]}["우산"] == (True, None)

    def test_titles_name_the_segment_and_a_short_history_hides_growth(self, seeded: str) -> None:
        _code, out, _ = _run("top", "--event", "search", "--segment", "kr")
        assert "top search in segment kr by count" in " ".join(out.split())
        _code, out, _ = _run("rising", "--event", "search", "--window", "15m", "--min-count", "1")
        assert "growth is not shown" in " ".join(out.split())  # the data is younger than the baseline
        assert "%" not in out.split("growth %", 1)[1]  # no +85600 % on a short history
        assert " – " in out

    def test_an_empty_answer_says_what_to_do(self, seeded: str) -> None:
        code, out, err = _run("top", "--event", "search", "--at", "now-7d")
        assert code == 0
        assert "rank" in out
        assert "no search events in this window" in " ".join(err.split())
        assert "trend demo" in err

    def test_a_bad_query_exits_2_with_the_reason(self, seeded: str) -> None:
        code, _, err = _run("top", "--event", "nosuch")
        assert code == 2
        assert "unknown event 'nosuch'" in err


class TestWording:
    def test_ingest_help_documents_every_event_field(self) -> None:
        code, out, _ = _run("ingest", "--help")
        assert code == 0
        for field in EventIn.model_fields:
            assert f"\n    {field} " in out, field


    def test_erasing_a_person_without_events_says_nothing_was_recomputed(self, env: str) -> None:
        code, out, _ = _run("erase-user", "nobody")
        assert code == 0
        assert "nothing erased, nothing recomputed" in out
        assert "rollups recomputed" not in out

    def test_deliveries_of_an_unknown_rule_is_an_error_as_remove_is(self, env: str) -> None:
        for command in (("alerts", "deliveries", "99"), ("alerts", "remove", "99")):
            code, out, err = _run(*command)
            assert code == 2, command
            assert "no alert rule 99" in err
            assert out == ""

    def test_alerts_list_shows_what_decides_each_rule(self, env: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TREND_ALERT_WEBHOOK_ALLOW", "127.0.0.1")
        hook = "http://127.0.0.1:9/x"  # never called
        _run("alerts", "add", "--event", "search", "--condition", "rising", "--min-score", "4.5", "--url", hook)
        _run("alerts", "add", "--event", "search", "--condition", "threshold", "--key", "우산", "--threshold", "50",
             "--segment", "kr", "--url", hook)
        _run("alerts", "add", "--event", "search", "--condition", "enters_top", "--top", "3", "--url", hook)
        code, out, _ = _run("alerts", "list")
        text = " ".join(out.split())
        assert code == 0
        for shown in ("poisson ≥ 4.5", "count ≥ 5", "우산 crosses 50", "enters top 3", "kr"):
            assert shown in text, shown


class TestErrors:
    @pytest.mark.parametrize(("name", "reason"), [("missing.jsonl", "no such file"), (".", "is a directory")])
    def test_ingest_of_an_unreadable_path_is_one_line_naming_it(self, env: str, tmp_path: Path, name: str,
                                                                reason: str) -> None:
        path = tmp_path / name
        code, out, err = _run("ingest", str(path))
        assert code == 2
        assert err.count("\n") == 1
        assert str(path) in err
        assert reason in err
        assert "Traceback" not in err + out

    def test_errors_under_json_are_json_on_stdout(self, env: str, tmp_path: Path) -> None:
        code, out, _err = _run("ingest", str(tmp_path / "missing.jsonl"), "--json")
        assert code == 2
        error = json.loads(out)["error"]
        assert error["code"] == "invalid_input"
        assert "missing.jsonl: no such file" in error["message"]

    @pytest.mark.parametrize(("command", "named"), [
        ("top --event search --window 7x --json", "--window"),
        ("top --json", "--event"),
        ("series --event search --interval 2m --json", "--interval"),
        ("alerts add --event search --json", "--condition"),
        ("rollup --level 1m --no-such-option --json", "--no-such-option"),
    ])
    def test_argument_errors_under_json_are_json_on_stdout(self, env: str, command: str, named: str) -> None:
        code, out, err = _run(*shlex.split(command))
        assert code == 2
        error = json.loads(out)["error"]
        assert error["code"] == "invalid_argument"
        assert named in error["message"]
        assert "Usage:" not in out + err

    def test_argument_errors_without_json_keep_clicks_usage_text(self, env: str) -> None:
        code, out, err = _run("top", "--event", "search", "--window", "7x")
        assert code == 2
        assert out == ""
        assert "Usage: " in err
        assert "--window" in err


class TestReadmeCommands:
    def test_every_command_of_the_readme_runs_as_written(self, env: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
        """The "Use it" block of the README, line by line, on a database with recent traffic: each
        command exits 0 (serve and worker run until stopped and are tested as processes)."""
        readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
        block = readme.split("## Use it", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
        commands = [shlex.split(line.split("  #", 1)[0]) for line in block.strip().splitlines()]
        with Trend(database_url=env) as trend:
            trend.ingest([{"event": "search", "key": "우산", "user_id": f"u{n}", "ts": NOW - 60 * (1 + n % 90)}
                          for n in range(300)])
        (tmp_path / "events.jsonl").write_text(_line("a") + "\n")
        monkeypatch.chdir(tmp_path)
        ran = []
        for command in commands:
            assert command[0] == "trend"
            if command[1] in ("serve", "worker"):
                continue
            arguments = ["u1" if part == "USER_ID" else part for part in command[1:]]
            code, out, err = _run(*arguments)
            assert code == 0, (command, out, err)
            ran.append(command[1])
        assert {"backfill", "ingest", "rollup", "top", "rising", "series", "erase-user"} <= set(ran)
