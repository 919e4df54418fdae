"""The ``alerts`` job: evaluate every rule once a minute, then send the deliveries that are due.

Evaluation claims a rule for the minute through the database (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, the single writer on SQLite), so with many replicas each minute's firing happens once.
A firing and its cool-down are written in that same transaction, as a pending delivery with an id
of its own. One rule's failure is recorded on that rule and never stops the others. Delivery then
leases due deliveries, sends them outside any transaction, several at a time and each within the
timeout in all, and records the outcome: delivered, retried later with exponential backoff, or
failed after the last attempt. The lease outlasts every attempt of its batch; a process that dies
mid-send leaves it to expire and the delivery to be sent again with the same id: at least once.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from trend.alerts import webhook
from trend.alerts.rules import backoff_ms, checked_rule, public
from trend.clock import Clock
from trend.errors import QueryError, StorageError
from trend.logging import get_logger
from trend.model import ALERTS_JOB, MINUTE_MS, isoformat
from trend.query.trends import Queries
from trend.query.windows import Window, window_ms
from trend.rollup.shell import ActiveRun, Result, RunReport, RunShell
from trend.storage.engine import Database
from trend.storage.write import alerts as store

log = get_logger("alerts")
BATCH = 20  # deliveries leased at once
SENDERS = 8  # deliveries sent at the same time
LEASE_MARGIN_MS = 30_000  # beyond the longest a batch can take: recording the outcomes, a slow database


@dataclass(frozen=True)
class Firing:
    key: str
    figures: dict[str, Any]


@dataclass(frozen=True)
class DeliveryPolicy:
    allow: Sequence[webhook.Allowed]
    timeout_s: float
    max_attempts: int
    retry_base_ms: int


class Alerts:
    def __init__(self, db: Database, clock: Clock, queries: Queries, policy: DeliveryPolicy, zone: ZoneInfo,
                 should_stop: Callable[[], bool] = lambda: False,
                 on_report: Callable[[RunReport], None] | None = None) -> None:
        self.db = db
        self.clock = clock
        self.queries = queries
        self.policy = policy
        self.zone = zone
        self.shell = RunShell(db, clock, ALERTS_JOB, ALERTS_JOB, should_stop, on_report)

    def run(self) -> RunReport:
        return self.shell.run(self._work)

    def _work(self, active: ActiveRun) -> Result:
        now = self.clock.now_ms()
        with self.db.read() as tx:
            ids = [int(rule["id"]) for rule in store.rules(tx)]
        fired = 0
        for rule_id in ids:
            if active.should_stop():
                return Result("interrupted", len(ids), fired)
            fired += self._isolated(rule_id, now)
        sent = self.deliver(now)
        if not ids and not sent:
            return Result("skipped_no_data")
        line = log.info if fired or sent else log.debug
        line("Alerts: %d rules evaluated, %d fired, %d deliveries attempted", len(ids), fired, sent)
        return Result("ran", len(ids), fired + sent)

    # -- evaluation --

    def _isolated(self, rule_id: int, now: int) -> int:
        """One rule's evaluation; its failure is recorded on it and never stops the others."""
        try:
            return self._evaluate(rule_id, now)
        except Exception as exc:  # any failure of one rule: the next rule must still be evaluated
            error = f"{type(exc).__name__}: {exc}"
            log.error("Alert rule %d failed: %s", rule_id, error)
            try:
                with self.db.write() as tx:
                    store.record_failure(tx, rule_id, now - now % MINUTE_MS, error, now)
            except StorageError:
                log.exception("Alert rule %d: its failure could not be recorded", rule_id)
            return 0

    def failing_rules(self) -> int:
        with self.db.read() as tx:
            return store.failing_rules(tx)

    def _evaluate(self, rule_id: int, now: int) -> int:
        """Read, then write: the rule's queries run in read transactions of their own, and only then a
        short write transaction claims the rule's minute, provided nobody evaluated it since it was read,
        and records the firings. No write lock (SQLite's is the whole file) is held while the queries
        run; two replicas may both compute a minute, and only one records it."""
        minute = now - now % MINUTE_MS
        with self.db.read() as tx:
            rule = store.due_rule(tx, rule_id, minute)
        if rule is None:
            return 0
        previous = json.loads(rule["last_state"]) if rule["last_state"] else None
        firings, state = self._firings(rule, now, previous)
        window = Window.ending_at(now, window_ms(rule["window"]))
        with self.db.write() as tx:
            if not store.claim_evaluation(tx, rule_id, minute, rule["last_minute"]):
                return 0  # another process evaluated it meanwhile, or the rule went
            cooling = store.cooling(tx, rule_id, [f.key for f in firings], now - rule["cooldown_ms"])
            fresh = [f for f in firings if f.key not in cooling]
            for firing in fresh:
                store.record_fired(tx, rule_id, firing.key, now)
                delivery_id = str(uuid.uuid4())
                store.insert_delivery(tx, delivery_id, rule_id, firing.key,
                                      self._body(delivery_id, rule, firing, window, now), now)
            store.finish_evaluation(tx, rule_id, minute, state)
        for firing in fresh:
            log.info("Alert %r fired for %r", rule["name"], firing.key)
        return len(fresh)

    def _firings(self, rule: Mapping[str, Any], now: int, previous: Any) -> tuple[list[Firing], Any]:
        """The keys this rule fires for now, and the state the next evaluation compares with. A rule on
        an event never stored yet fires for nothing, and keeps its state."""
        try:
            return self._fired(rule, now, previous)
        except QueryError as exc:
            if exc.parameter == "event":
                return [], previous
            raise

    def _fired(self, rule: Mapping[str, Any], now: int, previous: Any) -> tuple[list[Firing], Any]:
        common = {"segment": rule["segment"], "window": rule["window"], "at_ms": now, "by": rule["by"]}
        if rule["condition"] == "rising":
            rising = self.queries.rising(rule["event"], min_count=rule["min_count"], limit=100,
                                         score=rule.get("score") or "zscore", **common)
            return [Firing(i.key, {"count": i.count, "users": i.users, "score": round(i.score, 3),
                                   "score_kind": rising.score, "breakout": i.breakout,
                                   "growth_pct": None if i.growth_pct is None else round(i.growth_pct, 1),
                                   "baseline": round(i.baseline, 3)})
                    for i in rising.items if i.score >= rule["min_score"]], None
        if rule["condition"] == "enters_top":
            top = self.queries.top(rule["event"], limit=rule["top"], **common)
            keys = [i.key for i in top.items]
            # The first evaluation only learns the top: every key would be "new" to it.
            before = set(previous) if isinstance(previous, list) else set(keys)
            return [Firing(i.key, {"rank": i.rank, "count": i.count, "users": i.users})
                    for i in top.items if i.key not in before], keys
        figures = self.queries.key_figures(rule["event"], rule["key"], segment=rule["segment"],
                                           window=rule["window"], at_ms=now)
        value = figures[rule["by"]] or 0
        above = value >= rule["threshold"]
        was_above = bool(previous and previous.get("above"))
        key = self.queries.normalize(rule["key"])  # rules stored before keys were normalized at creation
        return ([Firing(key, {**figures, "threshold": rule["threshold"]})] if above and not was_above
                else []), {"above": above}

    def _body(self, delivery_id: str, rule: Mapping[str, Any], firing: Firing | None, window: Window,
              now: int, *, test: bool = False) -> str:
        zone = self.zone
        return json.dumps({
            "id": delivery_id, "test": test, "fired_at": isoformat(now, zone), "rule": _timed(public(rule), zone),
            "key": None if firing is None else firing.key, "figures": {} if firing is None else firing.figures,
            "window": {"name": rule["window"], "start": isoformat(window.start, zone),
                       "end": isoformat(window.end, zone)},
        }, ensure_ascii=False, sort_keys=True)

    # -- rules --

    def add(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Store a rule; the answer shows its secret, once. A rule on an event not stored yet is
        allowed, with a warning: it fires for nothing until the event comes."""
        rule = checked_rule(spec)
        # The key as events store it: firings name it so, and erasing a person finds them by it.
        for field in ("key", "segment"):
            if rule[field] is not None:
                rule[field] = self.queries.normalize(rule[field])
        if rule["key"] is not None and not rule["key"]:
            raise QueryError("key", "is empty after normalization (TREND_KEY_NORMALIZATION)")
        try:
            webhook.check_address(rule["url"], self.policy.allow)
        except webhook.RefusedAddressError as exc:
            raise QueryError("url", str(exc)) from None
        known = self.queries.dimensions()
        warning = (f"no event {rule['event']!r} is stored yet; the rule fires for nothing until one is"
                   if rule["event"] not in known else None)
        with self.db.write() as tx:
            stored = store.rules(tx, store.insert_rule(tx, rule, self.clock.now_ms()))[0]
        if warning:
            log.warning("Alert rule %r: %s", stored["name"], warning)
        return {**public(stored), "secret": stored["secret"], "warning": warning}

    def rules(self) -> list[dict[str, Any]]:
        with self.db.read() as tx:
            return [public(rule) for rule in store.rules(tx)]

    def remove(self, rule_id: int) -> bool:
        with self.db.write() as tx:
            return store.delete_rule(tx, rule_id)

    def deliveries(self, rule_id: int | None = None, limit: int = 100) -> list[dict[str, Any]] | None:
        """The newest first; None for a rule that does not exist (an empty list is a rule not fired yet)."""
        with self.db.read() as tx:
            if rule_id is not None and not store.rules(tx, rule_id):
                return None
            return store.deliveries(tx, rule_id, limit)

    # -- delivery --

    def test(self, rule_id: int) -> dict[str, Any] | None:
        """One delivery marked as a test, sent now; None for an unknown rule."""
        now = self.clock.now_ms()
        with self.db.write() as tx:
            found = store.rules(tx, rule_id)
            if not found:
                return None
            delivery_id = str(uuid.uuid4())
            window = Window.ending_at(now, window_ms(found[0]["window"]))
            store.insert_delivery(tx, delivery_id, rule_id, None,
                                  self._body(delivery_id, found[0], None, window, now, test=True), now, test=True)
        self.deliver(now, only=delivery_id)
        with self.db.read() as tx:
            return store.deliveries(tx, delivery_id=delivery_id)[0]

    def deliver(self, now: int, only: str | None = None) -> int:
        """Send the due deliveries (or the one named) at once, :data:`SENDERS` at a time, each within
        the timeout in all; returns how many were leased. A slow receiver holds up only its own
        delivery. Each send starts only while its lease has room for the whole attempt and its record,
        and each outcome is recorded as soon as it is known, under that same lease: a lease that ran
        out (a starved machine) sends nothing more, so another process that takes the delivery over
        never sends it a second time behind this one's back."""
        leased_at = max(now, self.clock.now_ms())  # evaluating the rules may have taken a while
        with self.db.write() as tx:
            due = store.lease_due(tx, leased_at, self.lease_ms, BATCH, only)
        if due:
            webhook.run_sync(self._send_all(due))
        return len(due)

    @property
    def lease_ms(self) -> int:
        """Longer than a batch can take: its waves of SENDERS deliveries, each within the timeout, and
        the records."""
        waves = -(-BATCH // SENDERS)
        return int((waves + 1) * self.policy.timeout_s * 1000) + LEASE_MARGIN_MS

    async def _send_all(self, due: list[dict[str, Any]]) -> None:
        gate = asyncio.Semaphore(SENDERS)

        async def one(delivery: dict[str, Any]) -> None:
            async with gate:
                sent = await self._send_one(delivery)
            await asyncio.to_thread(self._record_isolated, delivery, sent)

        await asyncio.gather(*(one(delivery) for delivery in due))

    async def _send_one(self, delivery: Mapping[str, Any]) -> webhook.Sent | None:
        """One attempt, or None when the lease has no room left for it. Whatever goes wrong becomes
        this delivery's failure and never touches another's."""
        needed = int(self.policy.timeout_s * 1000) + LEASE_MARGIN_MS
        if self.clock.now_ms() + needed > int(delivery["lease_until"]):
            return None
        try:
            return await webhook.send(delivery["url"], delivery["secret"], delivery["body"], delivery["id"],
                                      self.policy.allow, self.policy.timeout_s)
        except Exception as exc:  # one delivery's bug must not stop the batch: recorded as its failure
            log.exception("Alert delivery %s could not be sent", delivery["id"])
            return webhook.Sent(False, None, f"{type(exc).__name__}: the delivery could not be sent")

    def _record_isolated(self, delivery: Mapping[str, Any], sent: webhook.Sent | None) -> None:
        try:
            self._record(delivery, sent, self.clock.now_ms())
        except StorageError as exc:
            # The lease runs out and another attempt comes: at least once.
            log.warning("Alert delivery %s: its outcome could not be recorded: %s", delivery["id"], exc)

    def _record(self, delivery: Mapping[str, Any], sent: webhook.Sent | None, now: int) -> None:
        if sent is None:
            log.warning("Alert delivery %s: its lease ran out before it could be sent; another attempt takes it",
                        delivery["id"])
            with self.db.write() as tx:
                store.give_back(tx, delivery["id"], lease=int(delivery["lease_until"]))
            return
        attempts = int(delivery["attempts"]) + 1
        if sent.ok:
            status, next_at, delivered = "delivered", now, now
        elif attempts >= self.policy.max_attempts or sent.final or delivery["test"]:
            # A test delivery is answered to the person who asked: it is never sent again later.
            status, next_at, delivered = "failed", now, None
            log.warning("Alert delivery %s failed for good after %d attempts: %s", delivery["id"], attempts,
                        sent.error)
        else:
            status, next_at, delivered = "pending", now + backoff_ms(attempts, self.policy.retry_base_ms), None
            log.info("Alert delivery %s: %s; retry %d at %s", delivery["id"], sent.error, attempts + 1,
                     isoformat(next_at, self.zone))
        with self.db.write() as tx:
            recorded = store.finish_attempt(tx, delivery["id"], lease=int(delivery["lease_until"]), status=status,
                                            attempts=attempts, next_attempt_at=next_at, last_status=sent.status,
                                            last_error=sent.error, delivered_at=delivered)
        if not recorded:
            log.warning("Alert delivery %s: its lease ran out while it was sent; its outcome was not recorded",
                        delivery["id"])


def _timed(rule: dict[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    """The rule's times as every other time of a delivery: ISO-8601 in the display zone."""
    return {**rule, **{name: isoformat(rule[name], zone) if rule.get(name) is not None else None
                       for name in ("created_at", "last_error_at") if name in rule}}
