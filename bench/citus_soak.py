"""How often the randomized soak catches Citus's commit window: the soak of
tests/faults/test_citus_soak.py, repeated with the guard as it is, with the commit barrier switched
off (the recovery call still runs before each read), and with nothing before the read at all; each
round on a new schema of the Citus cluster.

    python -m bench.citus_soak --rounds 5 --seconds 15
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import psycopg
from tests.traffic import soak

from bench.common import machine, parser
from trend.storage.dialects import CitusDialect


def _round(server: str, seconds: float) -> tuple[bool, Any]:
    schema = f"soak_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        outcome = soak(f"{server}?options=-csearch_path%3D{schema},public", seconds)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    if outcome.crashed:
        raise RuntimeError(f"a traffic thread stopped: {outcome.crashed[0]!r}")
    caught = bool(outcome.differences) or not outcome.settled
    return caught, outcome


def _nothing(conn: Any) -> None:
    """In place of a guard."""


GUARDS: dict[str, dict[str, Any]] = {
    "barrier and recovery (as shipped)": {},
    "recovery only (barrier off)": {"wait_for_committing_writers": staticmethod(_nothing)},
    "nothing": {"wait_for_committing_writers": staticmethod(_nothing), "recover_prepared": staticmethod(_nothing)},
}


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=15.0)
    args = p.parse_args()
    shipped = {name: CitusDialect.__dict__[name] for name in ("wait_for_committing_writers", "recover_prepared")}
    print(f"# {machine()}; {args.rounds} rounds of {args.seconds:.0f} s each, pid {os.getpid()}")
    print("| guard before the read | rounds | rounds that lost events | ingests per round | what differed |")
    print("|---|---|---|---|---|")
    for guard, replaced in GUARDS.items():
        for name, method in {**shipped, **replaced}.items():
            setattr(CitusDialect, name, method)
        caught, ingests, seen = 0, [], []
        for _ in range(args.rounds):
            lost, outcome = _round(args.citus_url, args.seconds)
            caught += lost
            ingests.append(outcome.ingests)
            seen.extend(outcome.differences)
        print(f"| {guard} | {args.rounds} | {caught} | {sum(ingests) // len(ingests)} | {'; '.join(seen) or '-'} |")
    for name, method in shipped.items():
        setattr(CitusDialect, name, method)


if __name__ == "__main__":
    main()
