"""The update methods of logs (addLog, appendLog, finishLog, compressLog): what they store,
their events, their errors, and the text read back through the read API."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import pytest_twisted  # type: ignore[import-untyped]
import sqlalchemy as sa
from twisted.internet import defer

from buildbot_rest.data.connector import DataConnector
from buildbot_rest.data.errors import InvalidParams, NotFound
from buildbot_rest.data.resources import logs
from buildbot_rest.data.resources.logs import force_identifier, increment_identifier
from buildbot_rest.db import Database
from buildbot_rest.db import logchunks as lc
from buildbot_rest.db import schema as s
from buildbot_rest.mq import SimpleMQ
from tests.data.conftest import Recorder

NOW = 1700000000


def make_step(recorder: Any, *, builder: str = "b1", step: str = "compile") -> dict[str, int]:
    """A master, builder, buildset, build request, build and step written directly;
    their ids."""
    with recorder.connector.db.engine.begin() as conn:
        def insert(table: sa.Table, **values: Any) -> int:
            key = conn.execute(table.insert().values(**values)).inserted_primary_key
            return int(key[0])
        from buildbot_rest.db.hashes import name_hash
        masterid = conn.execute(sa.select(s.masters.c.id)).scalar() or insert(
            s.masters, name="m", name_hash=name_hash("m"), active=1, last_active=NOW)
        builderid = insert(s.builders, name=builder, name_hash=name_hash(builder))
        bsid = insert(s.buildsets, submitted_at=NOW, complete=0, results=-1)
        brid = insert(s.buildrequests, buildsetid=bsid, builderid=builderid, priority=0,
                      complete=0, results=-1, submitted_at=NOW, waited_for=0)
        buildid = insert(s.builds, number=1, builderid=builderid, buildrequestid=brid,
                         masterid=masterid, started_at=NOW, locks_duration_s=0,
                         state_string="building")
        stepid = insert(s.steps, number=0, name=step, buildid=buildid,
                        state_string="running", urls_json="[]", hidden=0)
    return {"builderid": builderid, "buildid": buildid, "stepid": stepid}


def log_rows(recorder: Any) -> list[tuple[Any, ...]]:
    lg = s.logs
    return [tuple(r) for r in recorder.rows(
        sa.select(lg.c.id, lg.c.name, lg.c.slug, lg.c.stepid, lg.c.complete, lg.c.num_lines,
                  lg.c.type).order_by(lg.c.id))]


def chunk_rows(recorder: Any, logid: int) -> list[tuple[Any, ...]]:
    lch = s.logchunks
    return [tuple(r) for r in recorder.rows(
        sa.select(lch.c.first_line, lch.c.last_line, lch.c.content, lch.c.compressed)
        .where(lch.c.logid == logid).order_by(lch.c.first_line))]


def set_compression(recorder: Any, method: str | None) -> None:
    # the configuration has no such setting yet: tests give it as an attribute
    object.__setattr__(recorder.connector.config, "log_compression_method", method)


async def contents(recorder: Any, path: str, **query: str) -> str:
    answer = await recorder.connector.get(path + "/contents", query)
    return answer["content"]


def test_force_identifier_is_upstreams() -> None:
    assert force_identifier(50, "stdio") == "stdio"
    assert force_identifier(50, "err.text") == "err_text"
    assert force_identifier(50, "3rd try") == "_rd_try"
    assert force_identifier(50, "h\u00e9llo") == "h\u00e9llo"  # an identifier as it is
    assert force_identifier(50, "h\u00e9llo world") == "h_llo_world"
    assert force_identifier(50, "x" * 60) == "x" * 50
    assert force_identifier(50, "") == ""
    assert force_identifier(50, "a\n") == "a_"  # upstream's regex would keep "a\n"
    assert increment_identifier(50, "stdio") == "stdio_2"
    assert increment_identifier(50, "stdio_2") == "stdio_3"
    assert increment_identifier(50, "x" * 50) == "x" * 48 + "_2"
    assert increment_identifier(50, "x" * 47 + "_99") == "x" * 46 + "_100"


@pytest_twisted.ensureDeferred
async def test_add_log(recorder: Recorder) -> None:
    ids = make_step(recorder)
    stepid = ids["stepid"]
    first = await recorder.updates.addLog(stepid, "stdio", "s")
    second = await recorder.updates.addLog(stepid, "stdio", "t")
    third = await recorder.updates.addLog(stepid, "err.html", "h")
    assert log_rows(recorder) == [
        (first, "stdio", "stdio", stepid, 0, 0, "s"),
        (second, "stdio", "stdio_2", stepid, 0, 0, "t"),
        (third, "err.html", "err_html", stepid, 0, 0, "h"),
    ]
    events = recorder.take()
    assert ["/".join(k) for k, _ in events] == [
        f"logs/{first}/new", f"steps/{stepid}/logs/stdio/new",
        f"logs/{second}/new", f"steps/{stepid}/logs/stdio_2/new",
        f"logs/{third}/new", f"steps/{stepid}/logs/err_html/new",
    ]
    assert events[0][1] == await recorder.connector.get(f"logs/{first}") | {
        "complete": False, "num_lines": 0}
    assert events[2][1] == {"logid": second, "name": "stdio", "slug": "stdio_2",
                            "stepid": stepid, "complete": False, "num_lines": 0, "type": "t"}


@pytest_twisted.ensureDeferred
async def test_add_log_errors(recorder: Recorder) -> None:
    stepid = make_step(recorder)["stepid"]
    with pytest.raises(NotFound, match="no step with stepid 999"):
        await recorder.updates.addLog(999, "stdio", "s")
    for bad in ("x", "ts", "", None, 1):
        with pytest.raises(InvalidParams, match="type"):
            await recorder.updates.addLog(stepid, "stdio", bad)
    with pytest.raises(InvalidParams, match="name"):
        await recorder.updates.addLog(stepid, None, "s")
    with pytest.raises(InvalidParams, match="stepid"):
        await recorder.updates.addLog("1", "stdio", "s")
    assert log_rows(recorder) == []
    assert recorder.take() == []


@pytest_twisted.ensureDeferred
async def test_concurrent_add_log_gets_distinct_slugs(recorder: Recorder) -> None:
    stepid = make_step(recorder)["stepid"]
    # more connections than the recorder's two, so that the writers really race
    db = Database(recorder.connector.db.url, pool_size=8)
    db.prepare_sync(create=False)
    db.start()
    try:
        connector = DataConnector(db, config=recorder.connector.config, mq=SimpleMQ())  # type: ignore[arg-type]
        logids = await defer.gatherResults([
            defer.Deferred.fromCoroutine(connector.updates.addLog(stepid, "stdio", "s"))
            for _ in range(16)])
    finally:
        db.stop()
    assert len(set(logids)) == 16
    slugs = sorted(r[2] for r in log_rows(recorder))
    assert slugs == sorted(["stdio"] + [f"stdio_{n}" for n in range(2, 17)])


@pytest_twisted.ensureDeferred
async def test_a_slug_taken_after_it_was_read_is_retried(
        recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    # what a concurrent writer does between the read of the slugs and the insert
    stepid = make_step(recorder)["stepid"]
    await recorder.updates.addLog(stepid, "stdio", "s")
    reads: list[set[str]] = []
    real = logs.taken_slugs

    def stale(write: Any, stepid: int) -> set[str]:
        reads.append(real(write, stepid))
        return set() if len(reads) == 1 else reads[-1]

    monkeypatch.setattr(logs, "taken_slugs", stale)
    logid = await recorder.updates.addLog(stepid, "stdio", "t")
    assert reads == [{"stdio"}, {"stdio"}]
    assert log_rows(recorder)[-1] == (logid, "stdio", "stdio_2", stepid, 0, 0, "t")


@pytest_twisted.ensureDeferred
async def test_append_log(recorder: Recorder) -> None:
    stepid = make_step(recorder)["stepid"]
    logid = await recorder.updates.addLog(stepid, "stdio", "s")
    recorder.take()
    assert await recorder.updates.appendLog(logid, "ohello\nethere\n") == (0, 1)
    assert await recorder.updates.appendLog(logid, "o\u00e9t\u00e9 \u4e2d\U0001f600\n") == (2, 2)
    # short chunks do not compress: raw
    assert chunk_rows(recorder, logid) == [
        (0, 1, b"ohello\nethere", lc.RAW),
        (2, 2, "o\u00e9t\u00e9 \u4e2d\U0001f600".encode(), lc.RAW),
    ]
    log = await recorder.connector.get(f"logs/{logid}")
    assert log["num_lines"] == 3
    assert recorder.take() == [
        (("logs", str(logid), "append"), log | {"num_lines": 2}),
        (("steps", str(stepid), "logs", "stdio", "append"), log | {"num_lines": 2}),
        (("logs", str(logid), "append"), log),
        (("steps", str(stepid), "logs", "stdio", "append"), log),
    ]
    assert await contents(recorder, f"logs/{logid}") == (
        "ohello\nethere\no\u00e9t\u00e9 \u4e2d\U0001f600\n")
    raw = await recorder.connector.get(f"logs/{logid}/raw")
    assert raw.endswith("hello\nthere\n\u00e9t\u00e9 \u4e2d\U0001f600\n".encode())


@pytest_twisted.ensureDeferred
async def test_concurrent_appends_to_one_log_follow_each_other(recorder: Recorder) -> None:
    stepid = make_step(recorder)["stepid"]
    logid = await recorder.updates.addLog(stepid, "stdio", "s")
    db = Database(recorder.connector.db.url, pool_size=8)
    db.prepare_sync(create=False)
    db.start()
    try:
        connector = DataConnector(db, config=recorder.connector.config, mq=SimpleMQ())  # type: ignore[arg-type]
        answers = await defer.gatherResults([
            defer.Deferred.fromCoroutine(connector.updates.appendLog(
                logid, "".join(f"o{n}.{i}\n" for i in range(n + 1))))
            for n in range(12)])
    finally:
        db.stop()
    # each append got its own range of lines: together they cover the log once
    spans = sorted((first, last) for first, last in answers)
    assert spans[0][0] == 0
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(spans))
    assert spans[-1][1] == sum(range(1, 13)) - 1
    text = await contents(recorder, f"logs/{logid}")
    for first, last in spans:
        block = text.splitlines()[first:last + 1]
        n = len(block) - 1
        assert block == [f"o{n}.{i}" for i in range(n + 1)]
    assert (await recorder.connector.get(f"logs/{logid}"))["num_lines"] == 78


@pytest_twisted.ensureDeferred
async def test_append_many_lines_and_a_long_line(recorder: Recorder) -> None:
    stepid = make_step(recorder)["stepid"]
    logid = await recorder.updates.addLog(stepid, "out", "t")
    lines = [f"line {i:06d} " + "abcdefghij"[: i % 10] for i in range(20000)]
    text = "".join(line + "\n" for line in lines)
    assert await recorder.updates.appendLog(logid, text) == (0, 19999)
    long = "y" * 100_000
    assert await recorder.updates.appendLog(logid, "x\n" + long + "\nz\n") == (20000, 20002)
    rows = chunk_rows(recorder, logid)
    # whole lines, at most 64 KiB each, contiguous
    assert rows[0][0] == 0 and rows[-1][1] == 20002
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(rows))
    assert all(len(lc.decompress(r[3], r[2])) < 65536 for r in rows[:-2])
    assert {r[3] for r in rows[:-3]} == {lc.ZSTD}  # upstream's default method
    assert rows[-2][:2] == (20001, 20001)
    assert lc.decompress(rows[-2][3], rows[-2][2]) == long.encode()
    got = await contents(recorder, f"logs/{logid}")
    assert got == text + "x\n" + long + "\nz\n"
    assert await contents(recorder, f"steps/{stepid}/logs/out", offset="19999",
                          limit="3") == lines[-1] + "\nx\n" + long + "\n"
    assert await recorder.connector.get(f"logs/{logid}/raw") == (
        text + "x\n" + long + "\nz\n").encode()


@pytest_twisted.ensureDeferred
async def test_a_line_that_cannot_fit_is_truncated(recorder: Recorder) -> None:
    import random
    stepid = make_step(recorder)["stepid"]
    logid = await recorder.updates.addLog(stepid, "out", "t")
    rng = random.Random(5)
    noise = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(200_000))
    assert await recorder.updates.appendLog(logid, noise + "\nafter\n") == (0, 1)
    assert await contents(recorder, f"logs/{logid}") == noise[:65535] + "\nafter\n"
    assert (await recorder.connector.get(f"logs/{logid}"))["num_lines"] == 2


@pytest.mark.parametrize("method", ["raw", "gz", "bz2", "lz4", "zstd", "br"])
@pytest_twisted.ensureDeferred
async def test_every_compression_method(recorder: Recorder, method: str) -> None:
    set_compression(recorder, method)
    code = {"raw": 0, "gz": 1, "bz2": 2, "lz4": 3, "zstd": 4, "br": 5}[method]
    stepid = make_step(recorder)["stepid"]
    logid = await recorder.updates.addLog(stepid, "stdio", "s")
    text = "".join(f"o{i} repeated \u00e9 text\n" for i in range(500))
    await recorder.updates.appendLog(logid, text)
    await recorder.updates.appendLog(logid, "eshort\n")
    assert [r[3] for r in chunk_rows(recorder, logid)] == [code, lc.RAW]
    assert await contents(recorder, f"logs/{logid}") == text + "eshort\n"
    stored = sum(len(r[2]) for r in chunk_rows(recorder, logid))
    saved = await recorder.updates.compressLog(logid)
    rows = chunk_rows(recorder, logid)
    assert [(r[0], r[1], r[3]) for r in rows] == [(0, 500, code)]
    assert saved == stored - len(rows[0][2])
    assert await contents(recorder, f"logs/{logid}") == text + "eshort\n"


@pytest_twisted.ensureDeferred
async def test_append_log_errors(recorder: Recorder) -> None:
    stepid = make_step(recorder)["stepid"]
    logid = await recorder.updates.addLog(stepid, "stdio", "s")
    recorder.take()
    for bad, message in (("no newline", "must end with a newline"),
                         ("", "must end with a newline"),
                         (b"bytes\n", "must be a string"),
                         ("\ud800\n", "Unicode")):
        with pytest.raises(InvalidParams, match=message):
            await recorder.updates.appendLog(logid, bad)
    with pytest.raises(NotFound, match="no log with logid 999"):
        await recorder.updates.appendLog(999, "x\n")
    assert chunk_rows(recorder, logid) == []
    assert recorder.take() == []


@pytest_twisted.ensureDeferred
async def test_finish_log_and_append_after(recorder: Recorder) -> None:
    stepid = make_step(recorder)["stepid"]
    logid = await recorder.updates.addLog(stepid, "stdio", "s")
    await recorder.updates.appendLog(logid, "oa\n")
    recorder.take()
    assert await recorder.updates.finishLog(logid) is None
    log = await recorder.connector.get(f"logs/{logid}")
    assert log["complete"] is True
    assert recorder.take() == [(("logs", str(logid), "finished"), log),
                               (("steps", str(stepid), "logs", "stdio", "finished"), log)]
    # as upstream: a finished log still takes text
    assert await recorder.updates.appendLog(logid, "ob\n") == (1, 1)
    assert log_rows(recorder)[0][4:6] == (1, 2)
    assert recorder.keys() == [f"logs/{logid}/append", f"steps/{stepid}/logs/stdio/append"]
    with pytest.raises(NotFound, match=f"no log with logid {logid + 1}"):
        await recorder.updates.finishLog(logid + 1)
    assert recorder.take() == []


@pytest_twisted.ensureDeferred
async def test_compress_log(recorder: Recorder) -> None:
    set_compression(recorder, "gz")
    stepid = make_step(recorder)["stepid"]
    logid = await recorder.updates.addLog(stepid, "stdio", "s")
    for i in range(150):
        text = "".join(f"oline {i} {j}\n" for j in range(10)) if i % 25 else (
            f"e{'x' * 30}\n" * 50)
        await recorder.updates.appendLog(logid, text)
    before = await contents(recorder, f"logs/{logid}")
    raw_before = await recorder.connector.get(f"logs/{logid}/raw")
    stored = sum(len(r[2]) for r in chunk_rows(recorder, logid))
    recorder.take()
    saved = await recorder.updates.compressLog(logid)
    rows = chunk_rows(recorder, logid)
    assert saved == stored - sum(len(r[2]) for r in rows) > 0
    assert {r[3] for r in rows} == {lc.GZ}
    # 1740 lines in 150 chunks become two: a group spans at most 1001 lines
    assert [(r[0], r[1]) for r in rows] == [(0, 999), (1000, 1739)]
    assert await contents(recorder, f"logs/{logid}") == before
    assert await recorder.connector.get(f"logs/{logid}/raw") == raw_before
    assert await contents(recorder, f"logs/{logid}", offset="1000", limit="7") == "".join(
        before.splitlines(keepends=True)[1000:1007])
    assert recorder.take() == []  # no event, as upstream
    assert await recorder.updates.compressLog(logid) == 0
    with pytest.raises(NotFound):
        await recorder.updates.compressLog(logid + 1)
