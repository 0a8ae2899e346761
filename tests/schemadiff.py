"""Describe a database schema through SQLAlchemy inspection, to compare two databases."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def _type_name(type_: Any) -> str:
    text = repr(type_)
    # Reflection returns dialect classes; compare on the generic SQL spelling.
    return str(type_.compile()) if hasattr(type_, "compile") else text


def describe(engine: sa.Engine) -> dict[str, dict[str, Any]]:
    """Every table's columns, primary key, foreign keys, indexes and unique constraints."""
    insp = sa.inspect(engine)
    out: dict[str, dict[str, Any]] = {}
    for table in sorted(insp.get_table_names()):
        columns = [
            {
                "name": c["name"],
                "type": _type_name(c["type"]),
                "nullable": c["nullable"],
                "default": _norm_default(c.get("default")),
            }
            for c in insp.get_columns(table)
        ]
        pk = insp.get_pk_constraint(table)
        fks = sorted(
            (
                fk.get("name") or "",
                tuple(fk["constrained_columns"]),
                fk["referred_table"],
                tuple(fk["referred_columns"]),
                (fk.get("options") or {}).get("ondelete"),
            )
            for fk in insp.get_foreign_keys(table)
        )
        indexes = sorted(
            (ix["name"], tuple(ix["column_names"]), bool(ix["unique"]))
            for ix in insp.get_indexes(table)
        )
        uniques = sorted(
            (u.get("name") or "", tuple(u["column_names"]))
            for u in insp.get_unique_constraints(table)
        )
        out[table] = {
            "columns": columns,
            "primary_key": tuple(pk.get("constrained_columns") or ()),
            "foreign_keys": fks,
            "indexes": indexes,
            "unique_constraints": uniques,
        }
    return out


def _norm_default(default: Any) -> str | None:
    if default is None:
        return None
    text = str(default).strip()
    # Servers quote or cast defaults differently ('0', '0'::smallint, 0).
    text = text.split("::")[0].strip("()'\"")
    return text


def differences(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """Human-readable differences between two :func:`describe` results."""
    diffs: list[str] = []
    for table in sorted(set(ours) | set(theirs)):
        if table not in ours:
            diffs.append(f"table {table}: missing from ours")
            continue
        if table not in theirs:
            diffs.append(f"table {table}: missing from upstream's")
            continue
        a, b = ours[table], theirs[table]
        for key in ("primary_key", "foreign_keys", "indexes", "unique_constraints"):
            if a[key] != b[key]:
                diffs.append(f"table {table} {key}: ours {a[key]!r} upstream {b[key]!r}")
        if len(a["columns"]) != len(b["columns"]):
            diffs.append(f"table {table}: {len(a['columns'])} columns, upstream "
                         f"{len(b['columns'])}")
        # (a different number of columns is reported above)
        for ca, cb in zip(a["columns"], b["columns"], strict=False):
            if ca != cb:
                diffs.append(f"table {table} column: ours {ca!r} upstream {cb!r}")
    return diffs
