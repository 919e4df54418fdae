"""Alert rules, their cool-downs and their deliveries, in the database every replica shares."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update

from trend.storage.dialects import CHUNK, chunked
from trend.storage.shared.schema import alert_deliveries, alert_fired, alert_rules
from trend.storage.shared.tx import Tx

RULE_FIELDS = ("name", "event", "segment", "by", "condition", "window", "key", "min_score", "min_count", "top",
               "threshold", "url", "secret", "cooldown_ms", "score")


def insert_rule(tx: Tx, fields: Mapping[str, Any], now: int) -> int:
    values = {name: fields.get(name) for name in RULE_FIELDS}
    inserted = tx.execute(insert(alert_rules).values(**values, created_at=now).returning(alert_rules.c.id))
    return int(inserted.scalar_one())


def rules(tx: Tx, rule_id: int | None = None) -> list[dict[str, Any]]:
    query = select(alert_rules).order_by(alert_rules.c.id)
    if rule_id is not None:
        query = query.where(alert_rules.c.id == rule_id)
    return [dict(row._mapping) for row in tx.execute(query)]


def delete_rule(tx: Tx, rule_id: int) -> bool:
    """The rule goes, and its firings not yet sent are cancelled: they were made for its receiver."""
    removed = tx.execute(delete(alert_rules).where(alert_rules.c.id == rule_id)).rowcount
    tx.execute(delete(alert_fired).where(alert_fired.c.rule_id == rule_id))
    tx.execute(update(alert_deliveries).where(alert_deliveries.c.rule_id == rule_id,
                                              alert_deliveries.c.status == "pending").values(
        status="failed", last_error="cancelled: the rule was deleted", lease_until=None))
    return bool(removed)


def record_failure(tx: Tx, rule_id: int, minute: int, error: str, now: int) -> None:
    """The rule's evaluation for ``minute`` failed: said on the rule, and not tried again this minute."""
    tx.execute(update(alert_rules).where(alert_rules.c.id == rule_id).values(
        last_minute=minute, last_error=error[:500], last_error_at=now))


def failing_rules(tx: Tx) -> int:
    return int(tx.execute(select(func.count()).where(alert_rules.c.last_error.is_not(None))).scalar_one())


def due_rule(tx: Tx, rule_id: int, minute: int) -> dict[str, Any] | None:
    """The rule, if nobody has evaluated it for ``minute`` yet."""
    row = tx.execute(select(alert_rules).where(
        alert_rules.c.id == rule_id,
        or_(alert_rules.c.last_minute.is_(None), alert_rules.c.last_minute < minute))).first()
    return None if row is None else dict(row._mapping)


def claim_evaluation(tx: Tx, rule_id: int, minute: int, seen: int | None) -> bool:
    """Lock the rule for this transaction, if its last evaluated minute is still ``seen`` (read before
    its queries ran) and older than ``minute``. Replicas that find it locked or moved pass it over, so
    each minute's evaluation is recorded once."""
    last = alert_rules.c.last_minute
    unmoved = last.is_(None) if seen is None else last == seen
    query = select(alert_rules.c.id).where(alert_rules.c.id == rule_id, unmoved, or_(last.is_(None), last < minute))
    return tx.execute(tx.dialect.claim(query)).first() is not None


def finish_evaluation(tx: Tx, rule_id: int, minute: int, state: Any) -> None:
    tx.execute(update(alert_rules).where(alert_rules.c.id == rule_id).values(
        last_minute=minute, last_state=json.dumps(state), last_error=None, last_error_at=None))


def cooling(tx: Tx, rule_id: int, keys: Iterable[str], since: int) -> set[str]:
    """The keys among ``keys`` that fired for the rule at or after ``since`` (still cooling down)."""
    wanted = list(keys)
    if not wanted:
        return set()
    found = tx.execute(select(alert_fired.c.key).where(
        alert_fired.c.rule_id == rule_id, tx.dialect.one_of(alert_fired.c.key, wanted),
        alert_fired.c.fired_at >= since))
    return {key for (key,) in found}


def record_fired(tx: Tx, rule_id: int, key: str, now: int) -> None:
    tx.execute(tx.dialect.upsert(alert_fired, ["rule_id", "key"], {"fired_at": now},
                                 rule_id=rule_id, key=key, fired_at=now))


def insert_delivery(tx: Tx, delivery_id: str, rule_id: int, key: str | None, body: str, now: int, *,
                    test: bool = False) -> None:
    tx.execute(insert(alert_deliveries).values(
        id=delivery_id, rule_id=rule_id, key=key, body=body, test=int(test), created_at=now, status="pending",
        attempts=0, next_attempt_at=now))


def lease_due(tx: Tx, now: int, lease_ms: int, limit: int, only: str | None = None) -> list[dict[str, Any]]:
    """Pending deliveries due now and not leased by a live sender, leased to this one."""
    d = alert_deliveries.c
    query = (select(d.id).where(d.status == "pending", d.next_attempt_at <= now,
                                or_(d.lease_until.is_(None), d.lease_until < now))
             .order_by(d.next_attempt_at).limit(limit))
    if only is not None:
        query = query.where(d.id == only)
    ids = [row.id for row in tx.execute(tx.dialect.claim(query))]
    if not ids:
        return []
    # The lease's end is also its fence: a later lease of the same delivery ends later.
    tx.execute(update(alert_deliveries).where(d.id.in_(ids)).values(lease_until=now + lease_ms))
    found = tx.execute(select(alert_deliveries, alert_rules.c.url, alert_rules.c.secret)
                       .join(alert_rules, alert_rules.c.id == d.rule_id).where(d.id.in_(ids)))
    return [dict(row._mapping) for row in found]


def finish_attempt(tx: Tx, delivery_id: str, *, lease: int, status: str, attempts: int, next_attempt_at: int,
                   last_status: int | None, last_error: str | None, delivered_at: int | None) -> bool:
    """Record an attempt's outcome, if the delivery is still under the lease it was sent under."""
    d = alert_deliveries.c
    return bool(tx.execute(update(alert_deliveries).where(d.id == delivery_id, d.lease_until == lease).values(
        status=status, attempts=attempts, next_attempt_at=next_attempt_at, lease_until=None, last_status=last_status,
        last_error=last_error, delivered_at=delivered_at)).rowcount)


def give_back(tx: Tx, delivery_id: str, *, lease: int) -> None:
    """A lease not used: the delivery is due again at once, for whichever process leases it next."""
    d = alert_deliveries.c
    tx.execute(update(alert_deliveries).where(d.id == delivery_id, d.lease_until == lease).values(lease_until=None))


def deliveries(tx: Tx, rule_id: int | None = None, limit: int = 100,
               delivery_id: str | None = None) -> list[dict[str, Any]]:
    d = alert_deliveries.c
    conditions = []
    if rule_id is not None:
        conditions.append(d.rule_id == rule_id)
    if delivery_id is not None:
        conditions.append(d.id == delivery_id)
    query = select(alert_deliveries).where(*conditions)
    return [dict(row._mapping) for row in tx.execute(query.order_by(d.created_at.desc(), d.id).limit(limit))]


REDACTED_BODY = '{"redacted": "the firing named a key of a person whose data was erased"}'


def redact_keys(tx: Tx, keys: Collection[str]) -> int:
    """Erasure: firings of ``keys`` lose their key and body, and those not yet sent are never sent. A
    firing cannot tell whose events made it, so every firing of a key the person sent goes."""
    if not keys:
        return 0
    d = alert_deliveries.c
    redacted = 0
    for part in chunked(sorted(keys), CHUNK):
        tx.execute(update(alert_deliveries).where(d.key.in_(part), d.status == "pending").values(
            status="failed", last_error="redacted: the person's data was erased", lease_until=None))
        redacted += tx.execute(update(alert_deliveries).where(d.key.in_(part)).values(
            key=None, body=REDACTED_BODY)).rowcount
        tx.execute(alert_fired.delete().where(alert_fired.c.key.in_(part)))
    return int(redacted)
