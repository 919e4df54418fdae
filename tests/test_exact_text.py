"""Keys, segments and user ids compare as Python compares them, on every backend: MariaDB's usual
collations fold case and ignore trailing spaces, which would merge ``a``, ``A`` and ``a `` into one key
and erase ``bob`` with ``Bob``. Checked against the reference model with normalization off, where
nothing else would tell those keys apart."""

from __future__ import annotations

import pytest

from tests.conftest import PROTOCOL_BACKENDS, T0, TrendFactory
from tests.reference import Reference, assert_levels_equal, ref_top, settle
from trend.clock import FakeClock
from trend.model import HOUR_MS

pytestmark = pytest.mark.parametrize("backend", PROTOCOL_BACKENDS, indirect=True)

# Equal under a case-blind or space-padding collation, or under Unicode normalization; never to Python.
KEYS = ["a", "A", "a ", "a  ", "ä", "a\u0308", "ß", "ss", "I", "ı", "\U0001f600", "한"]
USERS = ["Bob", "bob", "bob ", "BOB"]


def test_keys_that_differ_by_case_space_or_form_stay_apart(make_trend: TrendFactory, clock: FakeClock) -> None:
    trend = make_trend(key_normalization="none")
    reference = Reference()
    events = []
    for count, key in enumerate(KEYS, start=1):
        for n in range(count):
            ts = T0 - 20 * 60_000 + n * 1_000
            user = USERS[n % len(USERS)]
            events.append({"event": "search", "key": key, "segment": key, "user_id": user, "ts": ts / 1000})
            reference.add(ts, "search", key, segment=key, user_id=user)
    assert trend.ingest(events).accepted == len(events)
    settle(trend, clock.now_ms())
    assert_levels_equal(trend, reference.events, clock.now_ms())

    top = trend.top("search", window="1h", limit=len(KEYS) + 5)
    expected = ref_top(reference.events, "search", None, clock.now_ms() - HOUR_MS, clock.now_ms(), len(KEYS) + 5)
    assert [(item.key, item.count) for item in top.items] == expected
    assert {item.key: item.count for item in top.items} == {key: n for n, key in enumerate(KEYS, start=1)}
    for key in ("a", "A", "a ", "ä", "ss"):
        assert trend.top("search", segment=key, window="1h").items[0].count == KEYS.index(key) + 1
        points = trend.series("search", key=key, interval="1h", start_ms=T0 - HOUR_MS, end_ms=T0 + HOUR_MS).points
        assert sum(point.count for point in points) == KEYS.index(key) + 1


def test_erasing_a_user_erases_that_id_only(make_trend: TrendFactory, clock: FakeClock) -> None:
    trend = make_trend(key_normalization="none")
    events = [{"event": "search", "key": "k", "user_id": user, "ts": (T0 - 10 * 60_000) / 1000} for user in USERS]
    assert trend.ingest(events).accepted == len(USERS)
    assert trend.erase_user("Bob").events == 1
    settle(trend, clock.now_ms())
    top = trend.top("search", window="1h", by="users")
    assert [(item.key, item.count, item.users) for item in top.items] == [("k", 3, 3)]
