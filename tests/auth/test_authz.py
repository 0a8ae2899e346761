"""The allow rules (buildbot_rest.auth.authz), called directly on a demo database: the
``[authz]`` table, every path to a build's data, control matchers, subscriptions and
the live events' filter."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import reactor, task

from buildbot_rest import demo
from buildbot_rest.auth.authz import Authz, parse_authz
from buildbot_rest.auth.matchers import Coverage, coverage, pattern_coverage, pattern_variables
from buildbot_rest.auth.service import ANONYMOUS_CALLER, AuthService, Caller
from buildbot_rest.config import Config, ConfigError
from buildbot_rest.data.base import Kind
from buildbot_rest.data.connector import DataConnector
from buildbot_rest.data.errors import Forbidden
from buildbot_rest.data.resultspec import ResultSpec
from buildbot_rest.db import Database
from buildbot_rest.db import schema as s

#: the builder whose data the view rule hides (demo data: it has build data, test
#: result sets and a pending build request)
SECRET = "linux-py311"
VIEW = {"allow": [{"match": "view", "builder": SECRET, "role": "secret"}]}
FORCE = [{"name": "force-all", "builder_names": ["linux-py311", "macos-py311"]}]

#: endpoints whose data is no build's: view rules do not apply to them (a new endpoint
#: must be added here or be covered, see test_every_path_to_build_data_is_covered)
NOT_BUILD_DATA = {
    "BuilderEndpoint", "BuildersEndpoint", "CodebaseEndpoint", "CodebasesEndpoint",
    "CommitEndpoint", "CommitByRevisionEndpoint", "CommitsEndpoint", "CommitGraphEndpoint",
    "BranchEndpoint", "BranchesEndpoint", "WorkerEndpoint", "WorkersEndpoint",
    "BuildsetEndpoint", "BuildsetsEndpoint", "ChangeEndpoint", "ChangeSourceEndpoint",
    "ChangeSourcesEndpoint", "MasterEndpoint", "MastersEndpoint", "SourceStampEndpoint",
    "SourceStampsEndpoint", "SchedulerEndpoint", "SchedulersEndpoint",
    "ForceSchedulerEndpoint", "ForceSchedulersEndpoint", "RootEndpoint", "SpecEndpoint",
    "ProjectEndpoint", "ProjectsEndpoint", "BuildsetPropertiesEndpoint",
}
#: patterns of otherwise covered endpoints that name no build (a buildset's or a
#: change's properties, all changes, one log chunk endpoint without a log)
NOT_BUILD_PATTERNS = {"/changes", "/sourcestamps/n:ssid/changes", "/logchunks",
                      "/buildsets/n:bsid/properties_list", "/changes/n:changeid/properties_list"}


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('authz') / 'demo.sqlite'}",
                  pool_size=2)
    db.prepare_sync()
    demo.populate(db.engine, builds=30, seed=1)
    db.start()
    yield db
    db.stop()


def _service(db: Database, authz: dict[str, Any]) -> tuple[AuthService, DataConnector]:
    config = Config(authz=authz, forceschedulers=FORCE)
    return AuthService(config, db), DataConnector(db, config=config)


def _caller(*roles: str) -> Caller:
    return Caller(user={"username": "u", "email": "u@example.org"}, roles=frozenset(roles))


def _values(db: Database) -> dict[str, Any]:
    """A value for each path variable, all naming data of a build of SECRET."""
    b, st, lg, br, trs = s.builds, s.steps, s.logs, s.buildrequests, s.test_result_sets
    with db.engine.connect() as conn:
        builderid = conn.execute(sa.select(s.builders.c.id).where(
            s.builders.c.name == SECRET)).scalar_one()
        buildid, number, brid = conn.execute(
            sa.select(b.c.id, b.c.number, b.c.buildrequestid)
            .join_from(b, s.build_data, s.build_data.c.buildid == b.c.id)
            .where(b.c.builderid == builderid).limit(1)).one()
        stepid, step_number, step_name, logid, slug = conn.execute(
            sa.select(st.c.id, st.c.number, st.c.name, lg.c.id, lg.c.slug)
            .join_from(st, lg, lg.c.stepid == st.c.id)
            .where(st.c.buildid == buildid).limit(1)).one()
        trsid = conn.execute(sa.select(trs.c.id).where(
            trs.c.builderid == builderid).limit(1)).scalar_one()
        data_name = conn.execute(sa.select(s.build_data.c.name).where(
            s.build_data.c.buildid == buildid).limit(1)).scalar_one()
    del br
    return {"builderid": builderid, "buildername": SECRET, "buildid": buildid,
            "build_number": number, "buildrequestid": brid, "stepid": stepid,
            "step_number": step_number, "step_name": step_name, "logid": logid,
            "log_slug": slug, "test_result_setid": trsid, "name": data_name}


def _path(pattern: str, values: Mapping[str, Any]) -> list[str]:
    out = []
    for part in pattern.strip("/").split("/"):
        m = re.match(r"^[a-z]?:(\w+)$", part)
        out.append(str(values[m.group(1)]) if m else part)
    return out


# -- the [authz] table ------------------------------------------------------------------

@pytest.mark.parametrize(("table", "culprit"), [
    ({"rules": []}, "'rules'"),
    ({"strings": "glob"}, "authz.strings"),
    ({"allow": {"match": "any"}}, "authz.allow must be"),
    ({"allow": [{"match": "everything", "role": "a"}]}, "authz.allow[0].match"),
    ({"allow": [{"match": "any"}]}, "authz.allow[0].role"),
    ({"allow": [{"match": "any", "role": ""}]}, "authz.allow[0].role"),
    ({"allow": [{"match": "any", "role": "a", "builder": "x"}]}, "unknown key 'builder'"),
    ({"allow": [{"match": "stop", "role": "a", "actions": ["stop"]}]}, "'actions'"),
    ({"allow": [{"match": "worker", "role": "a", "actions": ["Stop"]}]}, "actions"),
    ({"allow": [{"match": "worker", "role": "a", "actions": []}]}, "actions"),
    ({"allow": [{"match": "any", "role": "a", "default_deny": "no"}]}, "default_deny"),
    ({"allow": [{"match": "view", "role": "a", "builder": 3}]}, "builder"),
    ({"allow": [{"match": "any", "role": "a", "defaultDeny": False}]}, "'defaultDeny'"),
    ({"strings": "re", "allow": [{"match": "any", "role": "(a"}]}, "regular expression"),
    ({"strings": "re", "allow": [{"match": "view", "role": "a", "builder": "["}]},
     "authz.allow[0].builder"),
])
def test_bad_tables_are_config_errors(table: dict[str, Any], culprit: str) -> None:
    with pytest.raises(ConfigError) as e:
        Config(authz=table)
    assert culprit in str(e.value)


def test_defaults() -> None:
    authz = parse_authz({"allow": [{"match": "worker", "role": "ops"}]})
    (rule,) = authz.rules
    assert rule.default_deny and rule.actions == {"stop", "kill", "pause", "unpause"}
    assert parse_authz({}).rules == ()


# -- every path to a build's data ----------------------------------------------------------

def test_every_path_to_build_data_is_covered(database: Database) -> None:
    """Each endpoint pattern is either covered by view rules or explicitly not a
    build's data; a pattern naming a build, step, log, build request or test result
    set, or listing builds under a builder, is always covered."""
    connector = DataConnector(database)
    seen = set()
    for endpoint in connector.endpoints:
        name = type(endpoint).__name__
        seen.add(name)
        if name in NOT_BUILD_DATA:
            assert coverage(endpoint) is Coverage.NONE, name
            continue
        for pattern in endpoint.patterns:
            cover = pattern_coverage(endpoint, pattern)
            if pattern in NOT_BUILD_PATTERNS:
                assert cover is Coverage.NONE, pattern
                continue
            assert cover is not Coverage.NONE, f"{name} {pattern} is not classified"
            names = pattern_variables(pattern)
            if names & {"buildid", "build_number", "stepid", "logid", "buildrequestid",
                        "test_result_setid"}:
                assert Coverage.ENTITY in cover, pattern
            if endpoint.rtype.name in ("build", "buildrequest", "test_result_set") and (
                    endpoint.kind is Kind.COLLECTION):
                assert Coverage.NARROWED in cover, pattern
    assert seen >= NOT_BUILD_DATA  # (no stale name)


@pytest_twisted.ensureDeferred
async def test_every_form_of_a_hidden_builds_data_is_refused(database: Database) -> None:
    """Walk every pattern of every covered endpoint with values naming data of a build
    of the hidden builder: 403 without the role, allowed with it."""
    service, connector = _service(database, VIEW)
    values = _values(database)
    checked = 0
    for endpoint in connector.endpoints:
        for pattern in endpoint.patterns:
            if Coverage.ENTITY not in pattern_coverage(endpoint, pattern):
                continue
            path = _path(pattern, values)
            matched, kwargs = connector.match(path)
            assert matched is endpoint
            with pytest.raises(Forbidden, match="you need to have role 'secret'"):
                await service.authorize_read(_caller("dev"), endpoint, kwargs, ResultSpec())
            with pytest.raises(Forbidden):
                await service.authorize_read(ANONYMOUS_CALLER, endpoint, kwargs,
                                             ResultSpec())
            spec = await service.authorize_read(_caller("secret"), endpoint, kwargs,
                                                ResultSpec())
            assert spec.filters == []
            checked += 1
    assert checked > 80


@pytest_twisted.ensureDeferred
async def test_collections_are_narrowed(database: Database) -> None:
    service, connector = _service(database, VIEW)
    values = _values(database)
    for path in (["builds"], ["buildrequests"], ["test_result_sets"],
                 ["workers", "1", "builds"], ["builds", str(values["buildid"] + 1),
                                             "triggered_builds"]):
        endpoint, kwargs = connector.match(path)
        spec = connector.parse_spec(endpoint, {"field": ["number" if path[-1] == "builds"
                                                         else "complete"]})
        narrowed = await service.authorize_read(_caller(), endpoint, kwargs, spec)
        # (the builders that may be seen are named: one made later stays hidden)
        with database.engine.connect() as conn:
            visible = sorted(conn.execute(sa.select(s.builders.c.id).where(
                s.builders.c.id != values["builderid"])).scalars())
        assert [(f.field, f.op, f.values) for f in narrowed.filters] == [
            ("builderid", "in", visible)], path
        assert spec.filters == []  # (the caller's spec is never changed)
        same = await service.authorize_read(_caller("secret"), endpoint, kwargs, spec)
        assert same.filters == []
        # and the engine applies the filter although the field is not selected
        ctx = connector.context(endpoint, kwargs)
        items, _ = await endpoint.get(ctx, narrowed, kwargs)
        assert all("builderid" not in i for i in items)


@pytest_twisted.ensureDeferred
async def test_missing_entities_are_left_to_their_404(database: Database) -> None:
    service, connector = _service(database, VIEW)
    for path in (["builds", "99999"], ["logs", "99999", "raw"], ["steps", "99999"],
                 ["builds", str(2**70)]):
        endpoint, kwargs = connector.match(path)
        assert await service.authorize_read(ANONYMOUS_CALLER, endpoint, kwargs,
                                            ResultSpec()) == ResultSpec()
    # but under a hidden builder, a missing build is refused as an existing one
    endpoint, kwargs = connector.match(["builders", SECRET, "builds", "99999"])
    with pytest.raises(Forbidden, match="'secret'"):
        await service.authorize_read(ANONYMOUS_CALLER, endpoint, kwargs, ResultSpec())


@pytest_twisted.ensureDeferred
async def test_view_rules_do_not_touch_other_data(database: Database) -> None:
    service, connector = _service(database, VIEW)
    for path in (["builders"], ["builders", SECRET], ["masters"], ["changes"], ["workers"]):
        endpoint, kwargs = connector.match(path)
        assert await service.authorize_read(ANONYMOUS_CALLER, endpoint, kwargs,
                                            ResultSpec()) == ResultSpec()


@pytest_twisted.ensureDeferred
async def test_any_rule_refuses_reads_and_a_view_rule_before_it_wins(
        database: Database) -> None:
    service, connector = _service(database, {"allow": [
        {"match": "view", "builder": "macos-*", "role": "mac"},
        {"match": "any", "role": "users"}]})
    endpoint, kwargs = connector.match(["masters"])
    with pytest.raises(Forbidden, match="'users'"):
        await service.authorize_read(_caller("mac"), endpoint, kwargs, ResultSpec())
    endpoint, kwargs = connector.match(["builds"])
    with pytest.raises(Forbidden, match="'users'"):
        await service.authorize_read(ANONYMOUS_CALLER, endpoint, kwargs, ResultSpec())
    # a "mac" user sees only the macos builders' builds
    spec = await service.authorize_read(_caller("mac"), endpoint, kwargs, ResultSpec())
    (flt,) = spec.filters
    with database.engine.connect() as conn:
        macs = sorted(conn.execute(sa.select(s.builders.c.id).where(
            s.builders.c.name.like("macos-%"))).scalars())
    assert (flt.field, flt.op, flt.values) == ("builderid", "in", macs)


@pytest_twisted.ensureDeferred
async def test_re_strings(database: Database) -> None:
    service, connector = _service(database, {"strings": "re", "allow": [
        {"match": "view", "builder": "linux-py31[1]$", "role": "sec.*"}]})
    endpoint, kwargs = connector.match(["builders", SECRET, "builds"])
    with pytest.raises(Forbidden):
        await service.authorize_read(_caller("dev"), endpoint, kwargs, ResultSpec())
    await service.authorize_read(_caller("secret-team"), endpoint, kwargs, ResultSpec())


# -- control ------------------------------------------------------------------------------

CONTROL = {"allow": [
    {"match": "stop", "builder": "linux-*", "role": "admins"},
    {"match": "rebuild", "role": "admins"},
    {"match": "cancel", "builder": SECRET, "role": "admins"},
    {"match": "set_priority", "role": "admins"},
    {"match": "force", "builder": "macos-*", "role": "mac"},
    {"match": "enable_scheduler", "role": "admins"},
    {"match": "worker", "actions": ["kill", "stop"], "role": "admins"},
]}


async def _control(service: AuthService, connector: DataConnector, caller: Caller,
                   path: list[str], method: str, params: dict[str, Any] | None = None
                   ) -> bool:
    endpoint, kwargs = connector.match(path)
    try:
        await service.authorize_control(caller, endpoint, kwargs, method, params or {})
    except Forbidden:
        return False
    return True


@pytest_twisted.ensureDeferred
async def test_control_matchers(database: Database) -> None:
    service, connector = _service(database, CONTROL)
    values = _values(database)
    user, admin = _caller("dev"), _caller("admins")
    with database.engine.connect() as conn:
        other_build = conn.execute(sa.select(s.builds.c.id).join_from(
            s.builds, s.builders, s.builders.c.id == s.builds.c.builderid).where(
                s.builders.c.name.like("macos-%")).limit(1)).scalar_one()
        other_br = conn.execute(sa.select(s.buildrequests.c.id).where(
            s.buildrequests.c.builderid != values["builderid"]).limit(1)).scalar_one()
    build = ["builds", str(values["buildid"])]
    assert not await _control(service, connector, user, build, "stop")
    assert await _control(service, connector, admin, build, "stop")
    assert await _control(service, connector, user, ["builds", str(other_build)], "stop")
    assert not await _control(service, connector, user, build, "rebuild")
    br = ["buildrequests", str(values["buildrequestid"])]
    assert not await _control(service, connector, user, br, "cancel")
    assert await _control(service, connector, user, ["buildrequests", str(other_br)],
                          "cancel")
    assert not await _control(service, connector, user, br, "set_priority",
                              {"priority": 3})
    assert not await _control(service, connector, user, ["schedulers", "1"], "enable",
                              {"enabled": False})
    assert not await _control(service, connector, user, ["workers", "1"], "kill")
    assert not await _control(service, connector, user, ["workers", "linux-worker-01"],
                              "stop")
    assert await _control(service, connector, user, ["workers", "1"], "pause")
    # force: by the builders forced
    fs = ["forceschedulers", "force-all"]
    assert not await _control(service, connector, user, fs, "force")
    assert not await _control(service, connector, user, fs, "force",
                              {"builderNames": ["macos-py311"]})
    assert await _control(service, connector, user, fs, "force",
                          {"builderNames": ["linux-py311"]})
    assert not await _control(service, connector, user, fs, "force",
                              {"builderNames": "linux-py311"})  # (malformed: all)
    macid = await connector.db.pool.do(lambda c: c.execute(sa.select(s.builders.c.id).where(
        s.builders.c.name == "macos-py311")).scalar_one())
    assert not await _control(service, connector, user, fs, "force", {"builderid": macid})
    assert await _control(service, connector, user, fs, "force",
                          {"builderid": values["builderid"]})
    assert await _control(service, connector, _caller("mac"), fs, "force")


@pytest_twisted.ensureDeferred
async def test_case_variants_and_unknown_actions_are_left_to_their_501(
        database: Database) -> None:
    service, connector = _service(database, {"allow": [{"match": "any_control",
                                                        "role": "admins"}]})
    build = ["builds", "1"]
    for method in ("Stop", "STOP", "stoP", "Rebuild", "explode", "get", "GET", "HEAD"):
        assert await _control(service, connector, ANONYMOUS_CALLER, build, method)
    assert not await _control(service, connector, ANONYMOUS_CALLER, build, "stop")
    # a missing entity is left to its 404
    assert await _control(service, connector, ANONYMOUS_CALLER, ["builds", "99999"], "stop")
    assert await _control(service, connector, ANONYMOUS_CALLER,
                          ["forceschedulers", "nope"], "force")


def test_may_control_something() -> None:
    service = AuthService(Config(authz={"allow": [{"match": "any_control",
                                                   "role": "admins"}]}))
    assert not service.may_control(ANONYMOUS_CALLER)
    assert not service.may_control(_caller("dev"))
    assert service.may_control(_caller("admins"))
    assert not service.may_control(Caller(user={"username": "t"}, roles=frozenset({"admins"}),
                                          scope="read"))
    # specific rules leave other actions to everyone
    service = AuthService(Config(authz=CONTROL))
    assert service.may_control(ANONYMOUS_CALLER)
    service = AuthService(Config(authz={"allow": [
        {"match": "stop", "role": "ops"}, {"match": "any", "role": "admins"}]}))
    assert service.may_control(_caller("ops"))
    assert not service.may_control(_caller("dev"))
    assert AuthService().may_control(ANONYMOUS_CALLER)


def test_may_subscribe() -> None:
    view = AuthService(Config(authz=VIEW))
    assert view.may_subscribe(ANONYMOUS_CALLER, ("builds", None, None))
    assert not AuthService(Config(authz={"allow": [{"match": "any_control", "role": "a"}]})
                           ).may_subscribe(ANONYMOUS_CALLER, ("control", "builds", None,
                                                              "stop"))
    closed = AuthService(Config(authz={"allow": [
        {"match": "view", "builder": "mac*", "role": "mac"},
        {"match": "any", "role": "users"}]}))
    assert not closed.may_subscribe(ANONYMOUS_CALLER, ("builds", None, None))
    assert closed.may_subscribe(_caller("mac"), ("builds", None, None))
    assert closed.may_subscribe(_caller("users"), ("masters", None, None))


# -- live events ---------------------------------------------------------------------------

def test_event_filter_none_when_nothing_hidden() -> None:
    service = AuthService(Config(authz=VIEW))
    assert service.event_filter(_caller("secret")) is None
    assert AuthService().event_filter(ANONYMOUS_CALLER) is None
    assert AuthService(Config(authz=CONTROL)).event_filter(ANONYMOUS_CALLER) is None


def test_event_filter_follows_the_lineage() -> None:
    authz: Authz = parse_authz(VIEW)
    accept = authz.event_filter(None, _caller("dev"))
    assert accept is not None
    # the builder's names come from its events (or the database, when known)
    assert accept(("builders", "1", "update"), {"builderid": 1, "name": SECRET})
    assert accept(("builders", "2", "update"), {"builderid": 2, "name": "macos-py311"})
    build = {"buildid": 50, "builderid": 1, "number": 3, "buildrequestid": 70}
    assert not accept(("builds", "50", "new"), build)
    assert not accept(("builders", "1", "builds", "3", "new"), build)
    assert not accept(("workers", "4", "builds", "50", "new"), build)
    assert accept(("builds", "51", "new"), {**build, "buildid": 51, "builderid": 2,
                                             "buildrequestid": 71})
    # children name their parents only: learnt from the parents' events
    assert not accept(("builds", "50", "steps", "500", "new"), {"stepid": 500, "buildid": 50})
    assert not accept(("steps", "500", "finished"), {"stepid": 500, "buildid": 50})
    assert accept(("steps", "510", "new"), {"stepid": 510, "buildid": 51})
    assert not accept(("logs", "900", "append"), {"logid": 900, "stepid": 500})
    assert not accept(("steps", "500", "logs", "stdio", "new"), {"logid": 900, "stepid": 500})
    assert accept(("logs", "910", "append"), {"logid": 910, "stepid": 510})
    assert not accept(("builds", "50", "properties", "update"), {"x": [1, "s"]})
    assert accept(("builds", "51", "properties", "update"), {"x": [1, "s"]})
    assert not accept(("buildrequests", "70", "cancel"), None)  # type: ignore[arg-type]
    assert not accept(("buildsets", "9", "builders", "1", "buildrequests", "70", "new"),
                      {"buildrequestid": 70, "builderid": 1})
    assert not accept(("test_result_sets", "5", "new"),
                      {"test_result_setid": 5, "builderid": 1, "buildid": 50, "stepid": 500})
    # unknown: hidden (no database to ask here)
    assert not accept(("builds", "77", "update"), {"buildid": 77})
    assert not accept(("builds", "78", "new"), {"buildid": 78, "builderid": 99})
    # not a build's data
    assert accept(("masters", "1", "started"), {"masterid": 1})
    assert accept(("changes", "4", "new"), {"changeid": 4})
    assert not accept(("control", "builds", "50", "stop"), {"reason": "x"})
    assert accept(("control", "builds", "51", "stop"), {"reason": "x"})
    assert accept(("control", "worker", "1", "stop"), {})


@pytest_twisted.ensureDeferred
async def test_event_filter_fetches_what_it_does_not_know(database: Database) -> None:
    service, _ = _service(database, VIEW)
    values = _values(database)
    accept = service.event_filter(_caller("dev"))
    assert accept is not None
    key = ("logs", str(values["logid"]), "append")
    assert not accept(key, {"logid": values["logid"]})  # (unknown yet: hidden)
    # after the read-ahead and the fetch, the log is known to be the secret builder's
    lineage = service.authz.lineage
    for _ in range(200):
        if lineage.builds.get(values["buildid"]) is not None and len(lineage.builders) == 6:
            break
        await task.deferLater(reactor, 0.01, lambda: None)
    assert lineage.logs.get(values["logid"]) == values["stepid"]
    assert lineage.steps.get(values["stepid"]) == values["buildid"]
    assert lineage.builders.get(values["builderid"]) == SECRET
    assert not accept(key, {"logid": values["logid"]})
    other = ("builders", "2", "builds", "1", "new")
    assert accept(other, {"buildid": 999, "builderid": 2, "number": 1})
    assert service.event_filter(_caller("secret")) is None
