"""Dumps of a whole database, and the difference a write made, for the write
differential (tests/integration/test_write_differential.py).

Plain SQLAlchemy only: upstream's virtualenv imports this module too
(tests/integration/upstream_updates.py), so that both sides are dumped alike.

A dump is ``{table: [row, ...]}`` with every row a dict of JSON values (bytes as
``{"bytes": <sha1>, "length": n}``). A difference (:func:`diff`) is, per table, the rows
``added`` and ``removed`` and, for tables with a primary key, the ``changed`` ones (the
key, and the columns that changed, before and after). :func:`normalise` makes the
differences of two databases comparable: ids of rows the write created become
``"<table>#<n>"`` (n: their rank among the new ids of that table), wherever they appear,
and (optionally) time columns become ``"T"``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

import sqlalchemy as sa

#: columns that hold times (epoch seconds)
TIME_COLUMNS = frozenset({
    "submitted_at", "complete_at", "claimed_at", "started_at", "created_at",
    "when_timestamp", "last_active", "locks_acquired_at", "last_timestamp",
})
#: tables left out of dumps: alembic's, and our own
SKIPPED_TABLES = frozenset({"alembic_version", "migrate_version"})

Dump = dict[str, list[dict[str, Any]]]


class Schema:
    """What :func:`diff` and :func:`normalise` need to know of the tables: each one's
    primary key and foreign keys (column -> referred table), read once from the
    database."""

    def __init__(self, engine: sa.Engine) -> None:
        inspector = sa.inspect(engine)
        self.meta = sa.MetaData()
        self.tables: list[str] = sorted(
            t for t in inspector.get_table_names()
            if t not in SKIPPED_TABLES and not t.startswith("bbrest_"))
        self.keys: dict[str, list[str]] = {}
        self.refs: dict[str, dict[str, str]] = {}
        for table in self.tables:
            self.keys[table] = list(
                inspector.get_pk_constraint(table).get("constrained_columns") or [])
            refs: dict[str, str] = {}
            for fk in inspector.get_foreign_keys(table):
                for column in fk["constrained_columns"]:
                    refs[column] = fk["referred_table"]
            self.refs[table] = refs
        self.meta.reflect(engine, only=self.tables)
        # upstream declares buildsets' parent_buildid/rebuilt_buildid with use_alter, and
        # some databases do not report every foreign key: name the known ones
        known = {"buildsets": {"parent_buildid": "builds", "rebuilt_buildid": "builds"},
                 "builds": {"buildrequestid": "buildrequests"},
                 "changes": {"parent_changeids": "changes"}}
        for table, refs in known.items():
            if table in self.refs:
                self.refs[table].update(refs)

    def single_key(self, table: str) -> str | None:
        keys = self.keys.get(table) or []
        return keys[0] if len(keys) == 1 else None


def _value(value: Any) -> Any:
    if isinstance(value, memoryview):
        value = bytes(value)
    if isinstance(value, bytes):
        return {"bytes": hashlib.sha1(value).hexdigest(), "length": len(value)}
    if isinstance(value, bool):
        return int(value)
    return value


def dump(engine: sa.Engine, schema: Schema) -> Dump:
    """Every row of every table."""
    out: Dump = {}
    with engine.connect() as conn:
        for table_name in schema.tables:
            table = schema.meta.tables[table_name]
            rows = conn.execute(sa.select(table)).mappings().all()
            out[table_name] = [{k: _value(v) for k, v in row.items()} for row in rows]
    return out


def canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def diff(before: Dump, after: Dump, schema: Schema) -> dict[str, dict[str, list[Any]]]:
    """What changed from ``before`` to ``after``, per table (tables without a change are
    left out)."""
    out: dict[str, dict[str, list[Any]]] = {}
    for table in schema.tables:
        old, new = before.get(table, []), after.get(table, [])
        keys = schema.keys.get(table) or []
        entry: dict[str, list[Any]] = {"added": [], "removed": [], "changed": []}
        if keys:
            old_by = {tuple(r[k] for k in keys): r for r in old}
            new_by = {tuple(r[k] for k in keys): r for r in new}
            entry["added"] = [new_by[k] for k in sorted(new_by.keys() - old_by.keys(), key=str)]
            entry["removed"] = [old_by[k] for k in sorted(old_by.keys() - new_by.keys(),
                                                          key=str)]
            for k in sorted(old_by.keys() & new_by.keys(), key=str):
                a, b = old_by[k], new_by[k]
                cols = [c for c in b if canon(a.get(c)) != canon(b.get(c))]
                if cols:
                    entry["changed"].append({
                        "key": {c: a[c] for c in keys},
                        "before": {c: a.get(c) for c in cols},
                        "after": {c: b.get(c) for c in cols}})
        else:
            counts_old = Counter(canon(r) for r in old)
            counts_new = Counter(canon(r) for r in new)
            entry["added"] = [json.loads(r) for r in sorted((counts_new - counts_old)
                                                            .elements())]
            entry["removed"] = [json.loads(r) for r in sorted((counts_old - counts_new)
                                                              .elements())]
        if any(entry.values()):
            out[table] = entry
    return out


#: tables whose new rows are named by a column rather than by rank: upstream inserts
#: them in the order of a Python set (test names and code paths of addTestResults),
#: which changes from one process to the next
NAMED_BY = {"test_names": "name", "test_code_paths": "path"}


#: link tables whose own id nothing refers to: their rows compare without it (the order
#: in which a write inserts several links is not part of its meaning)
LINK_TABLES = frozenset({"configured_workers", "connected_workers", "builders_tags",
                         "buildset_sourcestamps"})


def new_ids(changes: dict[str, dict[str, list[Any]]], schema: Schema
            ) -> dict[tuple[str, Any], str]:
    """``(table, id) -> "<table>#<n>"`` for the rows a difference added (``"<table>:
    <name>"`` for the tables of :data:`NAMED_BY`)."""
    names: dict[tuple[str, Any], str] = {}
    for table, entry in changes.items():
        key = schema.single_key(table)
        if key is None:
            continue
        if table in NAMED_BY:
            for r in entry["added"]:
                names[(table, r[key])] = f"{table}:{r.get(NAMED_BY[table])}"
            continue
        ids = sorted(r[key] for r in entry["added"] if isinstance(r.get(key), int))
        for n, i in enumerate(ids, 1):
            names[(table, i)] = f"{table}#{n}"
    return names


def normalise(changes: dict[str, dict[str, list[Any]]], schema: Schema, *,
              times: bool = False, ids: dict[tuple[str, Any], str] | None = None,
              ignore: frozenset[tuple[str, str]] = frozenset()) -> dict[str, Any]:
    """``changes`` with the new ids named (``ids``, default :func:`new_ids`), time
    columns as ``"T"`` if ``times``, and the columns ``ignore`` ((table, column) pairs)
    left out; changes that no longer change anything are dropped, rows sorted."""
    names = new_ids(changes, schema) if ids is None else ids

    def row(table: str, r: dict[str, Any]) -> dict[str, Any]:
        key = schema.single_key(table)
        refs = schema.refs.get(table, {})
        out = {}
        for col, v in r.items():
            if (table, col) in ignore or (table in LINK_TABLES and col == key):
                continue
            if col == key and (table, v) in names:
                v = names[(table, v)]
            elif col in refs and (refs[col], v) in names:
                v = names[(refs[col], v)]
            elif times and col in TIME_COLUMNS and v is not None:
                v = "T"
            out[col] = v
        return out

    result: dict[str, Any] = {}
    for table, entry in sorted(changes.items()):
        added = sorted((row(table, r) for r in entry["added"]), key=canon)
        removed = sorted((row(table, r) for r in entry["removed"]), key=canon)
        changed = []
        for c in entry["changed"]:
            before, after = row(table, c["before"]), row(table, c["after"])
            if canon(before) != canon(after):
                changed.append({"key": row(table, c["key"]), "before": before,
                                "after": after})
        changed.sort(key=canon)
        if added or removed or changed:
            result[table] = {k: v for k, v in (("added", added), ("removed", removed),
                                               ("changed", changed)) if v}
    return result
