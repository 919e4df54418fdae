"""A randomized soak of Citus's commit window, with no debugger: many small concurrent ingests into
a few closed minutes, and two runners going continuously, on a private cluster. Once the ingesters
stop, the runners alone must bring every level to the truth; the test never runs a level itself.

``python -m bench.citus_soak`` repeats it with the commit barrier switched off, to measure how often
this catches the unguarded code (docs/reliability.md).
"""

from __future__ import annotations

import os

import pytest

from tests.clusters import PrivateCitus
from tests.traffic import soak

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.citus]
SECONDS = float(os.environ.get("TREND_SOAK_SECONDS", "15"))


class TestSoak:
    def test_ingests_and_two_runners_converge_to_the_truth_by_themselves(self, citus_cluster: PrivateCitus) -> None:
        outcome = soak(citus_cluster.database("soak"), SECONDS)
        assert not outcome.crashed, outcome.crashed
        assert outcome.ingests > 100  # enough two-phase commits for the window to matter
        assert outcome.settled, "closed buckets were still dirty a minute after the ingests stopped"
        assert outcome.differences == [], outcome.differences
