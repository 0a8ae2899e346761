# -*- test-case-name: tests.test_bench -*-
"""The fixed list of benchmark scenarios, each with its floor.

A scenario is one kind of request sent again and again: an API read (``api``), a raw log
download (``raw``, reported in MB/s), or a paged read sent by several clients at once
(``load``). ``count`` lines time one query on its own, directly with SQLAlchemy: the
``COUNT`` behind ``meta.total`` (``COUNT ...``), or the page query (``PAGE ...``). Paths
may name ids found in the database at run time (see :class:`Ids`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from bench import floor as f
from buildbot_rest.db import schema as s

b = s.builds


@dataclass(frozen=True)
class Ids:
    """Ids the scenarios need, looked up in the benchmark database."""

    builderid: int  #: the builder with the most builds
    big_logid: int | None  #: the ``big-stdio`` log of ``bench.generate --big-log-mb``

    @classmethod
    def find(cls, conn: sa.Connection) -> Ids:
        n = sa.func.count().label("n")
        builderid = conn.execute(sa.select(b.c.builderid, n).group_by(b.c.builderid)
                                 .order_by(n.desc(), b.c.builderid).limit(1)).scalar() or 1
        lg, st = s.logs, s.steps
        big = conn.execute(sa.select(lg.c.id).join_from(lg, st, st.c.id == lg.c.stepid)
                           .where(lg.c.slug == "big-stdio").order_by(st.c.buildid)
                           .limit(1)).scalar()
        return cls(builderid=builderid, big_logid=big)


@dataclass(frozen=True)
class Scenario:
    """One line of the report."""

    name: str
    kind: str  #: "api", "raw", "load" or "count"
    #: the request, after ``/api/v2`` (a format string over :class:`Ids` fields)
    path: str = ""
    floor: Callable[[Ids], Any] | None = None
    #: the most iterations worth running (for requests that read the whole database)
    max_iterations: int | None = None
    clients: int = 1
    note: str = ""
    #: the opt-in extra indexes (``buildbot-rest indexes``) that serve this request; with
    #: ``bench.run --extra-indexes`` it is measured again with them
    extra_indexes: tuple[str, ...] = ()

    def url_path(self, ids: Ids) -> str:
        return "/api/v2" + self.path.format(**vars(ids))


PAGE = "limit=50&order=-buildid"


def _scenarios() -> list[Scenario]:
    return [
        # -- the table ------------------------------------------------------------
        Scenario("builds paged", "api", f"/builds?{PAGE}", lambda i: f.builds()),
        Scenario("builds paged property=*", "api", f"/builds?{PAGE}&property=*",
                 lambda i: f.builds(properties=True)),
        Scenario("builds complete=false", "api", "/builds?complete=false",
                 lambda i: f.builds([b.c.complete_at.is_(None)], limit=None,
                                    descending=False),
                 note="not indexed: scans builds",
                 extra_indexes=("bbrest_builds_complete_at",)),
        Scenario("builds unpaged (all)", "api", "/builds",
                 lambda i: f.builds_all_streamed(), max_iterations=3,
                 note="floor encodes in batches of 2000 rows"),
        Scenario("buildrequests complete=false", "api", "/buildrequests?complete=false",
                 lambda i: f.buildrequests([s.buildrequests.c.complete == 0], limit=None)),
        Scenario("buildrequests paged", "api",
                 "/buildrequests?limit=50&order=-buildrequestid",
                 lambda i: f.buildrequests()),
        Scenario("buildsets paged", "api", "/buildsets?limit=50&order=-bsid",
                 lambda i: f.buildsets()),
        Scenario("changes paged", "api", "/changes?limit=50&order=-changeid",
                 lambda i: f.changes()),
        Scenario("sourcestamps paged", "api", "/sourcestamps?limit=50&order=-ssid",
                 lambda i: f.sourcestamps()),
        Scenario("steps of build 1", "api", "/builds/1/steps", lambda i: f.steps(1)),
        Scenario("log 2 contents", "api", "/logs/2/contents", lambda i: f.log_contents(2)),
        # -- filters ----------------------------------------------------------------------
        Scenario("builds builderid= (indexed)", "api",
                 f"/builds?builderid={{builderid}}&{PAGE}",
                 lambda i: f.builds([b.c.builderid == i.builderid]),
                 note="reads the builder's builds, then sorts",
                 extra_indexes=("bbrest_builds_builderid_id",)),
        Scenario("builder's builds -number (indexed)", "api",
                 "/builders/{builderid}/builds?limit=50&order=-number",
                 lambda i: f.builds([b.c.builderid == i.builderid]),
                 note="floor orders by buildid: same rows"),
        Scenario("builds results=2 (not indexed)", "api", f"/builds?results=2&{PAGE}",
                 lambda i: f.builds([b.c.results == 2]),
                 extra_indexes=("bbrest_builds_results",)),
        Scenario("builds -started_at (not indexed)", "api",
                 "/builds?limit=50&order=-started_at",
                 lambda i: f.builds(order=[b.c.started_at.desc()]),
                 extra_indexes=("bbrest_builds_started_at",)),
        Scenario("builds complete=false paged (not indexed)", "api",
                 f"/builds?complete=false&{PAGE}",
                 lambda i: f.builds([b.c.complete_at.is_(None)]),
                 extra_indexes=("bbrest_builds_complete_at",)),
        Scenario("builds state_string__contains (not indexed)", "api",
                 f"/builds?state_string__contains=failed&{PAGE}",
                 lambda i: f.builds([b.c.state_string.contains("failed",
                                                               autoescape=True)])),
        # -- meta.total on its own --------------------------------------------------------
        Scenario("COUNT builds", "count", floor=lambda i: f.count(b)),
        Scenario("COUNT builds builderid=", "count",
                 floor=lambda i: f.count(b, b.c.builderid == i.builderid)),
        Scenario("COUNT builds results=2", "count",
                 floor=lambda i: f.count(b, b.c.results == 2),
                 extra_indexes=("bbrest_builds_results",)),
        Scenario("COUNT buildrequests", "count", floor=lambda i: f.count(s.buildrequests)),
        Scenario("COUNT changes", "count", floor=lambda i: f.count(s.changes)),
        Scenario("COUNT sourcestamps", "count", floor=lambda i: f.count(s.sourcestamps)),
        # -- the page query on its own (the same at every size) ---------------------------
        Scenario("PAGE builds", "count", floor=lambda i: f.page(f.builds_statement())),
        Scenario("PAGE builds builderid=", "count",
                 floor=lambda i: f.page(f.builds_statement([b.c.builderid == i.builderid]))),
        Scenario("PAGE buildrequests", "count",
                 floor=lambda i: f.page(sa.select(s.buildrequests)
                                        .order_by(s.buildrequests.c.id.desc()).limit(50))),
        # -- raw log download -------------------------------------------------------------
        Scenario("big log raw", "raw", "/logs/{big_logid}/raw",
                 lambda i: f.log_raw(i.big_logid or 0), max_iterations=3),
        # -- concurrent load --------------------------------------------------------------
        *(Scenario(f"load {n} clients", "load", f"/builds?{PAGE}", lambda i: f.builds(),
                   clients=n) for n in (1, 8, 64)),
    ]


SCENARIOS: list[Scenario] = _scenarios()


def select(patterns: list[str] | None) -> list[Scenario]:
    """Scenarios whose name contains one of ``patterns`` (every one when None)."""
    if not patterns:
        return list(SCENARIOS)
    wanted = [p.lower() for p in patterns]
    return [sc for sc in SCENARIOS if any(p in sc.name.lower() for p in wanted)]
