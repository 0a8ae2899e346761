"""The nested forms of a path over HTTP (compatibility #28, upstream's bug #3427): a build is
``/builds/<id>``, ``/builders/<builderid>/builds/<number>`` or
``/builders/<buildername>/builds/<number>``, a step is ``/steps/<id>`` or a step number or
name under any of them, and a log ``/logs/<id>`` or a slug under any step form. Every
sub-path (changes, data, properties, property_list, steps, logs, contents, raw,
raw_inline, test_result_sets, triggered_builds...) answers the same in every form.

tests/data/test_nested.py checks that the patterns exist; here their answers are
compared, form against form, on a demo server where some builds triggered others, and
the paths upstream lacks are checked against the database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import pytest_twisted
import sqlalchemy as sa

from buildbot_rest.db import schema as s
from tests.data.test_nested import BUILDS, LOGS, STEPS
from tests.www.conftest import Api, Reply, own_server
from tests.www.test_changes import changes_of_build, expected_changes
from tests.www.test_paths import (
    MISSING,
    _add_triggered_builds,
    assert_not_found,
    expected_builds,
    whole,
)
from tests.www.test_properties import as_list, build_props
from tests.www.test_test_results import set_rows

#: names every matcher takes as a path segment (some demo steps have spaces in theirs)
PLAIN_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_-]*\Z")


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def nested(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Api, dict[str, Any]]]:
    """A demo server where one build triggered builds (see tests/www/test_paths.py)."""
    yield from own_server(request, tmp_path_factory, "nested", _add_triggered_builds)


def rows(api: Api, stmt: Any) -> list[Any]:
    return api.rows(stmt)


# -- the families of patterns: one entity's sub-path in each of its forms ---------------

def family_of(pattern: str) -> str | None:
    """The pattern written with the entity's own id (``/logs/n:logid/raw``), or None
    for a pattern under no build, step or log."""
    for forms in (LOGS, STEPS, BUILDS):
        for form in forms:
            if pattern == form or pattern.startswith(form + "/"):
                return forms[0] + pattern[len(form):]
    return None


def families(api: Api) -> dict[str, list[str]]:
    patterns = ["/" + "/".join(p) for p in api.connector.matcher.patterns()]
    out: dict[str, list[str]] = {}
    for pattern in sorted(patterns):
        family = family_of(pattern)
        if family is not None:
            out.setdefault(family, []).append(pattern)
    return out


def instantiate(pattern: str, values: dict[str, Any]) -> str:
    return "/".join(quote(str(values[seg.partition(":")[2]])) if ":" in seg else seg
                    for seg in pattern.strip("/").split("/"))


def witnesses(api: Api, made: dict[str, Any]) -> list[dict[str, Any]]:
    """Values of every path variable, for builds that have something under each
    sub-path: the build that triggered others, one with step test results, one with
    build data, and the newest one with changes."""
    b, bl, st, lg, bd, trs = (s.builds, s.builders, s.steps, s.logs, s.build_data,
                              s.test_result_sets)
    br, bss, ch = s.buildrequests, s.buildset_sourcestamps, s.changes
    with_changes = rows(api, sa.select(sa.func.max(b.c.id))
                        .join_from(b, br, br.c.id == b.c.buildrequestid)
                        .join(bss, bss.c.buildsetid == br.c.buildsetid)
                        .join(ch, ch.c.sourcestampid == bss.c.sourcestampid))[0][0]
    buildids = [made["parent"],
                rows(api, sa.select(sa.func.min(trs.c.buildid))
                     .where(trs.c.stepid.is_not(None)))[0][0],
                rows(api, sa.select(sa.func.min(bd.c.buildid)))[0][0],
                with_changes]
    out = []
    for buildid in buildids:
        build = rows(api, sa.select(b.c.builderid, b.c.number, bl.c.name)
                     .join(bl, bl.c.id == b.c.builderid).where(b.c.id == buildid))[0]
        # the step with test results if there is one, else the one with most logs
        steps = [r for r in rows(api, sa.select(
            st.c.id, st.c.number, st.c.name,
            sa.select(sa.func.count()).where(trs.c.stepid == st.c.id).scalar_subquery(),
            sa.select(sa.func.count()).where(lg.c.stepid == st.c.id).scalar_subquery())
            .where(st.c.buildid == buildid).order_by(st.c.number))
            if PLAIN_NAME.match(r[2])]
        step = max(steps, key=lambda r: (r[3], r[4]))
        log = rows(api, sa.select(lg.c.id, lg.c.slug).where(lg.c.stepid == step[0])
                   .order_by(lg.c.id).limit(1))
        data = rows(api, sa.select(bd.c.name).where(bd.c.buildid == buildid)
                    .order_by(bd.c.name).limit(1))
        out.append({
            "buildid": buildid, "builderid": build[0], "build_number": build[1],
            "buildername": build[2], "stepid": step[0], "step_number": step[1],
            "step_name": step[2], "logid": log[0][0] if log else MISSING,
            "log_slug": log[0][1] if log else "no-such-log",
            "name": data[0][0] if data else "no-such-data",
        })
    return out


def _substance(r: Reply) -> bool:
    """Whether a 200 answer holds something (not an empty list, dict or download)."""
    if r.code != 200:
        return False
    if not (r.header("content-type") or "").startswith("application/json"):
        return bool(r.body)
    doc = r.json
    items = next(v for k, v in doc.items() if k != "meta")
    return bool(items) and bool(items[0])


@pytest_twisted.ensureDeferred
async def test_nested_forms_answer_alike(nested):
    api, made = nested
    found = families(api)
    # a build and 9 sub-paths, a step and 2, a log and 3 (tests/data/test_nested.py)
    assert len(found) == 10 + 3 + 4
    assert all(len(members) == len(forms) for family, members in found.items()
               for forms in [LOGS if family.startswith("/logs") else
                             STEPS if family.startswith("/steps") else BUILDS])
    cases = witnesses(api, made)
    for family, members in found.items():
        held = False
        for values in cases:
            answers = {m: await api.get(instantiate(m, values)) for m in members}
            first = answers[members[0]]
            for member, r in answers.items():
                where = f"{family}: {instantiate(member, values)}"
                assert r.code == first.code, where
                if r.code == 200:
                    assert r.body == first.body, where
                    for header in ("content-type", "content-disposition"):
                        assert r.header(header) == first.header(header), where
                else:
                    assert r.code == 404 and r.json["error"].startswith("not found"), where
            held |= _substance(first)
        assert held, f"{family}: no witness has anything there"


# -- the paths upstream lacks, against the database ------------------------------------------

def build_forms(api: Api, buildid: int) -> list[str]:
    builderid, number, name = rows(api, sa.select(
        s.builds.c.builderid, s.builds.c.number, s.builders.c.name)
        .join(s.builders, s.builders.c.id == s.builds.c.builderid)
        .where(s.builds.c.id == buildid))[0]
    return [f"builds/{buildid}", f"builders/{builderid}/builds/{number}",
            f"builders/{quote(name)}/builds/{number}"]


@pytest_twisted.ensureDeferred
async def test_triggered_builds_of_every_form(nested):
    api, made = nested
    for form in build_forms(api, made["parent"]):
        r = await api.get(f"{form}/triggered_builds")
        assert (r.code, r.json) == (200, whole("builds", made["builds"])), form
        r = await api.get(f"{form}/triggered_builds?order=-buildid&limit=1")
        assert r.json["builds"] == made["builds"][-1:] and r.json["meta"]["total"] == 2
    for form in build_forms(api, made["other"]):
        r = await api.get(f"{form}/triggered_builds")
        assert (r.code, r.json) == (200, whole("builds", made["other_builds"])), form
    # the triggered builds are builds like any other
    assert made["builds"] == expected_builds(
        api, "b.id IN (:a, :b)", a=made["builds"][0]["buildid"],
        b=made["builds"][1]["buildid"])
    builderid = made["builds"][0]["builderid"]
    assert_not_found(await api.get(f"builders/{builderid}/builds/{MISSING}/triggered_builds"),
                     {"builderid": builderid, "build_number": MISSING})
    assert_not_found(await api.get("builders/no-such-builder/builds/1/triggered_builds"),
                     {"buildername": "no-such-builder", "build_number": 1})


@pytest_twisted.ensureDeferred
async def test_properties_and_property_list_of_every_form(nested):
    api, _ = nested
    bp = s.build_properties
    buildid = rows(api, sa.select(bp.c.buildid).group_by(bp.c.buildid)
                   .order_by(sa.func.count().desc(), bp.c.buildid).limit(1))[0][0]
    props = build_props(api, buildid)
    assert len(props) > 2
    for form in build_forms(api, buildid):
        r = await api.get(f"{form}/properties")
        assert (r.code, r.json) == (200, {"properties": [props], "meta": {}}), form
        r = await api.get(f"{form}/property_list")
        assert (r.code, r.json) == (200, whole("_properties", as_list(props))), form
        r = await api.get(f"{form}/property_list?order=-name&limit=2&field=name")
        assert r.json["_properties"] == [{"name": n} for n in sorted(props, reverse=True)[:2]]
    for path in (f"builders/{MISSING}/builds/1/property_list",
                 "builders/no-such-builder/builds/1/properties"):
        r = await api.get(path)
        assert r.code == 404 and r.json["error"].startswith("not found"), path


@pytest_twisted.ensureDeferred
async def test_changes_of_every_form(nested):
    api, _ = nested
    want = expected_changes(api)
    seen = 0
    for (buildid,) in rows(api, sa.select(s.builds.c.id).order_by(s.builds.c.id)):
        expect = [want[k] for k in sorted(changes_of_build(api, buildid), reverse=True)]
        seen += bool(expect)
        for form in build_forms(api, buildid)[1:]:
            r = await api.get(f"{form}/changes")
            assert (r.code, r.json) == (200, whole("changes", expect)), form
    assert seen > 1


@pytest_twisted.ensureDeferred
async def test_test_result_sets_of_every_form(nested):
    api, _ = nested
    trs, st = s.test_result_sets, s.steps
    sets = rows(api, sa.select(trs.c.buildid, trs.c.stepid, st.c.number, st.c.name)
                .join(st, st.c.id == trs.c.stepid).order_by(trs.c.id))
    assert sets
    for buildid, stepid, number, name in sets:
        forms = build_forms(api, buildid)
        for form in forms:
            r = await api.get(f"{form}/test_result_sets")
            assert (r.code, r.json) == (200, whole(
                "test_result_sets", set_rows(api, trs.c.buildid == buildid))), form
        step_sets = set_rows(api, trs.c.stepid == stepid)
        assert step_sets
        step_forms = [f"steps/{stepid}", *(f"{form}/steps/{number}" for form in forms)]
        if PLAIN_NAME.match(name):
            step_forms += [f"{form}/steps/{quote(name)}" for form in forms]
        for form in step_forms:
            r = await api.get(f"{form}/test_result_sets")
            assert (r.code, r.json) == (200, whole("test_result_sets", step_sets)), form
    # a step without sets has none; a missing step is 404 in every form
    bare = rows(api, sa.select(st.c.buildid, st.c.number).where(
        st.c.id.not_in(sa.select(trs.c.stepid).where(trs.c.stepid.is_not(None))))
        .order_by(st.c.id).limit(1))[0]
    for form in build_forms(api, bare[0]):
        r = await api.get(f"{form}/steps/{bare[1]}/test_result_sets")
        assert (r.code, r.json) == (200, whole("test_result_sets", [])), form
        r = await api.get(f"{form}/steps/{MISSING}/test_result_sets")
        assert r.code == 404 and r.json["error"].startswith("not found"), form
