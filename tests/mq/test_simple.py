"""The in-process message queue: routing key filters, order, failing consumers, stop."""

from __future__ import annotations

from typing import Any

from buildbot_rest.mq import SimpleMQ, matches


def test_filters_match_by_element_with_none_as_wildcard() -> None:
    assert matches(("builds", None, "new"), ("builds", "17", "new"))
    assert not matches(("builds", None, "new"), ("builds", "17", "finished"))
    assert not matches(("builds", None), ("builds", "17", "new"))  # length counts
    assert matches((), ())


def test_messages_reach_matching_consumers_in_order() -> None:
    mq = SimpleMQ()
    got: list[tuple[str, Any]] = []
    mq.consume(lambda k, m: got.append(("all", (k, m))), (None, None, None))
    mq.consume(lambda k, m: got.append(("new", (k, m))), ("builds", None, "new"))
    mq.produce(("builds", "1", "new"), {"buildid": 1})
    mq.produce(("builds", "1", "finished"), {"buildid": 1})
    mq.produce(("steps", "5"), {"stepid": 5})
    assert sorted(got[:2]) == [("all", (("builds", "1", "new"), {"buildid": 1})),
                               ("new", (("builds", "1", "new"), {"buildid": 1}))]
    assert got[2:] == [("all", (("builds", "1", "finished"), {"buildid": 1}))]


def test_a_failing_consumer_does_not_stop_the_others() -> None:
    mq = SimpleMQ()
    got: list[Any] = []

    def fail(key: Any, message: Any) -> None:
        raise RuntimeError("consumer bug")

    mq.consume(fail, ("x",))
    mq.consume(lambda k, m: got.append(m), ("x",))
    mq.produce(("x",), {"n": 1})
    assert got == [{"n": 1}]


def test_stop_consuming_and_stopping_the_service() -> None:
    mq = SimpleMQ()
    got: list[Any] = []
    consumer = mq.consume(lambda k, m: got.append(m), ("x",))
    mq.produce(("x",), {"n": 1})
    consumer.stopConsuming()
    consumer.stopConsuming()  # twice is harmless
    mq.produce(("x",), {"n": 2})
    mq.consume(lambda k, m: got.append(m), ("x",))
    mq.startService()
    mq.stopService()
    mq.produce(("x",), {"n": 3})
    assert got == [{"n": 1}]


def test_a_message_published_by_a_consumer_comes_after_the_current_one() -> None:
    mq = SimpleMQ()
    got: list[tuple[str, tuple[str, ...]]] = []

    def first(key: Any, message: Any) -> None:
        got.append(("first", key))
        if key == ("x", "new"):
            mq.produce(("x", "renamed"), {})

    mq.consume(first, ("x", None))
    mq.consume(lambda k, m: got.append(("second", k)), ("x", None))
    mq.produce(("x", "new"), {})
    assert got == [("first", ("x", "new")), ("second", ("x", "new")),
                   ("first", ("x", "renamed")), ("second", ("x", "renamed"))]


def test_a_routing_key_is_a_tuple_of_strings() -> None:
    import pytest

    mq = SimpleMQ()
    for bad in ("x/1/new", ("x", 1)):
        with pytest.raises(TypeError):
            mq.produce(bad, {})  # type: ignore[arg-type]
