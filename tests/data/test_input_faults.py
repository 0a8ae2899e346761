"""Issue 9's kinds of bad input and wrong answers, over every endpoint of the data API, on
SQLite and PostgreSQL: numbers beyond the database's integers (in paths, filters, limit
and offset) never reach SQL; list fields filter by membership (COMPAT 26); names that
upstream's identifier pattern refuses are addressed and filtered (COMPAT 27); order on a
list or JSON object field is a 400 (COMPAT 29)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.data import types as t
from buildbot_rest.data.base import Kind
from buildbot_rest.data.connector import DataConnector
from buildbot_rest.data.errors import InvalidPath, InvalidQuery, NotFound
from buildbot_rest.db import schema as s
from buildbot_rest.db.hashes import name_hash
from tests.data.conftest import demo_connector, shared_url

#: beyond a BIGINT: never a row, and refused by SQLite and the drivers as a parameter
TOO_BIG = (2**63, -(2**63) - 1, 10**30)
#: at the edges of what the columns hold (INTEGER columns of PostgreSQL are 32-bit)
EDGES = (t.INT_MAX, t.INT_MIN, 2**31, -(2**31) - 1, 0)
OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "notin")

FORCESCHEDULERS = [
    {"name": "force", "builder_names": ["linux-py311", "macos-py311"]},
    {"name": "docs", "builder_names": ["docs-windows-py311"]},
]


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def connector(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataConnector]:
    """Demo data, shared by the tests that only read."""
    yield from demo_connector(shared_url(request, tmp_path_factory, "faults"), seed=5,
                              forceschedulers=FORCESCHEDULERS)


@pytest.fixture
def own_connector(db_url: str) -> Iterator[DataConnector]:
    """Demo data that a test may change."""
    yield from demo_connector(db_url, seed=5, forceschedulers=FORCESCHEDULERS)


def scalar(connector: DataConnector, stmt: Any) -> Any:
    with connector.db.engine.connect() as conn:
        return conn.execute(stmt).first()


def patterns(connector: DataConnector) -> list[tuple[tuple[str, ...], Any]]:
    return sorted(connector.matcher.patterns().items())


def numeric(element: str) -> bool:
    return element.startswith("n:") or (element.startswith(":") and element.endswith("id"))


async def outcome(connector: DataConnector, path: tuple[str, ...],
                  query: dict[str, Any] | None = None) -> Any:
    """The answer, or the data API error raised (any other exception fails the test)."""
    try:
        return await connector.get(path, query)
    except (NotFound, InvalidPath, InvalidQuery) as e:
        return e


# -- numbers beyond the database's integers -------------------------------------------

@pytest_twisted.ensureDeferred
async def test_path_numbers_beyond_64_bits_are_not_found(connector: DataConnector) -> None:
    checked = 0
    for pattern, _ in patterns(connector):
        slots = [i for i, e in enumerate(pattern) if numeric(e)]
        for slot in slots:
            for big in (2**63, 10**30, 2**64 + 1):
                path = tuple(str(big) if i == slot else ("1" if numeric(e) else
                                                         "x" if ":" in e else e)
                             for i, e in enumerate(pattern))
                answer = await outcome(connector, path)
                assert isinstance(answer, NotFound), (path, answer)
                assert answer.status == 404
                checked += 1
    assert checked > 200  # every numeric variable of every pattern


@pytest_twisted.ensureDeferred
async def test_path_numbers_at_the_edges_answer(connector: DataConnector) -> None:
    for pattern, _ in patterns(connector):
        slots = [i for i, e in enumerate(pattern) if numeric(e)]
        for slot in slots:
            for edge in (t.INT_MAX, 2**31, 2**31 - 1):
                path = tuple(str(edge) if i == slot else ("1" if numeric(e) else
                                                          "x" if ":" in e else e)
                             for i, e in enumerate(pattern))
                answer = await outcome(connector, path)
                # nothing has such an id: not found, or nothing under an unchecked one
                assert isinstance(answer, NotFound) or answer in (([], 0), None), (path,
                                                                                   answer)


def collection_paths(connector: DataConnector) -> list[tuple[str, ...]]:
    """Every collection path without variables, and the nested collections of steps and
    logs (which have none of their own)."""
    row = scalar(connector, sa.select(s.steps.c.buildid, s.steps.c.id).select_from(
        s.logs.join(s.steps, s.logs.c.stepid == s.steps.c.id)).order_by(s.logs.c.id))
    buildid, stepid = row
    paths = [p for p, e in patterns(connector)
             if e.kind is Kind.COLLECTION and not any(":" in x for x in p)]
    return [*paths, ("builds", str(buildid), "steps"), ("steps", str(stepid), "logs"),
            ("builds", str(buildid), "property_list")]


def integer_fields(connector: DataConnector, path: tuple[str, ...]) -> list[str]:
    endpoint, _ = connector.match(path)
    out = []
    for name, type_ in endpoint.rtype.field_types.items():
        base = t.base_type(type_)
        if isinstance(base, t.Integer) and base.filterable:
            out.append(name)
    return out


@pytest_twisted.ensureDeferred
async def test_filter_numbers_beyond_64_bits_are_400(connector: DataConnector) -> None:
    seen = 0
    for path in collection_paths(connector):
        for name in integer_fields(connector, path):
            for op in OPERATORS:
                for big in TOO_BIG:
                    answer = await outcome(connector, path, {f"{name}__{op}": str(big)})
                    assert isinstance(answer, InvalidQuery), (path, name, op, big, answer)
                    assert answer.message == f"invalid filter value for {name}__{op}"
                    seen += 1
    assert seen > 1000


def holds(value: Any, op: str, edge: int) -> bool:
    """A filter on one value, as SQL decides it (null matches nothing)."""
    if value is None:
        return False
    return {"eq": value == edge, "in": value == edge, "ne": value != edge,
            "notin": value != edge, "lt": value < edge, "le": value <= edge,
            "gt": value > edge, "ge": value >= edge}[op]


@pytest_twisted.ensureDeferred
async def test_filter_numbers_at_the_edges_answer(connector: DataConnector) -> None:
    for path in collection_paths(connector):
        whole = await outcome(connector, path)
        assert isinstance(whole, tuple), (path, whole)
        for name in integer_fields(connector, path):
            for edge in EDGES:
                for op in OPERATORS:
                    answer = await outcome(connector, path, {f"{name}__{op}": str(edge)})
                    assert isinstance(answer, tuple), (path, name, op, edge, answer)
                    items, total = answer
                    expected = [i for i in whole[0] if holds(i[name], op, edge)]
                    assert (items, total) == (expected, len(expected)), (path, name, op,
                                                                         edge)


@pytest_twisted.ensureDeferred
async def test_limit_and_offset_at_and_beyond_the_edge(connector: DataConnector) -> None:
    for path in collection_paths(connector):
        items, total = await connector.get(path)
        answer = await connector.get(path, {"limit": str(t.INT_MAX)})
        assert answer == (items, total), path
        answer = await connector.get(path, {"offset": str(t.INT_MAX),
                                            "limit": str(t.INT_MAX)})
        assert answer == ([], total), path
        for query in ({"limit": str(2**63)}, {"offset": str(2**63)},
                      {"limit": str(10**30), "offset": "1"}):
            with pytest.raises(InvalidQuery) as e:
                await connector.get(path, query)
            assert e.value.message == f"invalid {next(iter(query))}: too large"


# -- list-valued fields ----------------------------------------------------------------

def list_fields(connector: DataConnector, path: tuple[str, ...]) -> list[str]:
    endpoint, _ = connector.match(path)
    return [name for name, type_ in endpoint.rtype.field_types.items()
            if isinstance(type_, t.List) and type_.filterable]


def as_text(value: Any) -> str:
    return str(value)


async def check_membership(connector: DataConnector, path: tuple[str, ...], name: str,
                           items: list[dict[str, Any]], one: str, other: str) -> None:
    """eq/in/ne/notin/contains on the list field ``name`` of the collection at ``path``
    (whose items are ``items``) select what membership of ``one`` and ``other`` says."""
    rtype = connector.match(path)[0].rtype
    element = rtype.field_types[name]
    assert isinstance(element, t.List)
    absent = "999999" if isinstance(element.of, t.Integer) else "no-such-element"
    key = rtype.key[0]
    held = [(i[key], {as_text(v) for v in i[name]}) for i in items]
    cases = [
        ({name: one}, lambda h: one in h),
        ({f"{name}__eq": [one, other]}, lambda h: one in h or other in h),
        ({f"{name}__in": [absent, other]}, lambda h: other in h),
        ({f"{name}__ne": one}, lambda h: one not in h),
        ({f"{name}__notin": [one, other]}, lambda h: one not in h and other not in h),
        ({name: absent}, lambda h: False),
        ({f"{name}__ne": absent}, lambda h: True),
    ]
    if not isinstance(element.of, t.Integer):
        cases.append(({f"{name}__contains": one}, lambda h: one in h))
    for query, test in cases:
        found, total = await connector.get(path, query)
        assert total == len(found)
        assert [i[key] for i in found] == [k for k, h in held if test(h)], (path, query)
    # a list has no order against one element
    for op in ("lt", "le", "gt", "ge"):
        answer = await outcome(connector, path, {f"{name}__{op}": one})
        assert isinstance(answer, InvalidQuery), (path, name, op)


@pytest_twisted.ensureDeferred
async def test_list_fields_filter_by_membership(connector: DataConnector) -> None:
    covered = set()
    for path in collection_paths(connector):
        for name in list_fields(connector, path):
            items, _ = await connector.get(path)
            held = sorted({as_text(v) for i in items for v in i[name]})
            if held:
                covered.add((path[0], name))
                await check_membership(connector, path, name, items, held[0], held[-1])
    assert {("builders", "tags"), ("builders", "masterids"), ("changes", "files"),
            ("forceschedulers", "builder_names")} <= covered, covered


# -- order on fields without an order --------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_order_on_list_and_json_fields_is_400(connector: DataConnector) -> None:
    refused = set()
    for _, endpoint in patterns(connector):
        if endpoint.kind is not Kind.COLLECTION:
            continue
        for name, type_ in endpoint.rtype.field_types.items():
            if type_.scalar:
                continue
            base = t.base_type(type_)
            kind = "a list" if isinstance(base, t.List) else "a JSON object"
            for order in (name, f"-{name}"):
                with pytest.raises(InvalidQuery) as e:
                    connector.parse_spec(endpoint, {"order": [order]})
                assert e.value.message == (f"invalid order {order}: {name!r} is {kind}, "
                                           "which has no order")
                refused.add((endpoint.rtype.name, name))
    assert {("worker", "workerinfo"), ("change", "properties"), ("builder", "tags"),
            ("buildset", "sourcestamps"), ("scheduler", "master"),
            ("step", "urls")} <= refused


@pytest_twisted.ensureDeferred
async def test_order_on_scalar_fields_still_works(connector: DataConnector) -> None:
    items, _ = await connector.get("builders", {"order": "-name"})
    assert [i["name"] for i in items] == sorted((i["name"] for i in items), reverse=True)


# -- names that upstream's identifier pattern refuses ----------------------------------

@pytest_twisted.ensureDeferred
async def test_any_stored_name_is_addressed_and_filtered(own_connector: DataConnector
                                                          ) -> None:
    c = own_connector
    row = scalar(c, sa.select(s.steps.c.id, s.steps.c.buildid, s.steps.c.number,
                              s.logs.c.id, s.builds.c.builderid, s.builds.c.number)
                 .select_from(s.logs.join(s.steps, s.logs.c.stepid == s.steps.c.id)
                              .join(s.builds, s.steps.c.buildid == s.builds.c.id))
                 .order_by(s.logs.c.id))
    stepid, buildid, step_number, logid, builderid, build_number = row
    workerid = scalar(c, sa.select(s.workers.c.id).order_by(s.workers.c.id))[0]
    names = {"step": "set props", "log": "std out 1", "builder": "linux py/3.11",
             "worker": "1 worker", "data": "1 data"}
    with c.db.engine.begin() as conn:
        conn.execute(s.steps.update().where(s.steps.c.id == stepid).values(
            name=names["step"]))
        conn.execute(s.logs.update().where(s.logs.c.id == logid).values(slug=names["log"]))
        conn.execute(s.builders.update().where(s.builders.c.id == builderid).values(
            name=names["builder"], name_hash=name_hash(names["builder"])))
        conn.execute(s.workers.update().where(s.workers.c.id == workerid).values(
            name=names["worker"]))
        conn.execute(s.build_data.insert().values(
            buildid=buildid, name=names["data"], value=b"v", length=1, source="test"))
    # path variables
    step = await c.get(("builds", str(buildid), "steps", names["step"]))
    assert (step["stepid"], step["name"]) == (stepid, names["step"])
    for build in (("builds", str(buildid)),
                  ("builders", str(builderid), "builds", str(build_number)),
                  ("builders", names["builder"], "builds", str(build_number))):
        for step_form in ((names["step"],), (str(step_number),)):
            log = await c.get((*build, "steps", *step_form, "logs", names["log"]))
            assert log["logid"] == logid, (build, step_form)
            raw = await c.get((*build, "steps", *step_form, "logs", names["log"], "raw"))
            assert raw == await c.get(("logs", str(logid), "raw"))
        data = await c.get((*build, "data", names["data"]))
        assert data["name"] == names["data"]
    assert (await c.get(("builders", names["builder"])))["builderid"] == builderid
    assert (await c.get(("workers", names["worker"])))["workerid"] == workerid
    project = await c.get(("projects", "Gizmo Server"))
    assert project["name"] == "Gizmo Server"
    # filters
    items, total = await c.get(f"builds/{buildid}/steps", {"name": names["step"]})
    assert (total, [i["stepid"] for i in items]) == (1, [stepid])
    items, total = await c.get(f"steps/{stepid}/logs", {"slug": names["log"]})
    assert [i["logid"] for i in items] == [logid]
    items, total = await c.get("workers", {"name": names["worker"]})
    assert [i["workerid"] for i in items] == [workerid]
    items, total = await c.get("builders", {"name__ne": names["builder"]})
    assert builderid not in [i["builderid"] for i in items] and total > 0
    items, total = await c.get("projects", {"name": "Gizmo Server"})
    assert [i["name"] for i in items] == ["Gizmo Server"]
    # a name that is not stored is not found; NUL can never be stored
    with pytest.raises(NotFound):
        await c.get(("builds", str(buildid), "steps", "no such step"))
    with pytest.raises(InvalidQuery):
        await c.get(f"builds/{buildid}/steps", {"name": "a\x00b"})


@pytest_twisted.ensureDeferred
async def test_a_number_is_a_step_number_before_a_step_name(own_connector: DataConnector
                                                            ) -> None:
    c = own_connector
    buildid, = scalar(c, sa.select(s.steps.c.buildid).group_by(s.steps.c.buildid)
                      .having(sa.func.count() >= 2).order_by(s.steps.c.buildid))
    first, second = [r for r in (await c.get(f"builds/{buildid}/steps"))[0]][:2]
    # the second step is named like the first one's number
    with c.db.engine.begin() as conn:
        conn.execute(s.steps.update().where(s.steps.c.id == second["stepid"]).values(
            name=str(first["number"])))
    step = await c.get(("builds", str(buildid), "steps", str(first["number"])))
    assert step["stepid"] == first["stepid"]
    items, _ = await c.get(f"builds/{buildid}/steps", {"name": str(first["number"])})
    assert [i["stepid"] for i in items] == [second["stepid"]]


# -- what a program may hand the embedding API ------------------------------------------

@pytest_twisted.ensureDeferred
async def test_a_program_s_odd_values_are_the_data_api_s_errors(connector: DataConnector
                                                                ) -> None:
    lone = "\udcff"  # a lone surrogate: a Python string, but no text
    for path, query, error in (
            ("builds", {"state_string": lone}, InvalidQuery),
            ("builds", {"state_string__ne": lone}, InvalidQuery),
            ("builds", {"property": lone}, InvalidQuery),
            ("workers", {"name": lone}, InvalidQuery),
            (("builders", lone), None, InvalidPath),
            (("builds", "1", "steps", lone), None, InvalidPath),
            ("builds", {1: "1"}, InvalidQuery),
            ("builds", {b"limit": "1"}, InvalidQuery),
            (("builds", 1), None, InvalidPath),
            (("builds", None), None, InvalidPath),
            (("builds", b"1"), None, InvalidPath),
    ):
        with pytest.raises(error):
            await connector.get(path, query)  # type: ignore[arg-type]


def test_limit_and_offset_are_plain_digits(connector: DataConnector) -> None:
    endpoint, _ = connector.match(("builds",))
    for name in ("limit", "offset"):
        for text in ("\uff13", "1_0", " 3", "+3", "3 ", "0x3", "1e3", ""):
            with pytest.raises(InvalidQuery) as e:
                connector.parse_spec(endpoint, {name: [text]})
            assert e.value.message == f"invalid {name}", text
        with pytest.raises(InvalidQuery) as e:
            connector.parse_spec(endpoint, {name: ["-3"]})
        assert e.value.message == f"invalid {name}: must not be negative"
        assert getattr(connector.parse_spec(endpoint, {name: ["0030"]}), name) == 30


def test_no_order_on_json_text_or_bytes(connector: DataConnector) -> None:
    for path, name, kind in ((("builds", "1", "property_list"), "value", "a JSON object"),
                             (("builds", "1", "data"), "value", "bytes")):
        endpoint, _ = connector.match(path)
        with pytest.raises(InvalidQuery) as e:
            connector.parse_spec(endpoint, {"order": [f"-{name}"]})
        assert e.value.message == (f"invalid order -{name}: {name!r} is {kind}, which "
                                   "has no order")
    # property list values still filter as text (docs/compatibility.rst, properties)
    endpoint, _ = connector.match(("builds", "1", "property_list"))
    assert connector.parse_spec(endpoint, {"value__contains": ["x"]}).filters
