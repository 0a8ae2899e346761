"""One write of the data API (``Write`` through ``connector.transact``): entities read
as a GET reads them, events published only once committed, errors roll back."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.data.errors import NotFound
from buildbot_rest.data.transaction import Write
from buildbot_rest.db import schema as s
from buildbot_rest.db.hashes import name_hash
from tests.data.conftest import Recorder


def _new_master(write: Write, name: str) -> int:
    masterid = write.insert(s.masters, name=name, name_hash=name_hash(name), active=0,
                            last_active=write.now)
    write.emit_entity("master", "started", masterid)
    return masterid


@pytest_twisted.ensureDeferred
async def test_events_carry_the_entity_as_a_get_reads_it(recorder: Recorder) -> None:
    masterid = await recorder.connector.transact(_new_master, "m1")
    [(key, message)] = recorder.take()
    assert key == ("masters", str(masterid), "started")
    assert message == await recorder.connector.get(f"masters/{masterid}")
    assert message["last_active"] == 1700000000  # the write's time: connector.clock


@pytest_twisted.ensureDeferred
async def test_a_failing_write_leaves_nothing_and_publishes_nothing(
        recorder: Recorder) -> None:
    def fail(write: Write) -> None:
        _new_master(write, "m1")
        write.require(s.builders, 999, "builder", "builderid")

    with pytest.raises(NotFound, match="no builder with builderid 999"):
        await recorder.connector.transact(fail)
    assert recorder.take() == []
    assert recorder.rows(sa.select(s.masters)) == []


@pytest_twisted.ensureDeferred
async def test_find_or_create_named_finds_what_it_made(recorder: Recorder) -> None:
    def twice(write: Write) -> tuple[int, int]:
        first = write.find_or_create_named(s.builders, "b")
        return first, write.find_or_create_named(s.builders, "b")

    first, second = await recorder.connector.transact(twice)
    assert first == second
    assert recorder.rows(sa.select(s.builders.c.name, s.builders.c.name_hash)) == [
        ("b", name_hash("b"))]


@pytest_twisted.ensureDeferred
async def test_update_and_require_name_what_is_missing(recorder: Recorder) -> None:
    def update(write: Write) -> Any:
        write.update(s.masters, 42, "master", "masterid", active=1)

    with pytest.raises(NotFound, match="no master with masterid 42"):
        await recorder.connector.transact(update)


@pytest_twisted.ensureDeferred
async def test_produce_publishes_any_message_after_commit(recorder: Recorder) -> None:
    def control(write: Write) -> None:
        write.produce(("control", "builds", "7", "stop"), {"reason": "r"})
        assert recorder.events == []  # not before the commit

    await recorder.connector.transact(control)
    assert recorder.take() == [(("control", "builds", "7", "stop"), {"reason": "r"})]
