"""Every path pattern of /api/v2/application.spec is requested by some test outside the
differential one (tests/integration), which can only run where upstream Buildbot can be
installed; and the patterns that only the differential test requested have their own
tests here, with expected answers computed from the database (plain SQL) or written out.

:data:`COVERED` names, for each pattern, a test that requests it (and checks the answer);
:func:`test_every_path_pattern_has_a_test` fails when application.spec has a pattern
that is not listed, or lists one that is gone, or names a test that does not exist.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import pytest_twisted
import sqlalchemy as sa

from tests.www.conftest import Api, Reply, own_server

ROOT = Path(__file__).resolve().parent.parent.parent

#: each path pattern of application.spec, and a test outside tests/integration that
#: requests it and checks what comes back
COVERED: dict[str, str] = {
    "": "tests/www/test_core.py::test_root_links",
    "application.spec": "tests/www/test_paths.py::test_every_path_pattern_has_a_test",
    "branches/n:branchid": "tests/www/test_projects.py::test_branches",
    "builders": "tests/www/test_core.py::test_odd_query_input_is_400_not_500",
    "builders/n:builderid": "tests/www/test_paths.py::test_builder_by_id",
    "builders/n:builderid/buildrequests":
        "tests/www/test_buildrequests.py::test_builder_buildrequests",
    "builders/n:builderid/builds": "tests/www/test_paths.py::test_builds_of_builder_by_id",
    "builders/n:builderid/builds/n:build_number":
        "tests/www/test_paths.py::test_build_by_builder_id_and_number",
    "builders/n:builderid/builds/n:build_number/changes":
        "tests/www/test_changes.py::test_build_changes",
    "builders/n:builderid/builds/n:build_number/data":
        "tests/www/test_build_data.py::test_listing_every_form",
    "builders/n:builderid/builds/n:build_number/data/i:name":
        "tests/www/test_build_data.py::test_single_and_value",
    "builders/n:builderid/builds/n:build_number/data/i:name/value":
        "tests/www/test_build_data.py::test_single_and_value",
    "builders/n:builderid/builds/n:build_number/properties":
        "tests/www/test_properties.py::test_build_properties",
    "builders/n:builderid/builds/n:build_number/property_list":
        "tests/www/test_nested_paths.py::test_properties_and_property_list_of_every_form",
    "builders/n:builderid/builds/n:build_number/steps":
        "tests/www/test_steps_logs.py::test_steps_of_a_build_every_form",
    "builders/n:builderid/builds/n:build_number/steps/i:step_name":
        "tests/www/test_steps_logs.py::test_step_single_every_form",
    "builders/n:builderid/builds/n:build_number/steps/i:step_name/logs":
        "tests/www/test_steps_logs.py::test_logs_every_form",
    "builders/n:builderid/builds/n:build_number/steps/i:step_name/logs/i:log_slug":
        "tests/www/test_steps_logs.py::test_logs_every_form",
    "builders/n:builderid/builds/n:build_number/steps/i:step_name/logs/i:log_slug/contents":
        "tests/www/test_logchunks.py::test_contents_every_form_and_missing",
    "builders/n:builderid/builds/n:build_number/steps/i:step_name/logs/i:log_slug/raw":
        "tests/www/test_logchunks.py::test_raw_stdio",
    "builders/n:builderid/builds/n:build_number/steps/i:step_name/logs/i:log_slug/raw_inline":
        "tests/www/test_logchunks.py::test_raw_stdio",
    "builders/n:builderid/builds/n:build_number/steps/i:step_name/test_result_sets":
        "tests/www/test_nested_paths.py::test_test_result_sets_of_every_form",
    "builders/n:builderid/builds/n:build_number/steps/n:step_number":
        "tests/www/test_steps_logs.py::test_step_single_every_form",
    "builders/n:builderid/builds/n:build_number/steps/n:step_number/logs":
        "tests/www/test_steps_logs.py::test_logs_every_form",
    "builders/n:builderid/builds/n:build_number/steps/n:step_number/logs/i:log_slug":
        "tests/www/test_steps_logs.py::test_logs_every_form",
    "builders/n:builderid/builds/n:build_number/steps/n:step_number/logs/i:log_slug/contents":
        "tests/www/test_logchunks.py::test_contents_every_form_and_missing",
    "builders/n:builderid/builds/n:build_number/steps/n:step_number/logs/i:log_slug/raw":
        "tests/www/test_logchunks.py::test_raw_stdio",
    "builders/n:builderid/builds/n:build_number/steps/n:step_number/logs/i:log_slug/raw_inline":
        "tests/www/test_logchunks.py::test_raw_stdio",
    "builders/n:builderid/builds/n:build_number/steps/n:step_number/test_result_sets":
        "tests/www/test_nested_paths.py::test_test_result_sets_of_every_form",
    "builders/n:builderid/builds/n:build_number/test_result_sets":
        "tests/www/test_nested_paths.py::test_test_result_sets_of_every_form",
    "builders/n:builderid/builds/n:build_number/triggered_builds":
        "tests/www/test_nested_paths.py::test_triggered_builds_of_every_form",
    "builders/n:builderid/forceschedulers": "tests/www/test_forceschedulers.py::test_of_a_builder",
    "builders/n:builderid/masters": "tests/www/test_paths.py::test_masters_of_builder",
    "builders/n:builderid/masters/n:masterid": "tests/www/test_paths.py::test_master_of_builder",
    "builders/n:builderid/test_result_sets":
        "tests/www/test_test_results.py::test_sets_of_builder_build_and_step",
    "builders/n:builderid/workers":
        "tests/www/test_workers.py::test_workers_under_master_or_builder",
    "builders/n:builderid/workers/i:name":
        "tests/www/test_workers.py::test_worker_single_under_master_and_builder",
    "builders/n:builderid/workers/n:workerid":
        "tests/www/test_workers.py::test_worker_single_under_master_and_builder",
    "builders/s:buildername": "tests/www/test_paths.py::test_builder_by_name",
    "builders/s:buildername/builds": "tests/www/test_paths.py::test_builds_of_builder_by_name",
    "builders/s:buildername/builds/n:build_number":
        "tests/www/test_paths.py::test_build_by_builder_name_and_number",
    "builders/s:buildername/builds/n:build_number/changes":
        "tests/www/test_nested_paths.py::test_changes_of_every_form",
    "builders/s:buildername/builds/n:build_number/data":
        "tests/www/test_build_data.py::test_listing_every_form",
    "builders/s:buildername/builds/n:build_number/data/i:name":
        "tests/www/test_build_data.py::test_single_and_value",
    "builders/s:buildername/builds/n:build_number/data/i:name/value":
        "tests/www/test_build_data.py::test_single_and_value",
    "builders/s:buildername/builds/n:build_number/properties":
        "tests/www/test_nested_paths.py::test_properties_and_property_list_of_every_form",
    "builders/s:buildername/builds/n:build_number/property_list":
        "tests/www/test_nested_paths.py::test_properties_and_property_list_of_every_form",
    "builders/s:buildername/builds/n:build_number/steps":
        "tests/www/test_steps_logs.py::test_steps_of_a_build_every_form",
    "builders/s:buildername/builds/n:build_number/steps/i:step_name":
        "tests/www/test_steps_logs.py::test_step_single_every_form",
    "builders/s:buildername/builds/n:build_number/steps/i:step_name/logs":
        "tests/www/test_steps_logs.py::test_logs_every_form",
    "builders/s:buildername/builds/n:build_number/steps/i:step_name/logs/i:log_slug":
        "tests/www/test_steps_logs.py::test_logs_every_form",
    "builders/s:buildername/builds/n:build_number/steps/i:step_name/logs/i:log_slug/contents":
        "tests/www/test_logchunks.py::test_contents_every_form_and_missing",
    "builders/s:buildername/builds/n:build_number/steps/i:step_name/logs/i:log_slug/raw":
        "tests/www/test_logchunks.py::test_raw_stdio",
    "builders/s:buildername/builds/n:build_number/steps/i:step_name/logs/i:log_slug/raw_inline":
        "tests/www/test_logchunks.py::test_raw_stdio",
    "builders/s:buildername/builds/n:build_number/steps/i:step_name/test_result_sets":
        "tests/www/test_nested_paths.py::test_test_result_sets_of_every_form",
    "builders/s:buildername/builds/n:build_number/steps/n:step_number":
        "tests/www/test_steps_logs.py::test_step_single_every_form",
    "builders/s:buildername/builds/n:build_number/steps/n:step_number/logs":
        "tests/www/test_steps_logs.py::test_logs_every_form",
    "builders/s:buildername/builds/n:build_number/steps/n:step_number/logs/i:log_slug":
        "tests/www/test_steps_logs.py::test_logs_every_form",
    "builders/s:buildername/builds/n:build_number/steps/n:step_number/logs/i:log_slug/contents":
        "tests/www/test_logchunks.py::test_contents_every_form_and_missing",
    "builders/s:buildername/builds/n:build_number/steps/n:step_number/logs/i:log_slug/raw":
        "tests/www/test_logchunks.py::test_raw_stdio",
    "builders/s:buildername/builds/n:build_number/steps/n:step_number/logs/i:log_slug/raw_inline":
        "tests/www/test_logchunks.py::test_raw_stdio",
    "builders/s:buildername/builds/n:build_number/steps/n:step_number/test_result_sets":
        "tests/www/test_nested_paths.py::test_test_result_sets_of_every_form",
    "builders/s:buildername/builds/n:build_number/test_result_sets":
        "tests/www/test_nested_paths.py::test_test_result_sets_of_every_form",
    "builders/s:buildername/builds/n:build_number/triggered_builds":
        "tests/www/test_nested_paths.py::test_triggered_builds_of_every_form",
    "builders/s:buildername/test_result_sets":
        "tests/www/test_test_results.py::test_sets_of_builder_build_and_step",
    "buildrequests": "tests/www/test_buildrequests.py::test_claimed_false_means_waiting",
    "buildrequests/n:buildrequestid":
        "tests/www/test_buildrequests.py::test_claimed_false_means_waiting",
    "buildrequests/n:buildrequestid/builds": "tests/www/test_paths.py::test_builds_of_buildrequest",
    "builds": "tests/www/test_core.py::test_streamed_collection_equals_whole_document",
    "builds/n:buildid": "tests/www/test_core.py::test_head_has_length_and_no_body",
    "builds/n:buildid/changes": "tests/www/test_changes.py::test_build_changes",
    "builds/n:buildid/data": "tests/www/test_build_data.py::test_listing_empty_and_missing",
    "builds/n:buildid/data/i:name": "tests/www/test_build_data.py::test_single_and_value",
    "builds/n:buildid/data/i:name/value": "tests/www/test_build_data.py::test_single_and_value",
    "builds/n:buildid/properties": "tests/www/test_properties.py::test_build_properties",
    "builds/n:buildid/property_list": "tests/www/test_properties.py::test_property_lists",
    "builds/n:buildid/steps": "tests/www/test_steps_logs.py::test_steps_of_a_build_every_form",
    "builds/n:buildid/steps/i:step_name":
        "tests/www/test_steps_logs.py::test_step_single_every_form",
    "builds/n:buildid/steps/i:step_name/logs": "tests/www/test_steps_logs.py::test_logs_every_form",
    "builds/n:buildid/steps/i:step_name/logs/i:log_slug":
        "tests/www/test_steps_logs.py::test_logs_every_form",
    "builds/n:buildid/steps/i:step_name/logs/i:log_slug/contents":
        "tests/www/test_logchunks.py::test_contents_every_form_and_missing",
    "builds/n:buildid/steps/i:step_name/logs/i:log_slug/raw":
        "tests/www/test_logchunks.py::test_raw_stdio",
    "builds/n:buildid/steps/i:step_name/logs/i:log_slug/raw_inline":
        "tests/www/test_logchunks.py::test_raw_stdio",
    "builds/n:buildid/steps/i:step_name/test_result_sets":
        "tests/www/test_nested_paths.py::test_test_result_sets_of_every_form",
    "builds/n:buildid/steps/n:step_number":
        "tests/www/test_steps_logs.py::test_step_single_every_form",
    "builds/n:buildid/steps/n:step_number/logs":
        "tests/www/test_steps_logs.py::test_logs_every_form",
    "builds/n:buildid/steps/n:step_number/logs/i:log_slug":
        "tests/www/test_steps_logs.py::test_logs_every_form",
    "builds/n:buildid/steps/n:step_number/logs/i:log_slug/contents":
        "tests/www/test_logchunks.py::test_contents_every_form_and_missing",
    "builds/n:buildid/steps/n:step_number/logs/i:log_slug/raw":
        "tests/www/test_logchunks.py::test_raw_stdio",
    "builds/n:buildid/steps/n:step_number/logs/i:log_slug/raw_inline":
        "tests/www/test_logchunks.py::test_raw_stdio",
    "builds/n:buildid/steps/n:step_number/test_result_sets":
        "tests/www/test_nested_paths.py::test_test_result_sets_of_every_form",
    "builds/n:buildid/test_result_sets":
        "tests/www/test_test_results.py::test_sets_of_builder_build_and_step",
    "builds/n:buildid/triggered_builds": "tests/www/test_paths.py::test_triggered_builds",
    "buildsets": "tests/www/test_buildsets.py::test_buildsets_collection",
    "buildsets/:buildsetid/sourcestamps": "tests/www/test_buildsets.py::test_buildset_sourcestamps",
    "buildsets/n:bsid": "tests/www/test_buildsets.py::test_buildset_single_and_404",
    "buildsets/n:bsid/properties": "tests/www/test_properties.py::test_buildset_properties",
    "buildsets/n:bsid/properties_list": "tests/www/test_properties.py::test_property_lists",
    "changes": "tests/www/test_changes.py::test_changes_newest_first_by_default",
    "changes/n:changeid": "tests/www/test_changes.py::test_change_single_and_404",
    "changes/n:changeid/builds": "tests/www/test_paths.py::test_builds_of_change",
    "changes/n:changeid/properties_list": "tests/www/test_properties.py::test_property_lists",
    "changesources": "tests/www/test_schedulers.py::test_changesources_collection",
    "changesources/n:changesourceid": "tests/www/test_schedulers.py::test_changesource_single",
    "codebases": "tests/www/test_projects.py::test_codebases",
    "codebases/n:codebaseid": "tests/www/test_projects.py::test_codebases",
    "codebases/n:codebaseid/branches": "tests/www/test_projects.py::test_branches",
    "codebases/n:codebaseid/commit_range/n:commitid1/n:commitid2/commits_common_parent":
        "tests/www/test_projects.py::test_commits_common_parent",
    "codebases/n:codebaseid/commit_range/n:commitid1/n:commitid2/test_result_sets":
        "tests/www/test_test_results.py::test_commit_range_sets",
    "codebases/n:codebaseid/commits": "tests/www/test_projects.py::test_commits",
    "codebases/n:codebaseid/commits_by_revision/s:revision":
        "tests/www/test_projects.py::test_commits",
    "commits/n:commitid": "tests/www/test_projects.py::test_commits",
    "forceschedulers": "tests/www/test_forceschedulers.py::test_collection_in_configuration_order",
    "forceschedulers/i:schedulername": "tests/www/test_forceschedulers.py::test_single",
    "logchunks": "tests/www/test_paths.py::test_logchunks_needs_a_log",
    "logs/n:logid": "tests/www/test_steps_logs.py::test_logs_every_form",
    "logs/n:logid/contents": "tests/www/test_logchunks.py::test_contents_every_form_and_missing",
    "logs/n:logid/raw": "tests/www/test_compression.py::test_streamed_raw_log",
    "logs/n:logid/raw_inline": "tests/www/test_logchunks.py::test_raw_stdio",
    "masters": "tests/www/test_core.py::test_small_unpaged_collections_are_answered_whole",
    "masters/n:masterid": "tests/www/test_paths.py::test_master",
    "masters/n:masterid/builders": "tests/www/test_paths.py::test_builders_of_master",
    "masters/n:masterid/builders/n:builderid": "tests/www/test_paths.py::test_builder_of_master",
    "masters/n:masterid/builders/n:builderid/workers":
        "tests/www/test_workers.py::test_workers_under_master_or_builder",
    "masters/n:masterid/builders/n:builderid/workers/i:name":
        "tests/www/test_workers.py::test_worker_single_under_master_and_builder",
    "masters/n:masterid/builders/n:builderid/workers/n:workerid":
        "tests/www/test_workers.py::test_worker_single_under_master_and_builder",
    "masters/n:masterid/changesources":
        "tests/www/test_schedulers.py::test_changesources_collection",
    "masters/n:masterid/changesources/n:changesourceid":
        "tests/www/test_schedulers.py::test_changesource_single",
    "masters/n:masterid/schedulers": "tests/www/test_schedulers.py::test_schedulers_collection",
    "masters/n:masterid/schedulers/n:schedulerid":
        "tests/www/test_schedulers.py::test_scheduler_single",
    "masters/n:masterid/workers": "tests/www/test_workers.py::test_workers_under_master_or_builder",
    "masters/n:masterid/workers/i:name":
        "tests/www/test_workers.py::test_worker_single_under_master_and_builder",
    "masters/n:masterid/workers/n:workerid":
        "tests/www/test_workers.py::test_worker_single_under_master_and_builder",
    "projects": "tests/www/test_projects.py::test_projects_active",
    "projects/i:projectname": "tests/www/test_projects.py::test_project_single",
    "projects/n:projectid": "tests/www/test_projects.py::test_project_single",
    "projects/n:projectid/builders": "tests/www/test_paths.py::test_builders_of_project",
    "projects/n:projectid/codebases/i:codebasename": "tests/www/test_projects.py::test_codebases",
    "schedulers": "tests/www/test_schedulers.py::test_schedulers_collection",
    "schedulers/n:schedulerid": "tests/www/test_schedulers.py::test_scheduler_single",
    "sourcestamps": "tests/www/test_buildsets.py::test_sourcestamps",
    "sourcestamps/n:ssid": "tests/www/test_buildsets.py::test_sourcestamps",
    "sourcestamps/n:ssid/changes": "tests/www/test_changes.py::test_sourcestamp_changes",
    "steps/n:stepid": "tests/www/test_steps_logs.py::test_step_single_every_form",
    "steps/n:stepid/logs": "tests/www/test_steps_logs.py::test_logs_every_form",
    "steps/n:stepid/logs/i:log_slug": "tests/www/test_steps_logs.py::test_logs_every_form",
    "steps/n:stepid/logs/i:log_slug/contents":
        "tests/www/test_logchunks.py::test_contents_every_form_and_missing",
    "steps/n:stepid/logs/i:log_slug/raw": "tests/www/test_logchunks.py::test_raw_stdio",
    "steps/n:stepid/logs/i:log_slug/raw_inline": "tests/www/test_logchunks.py::test_raw_stdio",
    "steps/n:stepid/test_result_sets":
        "tests/www/test_test_results.py::test_sets_of_builder_build_and_step",
    "test_result_sets": "tests/www/test_test_results.py::test_sets_collection",
    "test_result_sets/n:test_result_setid": "tests/www/test_test_results.py::test_single_set",
    "test_result_sets/n:test_result_setid/results":
        "tests/www/test_test_results.py::test_results_of_a_set",
    "workers": "tests/www/test_workers.py::test_workers_collection",
    "workers/i:name": "tests/www/test_workers.py::test_worker_single_by_id_and_name",
    "workers/n:workerid": "tests/www/test_workers.py::test_worker_single_by_id_and_name",
    "workers/n:workerid/builders": "tests/www/test_paths.py::test_builders_of_worker",
    "workers/n:workerid/builds": "tests/www/test_paths.py::test_builds_of_worker",
}


def _test_functions(source: str) -> set[str]:
    """The names of the test functions a module's ``source`` defines (read, not
    imported)."""
    return {node.name for node in ast.parse(source).body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")}


@pytest_twisted.ensureDeferred
async def test_every_path_pattern_has_a_test(stub):
    r = await stub.get("application.spec")
    assert r.code == 200
    patterns = [spec["path"] for spec in r.json["specs"]]
    assert len(patterns) == len(set(patterns)) == r.json["meta"]["total"]
    missing = sorted(set(patterns) - set(COVERED))
    assert not missing, f"path patterns that no test outside tests/integration requests: " \
                        f"{missing} (give each a test, and list it in COVERED)"
    gone = sorted(set(COVERED) - set(patterns))
    assert not gone, f"COVERED lists patterns that application.spec does not: {gone}"
    # every named test exists, outside the differential test, and its module names the
    # pattern's fixed segments
    sources: dict[str, str] = {}
    for pattern, test in COVERED.items():
        module, _, name = test.partition("::")
        assert module.startswith("tests/") and not module.startswith("tests/integration/")
        if module not in sources:
            sources[module] = (ROOT / module).read_text()
        assert name in _test_functions(sources[module]), f"{pattern}: no test {test}"
        for segment in pattern.split("/"):
            if segment and ":" not in segment:
                assert segment in sources[module], \
                    f"{pattern}: {module} never names {segment!r}"


# -- the expected answers, from the database --------------------------------------------

def rows(api: Api, sql: str, **params: Any) -> list[Any]:
    return api.rows(sa.text(sql).bindparams(**params) if params else sa.text(sql))


def expected_masters(api: Api, where: str = "1 = 1", **params: Any) -> list[dict[str, Any]]:
    return [{"masterid": r.id, "name": r.name, "active": bool(r.active),
             "last_active": r.last_active}
            for r in rows(api, f"SELECT id, name, active, last_active FROM masters m "
                               f"WHERE {where} ORDER BY id", **params)]


def expected_builders(api: Api, where: str = "1 = 1", **params: Any) -> list[dict[str, Any]]:
    masterids: dict[int, list[int]] = {}
    for builderid, masterid in rows(api, "SELECT builderid, masterid FROM builder_masters "
                                         "ORDER BY masterid"):
        masterids.setdefault(builderid, []).append(masterid)
    tags: dict[int, list[str]] = {}
    for builderid, name in rows(api, "SELECT bt.builderid, t.name FROM builders_tags bt "
                                     "JOIN tags t ON t.id = bt.tagid ORDER BY bt.id"):
        tags.setdefault(builderid, []).append(name)
    return [{"builderid": r.id, "name": r.name, "description": r.description,
             "description_format": r.description_format,
             "description_html": r.description_html, "projectid": r.projectid,
             "masterids": masterids.get(r.id, []), "tags": tags.get(r.id, [])}
            for r in rows(api, f"SELECT b.id, b.name, b.description, b.description_format, "
                               f"b.description_html, b.projectid FROM builders b "
                               f"WHERE {where} ORDER BY b.id", **params)]


def expected_builds(api: Api, where: str = "1 = 1", **params: Any) -> list[dict[str, Any]]:
    return [{"buildid": r.id, "number": r.number, "builderid": r.builderid,
             "buildrequestid": r.buildrequestid, "workerid": r.workerid,
             "masterid": r.masterid, "started_at": r.started_at,
             "complete": r.complete_at is not None, "complete_at": r.complete_at,
             "locks_duration_s": r.locks_duration_s, "results": r.results,
             "state_string": r.state_string, "properties": {}}
            for r in rows(api, f"SELECT b.* FROM builds b WHERE {where} ORDER BY b.id",
                          **params)]


def whole(plural: str, items: list[Any]) -> dict[str, Any]:
    return {plural: items, "meta": {"total": len(items)}}


def single(plural: str, item: Any) -> dict[str, Any]:
    return {plural: [item], "meta": {}}


def assert_not_found(r: Reply, arguments: dict[str, Any]) -> None:
    """An upstream-shaped 404 for an entity or parent that does not exist."""
    assert r.code == 404
    assert r.header("content-type") == "application/json; charset=utf-8"
    assert list(r.json) == ["error"]
    assert r.json["error"].startswith("not found while getting from endpoint for ")
    assert r.json["error"].endswith(f" with arguments {arguments!r}")


def ids(table: str, api: Api) -> list[int]:
    return [r[0] for r in rows(api, f"SELECT id FROM {table} ORDER BY id")]


MISSING = 999999


# -- masters ------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_master(api):
    masters = expected_masters(api)
    assert len(masters) == 2
    for master in masters:
        r = await api.get(f"masters/{master['masterid']}")
        assert (r.code, r.json) == (200, single("masters", master))
    r = await api.get(f"masters/{masters[0]['masterid']}?field=name")
    assert r.json == single("masters", {"name": masters[0]["name"]})
    assert_not_found(await api.get(f"masters/{MISSING}"), {"masterid": MISSING})


@pytest_twisted.ensureDeferred
async def test_builders_of_master(api):
    seen = set()
    for masterid in ids("masters", api):
        want = expected_builders(api, "EXISTS (SELECT 1 FROM builder_masters bm WHERE "
                                      "bm.builderid = b.id AND bm.masterid = :m)", m=masterid)
        assert want and all(masterid in b["masterids"] for b in want)
        r = await api.get(f"masters/{masterid}/builders")
        assert (r.code, r.json) == (200, whole("builders", want))
        seen.add(tuple(b["builderid"] for b in want))
    assert len(seen) == 2  # the masters serve different builders
    assert_not_found(await api.get(f"masters/{MISSING}/builders"), {"masterid": MISSING})


@pytest_twisted.ensureDeferred
async def test_builder_of_master(api):
    builders = {b["builderid"]: b for b in expected_builders(api)}
    served = {(m, b) for b, m in rows(api, "SELECT builderid, masterid FROM builder_masters")}
    not_served = [(m, b) for m in ids("masters", api) for b in builders
                  if (m, b) not in served]
    assert served and not_served
    for masterid, builderid in sorted(served):
        r = await api.get(f"masters/{masterid}/builders/{builderid}")
        assert (r.code, r.json) == (200, single("builders", builders[builderid]))
    for masterid, builderid in not_served:
        assert_not_found(await api.get(f"masters/{masterid}/builders/{builderid}"),
                         {"masterid": masterid, "builderid": builderid})


# -- builders -----------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_builder_by_id(api):
    builders = expected_builders(api)
    assert any(b["tags"] and len(b["masterids"]) > 1 and b["description_html"]
               for b in builders)
    for builder in builders:
        r = await api.get(f"builders/{builder['builderid']}")
        assert (r.code, r.json) == (200, single("builders", builder))
    assert_not_found(await api.get(f"builders/{MISSING}"), {"builderid": MISSING})


@pytest_twisted.ensureDeferred
async def test_builder_by_name(api):
    for builder in expected_builders(api):
        r = await api.get(f"builders/{quote(builder['name'])}")
        assert (r.code, r.json) == (200, single("builders", builder))
    assert_not_found(await api.get("builders/no-such-builder"),
                     {"buildername": "no-such-builder"})


@pytest_twisted.ensureDeferred
async def test_masters_of_builder(api):
    counts = set()
    for builderid in ids("builders", api):
        want = expected_masters(api, "EXISTS (SELECT 1 FROM builder_masters bm WHERE "
                                     "bm.masterid = m.id AND bm.builderid = :b)", b=builderid)
        r = await api.get(f"builders/{builderid}/masters")
        assert (r.code, r.json) == (200, whole("masters", want))
        counts.add(len(want))
    assert counts == {1, 2}
    assert_not_found(await api.get(f"builders/{MISSING}/masters"), {"builderid": MISSING})


@pytest_twisted.ensureDeferred
async def test_master_of_builder(api):
    masters = {m["masterid"]: m for m in expected_masters(api)}
    served = {(b, m) for b, m in rows(api, "SELECT builderid, masterid FROM builder_masters")}
    for builderid in ids("builders", api):
        for masterid in masters:
            r = await api.get(f"builders/{builderid}/masters/{masterid}")
            if (builderid, masterid) in served:
                assert (r.code, r.json) == (200, single("masters", masters[masterid]))
            else:
                assert_not_found(r, {"builderid": builderid, "masterid": masterid})
    assert_not_found(await api.get(f"builders/1/masters/{MISSING}"),
                     {"builderid": 1, "masterid": MISSING})


# -- builds of a builder, a request, a change, a worker --------------------------------------

@pytest_twisted.ensureDeferred
async def test_builds_of_builder_by_id(api):
    total = 0
    for builderid in ids("builders", api):
        want = expected_builds(api, "b.builderid = :b", b=builderid)
        r = await api.get(f"builders/{builderid}/builds")
        assert (r.code, r.json) == (200, whole("builds", want))
        total += len(want)
    assert total == len(ids("builds", api))
    busiest = rows(api, "SELECT builderid FROM builds GROUP BY builderid "
                        "ORDER BY count(*) DESC, builderid LIMIT 1")[0][0]
    want = expected_builds(api, "b.builderid = :b", b=busiest)
    newest = sorted(want, key=lambda b: -b["number"])
    r = await api.get(f"builders/{busiest}/builds?order=-number&limit=2&offset=1")
    link = f"http://testserver/api/v2/builders/{busiest}/builds?order=-number&limit=2&offset="
    assert r.json == {"builds": newest[1:3], "meta": {
        "total": len(want), "links": {"next": link + "3", "prev": link + "0"}}}
    assert_not_found(await api.get(f"builders/{MISSING}/builds"), {"builderid": MISSING})


@pytest_twisted.ensureDeferred
async def test_builds_of_builder_by_name(api):
    for builderid, name in rows(api, "SELECT id, name FROM builders ORDER BY id"):
        want = expected_builds(api, "b.builderid = :b", b=builderid)
        r = await api.get(f"builders/{quote(name)}/builds")
        assert (r.code, r.json) == (200, whole("builds", want))
    r = await api.get("builders/linux-py311/builds?complete=false&field=buildid"
                      "&field=complete")
    assert r.json == whole("builds", [
        {"buildid": b["buildid"], "complete": False} for b in expected_builds(
            api, "b.complete_at IS NULL AND b.builderid = "
                 "(SELECT id FROM builders WHERE name = 'linux-py311')")])
    assert_not_found(await api.get("builders/no-such-builder/builds"),
                     {"buildername": "no-such-builder"})


@pytest_twisted.ensureDeferred
async def test_build_by_builder_id_and_number(api):
    builds = expected_builds(api)
    assert len({b["number"] for b in builds}) < len(builds)  # numbers are per builder
    for build in builds:
        r = await api.get(f"builders/{build['builderid']}/builds/{build['number']}")
        assert (r.code, r.json) == (200, single("builds", build))
    assert_not_found(await api.get(f"builders/1/builds/{MISSING}"),
                     {"builderid": 1, "build_number": MISSING})


@pytest_twisted.ensureDeferred
async def test_build_by_builder_name_and_number(api):
    names = dict(rows(api, "SELECT id, name FROM builders"))
    for build in expected_builds(api):
        r = await api.get(f"builders/{quote(names[build['builderid']])}/builds/"
                          f"{build['number']}")
        assert (r.code, r.json) == (200, single("builds", build))
    assert_not_found(await api.get("builders/no-such-builder/builds/1"),
                     {"buildername": "no-such-builder", "build_number": 1})


@pytest_twisted.ensureDeferred
async def test_builds_of_buildrequest(api):
    sizes = []
    for brid in ids("buildrequests", api):
        want = expected_builds(api, "b.buildrequestid = :r", r=brid)
        r = await api.get(f"buildrequests/{brid}/builds")
        assert (r.code, r.json) == (200, whole("builds", want))
        sizes.append(len(want))
    assert 0 in sizes and 1 in sizes  # pending requests have none
    assert_not_found(await api.get(f"buildrequests/{MISSING}/builds"),
                     {"buildrequestid": MISSING})


@pytest_twisted.ensureDeferred
async def test_builds_of_change(api):
    sizes = []
    for changeid in [r[0] for r in rows(api, "SELECT changeid FROM changes ORDER BY changeid")]:
        # the builds of every buildset that holds the change's source stamp
        want = expected_builds(api, """b.buildrequestid IN (
            SELECT br.id FROM buildrequests br
            JOIN buildset_sourcestamps bss ON bss.buildsetid = br.buildsetid
            JOIN changes c ON c.sourcestampid = bss.sourcestampid
            WHERE c.changeid = :c)""", c=changeid)
        r = await api.get(f"changes/{changeid}/builds")
        assert (r.code, r.json) == (200, whole("builds", want))
        sizes.append(len(want))
    assert 0 in sizes and max(sizes) > 2
    assert_not_found(await api.get(f"changes/{MISSING}/builds"), {"changeid": MISSING})


@pytest_twisted.ensureDeferred
async def test_builds_of_worker(api):
    total = 0
    for workerid in ids("workers", api):
        want = expected_builds(api, "b.workerid = :w", w=workerid)
        r = await api.get(f"workers/{workerid}/builds")
        assert (r.code, r.json) == (200, whole("builds", want))
        total += len(want)
    assert 0 < total <= len(ids("builds", api))
    assert_not_found(await api.get(f"workers/{MISSING}/builds"), {"workerid": MISSING})


# -- builders of a project, a worker ----------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_builders_of_project(api):
    total = 0
    for projectid in ids("projects", api):
        want = expected_builders(api, "b.projectid = :p", p=projectid)
        r = await api.get(f"projects/{projectid}/builders")
        assert (r.code, r.json) == (200, whole("builders", want))
        total += len(want)
    no_project = expected_builders(api, "b.projectid IS NULL")
    assert no_project and total + len(no_project) == len(ids("builders", api))
    assert_not_found(await api.get(f"projects/{MISSING}/builders"), {"projectid": MISSING})


@pytest_twisted.ensureDeferred
async def test_builders_of_worker(api):
    sizes = []
    for workerid in ids("workers", api):
        # the builders the worker is configured for, on any master
        want = expected_builders(api, """EXISTS (
            SELECT 1 FROM builder_masters bm
            JOIN configured_workers cw ON cw.buildermasterid = bm.id
            WHERE bm.builderid = b.id AND cw.workerid = :w)""", w=workerid)
        r = await api.get(f"workers/{workerid}/builders")
        assert (r.code, r.json) == (200, whole("builders", want))
        sizes.append(len(want))
    assert max(sizes) > 1
    assert_not_found(await api.get(f"workers/{MISSING}/builders"), {"workerid": MISSING})


# -- log chunks need a log ------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_logchunks_needs_a_log(api):
    # /logchunks is a pattern of application.spec (upstream's too), but the chunks are
    # those of one log: without a log id nothing is found, as upstream answers
    for query in ("", "?limit=1"):
        r = await api.get("logchunks" + query)
        assert_not_found(r, {})
        assert "for /logchunks, /logs/n:logid/contents, " in r.json["error"]


# -- triggered builds: the demo data has none ---------------------------------------------------

@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def triggering(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[Api, dict[str, Any]]]:
    """A demo server of its own where one build triggered three builds requests (on two
    builders; two of them have started builds) and another build one request. Yields it
    and the ids it made."""
    yield from own_server(request, tmp_path_factory, "triggered", _add_triggered_builds)


def _add_triggered_builds(api: Api) -> dict[str, Any]:
    parent, other, builder_a, builder_b, master, worker = rows(api, """
        SELECT (SELECT min(id) FROM builds), (SELECT max(id) FROM builds),
               (SELECT min(id) FROM builders), (SELECT max(id) FROM builders),
               (SELECT min(id) FROM masters), (SELECT min(id) FROM workers)""")[0]
    next_id = {t: rows(api, f"SELECT max(id) FROM {t}")[0][0] + 1
               for t in ("buildsets", "buildrequests", "builds")}
    numbers = {b: rows(api, "SELECT coalesce(max(number), 0) FROM builds WHERE builderid = :b",
                       b=b)[0][0] for b in (builder_a, builder_b)}
    made: dict[str, Any] = {"parent": parent, "other": other, "builds": [], "other_builds": []}
    insert_bs = sa.text(
        "INSERT INTO buildsets (id, external_idstring, reason, submitted_at, complete, "
        "results, parent_buildid, parent_relationship) VALUES (:id, NULL, 'triggered', "
        "1700005000, 0, -1, :parent, 'Triggered from')")
    insert_br = sa.text(
        "INSERT INTO buildrequests (id, buildsetid, builderid, priority, complete, results, "
        "submitted_at, waited_for) VALUES (:id, :bs, :builder, 0, 0, -1, 1700005000, 1)")
    insert_b = sa.text(
        "INSERT INTO builds (id, number, builderid, buildrequestid, workerid, masterid, "
        "started_at, complete_at, locks_duration_s, state_string, results) VALUES "
        "(:id, :number, :builder, :br, :worker, :master, :started, NULL, 0, 'building', "
        "NULL)")
    with api.db.engine.begin() as conn:
        for parent_build, requests, key in ((parent, [builder_a, builder_b, builder_a],
                                             "builds"),
                                            (other, [builder_b], "other_builds")):
            bsid = next_id["buildsets"]
            next_id["buildsets"] += 1
            conn.execute(insert_bs, {"id": bsid, "parent": parent_build})
            for i, builder in enumerate(requests):
                brid = next_id["buildrequests"]
                next_id["buildrequests"] += 1
                conn.execute(insert_br, {"id": brid, "bs": bsid, "builder": builder})
                if i == 2:
                    continue  # not started yet: no build
                numbers[builder] += 1
                build = {"buildid": next_id["builds"], "number": numbers[builder],
                         "builderid": builder, "buildrequestid": brid, "workerid": worker,
                         "masterid": master, "started_at": 1700005100 + brid,
                         "complete": False, "complete_at": None, "locks_duration_s": 0,
                         "results": None, "state_string": "building", "properties": {}}
                next_id["builds"] += 1
                conn.execute(insert_b, {"id": build["buildid"], "number": build["number"],
                                        "builder": builder, "br": brid, "worker": worker,
                                        "master": master, "started": build["started_at"]})
                made[key].append(build)
    return made


@pytest_twisted.ensureDeferred
async def test_triggered_builds(triggering):
    api, made = triggering
    assert len(made["builds"]) == 2 and len(made["other_builds"]) == 1
    r = await api.get(f"builds/{made['parent']}/triggered_builds")
    assert (r.code, r.json) == (200, whole("builds", made["builds"]))
    r = await api.get(f"builds/{made['other']}/triggered_builds")
    assert (r.code, r.json) == (200, whole("builds", made["other_builds"]))
    # the query language applies, and a build that triggered nothing has none
    r = await api.get(f"builds/{made['parent']}/triggered_builds?order=-buildid&field=buildid"
                      f"&field=builderid")
    assert r.json == whole("builds", [{"buildid": b["buildid"], "builderid": b["builderid"]}
                                      for b in reversed(made["builds"])])
    r = await api.get(f"builds/{made['parent']}/triggered_builds?builderid="
                      f"{made['builds'][1]['builderid']}&limit=5")
    assert r.json["builds"] == [made["builds"][1]] and r.json["meta"]["total"] == 1
    untouched = rows(api, "SELECT min(id) FROM builds WHERE id NOT IN (:a, :b)",
                     a=made["parent"], b=made["other"])[0][0]
    r = await api.get(f"builds/{untouched}/triggered_builds")
    assert (r.code, r.json) == (200, whole("builds", []))
    assert_not_found(await api.get(f"builds/{MISSING}/triggered_builds"),
                     {"buildid": MISSING})
