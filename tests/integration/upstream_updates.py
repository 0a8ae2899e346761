# mypy: disable-error-code="import-not-found"
"""Run a sequence of update-method calls with upstream Buildbot 4.3.0's own data API
(``master.data.updates``) over a database, and write what happened as JSON.

A script for upstream's virtualenv (its python), not a module of our tests: the write
differential (test_write_differential.py) runs the same sequence on our data connector
over a copy of the same database and compares.

    python upstream_updates.py DB_URL CALLS.json OUT.json NOW MASTERID

The master is a minimal one: upstream's real DB connector (``buildbot.db.connector``)
and data connector over ``DB_URL``, a message queue that records what is published, a
clock fixed at NOW (epoch seconds) and the master id MASTERID. Each call of CALLS.json
is ``{"method": name, "args": {...}, "as": label}``; argument values may refer to the
results of earlier calls (see :func:`resolve`). OUT.json is a list, one item per call:
``{"result", "error", "events": [[key, message]...], "dump": <whole database>}``.
"""

from __future__ import annotations

import base64
import calendar
import dataclasses
import datetime
import json
import os
import sys
import time
import traceback
from typing import Any

from twisted.internet import defer, reactor, task

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dbdump

#: seconds one call may take
CALL_TIMEOUT = 20


def resolve(value: Any, labels: dict[str, Any]) -> Any:
    """Argument values: ``{"$ref": label, "path": [i, ...]}`` is an earlier call's result
    (indexed by ``path``; ``"*"`` is a dict's first value), ``{"$bytes": text}`` the
    UTF-8 bytes of ``text``, ``{"$b64": text}`` decoded base64; lists and dicts are
    resolved inside. Dict keys given as ``"$int:<n>"`` become the integer n."""
    if isinstance(value, dict):
        if "$ref" in value:
            found = labels[value["$ref"]]
            for step in value.get("path", []):
                if step == "*":
                    found = next(iter(found.values()))
                elif isinstance(found, dict):
                    found = found.get(step, found.get(str(step)))
                else:
                    found = found[step]
            return found
        if "$bytes" in value:
            return value["$bytes"].encode()
        if "$b64" in value:
            return base64.b64decode(value["$b64"])
        out = {}
        for k, v in value.items():
            key: Any = k
            if k.startswith("$int:"):
                key = int(k[5:])
            elif k.startswith("$ref:"):
                key = labels[k[5:]]
            out[key] = resolve(v, labels)
        return out
    if isinstance(value, list):
        return [resolve(v, labels) for v in value]
    return value


def jsonable(value: Any) -> Any:
    """A result or message as JSON values (times as epoch seconds, bytes as null, as
    upstream's websocket sends them; tuples as lists)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime.datetime):
        # upstream's datetime2epoch: UTC seconds (an aware time, or a naive one as UTC)
        return calendar.timegm(value.utctimetuple())
    if isinstance(value, bytes):
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return value


class FixedClock:
    """The real reactor, except that ``seconds()`` is fixed."""

    def __init__(self, real: Any, now: float) -> None:
        self._real = real
        self.now = now

    def seconds(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class RecordingMQ:
    """A message queue that keeps what is published."""

    def __init__(self) -> None:
        self.events: list[list[Any]] = []

    def produce(self, routing_key: tuple[str, ...], data: Any) -> None:
        self.events.append(["/".join(str(k) for k in routing_key), jsonable(data)])

    def startConsuming(self, callback: Any, filter: Any,
                       persistent_name: Any = None) -> Any:
        class Ref:
            def stopConsuming(self) -> None:
                pass
        return defer.succeed(Ref())


async def make_master(db_url: str, now: float, masterid: int) -> Any:
    from buildbot.config.master import DBConfig, MasterConfig
    from buildbot.data.connector import DataConnector
    from buildbot.db.connector import DBConnector
    from buildbot.test.fake.fakemaster import FakeCaches
    from buildbot.util import service

    master = service.MasterService()
    master.reactor = FixedClock(reactor, now)
    master.config = MasterConfig()
    master.caches = FakeCaches()
    master.masterid = masterid
    master.name = "upstream-updates:/differential"
    master.basedir = os.getcwd()
    master.mq = RecordingMQ()
    # addBuildset asks the botmaster's builders whether to collapse requests: none here
    master.botmaster = type("BotMaster", (), {"builders": {}})()
    db = DBConnector(master.basedir)
    await db.set_master(master)
    db.configured_db_config = DBConfig(db_url)
    await db.setup(check_version=True, verbose=False)
    master.db = db
    # the one part of the DB connector's service that appendLog needs started
    db.logs._compression_pool.start()
    data = DataConnector()
    await data.setServiceParent(master)
    master.data = data
    return master


def properties_object(value: dict[str, Any]) -> Any:
    from buildbot.process.properties import Properties

    props = Properties()
    for name, (v, source) in value.items():
        props.setProperty(name, v, source)
    return props


async def run(db_url: str, calls_path: str, out_path: str, now: float,
              masterid: int) -> None:
    with open(calls_path) as f:
        calls = json.load(f)
    master = await make_master(db_url, now, masterid)
    engine = master.db._engine
    schema = dbdump.Schema(engine)
    labels: dict[str, Any] = {}
    out = []
    for call in calls:
        item: dict[str, Any] = {"result": None, "error": None}
        try:
            args = resolve(call.get("args", {}), labels)
            if call["method"] == "setBuildProperties":
                args["properties"] = properties_object(args["properties"])
            method = getattr(master.data.updates, call["method"])
            print(f"{time.monotonic():.2f} calling {call['method']}", file=sys.stderr,
                  flush=True)
            d = defer.ensureDeferred(defer.maybeDeferred(method, **args))
            # a call that never ends (housekeeping waiting for a botmaster...) fails
            result = await d.addTimeout(CALL_TIMEOUT, reactor)
            labels[call.get("as", "")] = result
            item["result"] = jsonable(result)
        except Exception as e:  # noqa: BLE001 - reported, the sequence goes on
            item["error"] = f"{type(e).__name__}: {e}"
            item["traceback"] = traceback.format_exc()[-1500:]
        # events upstream starts without waiting for them (buildrequest "new")
        await task.deferLater(reactor, 0.05, lambda: None)
        item["events"], master.mq.events = master.mq.events, []
        item["dump"] = dbdump.dump(engine, schema)
        out.append(item)
    with open(out_path, "w") as f:
        json.dump(out, f)
    # no stopping of the database threads: main() ends the process


def main() -> None:
    db_url, calls_path, out_path, now, masterid = sys.argv[1:6]

    def done(result: Any) -> None:
        if isinstance(result, Exception) or hasattr(result, "printTraceback"):
            result.printTraceback(file=sys.stderr)
            main.failed = True  # type: ignore[attr-defined]
        reactor.stop()

    d = defer.ensureDeferred(run(db_url, calls_path, out_path, float(now), int(masterid)))
    d.addBoth(done)
    main.failed = False  # type: ignore[attr-defined]
    reactor.run()
    # (os._exit: a database thread still busy with a call that timed out must not keep
    # the process alive)
    sys.stderr.flush()
    os._exit(1 if main.failed else 0)  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
