"""The live events benchmark at a tiny scale (20 clients, 20 events/s for 2 s): it starts
the server, subscribes lean and autobahn clients on /ws, has the server produce the events
and checks every client got every one exactly once; the report must say so in its JSON
and its text (no timings are asserted). Also the lean client's framing and the delivery
check on their own, so that a lost, repeated or reordered event cannot go unnoticed."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from bench import live


def test_tiny_run_loses_no_event(tmp_path: Path) -> None:
    out = tmp_path / "live.json"
    code = live.main(["--clients", "20", "--rate", "20", "--duration", "2",
                      "--autobahn-clients", "2", "--client-procs", "2",
                      "--workdir", str(tmp_path / "work"), "--out", str(out)])
    report = json.loads(out.read_text())
    d = report["delivery"]
    assert d["no_event_lost"], report["verdict"]
    assert code == 0
    assert report["events"]["produced"] == report["planned"] == 40
    assert report["events"]["failed"] == 0
    # each update is one builds/<id>/update event, and each client got all of them
    assert d["events_each"] == 40
    assert d["connected"] == d["clients"] == d["complete_clients"] == 20
    assert d["delivered"] == d["expected"] == 800
    assert (d["missing"], d["duplicates"], d["unexpected"], d["out_of_order_clients"],
            d["malformed"], d["dropped"]) == (0, 0, 0, 0, 0, 0)
    assert d["closed"] == {} and d["connect_errors"] == {}
    assert report["server_clients"] == 20 and report["server_clients_after"] == 0
    # the autobahn clients (full JSON parsing) agree with the lean ones
    kinds = report["cpu"]["client_kinds"]
    assert kinds == ["lean x9", "lean x9", "autobahn x2"]
    assert [p["complete"] for p in report["processes"]] == [9, 9, 2]
    for name in ("latency_ms", "fanout_ms"):
        lat = report[name]
        assert lat["samples"] == 800
        assert 0 <= lat["p50"] <= lat["p99"] <= lat["max"]
    assert set(report["memory_mb"]) == {"idle", "subscribed", "peak", "after",
                                        "clients_gone"}
    assert all(v > 0 for v in report["memory_mb"].values())
    assert report["cpu"]["server_percent"] > 0
    text = out.with_suffix(".txt").read_text()
    assert "no event lost: each of the 20 clients got each of the 40 events" in text
    assert "closed by the server: none" in text
    # the scratch database is gone
    assert not Path(report["database"].removeprefix("sqlite:///")).exists()


def _server_frame(payload: bytes, opcode: int = 1) -> bytes:
    n = len(payload)
    head = bytes([0x80 | opcode]) + (bytes([n]) if n < 126 else
                                     bytes([126]) + n.to_bytes(2, "big"))
    return head + payload


def test_lean_client_frames_split_reads() -> None:
    ours, theirs = socket.socketpair()
    try:
        tally = live.Tally()
        client = live.LeanClient(ours, live.Received(), b"")
        tally.clients.append(client.received)
        m = {"buildid": 3, "state_string": "t=100.000000", "complete": False}
        stream = b"".join(
            [_server_frame(b'{"msg":"OK","code":200,"_id":1}')]
            + [_server_frame(json.dumps({"k": "builds/3/update", "m": m, "s": 7 + i},
                                        separators=(",", ":")).encode()) for i in range(3)]
            + [_server_frame(b"hi", 9),
               _server_frame(json.dumps({"k": "builds/3/new", "m": {"buildid": 3},
                                         "s": 10}, separators=(",", ":")).encode()),
               _server_frame((1008).to_bytes(2, "big") + b"too slow", 8)])
        for i in range(len(stream)):  # one byte at a time: every frame split
            alive = client.feed(stream[i:i + 1], 100.25, tally)
        assert not alive
        assert client.replies == [{"msg": "OK", "code": 200, "_id": 1}]
        assert list(client.received.seqs) == [7, 8, 9]
        assert list(tally.latencies) == [250000] * 3
        assert tally.other_events == 1 and tally.pings == 1
        assert (client.received.close_code, client.received.close_reason) == (1008,
                                                                              "too slow")
        # the ping was answered: a masked pong with the same payload
        pong = theirs.recv(64)
        assert pong[0] == 0x8A and pong[1] == 0x80 | 2
        assert bytes(b ^ pong[2 + i % 4] for i, b in enumerate(pong[6:])) == b"hi"
    finally:
        ours.close()
        theirs.close()


def test_summary_counts_what_is_wrong() -> None:
    tally = live.Tally()
    for seqs in ([1, 2, 3], [1, 3], [1, 2, 2, 3], [2, 1, 3], [1, 2, 3, 99]):
        received = live.Received()
        received.seqs.extend(seqs)
        received.times.extend([10.0] * len(seqs))
        tally.clients.append(received)
    tally.clients[1].close_code, tally.clients[1].close_reason = 1008, "too slow"
    s = tally.summary([1, 2, 3], [9.0, 9.5, 9.99])
    assert s["complete"] == 1
    assert (s["missing"], s["clients_missing"], s["duplicates"], s["unexpected"],
            s["out_of_order"]) == (1, 1, 1, 1, 2)
    assert s["closed"] == {"1008": 1}
    assert s["delivered"] == 3 + 2 + 4 + 3 + 4
