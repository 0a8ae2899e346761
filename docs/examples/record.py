"""Record one build through buildbot_rest's update methods, as a program that runs builds.

The program is a master: it creates its ``masters`` row, says it is alive, serves a
builder, and records a build from its buildset to its log, printing the routing key of
every event the writes publish. Then it reads the build back through the data API and
stops. Run ``python record.py [DATABASE_URL]`` (default: ``sqlite:///record-demo.sqlite``,
created if missing; run it again to record one more build).
"""

import json
import sys

from twisted.internet import defer, task

from buildbot_rest.config import Config
from buildbot_rest.service import RestService

MASTER_NAME = "record-example"
SUCCESS = 0  # upstream's results codes: 0 success ... 6 cancelled


def show(routing_key, message):
    print("event", "/".join(routing_key))


async def main(reactor, db_url="sqlite:///record-demo.sqlite"):
    rest = RestService(Config(db_url=db_url, port=None, create=True))
    rest.startService()  # opens (here creates) the database and starts its threads
    try:
        await record(rest)
    finally:
        await rest.stopService()


async def record(rest):
    data = rest.data  # the data API: data.get(...) reads, data.updates.<method>(...) writes
    updates = data.updates

    # This program's masters row (found by name, or created inactive), then its
    # heartbeat. data.masterid tells the update methods which master acts: claims and
    # builds are this master's.
    masterid = await updates.findMasterId(MASTER_NAME)
    data.masterid = masterid

    # Events are published once each write has committed, before its call returns.
    for key_filter in (("masters", None, None), ("builders", None, None),
                       ("buildsets", None, None), ("buildrequests", None, None),
                       ("builds", None, None), ("steps", None, None),
                       ("logs", None, None)):
        await rest.mq.startConsuming(show, key_filter)

    await updates.masterActive(name=MASTER_NAME, masterid=masterid)
    builderid = await updates.findBuilderId("example-linux")
    await updates.updateBuilderList(masterid=masterid, builderNames=["example-linux"])
    workerid = await updates.findWorkerId("example-worker")

    # Something asks for a build: a buildset with one request per builder.
    bsid, brids = await updates.addBuildset(
        waited_for=False, scheduler="example", reason="a commit on main",
        sourcestamps=[{"codebase": "", "repository": "https://git.example.org/app",
                       "project": "app", "branch": "main", "revision": "1f3e9a2"}],
        properties={"ticket": (42, "Example")}, builderids=[builderid])
    brid = brids[builderid]

    # The master takes the request and runs it.
    if not await updates.claimBuildRequests(brids=[brid]):
        raise SystemExit(f"build request {brid} was claimed by another master")
    buildid, number = await updates.addBuild(builderid=builderid, buildrequestid=brid,
                                             workerid=workerid)
    await updates.generateNewBuildEvent(buildid)
    stepid, _, _ = await updates.addStep(buildid=buildid, name="compile")
    await updates.startStep(stepid=stepid)
    logid = await updates.addLog(stepid=stepid, name="stdio", type="s")
    # a stdio log: each line starts with its stream (h header, o stdout, e stderr)
    await updates.appendLog(logid=logid, content="hmake all\nocc -c main.c\n")
    await updates.appendLog(logid=logid, content="ebuild ok\n")
    await updates.finishLog(logid=logid)
    await updates.finishStep(stepid=stepid, results=SUCCESS, hidden=False)
    await updates.setBuildStateString(buildid=buildid, state_string="build successful")
    await updates.finishBuild(buildid=buildid, results=SUCCESS)

    # The request is done; its buildset completes with it. (maybeBuildsetComplete is
    # for requests completed elsewhere: here it finds the buildset complete already.)
    await updates.completeBuildRequests(brids=[brid], results=SUCCESS)
    await updates.maybeBuildsetComplete(bsid=bsid)

    # The program stops: its builders are no longer served.
    await updates.masterStopped(name=MASTER_NAME, masterid=masterid)

    # Read the build back as a client of /api/v2 would.
    build = await data.get(f"builders/{builderid}/builds/{number}")
    steps, _ = await data.get(f"builds/{buildid}/steps", {"field": ["name", "results"]})
    lines = await data.get(f"builds/{buildid}/steps/compile/logs/stdio/contents")
    print("build", json.dumps({k: build[k] for k in ("buildid", "number", "complete",
                                                     "results", "state_string")}))
    print("steps", json.dumps(steps))
    print("log", json.dumps(lines["content"]))


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:])))
