"""The nested forms of a path (upstream's bug #3427): every sub-path of a build, a step or
a log exists under each way of naming it (compatibility #28), with the same endpoint; and
``application.spec`` lists them. These read only the declarations: no database.

The answers of the forms are compared over HTTP in tests/www/test_nested_paths.py."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from buildbot_rest.data import resolve
from buildbot_rest.data.connector import DataConnector

#: the ways to name a build, a step and a log, spelled out here rather than imported, so
#: that a form dropped from buildbot_rest.data.resolve is noticed
BUILDS = (
    "/builds/n:buildid",
    "/builders/n:builderid/builds/n:build_number",
    "/builders/s:buildername/builds/n:build_number",
)
STEPS = (
    "/steps/n:stepid",
    *(f"{build}/steps/{step}" for build in BUILDS for step in ("n:step_number", "i:step_name")),
)
LOGS = ("/logs/n:logid", *(f"{step}/logs/i:log_slug" for step in STEPS))

#: the patterns upstream 4.3.0 lacks, which the rule above adds (upstream resources section 2)
ADDED = {
    "builders/n:builderid/builds/n:build_number/property_list": "_property",
    "builders/n:builderid/builds/n:build_number/test_result_sets": "test_result_set",
    "builders/n:builderid/builds/n:build_number/triggered_builds": "build",
    **{f"builders/s:buildername/builds/n:build_number/{sub}": rtype for sub, rtype in (
        ("changes", "change"), ("properties", "sourcedproperties"),
        ("property_list", "_property"), ("test_result_sets", "test_result_set"),
        ("triggered_builds", "build"))},
    **{f"{step[1:]}/test_result_sets": "test_result_set" for step in STEPS[1:]},
    **{f"builders/s:buildername/builds/n:build_number/steps/{step}/logs/i:log_slug/{kind}":
       "logchunk" for step in ("n:step_number", "i:step_name")
       for kind in ("contents", "raw", "raw_inline")},
}


@pytest.fixture(scope="module")
def patterns() -> dict[str, Any]:
    """Every path pattern (``/builds/n:buildid``) and its endpoint."""
    connector = DataConnector(None)  # type: ignore[arg-type]
    return {"/" + "/".join(p): e for p, e in connector.matcher.patterns().items()}


@pytest.mark.parametrize("forms", [BUILDS, STEPS, LOGS], ids=["build", "step", "log"])
def test_every_sub_path_exists_in_every_form(patterns: dict[str, Any],
                                             forms: tuple[str, ...]) -> None:
    subpaths: dict[str, Any] = {}
    for pattern, endpoint in patterns.items():
        for form in forms:
            if pattern == form or pattern.startswith(form + "/"):
                subpaths.setdefault(pattern[len(form):], endpoint)
    assert "" in subpaths and len(subpaths) > 3
    missing = [form + sub for sub in subpaths for form in forms if form + sub not in patterns]
    assert not missing, f"sub-paths missing from some forms: {missing}"
    for sub, endpoint in subpaths.items():
        for form in forms:
            assert patterns[form + sub] is endpoint, f"{form + sub} has another endpoint"


def test_sub_paths_of_a_build_and_of_its_steps_and_logs(patterns: dict[str, Any]) -> None:
    below = sorted(p[len(BUILDS[0]):] for p in patterns if p.startswith(BUILDS[0] + "/"))
    step_subs = ["/logs", "/logs/i:log_slug", "/logs/i:log_slug/contents",
                 "/logs/i:log_slug/raw", "/logs/i:log_slug/raw_inline", "/test_result_sets"]
    assert below == sorted([
        "/changes", "/data", "/data/i:name", "/data/i:name/value", "/properties",
        "/property_list", "/steps", "/test_result_sets", "/triggered_builds",
        *(f"/steps/{step}{sub}" for step in ("n:step_number", "i:step_name")
          for sub in ("", *step_subs))])
    assert sorted(p[len(STEPS[0]):] for p in patterns if p.startswith(STEPS[0] + "/")) \
        == step_subs
    assert sorted(p[len(LOGS[0]):] for p in patterns if p.startswith(LOGS[0] + "/")) \
        == ["/contents", "/raw", "/raw_inline"]


def test_the_forms_are_declared_in_one_place() -> None:
    assert (resolve.BUILD_FORMS, resolve.STEP_FORMS, resolve.LOG_FORMS) == (BUILDS, STEPS, LOGS)
    assert resolve.nested(BUILDS[:2], "/a", "/b") == (
        "/builds/n:buildid/a", "/builders/n:builderid/builds/n:build_number/a",
        "/builds/n:buildid/b", "/builders/n:builderid/builds/n:build_number/b")
    assert resolve.nested(BUILDS, "") == BUILDS


def test_numbers_before_names() -> None:
    # a step is named by number when the segment is one, in every form
    connector = DataConnector(None)  # type: ignore[arg-type]
    for prefix in (("builds", "7"), ("builders", "2", "builds", "7"),
                   ("builders", "linux", "builds", "7")):
        _, kwargs = connector.match((*prefix, "steps", "3", "test_result_sets"))
        assert kwargs["step_number"] == 3 and "step_name" not in kwargs
        _, kwargs = connector.match((*prefix, "steps", "compile", "logs", "stdio", "raw"))
        assert kwargs["step_name"] == "compile" and kwargs["log_slug"] == "stdio"
    _, kwargs = connector.match(("builders", "2", "builds", "7", "property_list"))
    assert kwargs == {"builderid": 2, "build_number": 7}
    _, kwargs = connector.match(("builders", "linux", "builds", "7", "property_list"))
    assert kwargs == {"buildername": "linux", "build_number": 7}


@pytest_twisted.ensureDeferred
async def test_application_spec_lists_the_added_paths(patterns: dict[str, Any]) -> None:
    connector = DataConnector(None)  # type: ignore[arg-type]
    specs, total = await connector.get("application.spec")
    assert total == len(specs) == len(patterns)
    listed = {spec["path"]: spec for spec in specs}
    for path, type_name in ADDED.items():
        assert path in listed, path
        same = listed[path.replace("builders/s:buildername/builds/n:build_number",
                                   "builds/n:buildid")
                      .replace("builders/n:builderid/builds/n:build_number",
                               "builds/n:buildid")]
        assert listed[path]["type"] == type_name
        assert {k: v for k, v in listed[path].items() if k != "path"} == \
            {k: v for k, v in same.items() if k != "path"}
