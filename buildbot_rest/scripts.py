# -*- test-case-name: tests.test_scripts -*-
"""Command-line entry points: the ``buildbot-rest`` console script and the options and
service maker behind ``twistd buildbot-rest``."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import socket
import sys
from collections.abc import Sequence
from typing import Any, ClassVar, cast

from twisted.application.service import MultiService
from twisted.python import usage

from buildbot_rest import __version__
from buildbot_rest.config import DEFAULT_DB_URL, DEFAULT_PORT, Config, ConfigError

# -- twistd buildbot-rest ---------------------------------------------------------------------


class Options(usage.Options):
    """Options of ``twistd buildbot-rest`` (and ``buildbot-rest serve``); those given
    override the ``--config`` file.

    ``prog`` names the command in messages: ``buildbot-rest serve`` for the console
    script's, ``buildbot-rest`` under twistd."""

    longdesc = ("Serve Buildbot's REST API v2 over a Buildbot 4.3.0 database. Options given "
                "here override those of the --config file.")

    optFlags: ClassVar[list[list[str | None]]] = [
        ["demo", None, "fill an empty database with demo builders, builds, logs and changes "
         "(implies --create)"],
        ["create", None, "create the database if it is missing or empty (else the server "
         "refuses it)"],
    ]
    optParameters: ClassVar[list[list[str | None]]] = [
        ["db", None, None, f"database URL [default: {DEFAULT_DB_URL}]"],
        ["port", None, None, "Twisted endpoint to listen on, e.g. tcp:8011 (every interface) "
         f"[default: {DEFAULT_PORT}]"],
        ["base-url", None, None,
         "the server's public URL, used in links [default: derived from --port]"],
        ["config", None, None, "a TOML configuration file [default: none]"],
        ["access-log", None, None,
         'one line per request: "-" (the server log), "off", or a file [default: -]'],
    ]

    def __init__(self, prog: str = "buildbot-rest") -> None:
        super().__init__()
        self.prog = prog
        self["pool-size"] = None
        self["workers"] = None

    def getSynopsis(self) -> str:
        if self.parent is None:  # buildbot-rest serve; under twistd, twistd's words
            return f"Usage: {self.prog} [options]"
        return super().getSynopsis()

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

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"buildbot_rest {__version__}")
        raise SystemExit(0)

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        # twistd prints its whole help before a usage error; one line says more.
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            helper = "twistd buildbot-rest" if self.parent is not None else self.prog
            raise SystemExit(f"{self.prog}: {e} (see {helper} --help)") from None

    def parseArgs(self, *args: str) -> None:
        if args:
            raise usage.UsageError(f"unexpected argument {args[0]!r}")

    def postOptions(self) -> None:
        port = self["port"]
        if port is not None and port.isdigit():
            raise usage.UsageError(f"--port {port} is not a Twisted endpoint: did you mean "
                                   f"--port tcp:{port} (every interface) or --port "
                                   f"tcp:{port}:interface=127.0.0.1?")
        self["config_object"] = self.config()

    def config(self) -> Config:
        """The configuration: the file, if any, with the command line over it."""
        overrides: dict[str, Any] = {
            "db_url": self["db"],
            "port": self["port"],
            "base_url": self["base-url"],
            "pool_size": self["pool-size"],
            "demo": True if self["demo"] else None,
            "create": True if self["create"] else None,
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
    """The RestService for ``twistd buildbot-rest``, ready to start.

    Whatever can be checked before twistd daemonizes is checked here, where a problem ends
    the command with one line: the database driver, that the port can be bound, then the
    database itself (created, or filled with demo data, only once the port is known to be
    free)."""
    from buildbot_rest.service import RestService

    config: Config = options["config_object"]
    prog = options.prog
    try:
        check_driver(config.db_url)
        if config.port is not None:
            check_port(config.port)
        service = RestService(config)
        service.prepare()
    except Exception as e:  # noqa: BLE001 - every start-up problem is reported the same way
        raise SystemExit(f"{prog}: {_one_line(e)}") from None
    parent = _ExitOnStartFailure(prog, options.parent)
    service.setServiceParent(parent)
    return parent


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class _ExitOnStartFailure(MultiService):
    """Holds the RestService: a failure to start (to listen) ends the process with one
    line instead of a traceback.

    Under twistd (``twistd_config`` is its options), the failure is also what twistd's
    waiting parent process reads from its status pipe, and the pid file goes: twistd does
    both for an ``Exception``, but not for the ``SystemExit`` that keeps the traceback
    out, and a daemon's parent would wait forever."""

    def __init__(self, prog: str, twistd_config: Any = None) -> None:
        super().__init__()
        self._prog = prog
        self._twistd = twistd_config

    def startService(self) -> None:
        try:
            super().startService()
        except Exception as e:  # noqa: BLE001
            message = f"{self._prog}: {_one_line(e)}"
            self._report(message)
            raise SystemExit(message) from None

    def _report(self, message: str) -> None:
        if self._twistd is None:
            return
        if self._twistd.get("nodaemon") and sys.__stderr__ is not None:
            # twistd -n logs what goes to sys.stderr: the terminal gets the line too
            print(message, file=sys.__stderr__, flush=True)
        pipe = self._twistd.get("statusPipe")
        if pipe is not None:
            # twistd's own format: "1 <message>", at most 100 bytes
            os.write(pipe, b"1 " + message.encode("ascii", "backslashreplace")[:98])
            os.close(pipe)
            self._twistd["statusPipe"] = None
        pidfile = self._twistd.get("pidfile")
        if pidfile:
            with contextlib.suppress(OSError):
                os.unlink(pidfile)


def check_driver(url: str) -> None:
    """Raise DatabaseError, saying what to install, if ``url`` needs a MySQL driver that
    is not installed."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from buildbot_rest.db import DatabaseError
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() != "mysql":
            return
        driver = parsed.get_driver_name()
    except (ArgumentError, NoSuchModuleError, ValueError):
        return  # opening the database reports it
    module = {"mysqldb": "MySQLdb", "pymysql": "pymysql"}.get(driver)
    if module is None or importlib.util.find_spec(module) is not None:
        return
    wanted = parsed.set(drivername="mysql+pymysql").render_as_string(hide_password=True)
    raise DatabaseError(f"MySQL needs the PyMySQL driver: pip install 'buildbot_rest[mysql]'"
                        f" and give the database as {wanted}")


def check_port(description: str) -> None:
    """Raise ConfigError if the server could not listen on the endpoint ``description``
    (a port in use, a privileged one, an address this host does not have...).

    It binds a socket as Twisted would, and closes it at once: done before anything
    starts, so that a daemon's start fails in the command that started it, and before
    ``--demo`` fills a database. Port 0 and the endpoints it cannot tell about pass."""
    kind, args, kwargs = _parse_endpoint(description)
    if kind == "unix":
        path = kwargs.get("address") or (args[0] if args else "")
        directory = os.path.dirname(os.path.abspath(path)) if path else ""
        if directory and not os.path.isdir(directory):
            raise ConfigError(f"cannot listen on {description}: directory {directory} does "
                              "not exist")
        return
    if kind not in ("tcp", "tcp6", "ssl"):
        return
    number = kwargs.get("port") or (args[0] if args else "")
    if not number.isdigit() or int(number) == 0 or int(number) > 65535:
        return  # any port, or a mistake that parsing the endpoint reports
    interface = kwargs.get("interface", "::" if kind == "tcp6" else "")
    family = socket.AF_INET6 if kind == "tcp6" or ":" in interface else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Twisted does
            probe.bind((interface, int(number)))
    except OSError as e:
        raise ConfigError(f"cannot listen on {description}: {e.strerror or e}") from None


def _parse_endpoint(description: str) -> tuple[str, list[str], dict[str, str]]:
    """The kind, positional and keyword arguments of a Twisted endpoint description
    (where ``\\:`` is a colon within an argument)."""
    parts = [p.replace("\\:", ":") for p in re.split(r"(?<!\\):", description)]
    args: list[str] = []
    kwargs: dict[str, str] = {}
    for part in parts[1:]:
        name, equals, value = part.partition("=")
        if equals:
            kwargs[name] = value
        else:
            args.append(part)
    return parts[0], args, kwargs


# -- the buildbot-rest console script ---------------------------------------------------------


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The console script's parser, and the parser of each command (``indexes add``...)."""
    parser = argparse.ArgumentParser(
        prog="buildbot-rest",
        description="Manage the database of buildbot_rest, or run the server.")
    parser.add_argument("--version", action="version", version=f"buildbot_rest {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    db_help = f"database URL [default: {DEFAULT_DB_URL}]"
    commands: dict[str, argparse.ArgumentParser] = {}

    create = commands["create-db"] = sub.add_parser(
        "create-db", help="create the database: the schema in an empty database (an SQLite "
        "file is created)")
    create.add_argument("--db", default=DEFAULT_DB_URL, help=db_help)

    check = commands["check-db"] = sub.add_parser(
        "check-db", help="print the schema revision and whether it is usable (exit 0 if it "
        "is, 1 if not)")
    check.add_argument("--db", default=DEFAULT_DB_URL, help=db_help)

    demo = commands["demo-db"] = sub.add_parser(
        "demo-db", help="create a database and fill it with demo data")
    demo.add_argument("--db", default=DEFAULT_DB_URL, help=db_help)
    demo.add_argument("--builds", type=int, default=200, help="builds to make [default: 200]")
    demo.add_argument("--seed", type=int, default=1, help="random seed [default: 1]")

    indexes = commands["indexes"] = sub.add_parser(
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
        parser_ = commands[f"indexes {action}"] = actions.add_parser(action, help=help_text)
        parser_.add_argument("--db", default=DEFAULT_DB_URL, help=db_help)
        if action != "list":
            parser_.add_argument("names", nargs="*", metavar="NAME",
                                 help="an index name (see `indexes list`); default: all")

    sub.add_parser("serve", add_help=False,
                   help="run the server in the foreground (the options of twistd "
                   "buildbot-rest; see serve --help)")
    return parser, commands


def main(argv: Sequence[str] | None = None) -> int:
    """The ``buildbot-rest`` command. Returns the exit status; errors are one line, but
    for usage errors (exit status 2), which come after the command's usage."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser, commands = _parser()
    if args[:1] == ["serve"]:
        return _serve(args[1:])
    ns, unknown = parser.parse_known_args(args)
    name = " ".join(filter(None, (ns.command, getattr(ns, "action", None))))
    if unknown:
        # argparse leaves a command's unknown options to the top parser, whose usage line
        # would not show that command's options.
        commands[name].error(f"unrecognized arguments: {' '.join(unknown)}")
    from buildbot_rest.db import DatabaseError, DatabaseUnavailable
    try:
        command = {"create-db": _create_db, "check-db": _check_db, "demo-db": _demo_db,
                   "indexes": _indexes}
        return command[ns.command](ns)
    except (DatabaseError, DatabaseUnavailable, ValueError) as e:
        print(f"buildbot-rest {name}: {_one_line(e)}", file=sys.stderr)
        return 1


def _open(url: str) -> Any:
    """The database at ``url``, not yet read: a missing SQLite file is created only by
    ``prepare_sync(create=True)``; reading it otherwise says how to create it."""
    from buildbot_rest.db import Database
    check_driver(url)
    return Database(url, pool_size=1, retry_seconds=5)


def _create_db(ns: argparse.Namespace) -> int:
    from buildbot_rest.db import DatabaseError
    db = _open(ns.db)
    try:
        if db.sqlite_file is None or os.path.exists(db.sqlite_file):
            status = db.status_sync()
            if status.state != "empty":
                raise DatabaseError(f"{db.safe_url}: the database is not empty "
                                    f"({status.message}); create-db only creates a new "
                                    "database")
        status = db.prepare_sync(create=True)
    finally:
        db.stop()
    print(f"{db.safe_url}: created, schema revision {status.revision}")
    return 0


def _check_db(ns: argparse.Namespace) -> int:
    db = _open(ns.db)
    try:
        status = db.status_sync()
    finally:
        db.stop()
    print(f"revision: {status.revision or 'none'}")
    print(f"usable: {'yes' if status.usable else 'no'} ({status.message})")
    return 0 if status.usable else 1


def _demo_db(ns: argparse.Namespace) -> int:
    from buildbot_rest import demo
    db = _open(ns.db)
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
    db = _open(ns.db)
    try:
        db.status_sync()  # a missing file or an unreachable server: one line saying so
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
    """Run the server in this process, as ``twistd -n buildbot-rest`` would (without a pid
    file). Exit status 2 for a usage error, 1 for a server that cannot start."""
    from twisted.internet import reactor as default_reactor
    from twisted.logger import ILogObserver, globalLogBeginner, textFileLogObserver

    reactor: Any = default_reactor

    options = Options("buildbot-rest serve")
    try:
        options.parseOptions(args)
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            return 2
        return e.code or 0  # --help, --version
    try:
        service = makeService(options)
    except SystemExit as e:
        print(e.code, file=sys.stderr)
        return 1
    stderr = sys.stderr  # the log takes sys.stderr over
    globalLogBeginner.beginLoggingTo([cast(ILogObserver, textFileLogObserver(sys.stdout))])
    try:
        service.startService()
    except SystemExit as e:
        print(e.code, file=stderr)
        return 1
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
