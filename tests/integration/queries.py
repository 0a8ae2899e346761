"""The GET requests of the differential test, made from the ids in the database.

:func:`build_queries` reads a few rows of a database filled by ``buildbot_rest.demo`` and
returns the requests to send to upstream Buildbot and to us: every path pattern of
upstream resources section 2 (with an existing id, and with a missing one), then the query
language on the collections (filters with every operator, order, paging, field
selection, ``property=``), then bad input. The list is deterministic for a given
database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

#: an id that no table of the demo data reaches
MISSING = 999999

JSON = "application/json"


@dataclass(frozen=True)
class Query:
    """One GET of ``/api/v2/<path>`` (``path`` may carry a query string)."""

    path: str
    group: str
    #: the Accept header; None sends none (upstream then answers pretty JSON)
    accept: str | None = JSON
    #: the log whose contents the request reads, if any
    logid: int | None = None

    @property
    def url_path(self) -> str:
        return "api/v2" + ("/" + self.path if self.path else "")


@dataclass
class Facts:
    """Ids and names picked from the database, for the queries and the deviation rules."""

    row: dict[str, dict[str, Any]]
    #: buildsets that have no sourcestamp (their requests are invisible upstream)
    buildsets_without_sourcestamps: set[int]
    #: the compression codes (logchunks.compressed) of each log's chunks
    log_codecs: dict[int, set[int]]


def _one(conn: sa.Connection, sql: str, **params: Any) -> dict[str, Any]:
    row = conn.execute(sa.text(sql), params).mappings().first()
    if row is None:
        raise LookupError(f"the demo data has no row for: {sql}")
    return dict(row)


def load_facts(conn: sa.Connection) -> Facts:
    """The rows the queries are made of: an example of each kind of thing."""
    q = {
        # a finished build with steps, logs, properties and build data
        "build": """SELECT b.id AS buildid, b.number, b.builderid, bl.name AS buildername,
                           b.workerid, b.buildrequestid, b.masterid
                    FROM builds b JOIN builders bl ON bl.id = b.builderid
                    WHERE b.complete_at IS NOT NULL
                      AND b.id IN (SELECT buildid FROM build_data)
                    ORDER BY b.id LIMIT 1""",
        "running_build": """SELECT id AS buildid FROM builds WHERE complete_at IS NULL
                            ORDER BY id LIMIT 1""",
        "build_data": """SELECT name FROM build_data WHERE buildid = :buildid
                         ORDER BY name LIMIT 1""",
        # a step of that build with a stdio log and a name that is an identifier
        "step": """SELECT s.id AS stepid, s.number, s.name, l.id AS logid, l.slug
                   FROM steps s JOIN logs l ON l.stepid = s.id
                   WHERE s.buildid = :buildid AND l.type = 's' AND s.name NOT LIKE '% %'
                     AND l.num_lines > 5
                   ORDER BY s.number DESC LIMIT 1""",
        "text_log": "SELECT id AS logid FROM logs WHERE type = 't' ORDER BY id LIMIT 1",
        "html_log": "SELECT id AS logid FROM logs WHERE type = 'h' ORDER BY id LIMIT 1",
        "chunked_log": """SELECT logid FROM logchunks GROUP BY logid HAVING count(*) > 1
                          ORDER BY logid LIMIT 1""",
        "test_result_set": """SELECT id AS setid, builderid, buildid, stepid
                              FROM test_result_sets ORDER BY id LIMIT 1""",
        "buildset": """SELECT buildsetid AS bsid FROM buildset_sourcestamps
                       GROUP BY buildsetid HAVING count(*) > 1 ORDER BY buildsetid LIMIT 1""",
        "buildset_props": """SELECT buildsetid AS bsid FROM buildset_properties
                             GROUP BY buildsetid ORDER BY count(*) DESC, buildsetid LIMIT 1""",
        "pending_request": """SELECT id AS brid, buildsetid, builderid FROM buildrequests
                              WHERE complete = 0 ORDER BY id LIMIT 1""",
        "change": """SELECT c.changeid, c.sourcestampid FROM changes c
                     WHERE c.changeid IN (SELECT changeid FROM change_properties)
                       AND c.changeid IN (SELECT changeid FROM change_files)
                     ORDER BY c.changeid DESC LIMIT 1""",
        "patched_sourcestamp": """SELECT id AS ssid FROM sourcestamps
                                  WHERE patchid IS NOT NULL ORDER BY id LIMIT 1""",
        "master": "SELECT id AS masterid FROM masters ORDER BY id LIMIT 1",
        "builder_master": """SELECT builderid, masterid FROM builder_masters
                             ORDER BY id LIMIT 1""",
        "worker": """SELECT w.id AS workerid, w.name, bm.builderid, bm.masterid
                     FROM workers w JOIN configured_workers cw ON cw.workerid = w.id
                     JOIN builder_masters bm ON bm.id = cw.buildermasterid
                     ORDER BY w.id, bm.id LIMIT 1""",
        "scheduler": """SELECT s.id AS schedulerid, sm.masterid FROM schedulers s
                        JOIN scheduler_masters sm ON sm.schedulerid = s.id
                        ORDER BY s.id LIMIT 1""",
        "changesource": """SELECT c.id AS changesourceid, cm.masterid FROM changesources c
                           JOIN changesource_masters cm ON cm.changesourceid = c.id
                           ORDER BY c.id LIMIT 1""",
        "project": """SELECT p.id AS projectid, p.name, c.name AS codebase
                      FROM projects p JOIN codebases c ON c.projectid = p.id
                      ORDER BY p.id, c.id LIMIT 1""",
        "codebase": """SELECT codebaseid, count(*) AS n FROM codebase_commits
                       GROUP BY codebaseid ORDER BY count(*) DESC, codebaseid LIMIT 1""",
        "commit": """SELECT id AS commitid, revision, parent_commitid FROM codebase_commits
                     WHERE codebaseid = :codebaseid AND parent_commitid IS NOT NULL
                     ORDER BY id DESC LIMIT 1""",
        "root_commit": """SELECT id AS commitid FROM codebase_commits
                          WHERE codebaseid = :codebaseid AND parent_commitid IS NULL
                          ORDER BY id LIMIT 1""",
        "branch": "SELECT id AS branchid FROM codebase_branches ORDER BY id LIMIT 1",
        # a project whose name can be a path element (an identifier)
        "named_project": """SELECT name FROM projects WHERE name NOT LIKE '% %'
                            ORDER BY id LIMIT 1""",
    }
    row: dict[str, dict[str, Any]] = {}
    row["build"] = _one(conn, q["build"])
    bid = row["build"]["buildid"]
    for name in ("running_build", "text_log", "html_log", "chunked_log", "test_result_set",
                 "buildset", "buildset_props", "pending_request", "change",
                 "patched_sourcestamp", "master", "builder_master", "worker", "scheduler",
                 "changesource", "project", "codebase", "branch", "named_project"):
        row[name] = _one(conn, q[name])
    row["build_data"] = _one(conn, q["build_data"], buildid=bid)
    row["step"] = _one(conn, q["step"], buildid=bid)
    cbid = row["codebase"]["codebaseid"]
    row["commit"] = _one(conn, q["commit"], codebaseid=cbid)
    row["root_commit"] = _one(conn, q["root_commit"], codebaseid=cbid)
    lonely = conn.execute(sa.text(
        "SELECT id FROM buildsets WHERE id NOT IN "
        "(SELECT buildsetid FROM buildset_sourcestamps)")).scalars()
    codecs: dict[int, set[int]] = {}
    for logid, code in conn.execute(sa.text(
            "SELECT DISTINCT logid, compressed FROM logchunks")):
        codecs.setdefault(logid, set()).add(code)
    return Facts(row=row, buildsets_without_sourcestamps=set(lonely), log_codecs=codecs)


def build_queries(facts: Facts) -> list[Query]:
    """Every request of the differential test, in a stable order."""
    out: list[Query] = []
    out += _paths(facts)
    out += _query_language(facts)
    out += _bad_input(facts)
    seen: set[tuple[str, str | None]] = set()
    unique = []
    for query in out:
        if (query.path, query.accept) not in seen:
            seen.add((query.path, query.accept))
            unique.append(query)
    return unique


def _paths(facts: Facts) -> list[Query]:
    """Every path pattern of upstream resources section 2, with existing and missing ids."""
    r = facts.row
    b = r["build"]
    bid, num, bldr, bname = b["buildid"], b["number"], b["builderid"], b["buildername"]
    st = r["step"]
    step_forms = [f"builds/{bid}/steps/{st['name']}", f"builds/{bid}/steps/{st['number']}",
                  f"builders/{bldr}/builds/{num}/steps/{st['name']}",
                  f"builders/{bldr}/builds/{num}/steps/{st['number']}",
                  f"builders/{quote(bname)}/builds/{num}/steps/{st['name']}",
                  f"builders/{quote(bname)}/builds/{num}/steps/{st['number']}"]
    build_forms = [f"builds/{bid}", f"builders/{bldr}/builds/{num}",
                   f"builders/{quote(bname)}/builds/{num}"]
    slug = st["slug"]
    w = r["worker"]
    ts = r["test_result_set"]
    cb = r["codebase"]["codebaseid"]
    c1, c2 = r["root_commit"]["commitid"], r["commit"]["commitid"]
    p = r["project"]
    bm = r["builder_master"]
    M = MISSING
    paths = [
        "", "application.spec",
        # masters
        "masters", f"masters/{r['master']['masterid']}", f"masters/{M}",
        f"builders/{bm['builderid']}/masters",
        f"builders/{bm['builderid']}/masters/{bm['masterid']}",
        f"builders/{bm['builderid']}/masters/{M}", f"builders/{M}/masters",
        # builders
        "builders", f"builders/{bldr}", f"builders/{quote(bname)}", f"builders/{M}",
        "builders/no-such-builder", f"masters/{bm['masterid']}/builders",
        f"masters/{bm['masterid']}/builders/{bm['builderid']}", f"masters/{M}/builders",
        f"projects/{p['projectid']}/builders", f"projects/{M}/builders",
        f"workers/{w['workerid']}/builders", f"workers/{M}/builders",
        # workers
        "workers", f"workers/{w['workerid']}", f"workers/{w['name']}", f"workers/{M}",
        "workers/no-such-worker",
        f"masters/{w['masterid']}/workers", f"masters/{w['masterid']}/workers/{w['workerid']}",
        f"masters/{w['masterid']}/workers/{w['name']}", f"masters/{M}/workers",
        f"masters/{w['masterid']}/builders/{w['builderid']}/workers",
        f"masters/{w['masterid']}/builders/{w['builderid']}/workers/{w['workerid']}",
        f"masters/{w['masterid']}/builders/{w['builderid']}/workers/{w['name']}",
        f"builders/{w['builderid']}/workers",
        f"builders/{w['builderid']}/workers/{w['workerid']}",
        f"builders/{w['builderid']}/workers/{w['name']}",
        f"builders/{M}/workers",
        # schedulers and change sources
        "schedulers", f"schedulers/{r['scheduler']['schedulerid']}", f"schedulers/{M}",
        f"masters/{r['scheduler']['masterid']}/schedulers",
        f"masters/{r['scheduler']['masterid']}/schedulers/{r['scheduler']['schedulerid']}",
        f"masters/{M}/schedulers",
        "changesources", f"changesources/{r['changesource']['changesourceid']}",
        f"changesources/{M}", f"masters/{r['changesource']['masterid']}/changesources",
        (f"masters/{r['changesource']['masterid']}/changesources/"
         f"{r['changesource']['changesourceid']}"),
        # force schedulers (none configured on either server)
        "forceschedulers", "forceschedulers/force", f"builders/{bldr}/forceschedulers",
        # buildsets
        "buildsets", f"buildsets/{r['buildset']['bsid']}", f"buildsets/{M}",
        f"buildsets/{r['buildset_props']['bsid']}/properties",
        f"buildsets/{r['buildset_props']['bsid']}/properties_list",
        f"buildsets/{r['buildset']['bsid']}/sourcestamps", f"buildsets/{M}/sourcestamps",
        # buildrequests
        "buildrequests", f"buildrequests/{b['buildrequestid']}",
        f"buildrequests/{r['pending_request']['brid']}", f"buildrequests/{M}",
        f"builders/{bldr}/buildrequests", f"builders/{M}/buildrequests",
        # builds
        "builds", *build_forms, f"builds/{M}", f"builders/{bldr}/builds/{M}",
        f"builds/{r['running_build']['buildid']}",
        f"builders/{bldr}/builds", f"builders/{quote(bname)}/builds", f"builders/{M}/builds",
        "builders/no-such-builder/builds",
        f"buildrequests/{b['buildrequestid']}/builds", f"buildrequests/{M}/builds",
        f"workers/{b['workerid']}/builds", f"workers/{M}/builds",
        f"changes/{r['change']['changeid']}/builds", f"changes/{M}/builds",
        f"builds/{bid}/triggered_builds",
        f"builds/{bid}/properties", f"builders/{bldr}/builds/{num}/properties",
        f"builds/{M}/properties", f"builds/{bid}/property_list",
        f"builds/{bid}/changes", f"builders/{bldr}/builds/{num}/changes",
        f"builds/{M}/changes",
        *[f"{form}/data" for form in build_forms],
        *[f"{form}/data/{r['build_data']['name']}" for form in build_forms],
        *[f"{form}/data/{r['build_data']['name']}/value" for form in build_forms],
        f"builds/{bid}/data/no-such-data", f"builds/{M}/data",
        # steps
        f"steps/{st['stepid']}", f"steps/{M}", *step_forms,
        f"builds/{bid}/steps/no_such_step", f"builds/{bid}/steps/{M}",
        *[f"{form}/steps" for form in build_forms], f"builds/{M}/steps",
        f"steps/{st['stepid']}/test_result_sets",
        # logs
        f"logs/{st['logid']}", f"logs/{M}", f"steps/{st['stepid']}/logs/{slug}",
        *[f"{form}/logs/{slug}" for form in step_forms],
        f"steps/{st['stepid']}/logs", f"steps/{M}/logs",
        *[f"{form}/logs" for form in step_forms],
        "logchunks",
        # changes and sourcestamps
        "changes", f"changes/{r['change']['changeid']}", f"changes/{M}",
        f"changes/{r['change']['changeid']}/properties_list",
        "sourcestamps", f"sourcestamps/{r['change']['sourcestampid']}",
        f"sourcestamps/{r['patched_sourcestamp']['ssid']}", f"sourcestamps/{M}",
        f"sourcestamps/{r['change']['sourcestampid']}/changes", f"sourcestamps/{M}/changes",
        # projects, codebases, commits, branches
        "projects", f"projects/{p['projectid']}", f"projects/{quote(p['name'])}",
        f"projects/{r['named_project']['name']}", "projects/no-such-project",
        f"projects/{M}", f"projects/{p['projectid']}/codebases/{p['codebase']}",
        f"projects/{p['projectid']}/codebases/no-such-codebase",
        "codebases", f"codebases/{cb}", f"codebases/{M}",
        f"codebases/{cb}/commits", f"codebases/{M}/commits", f"commits/{c2}",
        f"commits/{M}", f"codebases/{cb}/commits_by_revision/{r['commit']['revision']}",
        f"codebases/{cb}/commits_by_revision/0000",
        f"codebases/{cb}/commit_range/{c1}/{c2}/commits_common_parent",
        f"codebases/{cb}/commit_range/{c2}/{c1}/commits_common_parent",
        f"codebases/{cb}/commit_range/{c1}/{M}/commits_common_parent",
        f"codebases/{cb}/commit_range/{c1}/{c2}/test_result_sets",
        f"branches/{r['branch']['branchid']}", f"branches/{M}",
        f"codebases/{cb}/branches", f"codebases/{M}/branches",
        # test results
        "test_result_sets", f"test_result_sets/{ts['setid']}", f"test_result_sets/{M}",
        f"builders/{ts['builderid']}/test_result_sets",
        f"builders/{quote(bname)}/test_result_sets",
        f"builds/{ts['buildid']}/test_result_sets", f"steps/{ts['stepid']}/test_result_sets",
        f"test_result_sets/{ts['setid']}/results", f"test_result_sets/{M}/results",
        # the singular aliases that docs/compatibility.rst adds (upstream: 404)
        "builder", f"master/{r['master']['masterid']}",
    ]
    out = [Query(path, "paths") for path in paths]
    # log contents and downloads (no s:buildername forms upstream)
    log_prefixes = [f"logs/{st['logid']}", f"steps/{st['stepid']}/logs/{slug}",
                    *[f"{form}/logs/{slug}" for form in step_forms[:4]]]
    for kind in ("contents", "raw", "raw_inline"):
        out += [Query(f"{prefix}/{kind}", "paths", logid=st["logid"])
                for prefix in log_prefixes]
        out += [Query(f"logs/{r[log]['logid']}/{kind}", "paths", logid=r[log]["logid"])
                for log in ("text_log", "html_log", "chunked_log")]
    out += [Query(f"logs/{M}/contents", "paths"), Query(f"logs/{M}/raw", "paths")]
    # pretty JSON, when the client does not ask for application/json
    out += [Query(path, "pretty", accept=None)
            for path in ("masters", f"builds/{bid}", f"builds/{M}", "builds?foo=1")]
    return out


def _query_language(facts: Facts) -> list[Query]:
    """Filters with every operator, order, paging, field selection and property=."""
    r = facts.row
    b = r["build"]
    bid, bldr = b["buildid"], b["builderid"]
    out: list[Query] = []

    def add(group: str, *paths: str) -> None:
        out.extend(Query(p, group) for p in paths)

    # builds: every field is mapped to SQL upstream
    add("filters",
        "builds?results=0", "builds?results=0&results=2", "builds?results__ne=0",
        "builds?results__ne=0&results__ne=2", "builds?results__lt=2", "builds?results__le=1",
        "builds?results__gt=0", "builds?results__ge=2", "builds?results__in=1&results__in=2",
        "builds?results__notin=0", "builds?results__eq=1", f"builds?builderid={bldr}",
        f"builds?builderid={bldr}&number__gt=2", "builds?complete=true",
        "builds?complete=false", "builds?complete=no", "builds?complete=on",
        "builds?complete=0", f"builds?buildrequestid={b['buildrequestid']}",
        f"builds?buildrequestid={b['buildrequestid']}&buildrequestid="
        f"{b['buildrequestid'] + 1}",
        "builds?state_string__contains=fail", "builds?state_string__contains=FAIL",
        "builds?state_string__contains=%25", "builds?state_string__contains=_",
        "builds?state_string=build%20successful",
        f"builds?workerid={b['workerid']}", f"builds?masterid={b['masterid']}",
        "builds?started_at__gt=1700001000", "builds?started_at__le=1700000500",
        "builds?complete_at__ge=1700001500", "builds?complete_at__ne=1700001500",
        "builds?locks_duration_s__gt=0", "builds?buildid__in=1&buildid__in=3&buildid__in=5",
        "builds?buildid__notin=1&buildid__notin=2", "builds?complete_at__isnull=true",
        "buildsets?external_idstring__isnull=false", "builders?projectid__isnull=true",
        )
    add("order",
        "builds?order=number", "builds?order=-number", "builds?order=builderid&order=-number",
        "builds?order=-started_at", "builds?order=results", "builds?order=-results",
        "builds?order=complete_at", "builds?order=-complete_at", "builds?order=state_string",
        "builds?order=-locks_duration_s&order=buildid",
        )
    add("paging",
        "builds?limit=5", "builds?offset=25", "builds?limit=5&offset=5",
        "builds?order=-buildid&limit=3", "builds?order=-buildid&limit=3&offset=3",
        "builds?limit=0", "builds?offset=1000", "builds?limit=1000",
        "builds?results=0&order=-buildid&limit=4", f"builders/{bldr}/builds?limit=2",
        "builds?order=number&limit=4",
        )
    add("fields",
        "builds?field=buildid", "builds?field=buildid&field=results",
        "builds?field=buildid&field=results&results=0",
        "builds?field=buildid&field=number&order=-number&limit=3",
        "builds?field=properties", f"builds/{bid}?field=buildid&field=state_string",
        )
    add("properties",
        "builds?property=*&limit=3", "builds?property=owners&limit=3",
        "builds?property=owners&property=buildername&limit=3",
        "builds?property=no_such_property&limit=2", f"builds/{bid}?property=*",
        f"builds/{bid}?property=buildername", f"buildrequests/{b['buildrequestid']}"
        "?property=*", f"buildrequests/{b['buildrequestid']}?property=scheduler",
        "buildrequests?property=*&limit=3", "buildrequests?property=scheduler",
        "builds?property=*&field=buildid&field=properties&limit=2",
        "masters?property=*",
        )
    # builders: every filter in Python upstream
    add("filters",
        "builders?name=linux-py311", "builders?name__contains=py31",
        "builders?name__contains=PY31", "builders?name__ne=linux-py311",
        "builders?name__lt=linux", "builders?name__in=linux-py311&name__in=macos-py311",
        "builders?tags__contains=linux", "builders?tags__contains=linux&tags__contains=docs",
        "builders?tags=linux", "builders?projectid=1", "builders?projectid__ne=1",
        "builders?description__contains=Tests", "builders?masterids__contains=1",
        "builders?builderid__gt=2", "builders?description_format=markdown",
        "builders?description_format__ne=markdown",
        )
    add("order", "builders?order=-name", "builders?order=projectid",
        "builders?order=-projectid", "builders?order=description_format&order=-builderid",
        "builders?order=tags")
    add("paging", "builders?limit=2&offset=1", "builders?order=-builderid&limit=2",
        "builders?offset=4")
    add("fields", "builders?field=name&field=tags", "builders?field=name&order=name")
    # workers: paused and graceful pushed to SQL upstream, the rest in Python
    add("filters",
        "workers?paused=true", "workers?paused=false", "workers?graceful=1",
        "workers?paused__ne=true", "workers?name__contains=linux",
        "workers?name__contains=LINUX", "workers?pause_reason=maintenance%20window",
        "workers?pause_reason__ne=maintenance%20window", "workers?workerid__le=3",
        f"masters/{r['worker']['masterid']}/workers?paused=false",
        )
    add("order", "workers?order=-name", "workers?order=pause_reason",
        "workers?order=-pause_reason", "workers?order=paused&order=-workerid")
    add("paging", "workers?limit=2", "workers?limit=2&offset=2", "workers?paused=false&limit=2")
    add("fields", "workers?field=name", "workers?field=workerinfo&field=name")
    # masters, schedulers, change sources
    add("filters", "masters?active=true", "masters?active=false", "masters?masterid__ne=1",
        "masters?name__contains=master1", "schedulers?enabled=false",
        "schedulers?enabled=true&name__contains=t", "schedulers?name=nightly",
        "changesources?name__contains=gizmo", "changesources?changesourceid__gt=2")
    add("order", "masters?order=-masterid", "masters?order=name", "schedulers?order=-name",
        "changesources?order=-changesourceid")
    add("paging", "masters?limit=1", "schedulers?limit=2&offset=2",
        "changesources?offset=1&limit=2")
    add("fields", "schedulers?field=name&field=master", "masters?field=name")
    # buildsets: every field mapped to SQL upstream, complete popped
    add("filters",
        "buildsets?complete=true", "buildsets?complete=false", "buildsets?results=-1",
        "buildsets?results__ge=1", "buildsets?results__ne=0",
        "buildsets?external_idstring__contains=try",
        "buildsets?external_idstring__ne=try-000001",
        "buildsets?reason__contains=forced", "buildsets?reason__contains=FORCED",
        "buildsets?submitted_at__gt=1700001000", "buildsets?complete_at__lt=1700001500",
        "buildsets?parent_buildid=1", "buildsets?bsid__in=1&bsid__in=2",
        "buildsets?complete=true&results=0",
        )
    add("order", "buildsets?order=-bsid", "buildsets?order=external_idstring",
        "buildsets?order=-external_idstring", "buildsets?order=complete_at",
        "buildsets?order=-results&order=bsid")
    add("paging", "buildsets?limit=5", "buildsets?limit=5&offset=5",
        "buildsets?order=-bsid&limit=3", "buildsets?complete=true&limit=2&offset=1")
    add("fields", "buildsets?field=bsid&field=results", "buildsets?field=sourcestamps&limit=2")
    # buildrequests
    add("filters",
        "buildrequests?complete=false", "buildrequests?complete=true",
        "buildrequests?claimed=true", "buildrequests?claimed=false",
        f"buildrequests?claimed_by_masterid={r['master']['masterid']}",
        f"buildrequests?buildsetid={r['buildset']['bsid']}", f"buildrequests?builderid={bldr}",
        "buildrequests?results=-1", "buildrequests?results__gt=0",
        "buildrequests?priority__gt=0",
        "buildrequests?waited_for=false", "buildrequests?submitted_at__ge=1700001000",
        "buildrequests?complete_at__lt=1700001000",
        f"buildrequests?buildsetid={r['buildset']['bsid']}&buildsetid="
        f"{r['buildset']['bsid'] + 1}",
        )
    add("order", "buildrequests?order=-buildrequestid", "buildrequests?order=-priority",
        "buildrequests?order=claimed_at", "buildrequests?order=-complete_at")
    add("paging", "buildrequests?limit=5", "buildrequests?limit=5&offset=5",
        "buildrequests?order=-buildrequestid&limit=4")
    add("fields", "buildrequests?field=buildrequestid&field=claimed")
    # changes: SQL upstream on /changes, reversed
    add("filters",
        "changes?branch=main", "changes?branch__ne=main", "changes?category=bugfix",
        "changes?category__ne=bugfix", "changes?author__contains=Dan",
        "changes?author__contains=dan", "changes?comments__contains=fix",
        "changes?when_timestamp__gt=1700001000", "changes?files__contains=README.rst",
        "changes?changeid__le=5", "changes?project=widgets", "changes?codebase=lib",
        "changes?revision__ne=x", "changes?parent_changeids__contains=1",
        )
    add("order", "changes?order=changeid", "changes?order=-changeid", "changes?order=author",
        "changes?order=-when_timestamp", "changes?order=category&order=changeid")
    add("paging", "changes?limit=3", "changes?order=-changeid&limit=3",
        "changes?order=changeid&limit=3&offset=3", "changes?offset=20")
    add("fields", "changes?field=changeid&field=files",
        "changes?field=changeid&field=sourcestamp&limit=2")
    # sourcestamps, steps, logs
    add("filters", "sourcestamps?codebase=lib", "sourcestamps?branch__ne=main",
        "sourcestamps?revision__contains=a", "sourcestamps?ssid__gt=20",
        f"builds/{bid}/steps?results=0", f"builds/{bid}/steps?hidden=true",
        f"builds/{bid}/steps?name__contains=e", f"builds/{bid}/steps?number__ge=3",
        f"builds/{bid}/steps?started_at__gt=1", f"builds/{bid}/steps?urls__contains=x",
        f"steps/{r['step']['stepid']}/logs?type=s", f"steps/{r['step']['stepid']}/logs?"
        "num_lines__gt=10", f"steps/{r['step']['stepid']}/logs?name__ne=stdio")
    add("order", "sourcestamps?order=-ssid", "sourcestamps?order=branch",
        "sourcestamps?order=-revision", f"builds/{bid}/steps?order=-number",
        f"builds/{bid}/steps?order=name", f"builds/{bid}/steps?order=-complete_at",
        f"steps/{r['step']['stepid']}/logs?order=-logid")
    add("paging", "sourcestamps?limit=5&offset=5", f"builds/{bid}/steps?limit=2&offset=2",
        f"builds/{bid}/steps?offset=5")
    add("fields", "sourcestamps?field=ssid&field=patch", f"builds/{bid}/steps?field=name",
        f"builds/{bid}/steps?field=urls&field=number")
    # log contents line ranges
    lid, chunked = r["step"]["logid"], r["chunked_log"]["logid"]
    out.extend(Query(f"logs/{lid}/contents?{q}", "logs", logid=lid)
               for q in ("offset=2", "limit=3", "offset=2&limit=3", "offset=10000"))
    out.append(Query(f"logs/{chunked}/contents?offset=1&limit=40", "logs", logid=chunked))
    # projects, codebases, commits, branches
    cb = r["codebase"]["codebaseid"]
    add("filters", "projects?active=true", "projects?active=false",
        "projects?name__contains=Gizmo", "projects?slug=docs",
        "projects?description__ne=x", "codebases?projectid=2", "codebases?name=lib",
        "codebases?slug__contains=a", f"codebases/{cb}/commits?author__contains=e",
        f"codebases/{cb}/commits?parent_commitid__ne=1",
        f"codebases/{cb}/commits?when_timestamp__lt=1700001000",
        f"codebases/{cb}/commits?revision__contains=a",
        f"codebases/{cb}/branches?name=main", f"codebases/{cb}/branches?commitid__gt=0")
    add("order", "projects?order=-projectid", "projects?order=description",
        "codebases?order=-name", f"codebases/{cb}/commits?order=-when_timestamp",
        f"codebases/{cb}/commits?order=parent_commitid",
        f"codebases/{cb}/branches?order=-name")
    add("paging", "projects?limit=1&offset=1", "codebases?limit=1",
        f"codebases/{cb}/commits?limit=2&offset=1", f"codebases/{cb}/branches?limit=1")
    # test results
    ts = r["test_result_set"]
    add("filters", "test_result_sets?complete=true", "test_result_sets?tests_passed__gt=6",
        f"test_result_sets?buildid={ts['buildid']}", "test_result_sets?category=pass_fail",
        f"test_result_sets/{ts['setid']}/results?line__gt=100",
        f"test_result_sets/{ts['setid']}/results?test_name__contains=test_",
        f"test_result_sets/{ts['setid']}/results?duration_ns__lt=500000000")
    add("order", "test_result_sets?order=-test_result_setid",
        f"test_result_sets/{ts['setid']}/results?order=-line",
        f"test_result_sets/{ts['setid']}/results?order=test_name")
    add("paging", "test_result_sets?limit=2", "test_result_sets?limit=2&offset=2",
        f"test_result_sets/{ts['setid']}/results?limit=3",
        f"test_result_sets/{ts['setid']}/results?order=-duration_ns&limit=3")
    # properties lists
    add("filters", f"builds/{bid}/property_list?name=buildername",
        f"builds/{bid}/property_list?source=Build",
        f"buildsets/{r['buildset_props']['bsid']}/properties_list?name__ne=reason")
    add("order", f"builds/{bid}/property_list?order=name",
        f"builds/{bid}/property_list?order=-source&order=name",
        f"changes/{r['change']['changeid']}/properties_list?order=-name")
    add("paging", f"builds/{bid}/property_list?limit=3",
        f"builds/{bid}/property_list?order=name&limit=3&offset=2")
    return out


def _bad_input(facts: Facts) -> list[Query]:
    """Malformed requests: each has an error answer (or is ignored, where
    docs/compatibility.rst says that upstream's choice stays)."""
    bid = facts.row["build"]["buildid"]
    paths = [
        # unknown parameters and fields
        "builds?foo=1", "builds?order=nosuch", "builds?order=-nosuch", "builds?field=nosuch",
        "builds?order=", "builds?field=", "builds?nosuch__eq=1", "builds?results__like=1",
        "builds?results__lt=1&results__lt=2", "builds?results=abc", "builds?results__gt=x",
        "builds?complete=maybe", "builds?started_at=yesterday",
        "builds?field=buildid&order=number", "builds?field=buildid&results=0",
        "workers?workerinfo=x", "workers?connected_to=1", "builds?properties=x",
        "builds?results", "builds?&&", "builds?limit=", "builds?limit=abc", "builds?offset=x",
        "builds?limit=-1", "builds?offset=-1", "builds?limit=1.5",
        # filters on single endpoints and on properties
        f"builds/{bid}?results=0", f"builds/{bid}?limit=1&offset=0",
        f"builds/{bid}/properties?name=x", f"builds/{bid}/properties?order=name",
        "masters?last_active__lt=1", "builders?masterids__lt=1",
        # paths
        "nosuch", "builds/", "builds/abc", f"builds/{bid}/nosuch", "builds/+1", "builds/1_0",
        "builds/-3", "builds/%201", "builds/0x1", "masters/1.0", "steps/1e3",
        "builders/+1", "builders/01", "workers/1abc", f"builds/{bid}/steps/-1",
        f"builds/{bid}/steps/9abc", "projects/1x",
        "buildsets/abc/sourcestamps", "builders/abc/forceschedulers",
        f"builders/{MISSING}/forceschedulers",
    ]
    lid = facts.row["step"]["logid"]
    return [Query(path, "bad input") for path in paths] + [
        Query(f"logs/{lid}/contents?{q}", "bad input", logid=lid)
        for q in ("offset=-1", "limit=0", "limit=-1", "offset=x")]
