"""What /ws and /sse share: subscription paths and the bounded send queue."""

from __future__ import annotations

import pytest

from buildbot_rest.www.live import Backlog, key_filter


@pytest.mark.parametrize(("path", "wanted"), [
    ("builds/*/*", ("builds", None, None)),
    ("builders/5/*", ("builders", "5", None)),
    ("*", (None,)),
    ("", ("",)),  # matches nothing, as upstream
    ("/builds/*", ("", "builds", None)),  # a leading / is an empty element
    ("builds/**/x", ("builds", "**", "x")),  # only a whole * is a wildcard
])
def test_paths_become_filters_as_upstream_reads_them(
        path: str, wanted: tuple[str | None, ...]) -> None:
    assert key_filter(path) == wanted


class Sink:
    def __init__(self) -> None:
        self.written: list[str] = []
        self.overflows: list[int] = []
        self.backlog: Backlog[str] = Backlog(self.write, 10, self.overflows.append)
        #: pause the backlog once this many items were written
        self.pause_after: int | None = None

    def write(self, item: str) -> None:
        self.written.append(item)
        if self.pause_after is not None and len(self.written) >= self.pause_after:
            self.backlog.pauseProducing()


def test_items_go_out_at_once_while_the_transport_takes_them() -> None:
    sink = Sink()
    sink.backlog.send("a", 4)
    sink.backlog.send("b", 400)  # (only what waits counts against the limit)
    assert sink.written == ["a", "b"] and sink.backlog.size == 0


def test_items_wait_while_paused_and_go_out_in_order_on_resume() -> None:
    sink = Sink()
    sink.backlog.pauseProducing()
    for item in "abc":
        sink.backlog.send(item, 3)
    assert sink.written == [] and sink.backlog.size == 9
    sink.pause_after = 2  # the transport fills up again after "b"
    sink.backlog.resumeProducing()
    assert sink.written == ["a", "b"] and sink.backlog.size == 3
    sink.backlog.send("d", 1)  # behind "c", not before it
    sink.pause_after = None
    sink.backlog.resumeProducing()
    assert sink.written == ["a", "b", "c", "d"] and sink.backlog.size == 0


def test_more_than_the_limit_waiting_overflows_once_and_drops_everything() -> None:
    sink = Sink()
    sink.backlog.pauseProducing()
    sink.backlog.send("a", 6)
    sink.backlog.send("b", 4)  # 10: at the limit
    assert sink.overflows == []
    sink.backlog.send("c", 1)
    assert sink.overflows == [11]
    assert sink.backlog.closed and sink.backlog.size == 0
    sink.backlog.send("d", 1)
    sink.backlog.resumeProducing()
    assert sink.written == [] and sink.overflows == [11]


def test_stop_producing_drops_what_waits() -> None:
    sink = Sink()
    sink.backlog.pauseProducing()
    sink.backlog.send("a", 1)
    sink.backlog.stopProducing()
    sink.backlog.resumeProducing()
    sink.backlog.send("b", 1)
    assert sink.written == []
