"""What /ws and /sse share: subscription paths and the bounded send queue."""

from __future__ import annotations

import pytest
from twisted.internet import task

from buildbot_rest.www import live
from buildbot_rest.www.live import Backlog, Flusher, key_filter


@pytest.mark.parametrize(("path", "wanted"), [
    ("builds/*/*", ("builds", None, None)),
    ("builders/5/*", ("builders", "5", None)),
    ("*", (None,)),
    ("", ("",)),  # matches nothing, as upstream
    ("/builds/*", ("", "builds", None)),  # a leading / is an empty element
    ("builds/**/x", ("builds", "**", "x")),  # only a whole * is a wildcard
    (["builds", "a/b", "*"], ("builds", "a/b", None)),  # (/sse's decoded elements)
])
def test_paths_become_filters_as_upstream_reads_them(
        path: str | list[str], wanted: tuple[str | None, ...]) -> None:
    assert key_filter(path) == wanted


class Sink:
    def __init__(self, flusher: Flusher | None = None) -> None:
        self.written: list[bytes] = []
        self.overflows: list[int] = []
        self.backlog = Backlog(self.write, 10, self.overflows.append, flusher)
        #: pause the backlog once this many writes were made
        self.pause_after: int | None = None

    def write(self, data: bytes) -> None:
        self.written.append(data)
        if self.pause_after is not None and len(self.written) >= self.pause_after:
            self.backlog.pauseProducing()


def test_items_go_out_at_once_while_the_transport_takes_them() -> None:
    sink = Sink()
    sink.backlog.send(b"a")
    sink.backlog.send(b"b" * 400)  # (only what waits counts against the limit)
    assert sink.written == [b"a", b"b" * 400] and sink.backlog.size == 0


def test_items_wait_while_paused_and_go_out_in_order_on_resume() -> None:
    sink = Sink()
    sink.backlog.pauseProducing()
    for item in (b"aaa", b"bbb", b"ccc"):
        sink.backlog.send(item)
    assert sink.written == [] and sink.backlog.size == 9
    sink.pause_after = 2  # the transport fills up again after "b"
    sink.backlog.resumeProducing()
    assert sink.written == [b"aaa", b"bbb"] and sink.backlog.size == 3
    sink.backlog.send(b"d")  # behind "c", not before it
    sink.pause_after = None
    sink.backlog.resumeProducing()
    assert sink.written == [b"aaa", b"bbb", b"ccc", b"d"] and sink.backlog.size == 0


def test_more_than_the_limit_waiting_overflows_once_and_drops_everything() -> None:
    sink = Sink()
    sink.backlog.pauseProducing()
    sink.backlog.send(b"a" * 6)
    sink.backlog.send(b"b" * 4)  # 10: at the limit
    assert sink.overflows == []
    sink.backlog.send(b"c")
    assert sink.overflows == [11]
    assert sink.backlog.closed and sink.backlog.size == 0
    sink.backlog.send(b"d")
    sink.backlog.resumeProducing()
    assert sink.written == [] and sink.overflows == [11]


def test_stop_producing_drops_what_waits() -> None:
    sink = Sink()
    sink.backlog.pauseProducing()
    sink.backlog.send(b"a")
    sink.backlog.stopProducing()
    sink.backlog.resumeProducing()
    sink.backlog.send(b"b")
    assert sink.written == []


def test_a_flusher_writes_the_bytes_of_a_turn_once_per_backlog() -> None:
    clock = task.Clock()
    flusher = Flusher(clock)
    one, two = Sink(flusher), Sink(flusher)
    one.backlog.send(b"a")
    two.backlog.send(b"x")
    one.backlog.send(b"bc")
    assert one.written == two.written == []
    clock.advance(0)
    assert (one.written, two.written) == ([b"abc"], [b"x"])
    clock.advance(0)  # nothing more to write
    assert (one.written, two.written) == ([b"abc"], [b"x"])


def test_gathered_bytes_only_count_against_the_limit_once_they_wait() -> None:
    clock = task.Clock()
    one, two = Sink(Flusher(clock)), Sink(Flusher(clock))
    for sink in (one, two):
        sink.backlog.send(b"a" * 8)
        sink.backlog.send(b"b" * 30)  # (more than the limit, gathered: not behind)
        assert sink.overflows == [] and sink.backlog.size == 0
    two.backlog.pauseProducing()  # (they wait now: counted)
    assert two.backlog.size == 38
    clock.advance(0)
    assert one.written == [b"a" * 8 + b"b" * 30] and one.overflows == []
    assert two.written == []
    two.backlog.send(b"c")
    assert two.overflows == [39] and two.backlog.closed


def test_past_flush_at_gathered_bytes_are_written_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "FLUSH_AT", 4)
    clock = task.Clock()
    sink = Sink(Flusher(clock))
    sink.pause_after = 1  # the client reads nothing: the transport pauses at once
    for item in (b"aa", b"bb", b"cc", b"dd", b"ee", b"ff", b"g", b"hh"):
        sink.backlog.send(item)
    # the first 4 bytes were written; the rest waited, and overflowed the limit of 10
    assert sink.written == [b"aabb"]
    assert sink.overflows == [11] and sink.backlog.closed


def test_what_was_gathered_goes_before_what_waits_after_a_pause() -> None:
    clock = task.Clock()
    sink = Sink(Flusher(clock))
    sink.backlog.send(b"e1")
    sink.backlog.pauseProducing()  # (another write filled the transport)
    sink.backlog.send(b"r2")
    sink.backlog.resumeProducing()
    clock.advance(0)
    assert sink.written == [b"e1", b"r2"]


def test_gathered_bytes_wait_when_the_transport_pauses_before_the_flush() -> None:
    clock = task.Clock()
    sink = Sink(Flusher(clock))
    sink.backlog.send(b"aa")
    sink.backlog.pauseProducing()
    sink.backlog.send(b"bb")  # (waits, behind what was gathered)
    clock.advance(0)
    assert sink.written == [] and sink.backlog.size == 4
    sink.backlog.resumeProducing()
    assert sink.written == [b"aa", b"bb"] and sink.backlog.size == 0


def test_a_closed_backlog_writes_nothing_it_had_gathered() -> None:
    clock = task.Clock()
    sink = Sink(Flusher(clock))
    sink.backlog.send(b"aa")
    sink.backlog.close()
    clock.advance(0)
    assert sink.written == []
