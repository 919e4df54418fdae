"""Fill a scratch database with synthetic history quickly, in SQL: a long tail of 20,000 Zipf keys
(rank ``k`` drawn log-uniformly, so ``P(k) ∝ 1/k``: the top key has 7 % of events, the top 10 a
quarter, and nearly every key appears), three event types, three segments, 70% of events from one
of 200,000 users, spread evenly over a number of days.

The time column is deterministic on purpose: SQLite may flatten the subquery and evaluate a
``random()`` once per reference, which would give ``ts`` and ``minute`` different values.
"""

from __future__ import annotations

from sqlalchemy import text

from trend.model import MINUTE_MS
from trend.service import Trend
from trend.storage.write.events import remember_dimensions

_SQLITE = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :last)
INSERT INTO fact_events (ts, event, segment, key, value, received_at, minute, user_id)
SELECT t, e, s, k, v, t, t - t % 60000, u FROM (
  SELECT :start + i * :step + (i * 7919) % :step AS t,
         CASE WHEN abs(random()) % 10 < 7 THEN 'search' WHEN abs(random()) % 3 < 2 THEN 'view'
              ELSE 'purchase' END AS e,
         CASE abs(random()) % 3 WHEN 0 THEN '' WHEN 1 THEN 'kr' ELSE 'us' END AS s,
         'k' || CAST(exp((abs(random()) % 1000000) / 1000000.0 * ln(20001)) AS INTEGER) AS k,
         1.0 + abs(random()) % 5 AS v,
         CASE WHEN abs(random()) % 10 < 7 THEN 'user-' || (abs(random()) % 200000) END AS u
  FROM n)
"""
_POSTGRES = """
INSERT INTO fact_events (ts, event, segment, key, value, received_at, minute, user_id)
SELECT t, e, s, k, v, t, t - t % 60000, u FROM (
  SELECT :start + i * :step + (i * 7919) % :step AS t,
         CASE WHEN random() < 0.7 THEN 'search' WHEN random() < 0.67 THEN 'view' ELSE 'purchase' END AS e,
         (ARRAY['', 'kr', 'us'])[1 + floor(random() * 3)::int] AS s,
         'k' || floor(exp(random() * ln(20001)))::bigint AS k,
         1.0 + floor(random() * 5) AS v,
         CASE WHEN random() < 0.7 THEN 'user-' || floor(random() * 200000)::bigint END AS u
  FROM generate_series(0::bigint, :last) AS i) AS g
"""
# MariaDB's Sequence engine gives the numbers (seq_0_to_N); the column named key needs quoting there.
_MARIADB = """
INSERT INTO fact_events (ts, event, segment, `key`, value, received_at, minute, user_id)
SELECT t, e, s, k, v, t, t - t % 60000, u FROM (
  SELECT :start + seq * :step + (seq * 7919) % :step AS t,
         CASE WHEN rand() < 0.7 THEN 'search' WHEN rand() < 0.67 THEN 'view' ELSE 'purchase' END AS e,
         ELT(1 + floor(rand() * 3), '', 'kr', 'us') AS s,
         CONCAT('k', floor(exp(rand() * ln(20001)))) AS k,
         1.0 + floor(rand() * 5) AS v,
         CASE WHEN rand() < 0.7 THEN CONCAT('user-', floor(rand() * 200000)) END AS u
  FROM seq_0_to_{last}) AS g
"""
_MARK_ALL = """INSERT INTO rollup_dirty (level, bucket, version)
SELECT DISTINCT '1m', minute, 1 FROM fact_events WHERE minute >= :start AND minute < :end"""


def fill(trend: Trend, events: int, start_ms: int, end_ms: int, *, chunk: int = 1_000_000) -> None:
    """``events`` events evenly over ``[start, end)``, with their minutes marked dirty, nothing rolled up."""
    backend = trend.db.dialect.name
    step = max(1, (end_ms - start_ms) // events)
    for offset in range(0, events, chunk):
        count = min(chunk, events - offset)
        sql = {"sqlite": _SQLITE, "mariadb": _MARIADB.replace("{last}", str(count - 1))}.get(backend, _POSTGRES)
        with trend.db.write() as conn:
            conn.execute(text(sql), {"last": count - 1, "start": start_ms + offset * step, "step": step})
    with trend.db.write() as conn:
        conn.execute(text(_MARK_ALL), {"start": start_ms - start_ms % MINUTE_MS, "end": end_ms})
        remember_dimensions(conn, {(e, s) for e in ("search", "view", "purchase") for s in ("", "kr", "us")})
    with trend.db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE TABLE fact_events" if backend == "mariadb" else "ANALYZE")
