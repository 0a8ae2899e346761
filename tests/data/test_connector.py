"""The data connector beyond reads: writes that publish their events only after commit,
update methods, control actions and event routing keys, and the import layering of
``data/``."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.data import types as t
from buildbot_rest.data.base import EventKey, Field, ResourceType
from buildbot_rest.data.connector import MODULES, DataConnector
from buildbot_rest.data.endpoint import Endpoint
from buildbot_rest.data.errors import InvalidControl
from buildbot_rest.data.updates import Updates
from buildbot_rest.db import Database
from buildbot_rest.db import schema as s
from buildbot_rest.mq import SimpleMQ

DATA = Path(__file__).resolve().parents[2] / "buildbot_rest" / "data"


@pytest.fixture
def connector(sqlite_url: str) -> Any:
    db = Database(sqlite_url)
    db.prepare_sync()
    db.start()
    mq = SimpleMQ()
    yield DataConnector(db, mq=mq)
    db.stop()


def _new_master(conn: sa.Connection, name: str) -> tuple[int, list[Any]]:
    masterid = conn.execute(s.masters.insert().values(
        name=name, name_hash="h" + name, active=1, last_active=1)).inserted_primary_key[0]
    return masterid, [(("masters", str(masterid), "started"), {"masterid": masterid})]


@pytest_twisted.ensureDeferred
async def test_write_publishes_its_events_after_commit(connector: DataConnector) -> None:
    seen: list[Any] = []

    def consumer(key: Any, message: Any) -> None:
        # the write is visible to everyone once its event is out
        with connector.db.engine.connect() as conn:
            names = [r[0] for r in conn.execute(sa.select(s.masters.c.name))]
        seen.append((key, message, names))

    assert connector.mq is not None
    connector.mq.consume(consumer, ("masters", None, None))
    masterid = await connector.write(_new_master, "m1")
    assert seen == [(("masters", str(masterid), "started"), {"masterid": masterid}, ["m1"])]


@pytest_twisted.ensureDeferred
async def test_a_failed_write_publishes_nothing(connector: DataConnector) -> None:
    seen: list[Any] = []
    assert connector.mq is not None
    connector.mq.consume(lambda k, m: seen.append(k), ("masters", None, None))

    def write_then_fail(conn: sa.Connection) -> tuple[int, list[Any]]:
        result = _new_master(conn, "m2")
        raise ValueError("bad input")
        return result  # pragma: no cover

    with pytest.raises(ValueError):
        await connector.write(write_then_fail)
    assert seen == []
    with connector.db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(s.masters)).scalar() == 0


class _Thing(ResourceType):
    name = "thing"
    plural = "things"
    fields = (Field("thingid", t.Integer()), Field("ownerid", t.Integer()))
    actions = ("poke",)
    updates = ("addThing",)
    events = (EventKey(("things", "{thingid}")),
              EventKey(("owners", "{ownerid}", "things", "{thingid}")))

    async def addThing(self, name: str) -> int:
        """An update method: a row (a master here), then its events after commit."""
        def write(conn: sa.Connection) -> tuple[int, list[Any]]:
            masterid, _ = _new_master(conn, name)
            entity = {"thingid": masterid, "ownerid": 0}
            return masterid, [(key, entity) for key in self.routing_keys(entity, "new")]

        assert self.connector is not None
        return await self.connector.write(write)


class _ThingEndpoint(Endpoint):
    patterns = ("/things/n:thingid",)

    async def action_poke(self, ctx: Any, params: Any, kwargs: Any) -> Any:
        return {"poked": kwargs["thingid"], "by": ctx.user}

    async def action_undeclared(self, ctx: Any, params: Any, kwargs: Any) -> Any:
        raise AssertionError("an action not declared must not run")


_Thing.endpoints = (_ThingEndpoint,)


def test_event_routing_keys_come_from_the_declarations() -> None:
    thing = _Thing()
    assert thing.routing_keys({"thingid": 7, "ownerid": 3}, "new") == [
        ("things", "7", "new"), ("owners", "3", "things", "7", "new")]
    with pytest.raises(KeyError):
        thing.routing_keys({"thingid": 7}, "new")


def test_every_resource_type_declares_actions_updates_and_events(
        connector: DataConnector) -> None:
    for rtype in connector.rtypes.values():
        for declaration in (rtype.actions, rtype.updates, rtype.events, rtype.fields,
                            rtype.endpoints, rtype.key):
            assert isinstance(declaration, tuple), (rtype.name, declaration)


@pytest_twisted.ensureDeferred
async def test_update_methods_and_actions_of_a_registered_type(
        connector: DataConnector) -> None:
    before = connector.updates.names()
    connector.register(_Thing())
    assert connector.updates.names() == (*before, "addThing")
    seen: list[Any] = []
    assert connector.mq is not None
    connector.mq.consume(lambda k, m: seen.append(k), (None, None, None))
    thingid = await connector.updates.addThing("m9")
    assert seen == [("things", str(thingid), "new")]
    with pytest.raises(AttributeError):
        connector.updates.removeThing  # noqa: B018
    with pytest.raises(ValueError, match="'thing' is already registered"):
        connector.register(_Thing())

    class _Other(_Thing):
        name = "other"
        endpoints = ()

    with pytest.raises(ValueError, match="'addThing' is already defined"):
        connector.register(_Other())
    assert set(connector.rtypes) - {"thing"} == set(connector.rtypes) - {"thing", "other"}
    endpoint, kwargs = connector.match(("things", "4"))
    ctx = connector.context(endpoint, kwargs)
    assert await endpoint.control(ctx, "poke", {}, kwargs) == {
        "poked": 4, "by": {"anonymous": True}}
    for method in ("undeclared", "Poke", "nothing"):
        with pytest.raises(InvalidControl):
            await endpoint.control(ctx, method, {}, kwargs)


def test_updates_refuse_reserved_names() -> None:
    updates = Updates()
    for name in ("register", "names", "_private"):
        with pytest.raises(ValueError):
            updates.register(name, print)


def _data_imports(path: Path) -> set[str]:
    """The ``buildbot_rest.data`` modules a module imports, type-only imports included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module + "." + a.name for a in node.names]
            found.update(n for n in [node.module, *names]
                         if n.startswith("buildbot_rest.data.")
                         and n.count(".") == 2 and n != "buildbot_rest.data.types")
            if node.module == "buildbot_rest.data":
                found.update(f"buildbot_rest.data.{a.name}" for a in node.names)
    return found


def test_data_modules_import_one_way() -> None:
    """Below ``resources``, no module of ``data/`` imports another that imports it back,
    directly or not: the layers are types, errors, query language, matcher, resolver
    and context; declarations; the engine; endpoints; reads; the connector."""
    graph = {f"buildbot_rest.data.{p.stem}": _data_imports(p) for p in DATA.glob("*.py")
             if p.stem != "__init__"}
    graph = {k: {m for m in v if m in graph} - {k} for k, v in graph.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph[start]:
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = [m for m in graph if reaches(m, m, set())]
    assert cycles == []
    assert "buildbot_rest.data.connector" not in set().union(*graph.values())
    # resource modules sit on top of the layers, below the connector
    for module in MODULES:
        imported = _data_imports(DATA / "resources" / f"{module}.py")
        assert "buildbot_rest.data.connector" not in imported, module


@pytest.mark.parametrize("answer", [
    "not a pair", (1, None), (1, "events"), (1, [("not", "a", "pair")]),
    (1, [("masters/1/new", {})]), (1, [(("masters", 1, "new"), {})])])
@pytest_twisted.ensureDeferred
async def test_a_malformed_write_is_rolled_back(connector: DataConnector, answer: Any) -> None:
    def write(conn: sa.Connection) -> Any:
        _new_master(conn, "m3")
        return answer

    with pytest.raises(TypeError):
        await connector.write(write)
    with connector.db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(s.masters)).scalar() == 0


@pytest_twisted.ensureDeferred
async def test_events_that_fail_to_list_publish_nothing(connector: DataConnector) -> None:
    seen: list[Any] = []
    assert connector.mq is not None
    connector.mq.consume(lambda k, m: seen.append(k), ("masters", None, None))

    def events() -> Any:
        yield (("masters", "1", "started"), {})
        raise RuntimeError("broken generator")

    def write(conn: sa.Connection) -> Any:
        _new_master(conn, "m4")
        return 1, events()

    with pytest.raises(RuntimeError):
        await connector.write(write)
    assert seen == []
    with connector.db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(s.masters)).scalar() == 0


@pytest_twisted.ensureDeferred
async def test_reads_and_writes_after_a_stop_fail_at_once_and_work_after_a_restart(
        connector: DataConnector) -> None:
    # the data API's 503, which tells when to try again
    from buildbot_rest.data.errors import ServiceUnavailable as DatabaseUnavailable

    connector.db.stop()
    with pytest.raises(DatabaseUnavailable, match="closed"):
        await connector.get("masters")
    with pytest.raises(DatabaseUnavailable, match="closed"):
        await connector.write(_new_master, "m5")
    endpoint, kwargs = connector.match(("masters",))
    spec = connector.parse_spec(endpoint, {})
    monkey_batch = endpoint.streams(spec)
    assert monkey_batch  # the streamed path refuses too
    with pytest.raises(DatabaseUnavailable, match="closed"):
        await connector.read(connector.context(endpoint, kwargs), endpoint, spec, kwargs)
    connector.db.start()
    assert await connector.write(_new_master, "m6") > 0
    assert (await connector.get("masters"))[1] == 1


@pytest_twisted.ensureDeferred
async def test_query_arguments_of_a_program(connector: DataConnector) -> None:
    from buildbot_rest.data.errors import InvalidQuery

    for name in ("a", "b", "c"):
        await connector.write(_new_master, name)
    items, total = await connector.get("masters", {"limit": "2", "order": ["-name"]})
    assert [m["name"] for m in items] == ["c", "b"] and total == 3
    for bad in ({"limit": []}, {"limit": [None]}, {"limit": 2}):
        with pytest.raises(InvalidQuery, match="invalid value for limit"):
            await connector.get("masters", bad)


@pytest_twisted.ensureDeferred
async def test_a_streamed_read_cut_by_a_stop_fails_instead_of_looking_complete(
        connector: DataConnector, monkeypatch: pytest.MonkeyPatch) -> None:
    from buildbot_rest.data import reads
    from buildbot_rest.data.errors import ServiceUnavailable

    for i in range(40):
        await connector.write(_new_master, f"m{i:02}")
    monkeypatch.setattr(reads, "STREAM_BATCH", 2)
    endpoint, kwargs = connector.match(("masters",))
    spec = connector.parse_spec(endpoint, {})
    answer = await connector.read(connector.context(endpoint, kwargs), endpoint, spec, kwargs)
    assert isinstance(answer, reads.CollectionStream)
    connector.db.stop()  # cancels the stream: its thread is waiting for the consumer
    with pytest.raises(ServiceUnavailable, match="cut short"):
        await answer.read_all()
    connector.db.start()
    items, total = await connector.get("masters")
    assert total == len(items) == 40  # whole again once the database is back
