"""The dashboard's window switch: from choosing a Window to the chart drawn for it, in a real headless
Chromium (Debian's), against two servers on one database: this checkout and another (``--before``,
the ``src`` of a worktree of an earlier commit), measured in turn. A day of searches over a long tail
of keys, from many people, rolled up. Timed in the page: from the select's change event to the
chart's ``data-window`` naming the new window. Medians and ratios.

    git worktree add /tmp/before <commit>
    python -m bench.dashboard_switch --before /tmp/before/src [--before-query interval=1m] [--events 300000]
"""

from __future__ import annotations

import statistics
import tempfile

from playwright.sync_api import Page, sync_playwright
from tests.servers import Served

from bench.common import fill_a_day_of_searches, machine, parser

WINDOWS = ("24h", "6h", "1h", "7d")
WATCH = """() => {
  window.__switches = [];
  const chart = document.getElementById('chart');
  document.getElementById('window').addEventListener('change', () => { window.__began = performance.now(); });
  new MutationObserver(() => {
    if (window.__began !== undefined && chart.dataset.window === document.getElementById('window').value) {
      window.__switches.push(performance.now() - window.__began);
      window.__began = undefined;
    }
  }).observe(chart, { attributes: true, attributeFilter: ['data-window'] });
}"""


def _switch(page: Page, window: str) -> float:
    page.select_option("#window", window)
    page.wait_for_function("w => document.getElementById('chart').dataset.window === w "
                           "&& document.body.getAttribute('aria-busy') === 'false'", arg=window, timeout=60_000)
    took: float = page.evaluate("window.__switches[window.__switches.length - 1]")
    return took


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--before", required=True, help="the src folder of the code to compare with")
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--before-query", default="", help="more of the query string for the page on the other "
                   "checkout, e.g. interval=1m, the default before interval auto")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/switch.db"
        fill_a_day_of_searches(url, args.events)
        servers = {"before": Served(url, "--no-worker", PYTHONPATH=args.before),
                   "this checkout": Served(url, "--no-worker")}
        times: dict[str, dict[str, list[float]]] = {name: {w: [] for w in WINDOWS} for name in servers}
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                                     args=["--no-sandbox", "--disable-gpu"])
                pages = {}
                for name, server in servers.items():
                    # The page's CSP forbids eval, which wait_for_function uses; the app runs the same.
                    page = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
                    extra = f"&{args.before_query}" if name == "before" and args.before_query else ""
                    page.goto(f"{server.url}/?window=1h&refresh=3600{extra}")
                    page.wait_for_function("document.getElementById('chart').dataset.window === '1h'", timeout=60_000)
                    page.evaluate(WATCH)
                    pages[name] = page
                for _ in range(args.repeat):
                    for window in WINDOWS:
                        for name, page in pages.items():
                            times[name][window].append(_switch(page, window))
                browser.close()
        finally:
            for server in servers.values():
                server.stop()
    print(f"{machine()}; {args.events:,} events over a day, 20,000 keys; {args.repeat} switches to each window, "
          "in turn on the two servers; medians in ms\n")
    # The first switch to a window finds nothing kept in the server's caches; later ones find its answers.
    print("| switch to | first: before | first: this | later: before | later: this | later ratio |")
    print("|---|---|---|---|---|---|")
    for window in WINDOWS:
        first = [times[name][window][0] for name in servers]
        old, new = (statistics.median(times[name][window][1:] or times[name][window]) for name in servers)
        print(f"| {window} | {first[0]:.0f} | {first[1]:.0f} | {old:.0f} | {new:.0f} | {new / old:.2f} |")
    old, new = (statistics.median([t for w in WINDOWS for t in times[name][w][1:]] or [0.0]) for name in servers)
    print(f"| all | | | {old:.0f} | {new:.0f} | {new / old:.2f} |")


if __name__ == "__main__":
    main()
