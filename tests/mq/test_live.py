"""Live events: numbering, the resume window, subscriptions by filter, stop."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from buildbot_rest.mq import Event, LiveEvents, SimpleMQ, TooOld
from buildbot_rest.mq.live import MAX_KEY_LENGTH


def started(window: int = 5, start: float = 1000.0) -> tuple[SimpleMQ, LiveEvents]:
    mq = SimpleMQ()
    mq.startService()
    live = LiveEvents(mq, window=window, clock=lambda: start)
    live.startService()
    return mq, live


def keys(events: list[Event]) -> list[str]:
    return ["/".join(e.key) for e in events]


def test_events_are_numbered_from_the_start_time_in_microseconds() -> None:
    mq, live = started(start=1000.5)
    got: list[Event] = []
    live.subscribe(got.append, ("builds", None, None))
    assert live.last == 1000_500_000 - 1  # before any event
    mq.produce(("builds", "1", "new"), {"buildid": 1})
    mq.produce(("steps", "9", "new"), {"stepid": 9})  # numbered, not matched
    mq.produce(("builds", "1", "finished"), {"buildid": 1})
    assert [e.seq for e in got] == [1000_500_000, 1000_500_002]
    assert keys(got) == ["builds/1/new", "builds/1/finished"]
    assert got[0].message == {"buildid": 1}
    assert live.last == 1000_500_002


def test_every_key_length_is_consumed() -> None:
    mq, live = started()
    got: list[Event] = []
    for length in (1, 7, MAX_KEY_LENGTH):
        live.subscribe(got.append, (None,) * length)
        mq.produce(tuple(str(i) for i in range(length)), {})
    assert [len(e.key) for e in got] == [1, 7, MAX_KEY_LENGTH]


def test_a_filter_matches_keys_of_its_own_length_only() -> None:
    mq, live = started()
    got: list[Event] = []
    live.subscribe(got.append, ("builds", None))
    mq.produce(("builds", "1", "new"), {})
    mq.produce(("builds", "1"), {})
    assert keys(got) == ["builds/1"]


def test_the_ws_frame_is_upstreams_event_with_the_sequence_number() -> None:
    mq, live = started()
    got: list[Event] = []
    live.subscribe(got.append, (None, None, None))
    mq.produce(("builds", "1", "new"), {"buildid": 1, "state_string": "é", "x": None})
    frame = got[0].ws_frame()
    assert orjson.loads(frame) == {"k": "builds/1/new", "s": got[0].seq,
                                   "m": {"buildid": 1, "state_string": "é", "x": None}}
    assert frame.startswith(b'{"k":"builds/1/new","m":{')  # compact, in upstream's order
    assert got[0].ws_frame() is frame  # made once for every client


def test_resume_gives_the_missed_matching_events_in_order_then_live_ones() -> None:
    mq, live = started(window=10)
    mq.produce(("builds", "1", "new"), {"n": 1})
    since = live.last
    mq.produce(("builds", "2", "new"), {"n": 2})
    mq.produce(("steps", "3", "new"), {"n": 3})
    mq.produce(("builds", "4", "new"), {"n": 4})
    got: list[Event] = []
    live.subscribe(got.append, ("builds", None, "new"), since=since)
    assert [e.message["n"] for e in got] == [2, 4]
    mq.produce(("builds", "5", "new"), {"n": 5})
    assert [e.message["n"] for e in got] == [2, 4, 5]


def test_resume_from_the_latest_event_or_before_any_gives_nothing() -> None:
    mq, live = started(window=3)
    got: list[Event] = []
    live.subscribe(got.append, (None,), since=live.last)  # no event yet
    mq.produce(("a",), {})
    late: list[Event] = []
    live.subscribe(late.append, (None,), since=live.last)
    assert keys(got) == ["a"] and late == []


@pytest.mark.parametrize("window", [0, 3])
def test_resume_from_before_the_window_or_after_the_last_event_is_too_old(
        window: int) -> None:
    mq, live = started(window=window)
    for i in range(5):
        mq.produce(("builds", str(i)), {})
    oldest = live.last - window + 1
    got: list[Event] = []
    for since in (oldest - 2, live.last + 1, 7):  # (7: a number of another server)
        with pytest.raises(TooOld) as e:
            live.subscribe(got.append, ("builds", None), since=since)
        assert e.value.since == since and e.value.last == live.last
        assert "read the state again" in str(e.value)
    mq.produce(("builds", "9"), {})
    assert got == []  # no subscription was made
    if window:  # the whole window is still there
        live.subscribe(got.append, ("builds", None), since=live.last - window)
        assert [e.seq for e in got] == list(range(live.last - window + 1, live.last + 1))


def test_stopped_subscriptions_get_nothing_and_stop_twice_is_harmless() -> None:
    mq, live = started()
    got: list[Event] = []
    subscription = live.subscribe(got.append, (None,))
    subscription.stop()
    subscription.stop()
    mq.produce(("a",), {})
    assert got == []


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    mq, live = started()
    got: list[Event] = []

    def fail(event: Event) -> None:
        raise RuntimeError("client bug")

    live.subscribe(fail, (None,))
    live.subscribe(got.append, (None,))
    mq.produce(("a",), {})
    assert keys(got) == ["a"]


def test_a_subscriber_may_unsubscribe_another_while_an_event_is_given() -> None:
    mq, live = started()
    got: list[str] = []
    second: list[Any] = []

    def first(event: Event) -> None:
        got.append("first")
        second[0].stop()

    live.subscribe(first, (None,))
    second.append(live.subscribe(lambda e: got.append("second"), (None,)))
    mq.produce(("a",), {})
    assert got == ["first"]


class Client:
    def __init__(self, live: LiveEvents) -> None:
        self.live = live
        self.closed: list[tuple[int, str]] = []
        live.register(self)

    def close_live(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))
        self.live.unregister(self)


def test_a_stop_closes_the_clients_and_consumes_no_more() -> None:
    mq, live = started()
    clients = [Client(live), Client(live)]
    gone = Client(live)
    live.unregister(gone)
    assert live.clients == 2
    got: list[Event] = []
    live.subscribe(got.append, (None,))
    live.stopService()
    assert [c.closed for c in clients] == [[(1001, "server stopping")]] * 2
    assert gone.closed == [] and live.clients == 0
    mq.produce(("a",), {})
    assert got == []


def test_the_index_gives_each_event_to_exactly_the_matching_filters() -> None:
    """Checked against the queue's own ``matches`` over many random filters and keys,
    with wildcards anywhere, filters shared by several subscriptions, and stops."""
    import random

    from buildbot_rest.mq import matches

    rng = random.Random(12)
    mq, live = started()
    elements = ["a", "b", "c"]
    got: dict[int, list[str]] = {}
    subscriptions = {}
    for n in range(300):
        length = rng.randint(1, 4)
        key_filter = tuple(rng.choice([*elements, None]) for _ in range(length))
        got[n] = []
        subscriptions[n] = (key_filter, live.subscribe(
            lambda e, n=n: got[n].append("/".join(e.key)), key_filter))
    for n in rng.sample(sorted(subscriptions), 100):
        subscriptions.pop(n)[1].stop()
    keys = [tuple(rng.choice(elements) for _ in range(rng.randint(1, 4))) for _ in range(200)]
    for key in keys:
        mq.produce(key, {})
    for n, (key_filter, _) in subscriptions.items():
        assert got[n] == ["/".join(k) for k in keys if matches(key_filter, k)], key_filter
    for _, subscription in subscriptions.values():
        subscription.stop()
    assert live._index == {}  # (every level left empty is dropped)
