# -*- test-case-name: tests.www.test_properties -*-
"""Properties of builds, buildsets and changes: as one ``{name: [value, source]}`` dict
(``property``), or as a collection of ``{name, source, value}`` rows (``_property``);
the update methods that set build properties."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from buildbot_rest.data import params
from buildbot_rest.data import types as t
from buildbot_rest.data.base import Field, Kind, ResourceType, chunked
from buildbot_rest.data.context import Context
from buildbot_rest.data.endpoint import Endpoint, SQLEndpoint
from buildbot_rest.data.errors import InvalidParams
from buildbot_rest.data.resolve import BUILD_FORMS, nested
from buildbot_rest.data.resources.builds import build_row_in, load_properties
from buildbot_rest.data.resultspec import ResultSpec
from buildbot_rest.data.transaction import Write
from buildbot_rest.db import schema as s

bp = s.build_properties
bsp = s.buildset_properties
cp = s.change_properties


# -- reading ``[value, source]`` JSON texts ------------------------------------------------

def split_sourced(text: str, *, change: bool = False) -> tuple[Any, str] | None:
    """The (value, source) stored as the JSON text ``[value, source]``; None when the text
    is not that. Change properties are lenient, as upstream reads them: anything else
    is a value whose source is "Change"."""
    try:
        decoded = json.loads(text)
    except ValueError:
        return None
    pair = isinstance(decoded, list) and len(decoded) == 2 and isinstance(decoded[1], str)
    if pair and (not change or decoded[1] == "Change"):
        return decoded[0], decoded[1]
    return (decoded, "Change") if change else None


def load_sourced(conn: sa.Connection, table: sa.Table, owner: sa.Column[Any],
                 ownerids: list[int], names: list[str] | None, *,
                 change: bool = False) -> dict[int, dict[str, list[Any]]]:
    """``{ownerid: {name: [value, source]}}`` from buildset_properties or
    change_properties; ``names`` None or with ``*`` means every property."""
    out: dict[int, dict[str, list[Any]]] = defaultdict(dict)
    wanted = None if names is None or "*" in names else names
    for chunk in chunked(ownerids):
        stmt = sa.select(owner, table.c.property_name, table.c.property_value).where(
            owner.in_(chunk))
        if wanted is not None:
            stmt = stmt.where(table.c.property_name.in_(wanted))
        for ownerid, name, text in conn.execute(stmt):
            pair = split_sourced(text, change=change)
            if pair is not None:
                out[ownerid][name] = list(pair)
    return out


def load_buildset_properties(conn: sa.Connection, bsids: list[int],
                             names: list[str] | None) -> dict[int, dict[str, list[Any]]]:
    return load_sourced(conn, bsp, bsp.c.buildsetid, bsids, names)


def load_change_properties(conn: sa.Connection, changeids: list[int]
                           ) -> dict[int, dict[str, list[Any]]]:
    return load_sourced(conn, cp, cp.c.changeid, changeids, None, change=True)


# The same split in SQL, so that filters and order on value and source run in the
# database. The text is ``[`` + json(value) + ``, `` + json(source) + ``]`` as upstream's
# json.dumps writes it; the source's JSON string holds no unescaped quote, so the last
# ``, "`` separates the two.

class sourced_value(FunctionElement[str]):
    """The JSON text of the value in a ``[value, source]`` text (NULL if malformed)."""

    type = sa.Text()
    inherit_cache = True


class sourced_source(FunctionElement[str]):
    """The source string of a ``[value, source]`` text (NULL if malformed)."""

    type = sa.Text()
    inherit_cache = True


_PG_SPLIT = r'^\[(.*), "((?:[^"\\]|\\.)*)"\]$'


def _arg(element: Any, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(next(iter(element.clauses)), **kw))


def _sqlite_pair(x: str, then: str) -> str:
    # nested, so that json_type never sees a malformed text
    return (f"CASE WHEN json_valid({x}) THEN CASE WHEN json_type({x}, '$[1]') = 'text' "
            f"THEN {then} END END")


@compiles(sourced_source)
def _source_sqlite(element: sourced_source, compiler: Any, **kw: Any) -> str:
    x = _arg(element, compiler, **kw)
    return _sqlite_pair(x, f"json_extract({x}, '$[1]')")


@compiles(sourced_value)
def _value_sqlite(element: sourced_value, compiler: Any, **kw: Any) -> str:
    x = _arg(element, compiler, **kw)
    return _sqlite_pair(x, f"substr({x}, 2, length({x}) - 4 - "
                           f"length(json_quote(json_extract({x}, '$[1]'))))")


@compiles(sourced_source, "postgresql")
def _source_pg(element: sourced_source, compiler: Any, **kw: Any) -> str:
    x = _arg(element, compiler, **kw)
    # Only the two escapes that sources realistically hold are undone here; output is
    # decoded exactly in Python.
    return (f"replace(replace((regexp_match({x}, '{_PG_SPLIT}'))[2], "
            f"'\\\"', '\"'), '\\\\', '\\')")


@compiles(sourced_value, "postgresql")
def _value_pg(element: sourced_value, compiler: Any, **kw: Any) -> str:
    x = _arg(element, compiler, **kw)
    return f"(regexp_match({x}, '{_PG_SPLIT}'))[1]"


def _mysql_pair(x: str, then: str) -> str:
    return (f"CASE WHEN JSON_VALID({x}) THEN CASE WHEN "
            f"JSON_TYPE(JSON_EXTRACT({x}, '$[1]')) = 'STRING' THEN {then} END END")


@compiles(sourced_source, "mysql")
def _source_mysql(element: sourced_source, compiler: Any, **kw: Any) -> str:
    x = _arg(element, compiler, **kw)
    return _mysql_pair(x, f"JSON_UNQUOTE(JSON_EXTRACT({x}, '$[1]'))")


@compiles(sourced_value, "mysql")
def _value_mysql(element: sourced_value, compiler: Any, **kw: Any) -> str:
    x = _arg(element, compiler, **kw)
    return _mysql_pair(x, f"substr({x}, 2, char_length({x}) - 4 - "
                          f"char_length(JSON_EXTRACT({x}, '$[1]')))")


# -- writing build properties ----------------------------------------------------------

#: the longest property name or source (the columns' length)
NAME_LENGTH = 256


def property_json(name: str, value: Any) -> str:
    """The value's JSON text as upstream stores it (``json.dumps``); InvalidParams if it
    has no JSON form (NaN and infinities have none that a client can read)."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidParams({name: f"value is not JSON-serialisable: {e}"}) from None


def checked_property(name: Any, value: Any, source: Any) -> tuple[str, str, str]:
    """``(name, value's JSON text, source)`` checked for storage."""
    name = params.check_text("name", name, max_length=NAME_LENGTH)
    source = params.check_text("source", source, max_length=NAME_LENGTH)
    return name, property_json(name, value), source


def set_build_properties_in(write: Write, buildid: int,
                            properties: Mapping[str, tuple[str, str]], *,
                            always_publish: bool = False) -> dict[str, list[Any]]:
    """Store ``{name: (value JSON text, source)}`` on the build (insert or update each
    row). Publishes ``builds/<id>/properties/update`` with the properties whose value
    or source changed, as ``{name: [value, source]}`` (every given one when
    ``always_publish``; nothing when none changed), and answers that dict."""
    # locked: concurrent writers of the build's properties take turns (the table has no
    # unique key to catch a duplicate row)
    build_row_in(write, buildid, lock=True)
    stored = {row.name: (row.value, row.source) for row in write.conn.execute(
        sa.select(bp.c.name, bp.c.value, bp.c.source).where(
            bp.c.buildid == buildid, bp.c.name.in_(list(properties))))}
    changed: dict[str, list[Any]] = {}
    for name, (value_json, source) in properties.items():
        old = stored.get(name)
        if old is None:
            write.conn.execute(bp.insert().values(buildid=buildid, name=name,
                                                  value=value_json, source=source))
        elif old != (value_json, source):
            write.conn.execute(bp.update().where(bp.c.buildid == buildid, bp.c.name == name)
                               .values(value=value_json, source=source))
        elif not always_publish:
            continue
        changed[name] = [json.loads(value_json), source]
    if changed:
        write.produce(("builds", str(buildid), "properties", "update"), changed)
    return changed


def _as_dict(properties: Any) -> Mapping[str, Any]:
    """``{name: (value, source)}`` from a mapping, or from upstream's ``IProperties``
    object (``getProperties().asDict()``; renderables are not rendered)."""
    if hasattr(properties, "getProperties"):
        properties = properties.getProperties()
    if hasattr(properties, "asDict"):
        properties = properties.asDict()
    if not isinstance(properties, Mapping):
        raise InvalidParams({"properties": "must be a mapping of name to (value, source)"})
    return properties


class JsonText(t.String):
    """A JSON document as a string (upstream declares ``jsonobject``); filterable as text."""

    name = "jsonobject"
    #: JSON text sorts by its characters, which is no order of the values (COMPAT 29)
    orderable = False


# -- property: one {name: [value, source]} dict ---------------------------------------

class BuildsetPropertiesEndpoint(Endpoint):
    kind = Kind.SINGLE
    patterns = ("/buildsets/n:bsid/properties",)

    def get_in(self, conn: sa.Connection, ctx: Context, spec: ResultSpec,
               kwargs: Mapping[str, Any]) -> dict[str, Any]:
        ids = ctx.resolve_in(conn, kwargs)
        return load_buildset_properties(conn, [ids["bsid"]], None).get(ids["bsid"], {})


class BuildPropertiesEndpoint(Endpoint):
    kind = Kind.SINGLE
    patterns = nested(BUILD_FORMS, "/properties")

    def get_in(self, conn: sa.Connection, ctx: Context, spec: ResultSpec,
               kwargs: Mapping[str, Any]) -> dict[str, Any]:
        ids = ctx.resolve_in(conn, kwargs)
        return load_properties(conn, [ids["buildid"]], None).get(ids["buildid"], {})


class Properties(ResourceType):
    name = "property"
    plural = "properties"
    endpoints = (BuildsetPropertiesEndpoint, BuildPropertiesEndpoint)
    updates = ("setBuildProperties", "setBuildProperty")

    async def setBuildProperties(self, buildid: int, properties: Any) -> None:
        """Set several properties of a build: ``properties`` is ``{name: (value,
        source)}`` (or upstream's ``IProperties``). Publishes the changed ones."""
        buildid = params.check_int("buildid", buildid)
        checked: dict[str, tuple[str, str]] = {}
        for name, pair in _as_dict(properties).items():
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise InvalidParams({"properties": f"{name!r}: give (value, source)"})
            name, value_json, source = checked_property(name, pair[0], pair[1])
            checked[name] = (value_json, source)
        await self.transact(set_build_properties_in, buildid, checked)

    async def setBuildProperty(self, buildid: int, name: str, value: Any, source: str) -> None:
        """Set one property of a build; publishes it, changed or not (as upstream),
        under its own name (upstream's message says ``"name"``: a bug)."""
        buildid = params.check_int("buildid", buildid)
        name, value_json, source = checked_property(name, value, source)
        await self.transact(set_build_properties_in, buildid, {name: (value_json, source)},
                            always_publish=True)

    @property
    def entity_type(self) -> Any:
        # a bare dict type, not an entity: application.spec names it sourcedproperties
        return t.SourcedProperties()


# -- _property: a collection of {name, source, value} ----------------------------------

class PropertyList(ResourceType):
    """Build properties as rows; its subclasses read buildset and change properties."""

    name = "_property"
    plural = "_properties"
    fields = (
        Field("name", t.String(), bp.c.name),
        Field("source", t.String(), bp.c.source),
        Field("value", JsonText(), bp.c.value),
    )
    # No key: rows keep the table's natural order, as upstream lists them (these tables
    # have no primary key), and an order on source or value keeps it between ties.
    key = ()
    #: the column that names the owning build, buildset or change
    owner: ClassVar[sa.ColumnElement[Any]] = bp.c.buildid

    def from_clause(self) -> sa.FromClause:
        return bp


class _SourcedPropertyList(PropertyList):
    """Rows of a ``[value, source]`` JSON text; value and source are read in Python for
    output (exactly as upstream decodes them), in SQL for filters and order."""

    table: ClassVar[sa.Table]
    change: ClassVar[bool] = False

    def to_items(self, keys: Sequence[str], rows: Iterable[Sequence[Any]]
                 ) -> list[dict[str, Any]]:
        items = super().to_items(keys, rows)
        for item in items:
            pair = split_sourced(item["_text"], change=self.change)
            if pair is not None:
                item["value"] = json.dumps(pair[0])
                item["source"] = pair[1]
        return items

    def from_clause(self) -> sa.FromClause:
        return self.table


class BuildsetPropertyList(_SourcedPropertyList):
    table = bsp
    fields = (
        Field("name", t.String(), bsp.c.property_name),
        Field("source", t.String(), sourced_source(bsp.c.property_value)),
        Field("value", JsonText(), sourced_value(bsp.c.property_value)),
    )
    extra_columns = (bsp.c.property_value.label("_text"),)
    owner = bsp.c.buildsetid


class ChangePropertyList(_SourcedPropertyList):
    table = cp
    change = True
    # Upstream reads a text that is not ``[value, "Change"]`` as a bare value.
    _is_pair = sourced_source(cp.c.property_value) == "Change"
    fields = (
        Field("name", t.String(), cp.c.property_name),
        Field("source", t.String(), sa.literal("Change", sa.Text())),
        Field("value", JsonText(), sa.case((_is_pair, sourced_value(cp.c.property_value)),
                                           else_=cp.c.property_value)),
    )
    extra_columns = (cp.c.property_value.label("_text"),)
    owner = cp.c.changeid


class PropertyListEndpoint(SQLEndpoint):
    patterns = (
        *nested(BUILD_FORMS, "/property_list"),
        "/buildsets/n:bsid/properties_list",
        "/changes/n:changeid/properties_list",
    )
    #: where each path's rows come from
    sources: ClassVar[dict[str, PropertyList]] = {
        "buildid": PropertyList(),
        "bsid": BuildsetPropertyList(),
        "changeid": ChangePropertyList(),
    }

    def source(self, ids: Mapping[str, Any]) -> ResourceType:
        return self.sources[self._owner(ids)]

    def where(self, ids: Mapping[str, Any]) -> list[Any]:
        var = self._owner(ids)
        rows = self.sources[var]
        where = [rows.owner == ids[var]]
        if isinstance(rows, BuildsetPropertyList):
            # upstream skips texts that are not [value, source]
            where.append(sourced_source(bsp.c.property_value).is_not(None))
        return where

    def _owner(self, ids: Mapping[str, Any]) -> str:
        return next(var for var in self.sources if var in ids)


PropertyList.endpoints = (PropertyListEndpoint,)

RESOURCE_TYPES = (Properties, PropertyList)
