"""The update methods of schedulers and the master's own id: findSchedulerId,
trySetSchedulerMaster, schedulerEnable's checks, findMasterId."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.data.errors import InvalidParams, NotFound
from buildbot_rest.db import schema as s
from buildbot_rest.db.hashes import name_hash


@pytest_twisted.ensureDeferred
async def test_find_scheduler_id_finds_or_creates_by_name(recorder: Any) -> None:
    first = await recorder.updates.findSchedulerId("nightly")
    assert await recorder.updates.findSchedulerId("nightly") == first
    other = await recorder.updates.findSchedulerId("weekly")
    assert other != first
    rows = recorder.rows(sa.select(s.schedulers.c.id, s.schedulers.c.name,
                                   s.schedulers.c.name_hash).order_by(s.schedulers.c.id))
    assert [tuple(r) for r in rows] == [(first, "nightly", name_hash("nightly")),
                                        (other, "weekly", name_hash("weekly"))]
    assert recorder.keys() == []  # upstream publishes nothing
    with pytest.raises(InvalidParams, match="name"):
        await recorder.updates.findSchedulerId(3)


@pytest_twisted.ensureDeferred
async def test_try_set_scheduler_master(recorder: Any) -> None:
    updates = recorder.updates
    schedulerid = await updates.findSchedulerId("nightly")
    m1 = await updates.findMasterId("m1")
    m2 = await updates.findMasterId("m2")
    assert await updates.findMasterId("m1") == m1
    assert await updates.trySetSchedulerMaster(schedulerid, m1) is True
    assert await updates.trySetSchedulerMaster(schedulerid, m2) is False
    assert await updates.trySetSchedulerMaster(schedulerid, m1) is False  # as upstream
    got = await recorder.connector.get(f"schedulers/{schedulerid}")
    assert got["master"]["masterid"] == m1
    assert await updates.trySetSchedulerMaster(schedulerid, None) is True
    assert (await recorder.connector.get(f"schedulers/{schedulerid}"))["master"] is None
    assert await updates.trySetSchedulerMaster(schedulerid, m2) is True
    with pytest.raises(NotFound, match="no scheduler with schedulerid 999"):
        await updates.trySetSchedulerMaster(999, m1)
    with pytest.raises(NotFound, match="no master with masterid 999"):
        await updates.trySetSchedulerMaster(schedulerid, 999)
    with pytest.raises(InvalidParams, match="masterid"):
        await updates.trySetSchedulerMaster(schedulerid, "1")


@pytest_twisted.ensureDeferred
async def test_scheduler_enable_checks_its_arguments(recorder: Any) -> None:
    schedulerid = await recorder.updates.findSchedulerId("nightly")
    with pytest.raises(NotFound, match="no scheduler with schedulerid 999"):
        await recorder.updates.schedulerEnable(999, True)
    with pytest.raises(InvalidParams, match="v"):
        await recorder.updates.schedulerEnable(schedulerid, "yes")
    with pytest.raises(InvalidParams, match="schedulerid"):
        await recorder.updates.schedulerEnable("1", True)
    assert recorder.keys() == []
    await recorder.updates.schedulerEnable(schedulerid, False)
    assert recorder.keys() == [f"schedulers/{schedulerid}/updated"]


@pytest_twisted.ensureDeferred
async def test_find_master_id_creates_an_inactive_master(recorder: Any) -> None:
    masterid = await recorder.updates.findMasterId("ci-1:/srv/ci")
    master = await recorder.connector.get(f"masters/{masterid}")
    assert (master["name"], master["active"], master["last_active"]) == (
        "ci-1:/srv/ci", False, 1700000000)
    assert recorder.keys() == []
