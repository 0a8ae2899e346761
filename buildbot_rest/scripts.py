# -*- test-case-name: tests.test_scripts -*-
"""Command-line entry points: the ``buildbot-rest`` console script and the options and
service maker behind ``twistd buildbot-rest``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, ClassVar, cast

from twisted.application.service import MultiService
from twisted.python import usage

from buildbot_rest import __version__
from buildbot_rest.config import DEFAULT_DB_URL, DEFAULT_PORT, Config, ConfigError

# -- twistd buildbot-rest ---------------------------------------------------------------------


class Options(usage.Options):
    """Options of ``twistd buildbot-rest``; those given override the ``--config`` file."""

    synopsis = "[options]"
    longdesc = ("Serve Buildbot's REST API v2 over a Buildbot 4.3.0 database. Options given "
                "here override those of the --config file.")

    optFlags: ClassVar[list[list[str | None]]] = [
        ["demo", None, "fill an empty database with demo builders, builds, logs and changes"],
    ]
    optParameters: ClassVar[list[list[str | None]]] = [
        ["db", None, None, f"database URL [default: {DEFAULT_DB_URL}]"],
        ["port", None, None, f"Twisted endpoint to listen on [default: {DEFAULT_PORT}]"],
        ["base-url", None, None,
         "the server's public URL, used in links [default: derived from --port]"],
        ["config", None, None, "a TOML configuration file"],
        ["access-log", None, None,
         'one line per request: "-" (the server log), "off", or a file [default: -]'],
    ]

    def opt_pool_size(self, value: str) -> None:
        """database connections (and threads) [default: 4]"""
        if not value.isdigit() or int(value) < 1:
            raise usage.UsageError(f"--pool-size must be a positive integer, not {value!r}")
        self["pool-size"] = int(value)

    def opt_workers(self, value: str) -> None:
        """processes answering on the port (a tcp: or tcp6: one) [default: 1]"""
        if not value.isdigit() or int(value) < 1:
            raise usage.UsageError(f"--workers must be a positive integer, not {value!r}")
        self["workers"] = int(value)

    def __init__(self) -> None:
        super().__init__()
        self["pool-size"] = None
        self["workers"] = None

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"buildbot_rest {__version__}")
        raise SystemExit(0)

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        # twistd prints its whole help before a usage error; one line says more.
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            raise SystemExit(f"buildbot-rest: {e} (see --help)") from None

    def parseArgs(self, *args: str) -> None:
        if args:
            raise usage.UsageError(f"unexpected argument {args[0]!r}")

    def postOptions(self) -> None:
        self["config_object"] = self.config()

    def config(self) -> Config:
        """The configuration: the file, if any, with the command line over it."""
        overrides: dict[str, Any] = {
            "db_url": self["db"],
            "port": self["port"],
            "base_url": self["base-url"],
            "pool_size": self["pool-size"],
            "demo": True if self["demo"] else None,
            "access_log": self["access-log"],
            "workers": self["workers"],
        }
        try:
            if self["config"]:
                return Config.from_toml(self["config"], **overrides)
            return Config().merged(**overrides)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


def makeService(options: Options) -> Any:
    """The RestService for ``twistd buildbot-rest``, its database checked (and created or
    filled with demo data) before twistd goes on, so that problems end it in one line."""
    from buildbot_rest.service import RestService

    service = RestService(options["config_object"])
    try:
        service.prepare()
    except Exception as e:  # noqa: BLE001 - every start-up problem is reported the same way
        raise SystemExit(f"buildbot-rest: {_one_line(e)}") from None
    parent = _ExitOnStartFailure()
    service.setServiceParent(parent)
    return parent


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class _ExitOnStartFailure(MultiService):
    """Holds the RestService under twistd: a failure to start (to listen) ends the
    process with one line instead of a traceback."""

    def startService(self) -> None:
        try:
            super().startService()
        except Exception as e:  # noqa: BLE001
            raise SystemExit(f"buildbot-rest: {_one_line(e)}") from None


# -- the buildbot-rest console script ---------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="buildbot-rest",
        description="Manage the database of buildbot_rest, or run the server.")
    parser.add_argument("--version", action="version", version=f"buildbot_rest {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    create = sub.add_parser("create-db", help="create the schema in an empty database")
    create.add_argument("--db", default=DEFAULT_DB_URL, help="database URL")

    check = sub.add_parser("check-db", help="print the schema revision and whether it is "
                           "usable (exit 0 if it is, 1 if not)")
    check.add_argument("--db", default=DEFAULT_DB_URL, help="database URL")

    demo = sub.add_parser("demo-db", help="fill an empty database with demo data")
    demo.add_argument("--db", default=DEFAULT_DB_URL, help="database URL")
    demo.add_argument("--builds", type=int, default=200, help="builds to make [200]")
    demo.add_argument("--seed", type=int, default=1, help="random seed [1]")

    indexes = sub.add_parser(
        "indexes", help="list, add or drop the optional extra indexes (never created "
        "otherwise)",
        description="Optional indexes that speed up some /builds queries. Neither the server "
        "nor create-db creates them; drop them before `buildbot upgrade-master` migrates the "
        "schema and add them again afterwards.")
    actions = indexes.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, help_text in (
            ("list", "print each extra index and whether the database has it"),
            ("add", "create the extra indexes (all, or those named)"),
            ("drop", "drop the extra indexes (all, or those named)")):
        parser_ = actions.add_parser(action, help=help_text)
        parser_.add_argument("--db", default=DEFAULT_DB_URL, help="database URL")
        if action != "list":
            parser_.add_argument("names", nargs="*", metavar="NAME",
                                 help="an index name (see `indexes list`); default: all")

    sub.add_parser("serve", add_help=False,
                   help="run the server in the foreground (options as twistd buildbot-rest)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``buildbot-rest`` command. Returns the exit status; errors are one line."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if args[:1] == ["serve"]:
        return _serve(args[1:])
    ns = parser.parse_args(args)
    from buildbot_rest.db import DatabaseError, DatabaseUnavailable
    try:
        command = {"create-db": _create_db, "check-db": _check_db, "demo-db": _demo_db,
                   "indexes": _indexes}
        return command[ns.command](ns)
    except (DatabaseError, DatabaseUnavailable, ValueError) as e:
        name = " ".join(filter(None, (ns.command, getattr(ns, "action", None))))
        print(f"buildbot-rest {name}: {_one_line(e)}", file=sys.stderr)
        return 1


def _open(url: str, *, must_exist: bool) -> Any:
    from sqlalchemy.engine import make_url

    from buildbot_rest.db import Database, DatabaseError
    if must_exist:
        try:
            parsed = make_url(url)
        except Exception:  # noqa: BLE001 - Database() below reports it
            parsed = None
        if (parsed is not None and parsed.get_backend_name() == "sqlite"
                and parsed.database not in (None, "", ":memory:")
                and not os.path.exists(parsed.database)):
            raise DatabaseError(f"{url}: no such database file")
    return Database(url, pool_size=1, retry_seconds=5)


def _create_db(ns: argparse.Namespace) -> int:
    from buildbot_rest.db import DatabaseError
    db = _open(ns.db, must_exist=False)
    try:
        status = db.status_sync()
        if status.state != "empty":
            raise DatabaseError(f"{db.safe_url}: the database is not empty ({status.message}); "
                                "create-db only creates a new database")
        status = db.prepare_sync(create=True)
    finally:
        db.stop()
    print(f"{db.safe_url}: created, schema revision {status.revision}")
    return 0


def _check_db(ns: argparse.Namespace) -> int:
    db = _open(ns.db, must_exist=True)
    try:
        status = db.status_sync()
    finally:
        db.stop()
    print(f"revision: {status.revision or 'none'}")
    print(f"usable: {'yes' if status.usable else 'no'} ({status.message})")
    return 0 if status.usable else 1


def _demo_db(ns: argparse.Namespace) -> int:
    from buildbot_rest import demo
    db = _open(ns.db, must_exist=False)
    try:
        db.prepare_sync(create=True)
        counts = demo.populate(db.engine, builds=ns.builds, seed=ns.seed)
    finally:
        db.stop()
    print(f"{db.safe_url}: added {counts['builds']} builds, {counts['changes']} changes "
          f"and {counts['logs']} logs")
    return 0


def _indexes(ns: argparse.Namespace) -> int:
    from buildbot_rest.db import extra_indexes
    # Unknown names fail before the database is even opened.
    chosen = extra_indexes.select(getattr(ns, "names", None) or None)
    db = _open(ns.db, must_exist=True)
    try:
        if ns.action == "list":
            found = extra_indexes.status(db.engine)
            width = max(len(extra.name) for extra, _ in found)
            label_width = max(len(extra.label) for extra, _ in found)
            for extra, present in found:
                print(f"{extra.name:<{width}}  {extra.label:<{label_width}}  "
                      f"{'present' if present else 'absent':<7}  {extra.description}")
            return 0
        wanted = [extra.name for extra in chosen]
        if ns.action == "add":
            done = set(extra_indexes.add(db.engine, wanted))
            verbs = ("created", "already present")
        else:
            done = set(extra_indexes.drop(db.engine, wanted))
            verbs = ("dropped", "absent")
    finally:
        db.stop()
    for name in wanted:
        print(f"{name}: {verbs[0] if name in done else verbs[1]}")
    return 0


def _serve(args: Sequence[str]) -> int:
    """Run the server in this process, as ``twistd -n buildbot-rest`` would."""
    from twisted.internet import reactor as default_reactor
    from twisted.logger import ILogObserver, globalLogBeginner, textFileLogObserver

    reactor: Any = default_reactor

    options = Options()
    try:
        options.parseOptions(args)
        service = makeService(options)
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            return 1
        return e.code or 0
    globalLogBeginner.beginLoggingTo([cast(ILogObserver, textFileLogObserver(sys.stdout))])
    try:
        service.startService()
    except SystemExit as e:
        print(e.code, file=sys.stderr)
        return 1
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
