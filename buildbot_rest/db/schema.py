# -*- test-case-name: tests.db.test_schema -*-
"""The database schema shared with upstream Buildbot v4.3.0 (alembic head 067)."""

from __future__ import annotations

from typing import Any, TypeAlias

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

#: The alembic revision that upstream Buildbot 4.3.0 calls its head.
ALEMBIC_HEAD = "067"

metadata = sa.MetaData()

INT = sa.Integer
SMALL = sa.SmallInteger
TEXT = sa.Text
HASH = sa.String(40)
PROPERTY_NAME = sa.String(256)

#: a column type, as sa.Column takes it: a class or an instance
_Type: TypeAlias = "type[sa.types.TypeEngine[Any]] | sa.types.TypeEngine[Any]"


def _table(name: str, *items: sa.schema.SchemaItem) -> sa.Table:
    # MySQL databases are often created latin1; upstream forces utf8 on each table.
    return sa.Table(name, metadata, *items, mysql_character_set="utf8")


def _pk(name: str = "id") -> sa.Column:
    return sa.Column(name, INT, primary_key=True)


def _ref(name: str, target: str, ondelete: str, *, nullable: bool = False,
         fk_name: str | None = None, use_alter: bool = False, **kw: Any) -> sa.Column:
    """A foreign-key column with its ON DELETE rule."""
    return sa.Column(
        name, INT,
        sa.ForeignKey(target, ondelete=ondelete, name=fk_name, use_alter=use_alter),
        nullable=nullable, **kw,
    )


def _col(name: str, type_: _Type, *, null: bool = True, default: str | None = None,
         **kw: Any) -> sa.Column:
    server_default = sa.DefaultClause(default) if default is not None else None
    return sa.Column(name, type_, nullable=null, server_default=server_default, **kw)


def _req(name: str, type_: _Type, **kw: Any) -> sa.Column:
    """A NOT NULL column."""
    return _col(name, type_, null=False, **kw)


# -- build requests -----------------------------------------------------------------------

buildrequests = _table(
    "buildrequests",
    _pk(),
    _ref("buildsetid", "buildsets.id", "CASCADE"),
    _ref("builderid", "builders.id", "CASCADE"),
    _req("priority", INT, default="0"),
    _col("complete", INT, default="0"),
    _col("results", SMALL),
    _req("submitted_at", INT),
    _col("complete_at", INT),
    _col("waited_for", SMALL, default="0"),
)

buildrequest_claims = _table(
    "buildrequest_claims",
    _ref("brid", "buildrequests.id", "CASCADE"),
    _ref("masterid", "masters.id", "CASCADE", index=True),
    _req("claimed_at", INT),
)

# -- builds -------------------------------------------------------------------------------

build_properties = _table(
    "build_properties",
    _ref("buildid", "builds.id", "CASCADE"),
    _req("name", PROPERTY_NAME),
    _req("value", TEXT),  # JSON of the value alone
    _req("source", PROPERTY_NAME),
)

build_data = _table(
    "build_data",
    _pk(),
    _ref("buildid", "builds.id", "CASCADE"),
    _req("name", sa.String(256)),
    _req("value", sa.LargeBinary().with_variant(mysql.LONGBLOB, "mysql")),
    _req("length", INT),
    _req("source", sa.String(256)),
)

builds = _table(
    "builds",
    _pk(),
    _req("number", INT),
    _ref("builderid", "builders.id", "CASCADE"),
    # use_alter breaks the cycle buildrequests -> buildsets -> builds
    _ref("buildrequestid", "buildrequests.id", "CASCADE",
         fk_name="buildrequestid", use_alter=True),
    _ref("workerid", "workers.id", "SET NULL", nullable=True),
    _ref("masterid", "masters.id", "CASCADE"),
    _req("started_at", INT),
    _col("complete_at", INT),
    _req("locks_duration_s", INT),
    _req("state_string", TEXT),
    _col("results", INT),
)

steps = _table(
    "steps",
    _pk(),
    _req("number", INT),
    _req("name", sa.String(50)),
    _ref("buildid", "builds.id", "CASCADE"),
    _col("started_at", INT),
    _col("locks_acquired_at", INT),
    _col("complete_at", INT),
    _req("state_string", TEXT),
    _col("results", INT),
    _req("urls_json", TEXT),
    _req("hidden", SMALL, default="0"),
)

logs = _table(
    "logs",
    _pk(),
    _req("name", TEXT),
    _req("slug", sa.String(50)),
    _ref("stepid", "steps.id", "CASCADE"),
    _req("complete", SMALL),
    _req("num_lines", INT),
    _req("type", sa.String(1)),
)

logchunks = _table(
    "logchunks",
    _ref("logid", "logs.id", "CASCADE"),
    _req("first_line", INT),
    _req("last_line", INT),
    _col("content", sa.LargeBinary(65536)),
    _req("compressed", SMALL),
)

# -- buildsets ----------------------------------------------------------------------------

buildset_properties = _table(
    "buildset_properties",
    _ref("buildsetid", "buildsets.id", "CASCADE"),
    _req("property_name", PROPERTY_NAME),
    _req("property_value", TEXT),  # JSON of [value, source]
)

buildsets = _table(
    "buildsets",
    _pk(),
    _col("external_idstring", sa.String(256)),
    _col("reason", sa.String(256)),
    _req("submitted_at", INT),
    _req("complete", SMALL, default="0"),
    _col("complete_at", INT),
    _col("results", SMALL),
    _ref("parent_buildid", "builds.id", "SET NULL", nullable=True,
         fk_name="parent_buildid", use_alter=True),
    _col("parent_relationship", TEXT),
    _ref("rebuilt_buildid", "builds.id", "SET NULL", nullable=True,
         fk_name="rebuilt_buildid", use_alter=True),
)

# -- change sources, workers --------------------------------------------------------------

changesources = _table(
    "changesources",
    _pk(),
    _req("name", TEXT),
    _req("name_hash", HASH),
)

changesource_masters = _table(
    "changesource_masters",
    _ref("changesourceid", "changesources.id", "CASCADE", primary_key=True),
    _ref("masterid", "masters.id", "CASCADE"),
)

workers = _table(
    "workers",
    _pk(),
    _req("name", sa.String(50)),
    _req("info", TEXT),  # JSON object
    _req("paused", SMALL, default="0"),
    _col("pause_reason", TEXT),
    _req("graceful", SMALL, default="0"),
)

configured_workers = _table(
    "configured_workers",
    _pk(),
    _ref("buildermasterid", "builder_masters.id", "CASCADE"),
    _ref("workerid", "workers.id", "CASCADE"),
)

connected_workers = _table(
    "connected_workers",
    _pk(),
    _ref("masterid", "masters.id", "CASCADE"),
    _ref("workerid", "workers.id", "CASCADE"),
)

# -- changes and source stamps ------------------------------------------------------------

change_files = _table(
    "change_files",
    _ref("changeid", "changes.changeid", "CASCADE"),
    _req("filename", sa.String(1024)),
)

change_properties = _table(
    "change_properties",
    _ref("changeid", "changes.changeid", "CASCADE"),
    _req("property_name", PROPERTY_NAME),
    _req("property_value", TEXT),  # JSON of [value, "Change"]
)

change_users = _table(
    "change_users",
    _ref("changeid", "changes.changeid", "CASCADE"),
    _ref("uid", "users.uid", "CASCADE"),
)

changes = _table(
    "changes",
    _pk("changeid"),
    _req("author", sa.String(255)),
    _col("committer", sa.String(255)),
    _req("comments", TEXT),
    _col("branch", sa.String(255)),
    _col("revision", sa.String(255)),
    _col("revlink", sa.String(256)),
    _req("when_timestamp", INT),
    _col("category", sa.String(255)),
    _req("repository", sa.String(512), default=""),
    _req("codebase", sa.String(256), default=""),
    _req("project", sa.String(512), default=""),
    _ref("sourcestampid", "sourcestamps.id", "CASCADE"),
    _ref("parent_changeids", "changes.changeid", "SET NULL", nullable=True),
)

patches = _table(
    "patches",
    _pk(),
    _req("patchlevel", INT),
    _req("patch_base64", TEXT),
    _req("patch_author", TEXT),
    _req("patch_comment", TEXT),
    _col("subdir", TEXT),
)

sourcestamps = _table(
    "sourcestamps",
    _pk(),
    _req("ss_hash", HASH),
    _col("branch", sa.String(256)),
    _col("revision", sa.String(256)),
    _ref("patchid", "patches.id", "CASCADE", nullable=True),
    _req("repository", sa.String(512), default=""),
    _req("codebase", sa.String(256), default=""),
    _req("project", sa.String(512), default=""),
    _req("created_at", INT),
)

buildset_sourcestamps = _table(
    "buildset_sourcestamps",
    _pk(),
    _ref("buildsetid", "buildsets.id", "CASCADE"),
    _ref("sourcestampid", "sourcestamps.id", "CASCADE"),
)

# -- schedulers ---------------------------------------------------------------------------

schedulers = _table(
    "schedulers",
    _pk(),
    _req("name", TEXT),
    _req("name_hash", HASH),
    _col("enabled", SMALL, default="1"),
)

scheduler_masters = _table(
    "scheduler_masters",
    _ref("schedulerid", "schedulers.id", "CASCADE", primary_key=True),
    _ref("masterid", "masters.id", "CASCADE"),
)

scheduler_changes = _table(
    "scheduler_changes",
    _ref("schedulerid", "schedulers.id", "CASCADE"),
    _ref("changeid", "changes.changeid", "CASCADE"),
    _col("important", INT),
)

# -- projects and codebases ---------------------------------------------------------------

projects = _table(
    "projects",
    _pk(),
    _req("name", TEXT),
    _req("name_hash", HASH),
    _req("slug", sa.String(50)),
    _col("description", TEXT),
    _col("description_format", TEXT),
    _col("description_html", TEXT),
)

codebases = _table(
    "codebases",
    _pk(),
    _ref("projectid", "projects.id", "CASCADE"),
    _req("name", TEXT),
    _req("name_hash", HASH),
    _req("slug", sa.String(50)),
)

codebase_commits = _table(
    "codebase_commits",
    _pk(),
    _ref("codebaseid", "codebases.id", "CASCADE"),
    _req("author", sa.String(255)),
    _col("committer", sa.String(255)),
    _req("comments", TEXT),
    _req("when_timestamp", INT),
    _req("revision", sa.String(70)),
    _ref("parent_commitid", "codebase_commits.id", "SET NULL", nullable=True),
)

codebase_branches = _table(
    "codebase_branches",
    _pk(),
    _ref("codebaseid", "codebases.id", "CASCADE"),
    _req("name", sa.String(255)),
    _req("name_hash", HASH),
    _ref("commitid", "codebase_commits.id", "SET NULL", nullable=True),
    _req("last_timestamp", INT),
)

# -- builders and tags --------------------------------------------------------------------

builders = _table(
    "builders",
    _pk(),
    _req("name", TEXT),
    _col("description", TEXT),
    _col("description_format", TEXT),
    _col("description_html", TEXT),
    _ref("projectid", "projects.id", "SET NULL", nullable=True, fk_name="fk_builders_projectid"),
    _req("name_hash", HASH),
)

builder_masters = _table(
    "builder_masters",
    _pk(),
    _ref("builderid", "builders.id", "CASCADE"),
    _ref("masterid", "masters.id", "CASCADE"),
)

tags = _table(
    "tags",
    _pk(),
    _req("name", TEXT),
    _req("name_hash", HASH),
)

builders_tags = _table(
    "builders_tags",
    _pk(),
    _ref("builderid", "builders.id", "CASCADE"),
    _ref("tagid", "tags.id", "CASCADE"),
)

# -- test results -------------------------------------------------------------------------

test_result_sets = _table(
    "test_result_sets",
    _pk(),
    _ref("builderid", "builders.id", "CASCADE"),
    _ref("buildid", "builds.id", "CASCADE"),
    _ref("stepid", "steps.id", "CASCADE"),
    _col("description", TEXT),
    _req("category", TEXT),
    _req("value_unit", TEXT),
    _col("tests_passed", INT),
    _col("tests_failed", INT),
    _req("complete", SMALL),
)

test_results = _table(
    "test_results",
    _pk(),
    _ref("builderid", "builders.id", "CASCADE"),
    _ref("test_result_setid", "test_result_sets.id", "CASCADE"),
    _ref("test_nameid", "test_names.id", "CASCADE", nullable=True),
    _ref("test_code_pathid", "test_code_paths.id", "CASCADE", nullable=True),
    _col("line", INT),
    _col("duration_ns", INT),
    _req("value", TEXT),
)

test_names = _table(
    "test_names",
    _pk(),
    _ref("builderid", "builders.id", "CASCADE"),
    _req("name", TEXT),
)

test_code_paths = _table(
    "test_code_paths",
    _pk(),
    _ref("builderid", "builders.id", "CASCADE"),
    _req("path", TEXT),
)

# -- state, users, masters ----------------------------------------------------------------

objects = _table(
    "objects",
    _pk(),
    _req("name", sa.String(128)),
    _req("class_name", sa.String(128)),
)

object_state = _table(
    "object_state",
    _ref("objectid", "objects.id", "CASCADE"),
    _req("name", sa.String(255)),
    _req("value_json", TEXT),
)

users = _table(
    "users",
    _pk("uid"),
    _req("identifier", sa.String(255)),
    _col("bb_username", sa.String(128)),
    _col("bb_password", sa.String(128)),
)

users_info = _table(
    "users_info",
    _ref("uid", "users.uid", "CASCADE"),
    _req("attr_type", sa.String(128)),
    _req("attr_data", sa.String(128)),
)

masters = _table(
    "masters",
    _pk(),
    _req("name", TEXT),
    _req("name_hash", HASH),
    _req("active", INT),
    _req("last_active", INT),
)

# -- indexes: (name, table, columns, unique) ----------------------------------------------

_INDEXES: list[tuple[str, sa.Table, tuple[str, ...], bool]] = [
    ("buildrequests_buildsetid", buildrequests, ("buildsetid",), False),
    ("buildrequests_builderid", buildrequests, ("builderid",), False),
    ("buildrequests_complete", buildrequests, ("complete",), False),
    ("build_properties_buildid", build_properties, ("buildid",), False),
    ("build_data_buildid_name", build_data, ("buildid", "name"), True),
    ("builds_buildrequestid", builds, ("buildrequestid",), False),
    ("buildsets_complete", buildsets, ("complete",), False),
    ("buildsets_submitted_at", buildsets, ("submitted_at",), False),
    ("buildset_properties_buildsetid", buildset_properties, ("buildsetid",), False),
    ("workers_name", workers, ("name",), True),
    ("changes_branch", changes, ("branch",), False),
    ("changes_revision", changes, ("revision",), False),
    ("changes_author", changes, ("author",), False),
    ("changes_category", changes, ("category",), False),
    ("changes_when_timestamp", changes, ("when_timestamp",), False),
    ("change_files_changeid", change_files, ("changeid",), False),
    ("change_properties_changeid", change_properties, ("changeid",), False),
    ("changes_sourcestampid", changes, ("sourcestampid",), False),
    ("changesource_name_hash", changesources, ("name_hash",), True),
    ("scheduler_name_hash", schedulers, ("name_hash",), True),
    ("scheduler_changes_schedulerid", scheduler_changes, ("schedulerid",), False),
    ("scheduler_changes_changeid", scheduler_changes, ("changeid",), False),
    ("scheduler_changes_unique", scheduler_changes, ("schedulerid", "changeid"), True),
    ("projects_name_hash", projects, ("name_hash",), True),
    ("codebases_projects_name_hash", codebases, ("projectid", "name_hash"), True),
    ("codebase_commits_unique", codebase_commits, ("codebaseid", "revision"), True),
    ("codebase_branches_unique", codebase_branches, ("codebaseid", "name_hash"), True),
    ("builder_name_hash", builders, ("name_hash",), True),
    ("builders_projectid", builders, ("projectid",), False),
    ("builder_masters_builderid", builder_masters, ("builderid",), False),
    ("builder_masters_masterid", builder_masters, ("masterid",), False),
    ("builder_masters_identity", builder_masters, ("builderid", "masterid"), True),
    ("tag_name_hash", tags, ("name_hash",), True),
    ("builders_tags_builderid", builders_tags, ("builderid",), False),
    ("builders_tags_unique", builders_tags, ("builderid", "tagid"), True),
    ("configured_workers_buildmasterid", configured_workers, ("buildermasterid",), False),
    ("configured_workers_workers", configured_workers, ("workerid",), False),
    ("configured_workers_identity", configured_workers, ("buildermasterid", "workerid"), True),
    ("connected_workers_masterid", connected_workers, ("masterid",), False),
    ("connected_workers_workers", connected_workers, ("workerid",), False),
    ("connected_workers_identity", connected_workers, ("masterid", "workerid"), True),
    ("users_identifier", users, ("identifier",), True),
    ("users_info_uid", users_info, ("uid",), False),
    ("users_info_uid_attr_type", users_info, ("uid", "attr_type"), True),
    ("users_info_attrs", users_info, ("attr_type", "attr_data"), True),
    ("change_users_changeid", change_users, ("changeid",), False),
    ("users_bb_user", users, ("bb_username",), True),
    ("object_identity", objects, ("name", "class_name"), True),
    ("name_per_object", object_state, ("objectid", "name"), True),
    ("master_name_hashes", masters, ("name_hash",), True),
    ("buildrequest_claims_brids", buildrequest_claims, ("brid",), True),
    ("sourcestamps_ss_hash_key", sourcestamps, ("ss_hash",), True),
    ("buildset_sourcestamps_buildsetid", buildset_sourcestamps, ("buildsetid",), False),
    ("buildset_sourcestamps_unique", buildset_sourcestamps, ("buildsetid", "sourcestampid"), True),
    ("builds_number", builds, ("builderid", "number"), True),
    ("builds_workerid", builds, ("workerid",), False),
    ("builds_masterid", builds, ("masterid",), False),
    ("steps_number", steps, ("buildid", "number"), True),
    ("steps_name", steps, ("buildid", "name"), True),
    ("steps_started_at", steps, ("started_at",), False),
    ("logs_slug", logs, ("stepid", "slug"), True),
    ("logchunks_firstline", logchunks, ("logid", "first_line"), False),
    ("logchunks_lastline", logchunks, ("logid", "last_line"), False),
]

for _name, _tbl, _cols, _unique in _INDEXES:
    sa.Index(_name, *(_tbl.c[c] for c in _cols), unique=_unique)

# Text columns need a prefix length to be indexed on MySQL.
sa.Index("test_names_name", test_names.c.builderid, test_names.c.name,
         mysql_length={"name": 255})
sa.Index("test_code_paths_path", test_code_paths.c.builderid, test_code_paths.c.path,
         mysql_length={"path": 255})

#: Indexes that MySQL creates by itself for foreign keys, as (table, index name, columns).
#: Schema comparisons on MySQL must expect them; other databases do not have them.
MYSQL_IMPLIED_INDEXES: list[tuple[str, str, tuple[str, ...]]] = [
    ("change_users", "uid", ("uid",)),
    ("sourcestamps", "patchid", ("patchid",)),
    ("scheduler_masters", "masterid", ("masterid",)),
    ("changesource_masters", "masterid", ("masterid",)),
    ("buildset_sourcestamps", "sourcestampid", ("sourcestampid",)),
    ("buildsets", "parent_buildid", ("parent_buildid",)),
    ("buildsets", "rebuilt_buildid", ("rebuilt_buildid",)),
    ("builders_tags", "tagid", ("tagid",)),
    ("changes", "parent_changeids", ("parent_changeids",)),
    ("codebase_branches", "commitid", ("commitid",)),
    ("codebase_commits", "parent_commitid", ("parent_commitid",)),
    ("test_result_sets", "builderid", ("builderid",)),
    ("test_result_sets", "buildid", ("buildid",)),
    ("test_result_sets", "stepid", ("stepid",)),
    ("test_results", "test_result_setid", ("test_result_setid",)),
    ("test_results", "test_code_pathid", ("test_code_pathid",)),
    ("test_results", "builderid", ("builderid",)),
    ("test_results", "test_nameid", ("test_nameid",)),
]

#: The alembic bookkeeping table; not part of upstream's model metadata.
alembic_version = sa.Table(
    "alembic_version", sa.MetaData(),
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)
