"""64 clients forcing builds at once over a real port, on SQLite and PostgreSQL: each
gets its buildset (or a clean 503 with Retry-After), none is lost or duplicated, and the
source stamp all of them share is one row with upstream's ss_hash."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer

from buildbot_rest.config import Config
from buildbot_rest.db import hashes
from buildbot_rest.db import schema as s
from tests.www.conftest import Api, own_server

CLIENTS = 64
BUILDERS = ["linux-py311", "macos-py311"]


@pytest.fixture(scope="module", params=["sqlite",
                                        pytest.param("postgresql", marks=pytest.mark.postgresql)])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    config = Config(forceschedulers=[{"name": "race", "builder_names": BUILDERS}])
    for api, _ in own_server(request, tmp_path_factory, "race", lambda api: None,
                             config=config, writable=True):
        yield api


def _ids(api: Api, column: Any, since: int) -> list[int]:
    return [r[0] for r in api.rows(sa.select(column).where(column > since))]


@pytest_twisted.ensureDeferred
async def test_64_clients_force_at_once(server: Api) -> None:
    api = server
    last_bsid = api.rows(sa.select(sa.func.coalesce(sa.func.max(s.buildsets.c.id), 0)))[0][0]
    last_brid = api.rows(sa.select(sa.func.coalesce(sa.func.max(s.buildrequests.c.id),
                                                    0)))[0][0]
    events = api.record("buildsets", None, "new")

    def call(i: int) -> defer.Deferred[Any]:
        # half of them share one source stamp (a find-or-create race), the others
        # each have their own
        revision = "cafe" if i % 2 else f"rev{i}"
        return defer.ensureDeferred(api.rpc("forceschedulers/race", "force", {
            "reason": f"client {i}", "branch": "main", "revision": revision}))

    replies = await defer.gatherResults([call(i) for i in range(CLIENTS)],
                                        consumeErrors=True)
    done = []
    for reply in replies:
        if reply.code == 503:  # allowed: the pool's bounded retry gave up
            assert reply.header("Retry-After") is not None
            continue
        assert reply.code == 200, reply.body
        done.append(reply.json["result"])
    assert done, "every client was refused"

    bsids = [bsid for bsid, _ in done]
    brids = [brid for _, by_builder in done for brid in by_builder.values()]
    assert len(set(bsids)) == len(bsids)
    assert len(set(brids)) == len(brids) == 2 * len(done)
    # exactly the answered buildsets and requests were written: none lost, none extra
    assert sorted(_ids(api, s.buildsets.c.id, last_bsid)) == sorted(bsids)
    assert sorted(_ids(api, s.buildrequests.c.id, last_brid)) == sorted(brids)
    br = s.buildrequests
    for bsid, by_builder in done:
        rows = api.rows(sa.select(br.c.id, br.c.builderid).where(br.c.buildsetid == bsid))
        assert {str(b): r for r, b in rows} == by_builder
    assert sorted(k[1] for k, _ in events) == sorted(str(b) for b in bsids)

    ss = s.sourcestamps
    rows = api.rows(sa.select(ss.c.id, ss.c.branch, ss.c.revision, ss.c.repository,
                              ss.c.project, ss.c.codebase, ss.c.patchid, ss.c.ss_hash)
                    .where(ss.c.branch == "main"))
    hashes_seen = [r.ss_hash for r in rows]
    assert len(hashes_seen) == len(set(hashes_seen))
    for r in rows:
        assert r.ss_hash == hashes.ss_hash(r.branch, r.revision, r.repository, r.project,
                                           r.codebase, r.patchid)
    shared = [r for r in rows if r.revision == "cafe"]
    assert len(shared) == 1
    bss = s.buildset_sourcestamps
    users = api.rows(sa.select(bss.c.buildsetid).where(bss.c.sourcestampid == shared[0].id))
    answered = {bsid for bsid, _ in done}
    reasons = dict(api.rows(sa.select(s.buildsets.c.id, s.buildsets.c.reason)
                            .where(s.buildsets.c.id.in_(answered))))
    odd = {b for b in answered if int(reasons[b].rsplit(" ", 1)[1]) % 2}
    assert {u[0] for u in users} == odd
