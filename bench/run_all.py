"""Every benchmark on SQLite, one after another, with the settings docs/benchmarks.md quotes where
they run in minutes (``make bench``). Each prints its own table; add ``--backend postgres`` by hand.

    python -m bench.run_all
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

RUNS: list[list[str]] = [
    ["bench.rollup_minute"],
    ["bench.ingest", "--repeat", "3"],
    ["bench.file_ingest", "--events", "200000", "--repeat", "5"],
    ["bench.top_cached", "--samples", "50"],
    ["bench.reads", "--events", "2000000", "--days", "2", "--samples", "40"],
    ["bench.catch_up", "--events", "2000000", "--processes", "1", "2"],
]


def main() -> None:
    runs = list(RUNS)
    if shutil.which("hey"):
        runs.append(["bench.http_ingest", "--seconds", "8", "--rounds", "3"])
    else:
        print("# bench.http_ingest skipped: hey is not installed (apt install hey)")
    for args in runs:
        print(f"\n## python -m {' '.join(args)}", flush=True)
        began = time.monotonic()
        subprocess.run([sys.executable, "-m", *args], check=True)
        print(f"# took {time.monotonic() - began:.0f} s", flush=True)


if __name__ == "__main__":
    main()
