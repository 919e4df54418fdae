"""The dashboard in a real headless Chromium (Debian's), against a served app with a seeded database.

Screenshots at desktop and phone width are saved on every run, to the folder printed by the test
(``TREND_SCREENSHOTS``, default ``screenshots/``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Page, Route, expect, sync_playwright

from tests.servers import Served, answers, environment, free_port
from trend.service import Trend

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
SCRIPT_KEY = "<script>alert(1)</script>"
SHOTS = Path(os.environ.get("TREND_SCREENSHOTS", "screenshots")).resolve()


def _seed(database_url: str) -> None:
    """Previous hour: gamma 25, alpha 5. This hour: alpha 30 (from 3 people), 베타 20, gamma 10, a hostile key 9,
    delta 8 (now, from 1 person); the others from one person per event."""
    now = time.time()
    events = []
    for key, count, minutes_ago, people in (("gamma", 25, 90, 25), ("alpha", 5, 90, 5), ("alpha", 30, 30, 3),
                                            ("베타", 20, 40, 20), ("gamma", 10, 20, 10), (SCRIPT_KEY, 9, 25, 9),
                                            ("delta", 8, 1, 1)):
        events += [{"event": "search", "key": key, "ts": now - minutes_ago * 60 - n, "user_id": f"{key}-{n % people}"}
                   for n in range(count)]
    events.append({"event": "view", "key": "item-1", "segment": "kr", "ts": now - 60})
    with Trend(database_url=database_url, worker_enabled=False, log_level="WARNING") as trend:
        trend.ingest(events)
        trend.rollup()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # Fail, never skip, when Chromium cannot start: CI installs it.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    url = f"sqlite:///{tmp_path / 'dashboard.db'}"
    _seed(url)
    server = Served(url, "--no-worker")
    yield server
    server.stop()


def _keys(page: Page, table: str) -> list[str]:
    return page.locator(f"#{table} tbody button.key").all_text_contents()


class TestDashboard:
    def test_top_new_badge_chart_window_and_live_refresh(self, browser: Browser, served: Served) -> None:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        dialogs: list[str] = []

        def on_dialog(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.goto(f"{served.url}/?refresh=1&tz=Asia/Seoul")
        expect(page.locator("#top tbody button.key").first).to_have_text("alpha")
        assert _keys(page, "top") == ["alpha", "베타", "gamma", SCRIPT_KEY, "delta"]
        rows = page.locator("#top tbody tr")
        expect(rows.nth(1).locator(".badge")).to_have_text("NEW")  # 베타 was not in the previous hour
        expect(rows.nth(0).locator(".up")).to_have_text("▲ 1")  # alpha: 2nd before, 1st now
        expect(rows.nth(2).locator(".down")).to_have_text("▼ 2")  # gamma: 1st before, 3rd now
        assert rows.nth(0).locator(".badge").count() == 0
        assert dialogs == []  # the <script> key is text, not markup
        expect(page.locator("#top-range")).to_contain_text(":")
        expect(page.locator("#chart canvas")).to_have_count(1)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "dashboard-desktop.png"), full_page=True)

        with page.expect_request(lambda request: "v1/series" in request.url and "key=gamma" in request.url):
            page.locator("#top tbody button.key", has_text="gamma").click()
        expect(page.locator("#chart-title")).to_have_text("Series: gamma")
        expect(page.locator("#chart")).to_have_attribute("data-keys", "gamma")
        assert "key=gamma" in page.url  # the view is kept in the URL, so it can be shared

        page.select_option("#window", "5m")
        expect(page.locator("#top tbody button.key")).to_have_text(["delta"])
        assert "window=5m" in page.url

        response = httpx.post(f"{served.url}/v1/events", json=[{"event": "search", "key": "epsilon"}] * 12)
        assert response.status_code == 202
        expect(page.locator("#top tbody button.key").first).to_have_text("epsilon", timeout=10_000)
        page.close()

    def test_rank_by_users_reorders_and_shows_users(self, browser: Browser, served: Served) -> None:
        """One account sending many events does not top the list by users: alpha's 30 events came from 3."""
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{served.url}/?refresh=1")
        expect(page.locator("#top tbody button.key").first).to_have_text("alpha")
        expect(page.locator("#top tbody tr").first.locator("td").nth(3)).to_have_text("3")
        page.select_option("#by", "users")
        expect(page.locator("#top tbody button.key")).to_have_text(["베타", "gamma", SCRIPT_KEY, "alpha", "delta"])
        assert "by=users" in page.url
        page.close()

    def test_phone_width_has_no_horizontal_scroll(self, browser: Browser, served: Served) -> None:
        page = browser.new_page(viewport={"width": 390, "height": 844})
        page.goto(f"{served.url}/")
        expect(page.locator("#top tbody button.key").first).to_have_text("alpha")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        expect(page.locator("#chart canvas")).to_have_count(1)  # the screenshot shows the chart drawn
        page.screenshot(path=str(SHOTS / "dashboard-phone.png"), full_page=True)
        print(f"screenshots saved in {SHOTS}")
        page.close()

    def test_empty_state(self, browser: Browser, tmp_path: Path) -> None:
        server = Served(f"sqlite:///{tmp_path / 'empty.db'}", "--no-worker")
        try:
            page = browser.new_page()
            page.goto(f"{server.url}/")
            expect(page.locator("#empty")).to_be_visible()
            expect(page.locator("#empty")).to_contain_text("trend demo")
            expect(page.locator("#top tbody")).to_contain_text("No events in this window")
            expect(page.locator("#error")).to_be_hidden()
            page.close()
        finally:
            server.stop()

    def test_error_state(self, browser: Browser, served: Served) -> None:
        page = browser.new_page()

        def fail(route: Route) -> None:
            route.fulfill(status=503, content_type="application/json",
                          body='{"error": {"code": "database_unavailable", "message": "the database is unavailable"}}')

        page.goto(f"{served.url}/?refresh=1")
        expect(page.locator("#top tbody button.key").first).to_have_text("alpha")
        page.route("**/v1/top*", fail)
        expect(page.locator("#error")).to_be_visible(timeout=10_000)
        expect(page.locator("#error")).to_contain_text("the database is unavailable")
        assert _keys(page, "top")[0] == "alpha"  # the last data stays on screen
        page.unroute("**/v1/top*")
        expect(page.locator("#error")).to_be_hidden(timeout=10_000)
        page.close()


def _local_only(route: Route) -> None:
    """No internet, as on a machine that has none: anything not on loopback fails."""
    if route.request.url.startswith("http://127.0.0.1"):
        route.continue_()
    else:
        route.abort()


class TestChartAxis:
    def test_the_time_axis_uses_24_hours_like_the_tables(self, browser: Browser, served: Served) -> None:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{served.url}/?interval=1m")
        expect(page.locator("#chart")).to_have_attribute("data-x-labels", re.compile(r"\d"))
        labels = (page.locator("#chart").get_attribute("data-x-labels") or "").split("|")
        assert labels
        assert all(re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", label) for label in labels), labels
        page.close()


class TestLabels:
    def test_a_day_long_window_dates_both_ends_and_the_legend_names_the_lines(
            self, browser: Browser, served: Served) -> None:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{served.url}/?window=24h&tz=UTC")
        expect(page.locator("#top tbody button.key").first).to_be_visible()
        label = page.locator("#top-range").text_content() or ""
        start, end = label.split(" – ")
        assert re.search(r"\d{1,2} [A-Z][a-z]{2}", start), label  # "26 Nov, 15:38:00"
        assert re.search(r"\d{1,2} [A-Z][a-z]{2}", end), label
        legend = page.locator("#chart .u-legend").text_content() or ""
        assert "--" not in legend, legend
        assert "alpha" in legend  # the lines are named from the start
        page.close()


class TestPartialBaseline:
    def test_a_baseline_longer_than_the_history_is_said_and_no_growth_is_shown(
            self, browser: Browser, served: Served) -> None:
        """The seeded history is 90 minutes; rising's 12 windows of 15m reach 3 hours back."""
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(served.url)
        expect(page.locator("#rising tbody button.key").first).to_be_visible()
        expect(page.locator("#rising-note")).to_be_visible()
        expect(page.locator("#rising-note")).to_contain_text("Less history than the 12 windows")
        growth = page.locator("#rising tbody tr td:nth-child(4)").all_text_contents()
        assert growth
        assert set(growth) == {"–"}
        page.close()


class TestApiDocsOffline:
    def test_docs_render_without_the_internet_at_the_root_and_under_a_prefix(
            self, browser: Browser, served: Served, tmp_path: Path) -> None:
        """Swagger UI comes from the package: with every outside request refused, /docs lists trend's
        operations, and so does the docs link of the dashboard when an app mounts trend under /trend."""
        page = browser.new_page()
        page.route("**/*", _local_only)
        page.goto(f"{served.url}/docs")
        expect(page.locator(".swagger-ui .opblock-summary-path").first).to_be_visible(timeout=15_000)
        paths = page.locator(".swagger-ui .opblock-summary-path").all_text_contents()
        assert "/v1/events" in "".join(paths)
        port = free_port()
        app = subprocess.Popen([sys.executable, "-m", "uvicorn", "examples.embedded_app:app", "--port", str(port)],
                               env=environment(f"sqlite:///{tmp_path / 'shop.db'}"), cwd=Path(__file__).parents[1],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            assert answers(f"http://127.0.0.1:{port}/trend/healthz", 30)
            page.goto(f"http://127.0.0.1:{port}/trend/")
            page.get_by_role("link", name="API docs").click()
            expect(page.locator(".swagger-ui .opblock-summary-path").first).to_be_visible(timeout=15_000)
            assert page.url == f"http://127.0.0.1:{port}/trend/docs"
            servers = page.locator(".swagger-ui .servers select").input_value()
            assert servers == "/trend"  # "Try it out" calls /trend/v1/...
        finally:
            app.terminate()
            app.communicate(timeout=30)
        page.close()
