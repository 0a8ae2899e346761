"""Every resource type through the data connector, with no HTTP: the collections and
entities it reads equal what the database holds, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.data import reads
from buildbot_rest.data.connector import MODULES, DataConnector
from buildbot_rest.data.errors import InvalidPath, NotFound
from buildbot_rest.data.resultspec import ResultSpec
from buildbot_rest.db import schema as s
from tests.data.conftest import demo_connector, shared_url

#: (collection path, id field, primary key column) of every resource type kept in a table
TABLES = (
    ("masters", "masterid", s.masters.c.id),
    ("builders", "builderid", s.builders.c.id),
    ("builds", "buildid", s.builds.c.id),
    ("buildrequests", "buildrequestid", s.buildrequests.c.id),
    ("buildsets", "bsid", s.buildsets.c.id),
    ("changes", "changeid", s.changes.c.changeid),
    ("changesources", "changesourceid", s.changesources.c.id),
    ("schedulers", "schedulerid", s.schedulers.c.id),
    ("sourcestamps", "ssid", s.sourcestamps.c.id),
    ("workers", "workerid", s.workers.c.id),
    ("steps", "stepid", s.steps.c.id),
    ("logs", "logid", s.logs.c.id),
    ("projects", "projectid", s.projects.c.id),
    ("codebases", "codebaseid", s.codebases.c.id),
    ("test_result_sets", "test_result_setid", s.test_result_sets.c.id),
)


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def connector(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataConnector]:
    """A connector over demo data, shared by the module's tests (which only read)."""
    yield from demo_connector(shared_url(request, tmp_path_factory, "resources"), seed=3,
                              forceschedulers=[{"name": "force",
                                                "builder_names": ["builder-0"]}])


def rows(connector: DataConnector, stmt: Any) -> list[Any]:
    with connector.db.engine.connect() as conn:
        return list(conn.execute(stmt))


@pytest.mark.parametrize(("path", "idfield", "column"), TABLES,
                         ids=[t[0] for t in TABLES])
@pytest_twisted.ensureDeferred
async def test_collections_and_entities_hold_every_row(connector: DataConnector, path: str,
                                                       idfield: str, column: Any) -> None:
    expected = [r[0] for r in rows(connector, sa.select(column).order_by(column))]
    assert expected, f"the demo data has no {path}"
    if path in ("steps", "logs"):
        # no collection of their own: those of a build, or of a step
        parent, child = ("buildid", "builds") if path == "steps" else ("stepid", "steps")
        owner = column.table.c[parent]
        first = rows(connector, sa.select(sa.func.min(owner)))[0][0]
        expected = [r[0] for r in rows(connector, sa.select(column).where(
            owner == first).order_by(column))]
        path_of_all = f"{child}/{first}/{path}"
    else:
        path_of_all = path
    default = "-changeid" if path == "changes" else idfield
    items, total = await connector.get(path_of_all, {"order": [default]})
    assert [i[idfield] for i in items] == (expected[::-1] if path == "changes" else expected)
    assert total == len(expected)
    # each entity on its own path is the collection's item
    for item in items[:3]:
        assert await connector.get(f"{path}/{item[idfield]}") == item
    with pytest.raises(NotFound):
        await connector.get(f"{path}/{expected[-1] + 1000}")


@pytest_twisted.ensureDeferred
async def test_every_resource_module_is_registered(connector: DataConnector) -> None:
    assert len(MODULES) == 23
    names = {rtype.name for rtype in connector.rtypes.values()}
    assert {"build", "builder", "logchunk", "forcescheduler", "rootlink", "spec",
            "_property", "commit", "commit_graph", "test_result"} <= names
    links, total = await connector.get("")
    assert total == len(links) and {"name": "builds"} in links


@pytest_twisted.ensureDeferred
async def test_paging_filters_and_fields(connector: DataConnector) -> None:
    b = s.builds
    finished = [r[0] for r in rows(connector, sa.select(b.c.id).where(
        b.c.results == 0).order_by(b.c.id.desc()))]
    items, total = await connector.get("builds", {"results": ["0"], "order": ["-buildid"],
                                                  "limit": ["2"], "offset": ["1"],
                                                  "field": ["buildid", "results"]})
    assert items == [{"buildid": i, "results": 0} for i in finished[1:3]]
    assert total == len(finished)


@pytest_twisted.ensureDeferred
async def test_nested_paths_resolve_names_and_numbers(connector: DataConnector) -> None:
    b, bl, st = s.builds, s.builders, s.steps
    buildid, number, builderid, name = rows(connector, sa.select(
        b.c.id, b.c.number, b.c.builderid, bl.c.name).join(bl, bl.c.id == b.c.builderid)
        .order_by(b.c.id).limit(1))[0]
    build = await connector.get(f"builds/{buildid}")
    assert await connector.get(f"builders/{builderid}/builds/{number}") == build
    assert await connector.get(f"builders/{name}/builds/{number}") == build
    step_names = [r[0] for r in rows(connector, sa.select(st.c.name).where(
        st.c.buildid == buildid).order_by(st.c.number))]
    steps, _ = await connector.get(f"builders/{name}/builds/{number}/steps")
    assert [x["name"] for x in steps] == step_names
    with pytest.raises(NotFound):
        await connector.get(f"builders/no-such-builder/builds/{number}")
    with pytest.raises(InvalidPath):
        await connector.get("no/such/path")


@pytest_twisted.ensureDeferred
async def test_changes_default_order_leaves_the_callers_spec_alone(
        connector: DataConnector) -> None:
    endpoint, kwargs = connector.match(("changes",))
    spec = ResultSpec()
    answer = await connector.read(connector.context(endpoint, kwargs), endpoint, spec, kwargs)
    assert isinstance(answer, reads.Collection)
    ids = [c["changeid"] for c in answer.items]
    assert ids == sorted(ids, reverse=True)  # newest first, as upstream lists them
    assert spec == ResultSpec()


@pytest_twisted.ensureDeferred
async def test_claimed_filter_leaves_the_callers_spec_alone(connector: DataConnector) -> None:
    br, c = s.buildrequests, s.buildrequest_claims
    pending = [r[0] for r in rows(connector, sa.select(br.c.id).outerjoin(
        c, c.c.brid == br.c.id).where(c.c.claimed_at.is_(None),
                                      sa.func.coalesce(br.c.complete, 0) == 0)
        .order_by(br.c.id))]
    endpoint, kwargs = connector.match(("buildrequests",))
    spec = connector.parse_spec(endpoint, {"claimed": ["false"]})
    before = repr(spec)
    items, total = await connector.get("buildrequests", {"claimed": ["false"]})
    assert [i["buildrequestid"] for i in items] == pending and total == len(pending)
    await connector.read(connector.context(endpoint, kwargs), endpoint, spec, kwargs)
    assert repr(spec) == before


@pytest_twisted.ensureDeferred
async def test_property_lists_of_builds_buildsets_and_changes(
        connector: DataConnector) -> None:
    bp = s.build_properties
    buildid = rows(connector, sa.select(bp.c.buildid).order_by(bp.c.buildid).limit(1))[0][0]
    names = sorted(r[0] for r in rows(connector, sa.select(bp.c.name).where(
        bp.c.buildid == buildid)))
    items, total = await connector.get(f"builds/{buildid}/property_list",
                                       {"order": ["name"]})
    assert [i["name"] for i in items] == names and total == len(names)
    props = await connector.get(f"builds/{buildid}/properties")
    assert sorted(props) == names
    for item in items:
        assert props[item["name"]][1] == item["source"]
    bsp = s.buildset_properties
    bsid = rows(connector, sa.select(bsp.c.buildsetid).limit(1))[0][0]
    listed, _ = await connector.get(f"buildsets/{bsid}/properties_list")
    assert {i["name"] for i in listed} == set(await connector.get(f"buildsets/{bsid}/properties"))


@pytest_twisted.ensureDeferred
async def test_logs_as_lines_and_as_a_download(connector: DataConnector) -> None:
    lg = s.logs
    logid, num_lines = rows(connector, sa.select(lg.c.id, lg.c.num_lines).where(
        lg.c.type == "h", lg.c.num_lines > 2).order_by(lg.c.id).limit(1))[0]
    whole = await connector.get(f"logs/{logid}/contents")
    assert whole["logid"] == logid and whole["firstline"] == 0
    assert whole["content"].count("\n") == num_lines
    part = await connector.get(f"logs/{logid}/contents", {"offset": ["1"], "limit": ["1"]})
    assert part["content"] == whole["content"].splitlines(keepends=True)[1]
    raw = await connector.get(f"logs/{logid}/raw")
    assert raw.decode() == whole["content"]


@pytest_twisted.ensureDeferred
async def test_force_schedulers_come_from_the_configuration(connector: DataConnector) -> None:
    items, total = await connector.get("forceschedulers")
    assert total == 1 and items[0]["name"] == "force"
    assert items[0]["builder_names"] == ["builder-0"]
    assert await connector.get("forceschedulers/force") == items[0]


@pytest.mark.parametrize(("path", "query"), [
    ("builds", {"order": ["-buildid"]}),
    ("workers", {"order": ["-name"]}),
    ("changes", {}),  # newest first by default
    ("buildrequests", {"claimed": ["true"]}),
    ("builds/1/property_list", {"order": ["name"]}),
])
@pytest_twisted.ensureDeferred
async def test_a_long_collection_streams_and_equals_the_whole(
        connector: DataConnector, monkeypatch: pytest.MonkeyPatch, path: str,
        query: dict[str, list[str]]) -> None:
    whole, total = await connector.get(path, {**query, "limit": ["1000"]})
    assert total > 4
    monkeypatch.setattr(reads, "STREAM_BATCH", 4)
    parts = tuple(path.split("/"))
    endpoint, kwargs = connector.match(parts)
    spec = connector.parse_spec(endpoint, query)
    before = repr(spec)
    answer = await connector.read(connector.context(endpoint, kwargs), endpoint, spec, kwargs)
    assert isinstance(answer, reads.CollectionStream)
    # a plural after "meta" has its total counted before the items
    assert answer.total == (total if endpoint.rtype.plural > "meta" else None)
    streamed: list[dict[str, Any]] = []
    sizes = []
    try:
        while (batch := await answer.next()) is not None:
            sizes.append(len(batch))
            streamed += batch
            answer.consumed()
    finally:
        await answer.close()
    assert streamed == whole
    assert max(sizes) == 4 and len(sizes) == -(-total // 4)
    assert repr(spec) == before
    # and the plain read of a program gives the same
    assert await connector.get(path, query) == (whole, total)
