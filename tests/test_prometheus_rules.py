"""The shipped Prometheus rules (deploy/prometheus-rules.yml): valid for promtool, each alert fires
when it should (tests/prometheus/rules-test.yml), and every series they use is one trend exports.

promtool comes from Debian's ``prometheus`` package (``.ci/run`` installs it). The tests use
``TREND_TEST_PROMTOOL`` when it is set (a missing promtool then fails), else ``promtool`` on the PATH;
they skip only when neither has one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from trend.api.app import create_app
from trend.service import Trend

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus-rules.yml"
PROMTOOL = os.environ.get("TREND_TEST_PROMTOOL") or shutil.which("promtool")


@pytest.fixture
def promtool() -> str:
    if PROMTOOL is None:
        pytest.skip("no promtool on the PATH and TREND_TEST_PROMTOOL unset (Debian: prometheus)")
    if not Path(PROMTOOL).exists():
        pytest.fail(f"TREND_TEST_PROMTOOL is {PROMTOOL}, which does not exist")
    return PROMTOOL


def _run(promtool: str, *args: str) -> str:
    result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


class TestRules:
    def test_promtool_accepts_the_rules(self, promtool: str) -> None:
        assert "SUCCESS: 4 rules found" in _run(promtool, "check", "rules", str(RULES))

    def test_each_alert_fires_when_it_should(self, promtool: str) -> None:
        assert "SUCCESS" in _run(promtool, "test", "rules", "tests/prometheus/rules-test.yml")

    def test_every_series_in_the_rules_is_exported(self, database_url: str) -> None:
        expressions = [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
        used = {name for expr in expressions for name in re.findall(r"\b(trend_[a-z_]+)", expr)}
        assert any(expr.startswith("up{") for expr in expressions)  # Prometheus's own, for the targets
        with Trend(database_url=database_url, worker_enabled=False) as trend, \
                TestClient(create_app(trend=trend)) as client:
            exported = client.get("/metrics").text
        assert used == {"trend_database_up", "trend_lag_seconds", "trend_level_width_seconds", "trend_job_runs_total"}
        for name in used:
            assert re.search(rf"^{name}[{{ ]", exported, re.MULTILINE), name
        assert 'trend_job_runs_total{outcome="failed",trend_job="agg_1m"} 0.0' in exported
