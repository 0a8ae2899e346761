"""Stored text that is not UTF-8, and stored JSON that does not parse, in every text
column of the schema, read through every path of the data API (issue 9, item 2).

A database written by another program, or by an older Buildbot, can hold bytes that
are not UTF-8 in any text column: SQLite keeps what it is given, and a PostgreSQL
database created ``ENCODING 'SQL_ASCII'`` takes any byte. Each bad byte must read as
U+FFFD, and JSON that does not parse must read as missing: one damaged value must never
fail the answers that load it.

A demo database is damaged in every text column of every table (the ``*_hash`` lookup
columns aside), on SQLite and on a SQL_ASCII PostgreSQL database; then every path
pattern of the connector is read with values taken from the database. A UTF8 PostgreSQL
database cannot hold a bad byte: there the same columns get valid non-ASCII text and
damaged JSON, which must read back exactly, as on the other two.

Rows are changed by class, the row's key (its integer primary key, else its first
foreign key) modulo 4:

- ``CLEAN``: left alone;
- ``BAD``: the byte 0xFF and a tag ``<k:key>`` (k the column's index in :data:`COLUMNS`)
  appended to the text, which reads ``\\ufffd<k:key>``; in a JSON column, a document
  with that in a string (left alone on UTF8);
- ``CAFE``: ``café<k:key>`` appended, or in a JSON string; the row's ``name_hash`` follows
  its new name, so that it is found by that name;
- ``DAMAGED``: in a JSON column, a document that does not parse (where a bad byte can be
  stored, the bad byte is its only flaw); other columns are left alone.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from twisted.internet import endpoints, reactor
from twisted.web.server import Site

from buildbot_rest import demo
from buildbot_rest.config import Config
from buildbot_rest.data.base import Kind
from buildbot_rest.data.connector import DataConnector
from buildbot_rest.data.endpoint import Endpoint
from buildbot_rest.data.errors import InvalidPath, NotFound
from buildbot_rest.db import Database
from buildbot_rest.db import schema as s
from buildbot_rest.db.hashes import name_hash
from tests.conftest import raw_engine_for
from tests.www.conftest import Api

BUILDS = 60
SEED = 3

CLEAN, BAD, CAFE, DAMAGED = range(4)

#: every text column of the schema but the hash columns, which are computed lookups
COLUMNS: tuple[sa.Column[Any], ...] = tuple(
    c for t in s.metadata.sorted_tables for c in t.c
    if isinstance(c.type, sa.String) and not c.name.endswith("_hash"))

#: a column's index in COLUMNS, by its qualified name (``table.column``)
INDEX = {f"{c.table.name}.{c.name}": i for i, c in enumerate(COLUMNS)}

#: the columns that hold JSON: (a document with ``{m}`` in a string, a damaged document);
#: ``{bad}`` is the bad byte, or nothing where none can be stored
JSON_FORMS: dict[str, tuple[str, str]] = {
    "build_properties.value": ('"{m}"', "[1, {bad}]"),
    "buildset_properties.property_value": ('["{m}", "{m}"]', '["x", {bad}]'),
    "change_properties.property_value": ('["{m}", "Change"]', '["x", {bad}]'),
    "steps.urls_json": ('[{"name": "{m}", "url": "https://example.org/{m}"}]',
                        '[{"name": {bad}}]'),
    "workers.info": ('{"admin": "{m}"}', '{"admin": {bad}}'),
    "object_state.value_json": ('"{m}"', "[{bad}]"),
}

#: a column of one character: a BAD row's value is the bad byte alone; CAFE rows keep theirs
ONE_CHARACTER = "logs.type"

#: the text columns that no path of the API reads
NOT_SERVED = frozenset({
    "objects.name", "objects.class_name", "object_state.name", "object_state.value_json",
    "users.identifier", "users.bb_username", "users.bb_password",
    "users_info.attr_type", "users_info.attr_data",
    "patches.patch_base64",  # a patch's body serialises as null
})

#: patterns that name nothing: ``/logchunks`` without a log
ALWAYS_404 = frozenset({("logchunks",)})

#: a value no path variable has: a path holding it names nothing
MISSING = 987654

_PLACEHOLDER = re.compile(r"\{(m|bad)\}")
_TAG = re.compile(r"(\ufffd|café)<(\d+):")


def qualified(column: sa.Column[Any]) -> str:
    return f"{column.table.name}.{column.name}"


def key_column(table: sa.Table) -> sa.Column[Any]:
    """The column whose value modulo 4 is a row's class."""
    pk = list(table.primary_key.columns)
    if len(pk) == 1 and isinstance(pk[0].type, sa.Integer):
        return pk[0]
    return next(c for c in table.c if c.foreign_keys)


def row_class(table: sa.Table, row: dict[str, Any]) -> int:
    return int(row[key_column(table).name]) % 4


def fill(template: str, **values: str) -> str:
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def marker(column: sa.Column[Any], key: int, cls: int) -> str:
    """The text a BAD or CAFE row's value gains, as it reads."""
    return f"{'café' if cls == CAFE else chr(0xFFFD)}<{INDEX[qualified(column)]}:{key}>"


def stored(column: sa.Column[Any], row: dict[str, Any], bad_bytes: bool) -> Any:
    """What ``column`` of the original ``row`` reads once damaged."""
    value = row[column.name]
    cls = row_class(column.table, row)
    if cls == CLEAN or (cls == BAD and not bad_bytes):
        return value
    name = qualified(column)
    if name == ONE_CHARACTER:
        return "\ufffd" if cls == BAD else value
    key = row[key_column(column.table).name]
    forms = JSON_FORMS.get(name)
    if forms is None:
        return value if cls == DAMAGED else (value or "") + marker(column, key, cls)
    if cls == DAMAGED:
        return fill(forms[1], bad="\ufffd" if bad_bytes else "")
    return fill(forms[0], m=marker(column, key, cls))


# -- damaging a database, in SQL ------------------------------------------------------------

def _bad_byte(dialect: str) -> sa.ColumnElement[str]:
    if dialect == "sqlite":
        return sa.literal_column("CAST(X'FF' AS TEXT)", sa.Text())
    return sa.literal_column("convert_from('\\xff'::bytea, 'SQL_ASCII')", sa.Text())


def _concat(*parts: str | sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    exprs = [sa.literal(p, sa.Text()) if isinstance(p, str) else p for p in parts if p != ""]
    return reduce(lambda a, b: a + b, exprs)


def _render(template: str, **parts: list[str | sa.ColumnElement[Any]]
            ) -> sa.ColumnElement[Any]:
    pieces = _PLACEHOLDER.split(template)  # literal, name, literal, name, ...
    return _concat(*(p for i, text in enumerate(pieces)
                     for p in ([text] if i % 2 == 0 else parts[text])))


def damage(conn: sa.Connection, bad_bytes: bool) -> None:
    """Change the rows of every class as the module's docstring says."""
    bad = _bad_byte(conn.dialect.name)
    for column in COLUMNS:
        table, key, name = column.table, key_column(column.table), qualified(column)
        tag = _concat(f"<{INDEX[qualified(column)]}:", sa.cast(key, sa.Text()), ">")
        forms = JSON_FORMS.get(name)
        values = {CAFE: [_concat("café", tag)], DAMAGED: None}
        if bad_bytes:
            values[BAD] = [_concat(bad, tag)]
        for cls, mark in values.items():
            if name == ONE_CHARACTER:
                value = bad if cls == BAD else None
            elif forms is not None:
                value = (_render(forms[1], bad=[bad] if bad_bytes else []) if mark is None
                         else _render(forms[0], m=mark))
            else:
                value = None if mark is None else _concat(sa.func.coalesce(column, ""), *mark)
            if value is not None:
                conn.execute(table.update().where(key % 4 == cls).values({column.name: value}))
    for table in s.metadata.sorted_tables:
        if "name_hash" in table.c:
            key = key_column(table)
            for keyvalue, name in list(conn.execute(
                    sa.select(key, table.c.name).where(key % 4 == CAFE))):
                conn.execute(table.update().where(key == keyvalue)
                             .values(name_hash=name_hash(name)))


# -- the databases --------------------------------------------------------------------------

@dataclass
class Damaged:
    """A damaged demo database, its connector, and what its rows read as."""

    kind: str
    connector: DataConnector
    bad_bytes: bool
    #: table name -> the original rows
    originals: dict[str, list[dict[str, Any]]]
    #: table name -> the rows as they read once damaged
    rows: dict[str, list[dict[str, Any]]]
    witnesses: list[dict[str, Any]] = field(default_factory=list)
    _by_key: dict[str, dict[int, Any]] = field(default_factory=dict)

    def by_key(self, table: str) -> dict[int, Any]:
        """The damaged rows of ``table`` by their key; a list of them for a table
        without a primary key."""
        if table not in self._by_key:
            t = s.metadata.tables[table]
            key, out = key_column(t).name, {}
            for r in self.rows[table]:
                out.setdefault(r[key], []).append(r)
            single = key_column(t).primary_key
            self._by_key[table] = {k: v[0] for k, v in out.items()} if single else out
        return self._by_key[table]

    def original(self, table: str, cls: int, *not_null: str) -> dict[str, Any]:
        """The original row of ``table`` of class ``cls`` with the smallest key and these
        columns set."""
        t = s.metadata.tables[table]
        key = key_column(t).name
        return min((r for r in self.originals[table]
                    if row_class(t, r) == cls and all(r[c] is not None for c in not_null)),
                   key=lambda r: r[key])

    def bad(self, column: sa.Column[Any], key: int) -> str:
        """What a BAD row's text gains: ``\\ufffd<k:key>``, nothing on UTF8."""
        return marker(column, key, BAD) if self.bad_bytes else ""


def _new_pg_database(server_url: str, encoding: str) -> tuple[str, Callable[[], None]]:
    admin = raw_engine_for(server_url, isolation_level="AUTOCOMMIT",
                           poolclass=sa.pool.NullPool)
    name = f"bbrest_test_{uuid.uuid4().hex[:16]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE \"{name}\" ENCODING '{encoding}' "
                             "TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    return url, drop


KINDS = ["sqlite",
         pytest.param("pg-sql_ascii", marks=pytest.mark.postgresql),
         pytest.param("pg-utf8", marks=pytest.mark.postgresql)]


@pytest.fixture(scope="module", params=KINDS)
def damaged(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Damaged]:
    """A damaged demo database of each kind, read through a connector."""
    kind = request.param
    drop: Callable[[], None] | None = None
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('stored_text') / 'demo.sqlite'}"
    else:
        encoding = "SQL_ASCII" if kind == "pg-sql_ascii" else "UTF8"
        url, drop = _new_pg_database(request.getfixturevalue("pg_url"), encoding)
    db: Database | None = None
    # The test's own writes and reads go through a plain driver connection, not through
    # the engine under test (UTF-8 both ways: on SQL_ASCII, the server converts nothing).
    plain = raw_engine_for(url, **({} if kind == "sqlite" else
                                   {"connect_args": {"client_encoding": "utf8"}}))
    try:
        db = Database(url, pool_size=2)
        db.prepare_sync()
        demo.populate(db.engine, builds=BUILDS, seed=SEED)
        bad_bytes = kind != "pg-utf8"
        tables = sorted({c.table for c in COLUMNS}, key=lambda t: t.name)
        with plain.begin() as conn:
            if kind != "sqlite":
                assert conn.exec_driver_sql("SHOW server_encoding").scalar() == encoding
            add_links(conn)
            originals = {t.name: [dict(r._mapping) for r in conn.execute(sa.select(t))]
                         for t in tables}
            damage(conn, bad_bytes)
        rows = {t.name: [{**r, **{c.name: stored(c, r, bad_bytes)
                                  for c in COLUMNS if c.table is t}}
                         for r in originals[t.name]] for t in tables}
        # the force scheduler serves every builder, under the names they read as
        config = Config(db_url=url, port=None, forceschedulers=[
            {"name": "force", "builder_names": [b["name"] for b in rows["builders"]]}])
        it = Damaged(kind, DataConnector(db, config=config, base_url="http://example.org/"),
                     bad_bytes, originals, rows)
        with plain.connect() as conn:
            it.witnesses = witnesses(conn, it)
        db.start()
        yield it
    finally:
        plain.dispose()
        if db is not None:
            db.stop()
            db.engine.dispose()
        if drop is not None:
            drop()


# -- values for the path variables ----------------------------------------------------------

def _pick(rows: list[Any], addressable: bool) -> Any:
    """Of rows whose first column decides their class: for a path that names them, one
    that can be named (CAFE first, then CLEAN or DAMAGED); else a BAD one. None if there
    are none."""
    order = (CAFE, CLEAN, DAMAGED, BAD) if addressable else (BAD, CAFE, CLEAN, DAMAGED)
    return min(rows, key=lambda r: (order.index(r[0] % 4), *r), default=None)


def add_links(conn: sa.Connection) -> None:
    """What the demo lacks: builds that triggered others, and a build with test results
    built from a commit of a codebase's history (whose revisions, on both sides, the
    damage leaves alone)."""
    b, bs, br, bss = s.builds, s.buildsets, s.buildrequests, s.buildset_sourcestamps
    trs, ss, cc = s.test_result_sets, s.sourcestamps, s.codebase_commits

    def column(stmt: Any) -> list[Any]:
        return [r[0] for r in conn.execute(stmt)]

    buildsets = column(sa.select(br.c.buildsetid).join(b, b.c.buildrequestid == br.c.id)
                       .order_by(b.c.id.desc()).limit(6))
    for cls, children in zip((CLEAN, BAD, CAFE), (buildsets[:2], buildsets[2:4],
                                                  buildsets[4:]), strict=True):
        parent = column(sa.select(sa.func.min(b.c.id)).where(b.c.builderid % 4 == cls))[0]
        conn.execute(bs.update().where(bs.c.id.in_(children))
                     .values(parent_buildid=parent, parent_relationship="Triggered from"))
    unmarked = (CLEAN, DAMAGED)
    revision = column(sa.select(cc.c.revision).where((cc.c.id % 4).in_(unmarked))
                      .order_by(cc.c.id).limit(1))[0]
    stamp = column(sa.select(sa.func.min(bss.c.sourcestampid))
                   .join(br, br.c.buildsetid == bss.c.buildsetid)
                   .join(b, b.c.buildrequestid == br.c.id)
                   .join(trs, trs.c.buildid == b.c.id)
                   .where((bss.c.sourcestampid % 4).in_(unmarked)))[0]
    conn.execute(ss.update().where(ss.c.id == stamp).values(revision=revision))


def witnesses(conn: sa.Connection, it: Damaged) -> list[dict[str, Any]]:
    """Values of every path variable, for builds that have something under each
    sub-path: each once with a builder and rows that can be named, once with BAD ones.
    Only ids are read from the database; names are those the rows read as."""
    b, bd, trs = s.builds, s.build_data, s.test_result_sets
    bs, br, bss, ch = s.buildsets, s.buildrequests, s.buildset_sourcestamps, s.changes

    def all_of(stmt: Any) -> list[Any]:
        return list(conn.execute(stmt))

    def builds(*where: Any) -> Any:
        return sa.select(b.c.builderid, b.c.id).where(*where)

    kinds = [
        builds(b.c.id.in_(sa.select(bs.c.parent_buildid))),
        builds(b.c.id.in_(sa.select(trs.c.buildid).where(trs.c.stepid.is_not(None)))),
        builds(b.c.id.in_(sa.select(bd.c.buildid))),
        builds(b.c.id.in_(sa.select(b.c.id).join_from(b, br, br.c.id == b.c.buildrequestid)
                          .join(bss, bss.c.buildsetid == br.c.buildsetid)
                          .join(ch, ch.c.sourcestampid == bss.c.sourcestampid))),
    ]
    chosen = {(_pick(all_of(stmt), addressable)[1], addressable)
              for stmt in kinds for addressable in (True, False)}
    # build data is read under its build only: a build with a BAD one
    chosen.add((_pick(all_of(sa.select(bd.c.id, bd.c.buildid)), False)[1], False))
    return [_witness(all_of, it, buildid, addressable)
            for buildid, addressable in sorted(chosen)]


def _witness(all_of: Callable[[Any], list[Any]], it: Damaged, buildid: int,
             addressable: bool) -> dict[str, Any]:
    b, st, lg, bd = s.builds, s.steps, s.logs, s.build_data
    trs, cw, bm = s.test_result_sets, s.configured_workers, s.builder_masters
    ss_of, ch, cb, cc = s.buildset_sourcestamps, s.changes, s.codebases, s.codebase_commits

    def pick(stmt: Any) -> int:
        row = _pick(all_of(stmt), addressable)
        return MISSING if row is None else row[0]

    def name(table: str, key: int, column: str = "name") -> str:
        row = it.by_key(table).get(key)
        return f"no-such-{table}" if row is None else row[column]

    builderid, number, masterid, brid = all_of(
        sa.select(b.c.builderid, b.c.number, b.c.masterid, b.c.buildrequestid)
        .where(b.c.id == buildid))[0]
    # the step with test results if there is one, else one with logs
    steps = all_of(sa.select(st.c.id, st.c.number,
                             sa.exists().where(trs.c.stepid == st.c.id),
                             sa.exists().where(lg.c.stepid == st.c.id))
                   .where(st.c.buildid == buildid))
    stepid, step_number, _, _ = _pick([r for r in steps if r[2]] or [r for r in steps if r[3]]
                                      or steps, addressable)
    logid = pick(sa.select(lg.c.id).where(lg.c.stepid == stepid))
    dataid = pick(sa.select(bd.c.id).where(bd.c.buildid == buildid))
    workerid = pick(sa.select(cw.c.workerid).join(bm, bm.c.id == cw.c.buildermasterid)
                    .where(bm.c.builderid == builderid, bm.c.masterid == masterid))
    bsid = all_of(sa.select(s.buildrequests.c.buildsetid)
                  .where(s.buildrequests.c.id == brid))[0][0]
    ssid = min(r[0] for r in all_of(sa.select(ss_of.c.sourcestampid)
                                    .where(ss_of.c.buildsetid == bsid)))
    changeid = pick(sa.select(ch.c.changeid).where(ch.c.sourcestampid == ssid))
    if changeid == MISSING:
        changeid = pick(sa.select(ch.c.changeid))
    codebaseid, projectid = _pick(all_of(sa.select(cb.c.id, cb.c.projectid)), addressable)
    commits = [r[0] for r in all_of(sa.select(cc.c.id).where(cc.c.codebaseid == codebaseid)
                                    .order_by(cc.c.id))]
    commitid = pick(sa.select(cc.c.id).where(cc.c.codebaseid == codebaseid))
    result_set = pick(sa.select(trs.c.id).where(trs.c.buildid == buildid))
    return {
        "buildid": buildid, "builderid": builderid, "buildername": name("builders", builderid),
        "build_number": number, "masterid": masterid, "buildrequestid": brid,
        "stepid": stepid, "step_number": step_number, "step_name": name("steps", stepid),
        "logid": logid, "log_slug": name("logs", logid, "slug"),
        "data_name": name("build_data", dataid),
        "workerid": workerid, "worker_name": name("workers", workerid),
        "bsid": bsid, "buildsetid": bsid, "ssid": ssid, "changeid": changeid,
        "changesourceid": pick(sa.select(s.changesource_masters.c.changesourceid)
                               .where(s.changesource_masters.c.masterid == masterid)),
        "schedulerid": pick(sa.select(s.scheduler_masters.c.schedulerid)
                            .where(s.scheduler_masters.c.masterid == masterid)),
        "schedulername": "force",
        "codebaseid": codebaseid, "codebasename": name("codebases", codebaseid),
        "projectid": projectid, "projectname": name("projects", projectid),
        "commitid": commitid, "revision": name("codebase_commits", commitid, "revision"),
        "commitid1": commits[0] if commits else MISSING,
        "commitid2": commits[-1] if commits else MISSING,
        "branchid": pick(sa.select(s.codebase_branches.c.id)
                         .where(s.codebase_branches.c.codebaseid == codebaseid)),
        "test_result_setid": (result_set if result_set != MISSING
                              else pick(sa.select(trs.c.id))),
    }


def instantiate(pattern: tuple[str, ...], values: dict[str, Any]) -> tuple[str, ...]:
    """The path of a pattern with the witness's values; ``i:name`` is a worker's name
    under ``workers``, a build data's under ``data``."""
    out = []
    for i, element in enumerate(pattern):
        if ":" not in element:
            out.append(element)
            continue
        name = element.partition(":")[2]
        if name == "name":
            name = "worker_name" if pattern[i - 1] == "workers" else "data_name"
        out.append(str(values[name]))
    return tuple(out)


# -- what the answers must hold -------------------------------------------------------------

def parsed(text: str | None) -> Any:
    """The JSON of a text; MissingJSON if it does not parse."""
    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        return MissingJSON


class MissingJSON:
    """A damaged document."""


#: the owner's path variable -> its properties' table (whose key is the owner)
OWNERS = {"buildid": "build_properties", "bsid": "buildset_properties",
          "changeid": "change_properties"}


def properties(it: Damaged, owner: str, ownerid: int
               ) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    """The properties of a build, buildset or change as upstream reads them: as one
    ``{name: [value, source]}`` dict, and as the rows of their list. A build's damaged
    value is null (its row holds the text); a buildset's damaged ``[value, source]`` is
    left out; a change's is left out of the dict and its row holds the text."""
    as_dict: dict[str, list[Any]] = {}
    as_list: list[dict[str, Any]] = []
    for r in it.by_key(OWNERS[owner]).get(ownerid, []):
        if owner == "buildid":
            value = parsed(r["value"])
            as_dict[r["name"]] = [None if value is MissingJSON else value, r["source"]]
            as_list.append({"name": r["name"], "source": r["source"], "value": r["value"]})
            continue
        name, text = r["property_name"], r["property_value"]
        value = parsed(text)
        pair = isinstance(value, list) and len(value) == 2 and isinstance(value[1], str)
        if pair and (owner == "bsid" or value[1] == "Change"):
            as_dict[name] = value
        elif owner == "changeid" and value is not MissingJSON:
            as_dict[name] = [value, "Change"]  # a bare value
        else:
            if owner == "changeid":
                as_list.append({"name": name, "source": "Change", "value": text})
            continue
        as_list.append({"name": name, "source": as_dict[name][1],
                        "value": json.dumps(as_dict[name][0])})
    return as_dict, as_list


def step_urls(text: str) -> list[dict[str, Any]]:
    urls = parsed(text)
    if not isinstance(urls, list):
        return []
    return [{"name": u.get("name"), "url": u.get("url")} for u in urls if isinstance(u, dict)]


@functools.cache
def text_fields(endpoint: Endpoint) -> list[tuple[str, sa.Column[Any], str]]:
    """(field, text column, id field) of the endpoint's fields read straight from a text
    column of a table whose row the entity's id field names."""
    rtype = endpoint.rtype
    out = []
    for f in rtype.fields:
        column = f.sql
        if not (isinstance(column, sa.Column) and qualified(column) in INDEX):
            continue
        pk = list(column.table.primary_key.columns)
        idfield = next((g.name for g in rtype.fields if len(pk) == 1 and g.sql is pk[0]), None)
        if idfield is not None:
            out.append((f.name, column, idfield))
    return out


@dataclass
class Sweep:
    """What reading every path found."""

    #: (BAD or CAFE marker, column index) seen in some answer
    tags: set[tuple[str, int]] = field(default_factory=set)
    #: (column, class) of the rows checked field by field against the database
    checked: set[tuple[str, int]] = field(default_factory=set)
    #: patterns that answered something (not a 404, not empty)
    held: set[tuple[str, ...]] = field(default_factory=set)
    mismatches: list[str] = field(default_factory=list)
    reads: int = 0


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes):
        yield value.decode("utf-8", "replace")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings(v)


def check_entities(it: Damaged, sweep: Sweep, where: str, endpoint: Endpoint,
                   pattern: tuple[str, ...], values: dict[str, Any], answer: Any,
                   query: dict[str, list[str]]) -> None:
    """Each field read from a text column is the damaged row's value; and properties,
    files and URLs are what the damaged rows hold."""
    def expect(what: str, got: Any, want: Any) -> None:
        if got != want:
            sweep.mismatches.append(f"{where}: {what}: {got!r} != {want!r}")

    rtype = endpoint.rtype
    items = answer[0] if endpoint.kind is Kind.COLLECTION else [answer]
    if rtype.name in ("property", "_property"):
        owner = next((o for o in ("bsid", "changeid") if f"n:{o}" in pattern), "buildid")
        as_dict, as_list = properties(it, owner, values[owner])
        if rtype.name == "property":
            expect("properties", answer, as_dict)
        else:
            expect("property list", sorted(items, key=lambda i: i["name"]),
                   sorted(as_list, key=lambda i: i["name"]))
        return
    for name, column, idfield in text_fields(endpoint):
        rows = it.by_key(column.table.name)
        for item in items:
            row = rows[item[idfield]]
            want = row[column.name]
            if qualified(column) == "workers.info":
                want = parsed(want)
                want = {} if want is MissingJSON else want
            expect(f"{name} of {idfield} {item[idfield]}", item[name], want)
            sweep.checked.add((qualified(column), row_class(column.table, row)))
    for item in items:
        if rtype.name == "build" and query.get("property") == ["*"]:
            expect(f"properties of build {item['buildid']}", item["properties"],
                   properties(it, "buildid", item["buildid"])[0])
        elif rtype.name == "change":
            changeid = item["changeid"]
            expect(f"properties of change {changeid}", item["properties"],
                   properties(it, "changeid", changeid)[0])
            expect(f"files of change {changeid}", sorted(item["files"]),
                   sorted(r["filename"] for r in it.by_key("change_files").get(changeid, [])))
        elif rtype.name == "step":
            expect(f"urls of step {item['stepid']}", item["urls"],
                   step_urls(it.by_key("steps")[item["stepid"]]["urls_json"]))


async def read_every_path(it: Damaged) -> Sweep:
    sweep = Sweep()
    connector = it.connector
    done: set[tuple[tuple[str, ...], str]] = set()
    for pattern, endpoint in sorted(connector.matcher.patterns().items()):
        queries: list[dict[str, list[str]]] = [{}]
        if endpoint.rtype.name == "build":
            queries.append({"property": ["*"]})
        for values in it.witnesses:
            path = instantiate(pattern, values)
            for query in queries:
                if (path, repr(query)) in done:
                    continue
                done.add((path, repr(query)))
                where = f"/{'/'.join(path)}?{query}"
                assert connector.match(path)[0] is endpoint, where
                sweep.reads += 1
                try:
                    answer = await connector.get(path, query)
                except InvalidPath:
                    raise
                except NotFound:
                    continue
                except Exception as e:
                    e.add_note(f"reading {where} on {it.kind}")
                    raise
                for text in strings(answer):
                    sweep.tags.update((m, int(k)) for m, k in _TAG.findall(text))
                if endpoint.kind not in (Kind.COLLECTION, Kind.SINGLE):
                    if answer:  # a download
                        sweep.held.add(pattern)
                    continue
                if answer[0] if endpoint.kind is Kind.COLLECTION else answer:
                    sweep.held.add(pattern)
                check_entities(it, sweep, where, endpoint, pattern, values, answer, query)
    return sweep


# -- the tests ------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_every_path_reads_every_damaged_column(damaged: Damaged) -> None:
    """Every path pattern answers (a 404 only where the witness names nothing), each
    field read from a text column is its damaged row's value, and every served text
    column's BAD and CAFE rows come through some path."""
    sweep = await read_every_path(damaged)
    patterns = set(damaged.connector.matcher.patterns())
    assert len(patterns) >= 150 and sweep.reads > len(patterns)
    assert not sweep.mismatches, "\n".join(sweep.mismatches[:20])
    unheld = sorted("/".join(p) for p in patterns - sweep.held - ALWAYS_404)
    assert unheld == [], "\n".join(unheld)
    # every served text column is read through some path, in its BAD and CAFE rows
    wanted = [(BAD, "\ufffd"), (CAFE, "café")] if damaged.bad_bytes else [(CAFE, "café")]
    assert {qualified(c) for c in COLUMNS} >= NOT_SERVED
    for column in COLUMNS:
        name, k = qualified(column), INDEX[qualified(column)]
        if name in NOT_SERVED:
            assert not any(seen == k for _, seen in sweep.tags), f"{name} is served"
            continue
        for cls, mark in wanted:
            if name == ONE_CHARACTER:
                seen = cls == CAFE or (name, cls) in sweep.checked
            else:
                seen = (mark, k) in sweep.tags
            assert seen, f"{name}: no row of class {cls} read through any path"


@pytest_twisted.ensureDeferred
async def test_bad_bytes_are_real(damaged: Damaged) -> None:
    """The damage is in the database: a plain driver fails on it (or, on UTF8, the
    server refuses to store it), where ours reads U+FFFD."""
    builder = damaged.original("builders", BAD, "description")
    engine = raw_engine_for(damaged.connector.db.url)
    select = sa.select(s.builders.c.description).where(s.builders.c.id == builder["id"])
    try:
        with engine.connect() as conn:
            if damaged.bad_bytes:
                # SQLite: "Could not decode to UTF-8"; psycopg2: "'ascii' codec can't decode"
                with pytest.raises((sa.exc.DBAPIError, UnicodeDecodeError), match="decode"):
                    conn.execute(select).scalar()
            else:
                with pytest.raises(sa.exc.DataError) as refused:
                    conn.execute(s.builders.update().values(
                        description=_bad_byte("postgresql")))
                assert refused.value.orig.pgcode == "22021"  # invalid byte sequence
    finally:
        engine.dispose()
    with damaged.connector.db.engine.connect() as conn:
        assert conn.execute(select).scalar() == (
            builder["description"] + damaged.bad(s.builders.c.description, builder["id"]))


@pytest_twisted.ensureDeferred
async def test_bad_bytes_read_as_replacement_characters(damaged: Damaged) -> None:
    """Each bad byte reads as U+FFFD: in a name, a description, a comment, a JSON string
    (on UTF8, which cannot store one, BAD rows are as they were)."""
    get, bad = damaged.connector.get, damaged.bad
    builder = damaged.original("builders", BAD, "description")
    got = await get(f"builders/{builder['id']}")
    b = s.builders.c
    assert got["name"] == builder["name"] + bad(b.name, builder["id"])
    assert got["description"] == builder["description"] + bad(b.description, builder["id"])
    change = damaged.original("changes", BAD)
    got = await get(f"changes/{change['changeid']}")
    assert got["comments"] == change["comments"] + bad(s.changes.c.comments,
                                                       change["changeid"])
    worker = damaged.original("workers", BAD)
    got = await get(f"workers/{worker['id']}")
    info = json.loads(worker["info"])
    if damaged.bad_bytes:
        info = {"admin": bad(s.workers.c.info, worker["id"])}
    assert got["workerinfo"] == info
    # a build's properties: names, values (JSON strings) and sources
    buildid = damaged.original("build_properties", BAD)["buildid"]
    bp = s.build_properties.c
    want = {r["name"] + bad(bp.name, buildid):
            [bad(bp.value, buildid) if damaged.bad_bytes else json.loads(r["value"]),
             r["source"] + bad(bp.source, buildid)]
            for r in damaged.originals["build_properties"] if r["buildid"] == buildid}
    assert await get(f"builds/{buildid}/properties") == want
    assert (await get(f"builds/{buildid}", {"property": "*"}))["properties"] == want
    if damaged.bad_bytes:
        assert all("\ufffd" in k and "\ufffd" in v[0] and "\ufffd" in v[1]
                   for k, v in want.items())


@pytest_twisted.ensureDeferred
async def test_damaged_json_reads_as_missing(damaged: Damaged) -> None:
    """JSON that does not parse reads as null, {} or [], or is left out: never an error."""
    get = damaged.connector.get
    buildid = damaged.original("build_properties", DAMAGED)["buildid"]
    props = await get(f"builds/{buildid}/properties")
    assert props and all(value is None for value, _ in props.values())
    items, _ = await get(f"builds/{buildid}/property_list")
    assert {i["name"] for i in items} == set(props)
    worker = damaged.original("workers", DAMAGED)
    assert (await get(f"workers/{worker['id']}"))["workerinfo"] == {}
    step = damaged.original("steps", DAMAGED)
    assert (await get(f"steps/{step['id']}"))["urls"] == []
    bsid = damaged.original("buildset_properties", DAMAGED)["buildsetid"]
    assert await get(f"buildsets/{bsid}/properties") == {}
    assert await get(f"buildsets/{bsid}/properties_list") == ([], 0)
    changeid = damaged.original("change_properties", DAMAGED)["changeid"]
    assert (await get(f"changes/{changeid}"))["properties"] == {}


@pytest_twisted.ensureDeferred
async def test_non_ascii_text_reads_back_exactly(damaged: Damaged) -> None:
    """Valid non-ASCII text is read as it is, and paths find it by that name."""
    get = damaged.connector.get
    builder = damaged.original("builders", CAFE, "description")
    name = builder["name"] + marker(s.builders.c.name, builder["id"], CAFE)
    got = await get(("builders", name))
    assert got["name"] == name and got["description"] == (
        builder["description"] + marker(s.builders.c.description, builder["id"], CAFE))
    step = damaged.original("steps", CAFE)
    step_name = step["name"] + marker(s.steps.c.name, step["id"], CAFE)
    got = await get(("builds", str(step["buildid"]), "steps", step_name))
    assert got["stepid"] == step["id"] and got["name"] == step_name
    assert got["urls"] == [{"name": marker(s.steps.c.urls_json, step["id"], CAFE),
                            "url": "https://example.org/"
                            + marker(s.steps.c.urls_json, step["id"], CAFE)}]
    buildid = damaged.original("build_properties", CAFE)["buildid"]
    props = await get(f"builds/{buildid}/properties")
    assert props and all(v == marker(s.build_properties.c.value, buildid, CAFE)
                         for v, _ in props.values())


@pytest_twisted.ensureDeferred
async def test_over_http(damaged: Damaged) -> None:
    """The web layer encodes what the data API read: JSON, and a download whose file
    name holds U+FFFD (a stream: over a listening port)."""
    from buildbot_rest.www import WebApp

    site = Site(WebApp(damaged.connector).resource())
    port = await endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site)
    api = Api(f"http://127.0.0.1:{port.getHost().port}/", damaged.connector.db,
              damaged.connector)
    try:
        worker = damaged.original("workers", BAD)
        r = await api.get(f"workers/{worker['id']}")
        assert r.code == 200
        assert r.json["workers"][0]["name"] == (
            worker["name"] + damaged.bad(s.workers.c.name, worker["id"]))
        # a stdio log of a build of a BAD builder
        builderid = min(b["id"] for b in damaged.originals["builders"] if b["id"] % 4 == BAD)
        logid, name = min(
            (lg["id"], b["name"]) for lg in damaged.rows["logs"] if lg["type"] == "s"
            for st in damaged.rows["steps"] if st["id"] == lg["stepid"]
            for bd in damaged.rows["builds"] if bd["id"] == st["buildid"]
            for b in damaged.rows["builders"] if b["id"] == bd["builderid"] == builderid)
        r = await api.get(f"logs/{logid}/raw")
        assert r.code == 200 and r.body.startswith(f"Builder: {name}\n".encode())
        disposition = r.header("content-disposition") or ""
        assert disposition.startswith("attachment; filename=")
        if damaged.bad_bytes:
            assert "\ufffd" in name and "%EF%BF%BD" in disposition
    finally:
        await port.stopListening()
