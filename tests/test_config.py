"""Settings: typed, validated at start-up, and every error names the TREND_* variable."""

from __future__ import annotations

import pytest

from trend.config import JobSettings, load_settings, parse_duration
from trend.errors import ConfigError
from trend.model import DAY_MS, HOUR_MS


class TestSettings:
    def test_defaults_match_the_seed(self) -> None:
        """The seed's jobs: 1m at second 5, 5m at */5 second 15, 1h at minute 1; pool of 2; [트렌드] prefix."""
        s = load_settings()
        assert (s.jobs["agg_1m"].second, s.jobs["agg_1m"].minute) == ("5", "*")
        assert (s.jobs["agg_5m"].second, s.jobs["agg_5m"].minute) == ("15", "*/5")
        assert (s.jobs["agg_1h"].second, s.jobs["agg_1h"].minute, s.jobs["agg_1h"].hour) == ("0", "1", "*")
        assert s.worker_threads == 2
        assert s.log_prefix == "[트렌드]"
        assert s.database_url == "sqlite:///trend.db"
        assert s.accepted_lateness == 6 * DAY_MS

    def test_nested_job_settings_come_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TREND_JOBS__AGG_5M__MINUTE", "*/10")
        monkeypatch.setenv("TREND_JOBS__AGG_1H__HOUR", "0-6")
        monkeypatch.setenv("TREND_JOBS__RETENTION__ENABLED", "false")
        monkeypatch.setenv("TREND_RETENTION__5M", "120d")
        s = load_settings()
        assert s.jobs["agg_5m"].minute == "*/10"
        assert s.jobs["agg_5m"].second == "15"  # the other fields keep the seed's values
        assert s.jobs["agg_1h"].hour == "0-6"
        assert s.jobs["retention"].enabled is False
        assert s.retention["5m"] == 120 * DAY_MS

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("TREND_JOBS__AGG_1M__SECOND", "99"),
            ("TREND_JOBS__AGG_1H__HOUR", "25"),
            ("TREND_JOBS__AGG_5M__MINUTE", "every five"),
            ("TREND_WORKER_THREADS", "0"),
            ("TREND_WORKER_ENABLED", "perhaps"),
            ("TREND_TIMEZONE", "Mars/Olympus"),
            ("TREND_LOG_LEVEL", "LOUD"),
            ("TREND_ACCEPTED_LATENESS", "six days"),
            ("TREND_DATABASE_URL", "oracle://x"),
            ("TREND_RETENTION__RAW", "1d"),
            ("TREND_WARM_UP_SECONDS", "-1"),
            ("TREND_WARM_UP_SECONDS", "nan"),
            ("TREND_WARM_UP_SECONDS", "1e308"),
        ],
    )
    def test_a_bad_setting_names_its_variable(self, monkeypatch: pytest.MonkeyPatch, variable: str,
                                              value: str) -> None:
        monkeypatch.setenv(variable, value)
        with pytest.raises(ConfigError) as caught:
            load_settings()
        assert caught.value.setting == variable
        assert variable in str(caught.value)

    def test_lateness_longer_than_a_source_retention_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A late event would recompute from data already deleted, so the pair is refused."""
        monkeypatch.setenv("TREND_ACCEPTED_LATENESS", "10d")
        with pytest.raises(ConfigError, match=r"TREND_RETENTION__RAW.*TREND_ACCEPTED_LATENESS"):
            load_settings()

    def test_durations(self) -> None:
        assert parse_duration("6d") == 6 * DAY_MS
        assert parse_duration("90s") == 90_000
        assert parse_duration(" 2h ") == 2 * HOUR_MS
        with pytest.raises(ValueError, match="duration"):
            parse_duration("6 days")


class TestCronFields:
    @pytest.mark.parametrize(("field", "top"), [("second", 59), ("minute", 59), ("hour", 23)])
    def test_a_cron_field_is_accepted_exactly_when_the_scheduler_accepts_it(self, field: str, top: int) -> None:
        """Plain forms are checked without loading APScheduler; the verdict must be the scheduler's."""
        from apscheduler.triggers.cron import CronTrigger

        def scheduler_takes(value: str) -> bool:
            try:
                CronTrigger(**{field: value}, timezone="UTC")
            except ValueError:
                return False
            return True

        def settings_take(value: str) -> bool:
            try:
                JobSettings.model_validate({field: value})
            except ValueError:
                return False
            return True

        values = ["*", "00", "07", "-1", "+1", " 1", "*/00", "*/05", "1-5", "abc", "*/x", ""]
        values += [str(n) for n in range(top + 20)] + [f"*/{n}" for n in range(top + 20)]
        assert [v for v in values if scheduler_takes(v) != settings_take(v)] == []
