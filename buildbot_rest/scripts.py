# -*- test-case-name: tests.test_scripts -*-
"""Command-line entry points: the ``buildbot-rest`` console script and the options and
service maker behind ``twistd buildbot-rest``."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import socket
import sys
from collections.abc import Sequence
from typing import Any, ClassVar, cast

from twisted.application.service import MultiService
from twisted.python import usage

from buildbot_rest import __version__
from buildbot_rest.auth.cli import add_parser as add_hash_password
from buildbot_rest.auth.cli import hash_password_command
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

    _token_parsers(sub, commands, db_help)

    commands["hash-password"] = add_hash_password(sub)
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
    if name == "token drop-tables" and not ns.yes:
        commands[name].error("this drops every token and every logout record: add --yes")
    from buildbot_rest.db import DatabaseError, DatabaseUnavailable
    try:
        command = {"create-db": _create_db, "check-db": _check_db, "demo-db": _demo_db,
                   "indexes": _indexes, "token": _token,
                   "hash-password": hash_password_command}
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


# -- buildbot-rest token ----------------------------------------------------------------


def _lifetime(text: str) -> int | None:
    """``--expires``: seconds, or None for "never" (argparse's usage error otherwise)."""
    from buildbot_rest.auth.tokens import parse_duration
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _token_parsers(sub: Any, commands: dict[str, argparse.ArgumentParser],
                   db_help: str) -> None:
    """The ``token`` commands (bearer tokens, beyond upstream)."""
    token = commands["token"] = sub.add_parser(
        "token", help="make, list and revoke bearer tokens of the API",
        description="Bearer tokens (Authorization: Bearer <token>) act as a user, with a "
        "scope (read, or control) and optional roles of their own. They are kept hashed in "
        "the bbrest_api_tokens table of the database, which upstream masters ignore.")
    actions = token.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = commands["token create"] = actions.add_parser(
        "create", help="make a token and print it (alone on the last line; it is shown "
        "only this once)")
    create.add_argument("--db", default=DEFAULT_DB_URL, help=db_help)
    create.add_argument("--user", required=True, help="the username the token acts as")
    create.add_argument("--email", help="the user's email (owner of what the token does)")
    create.add_argument("--full-name", help="the user's full name")
    create.add_argument("--role", action="append", dest="roles", metavar="ROLE",
                        help="a role of the token (repeat for more); without any, the "
                        "token has the roles the [auth] role matchers give the user")
    create.add_argument("--group", action="append", dest="groups", metavar="GROUP",
                        help="a group of the user, for the role matchers (repeat for more)")
    create.add_argument("--scope", choices=("read", "control"), default="read",
                        help="read: reads and live events only; control: also control "
                        "actions (force, stop...) [default: read]")
    create.add_argument("--expires", type=_lifetime, default=90 * 86400, metavar="WHEN",
                        help="lifetime: 30d, 12h, 90m, 3600s, 2w, or never "
                        "[default: 90d]")
    create.add_argument("--description", default="", help="what the token is for")

    listing = commands["token list"] = actions.add_parser(
        "list", help="list the tokens (never their secrets)")
    listing.add_argument("--db", default=DEFAULT_DB_URL, help=db_help)
    listing.add_argument("--user", help="only this username's tokens")
    listing.add_argument("--json", action="store_true", help="print JSON")

    revoke = commands["token revoke"] = actions.add_parser(
        "revoke", help="revoke a token: refused from its next use on")
    revoke.add_argument("--db", default=DEFAULT_DB_URL, help=db_help)
    revoke.add_argument("id", type=int, metavar="ID", help="the token's id (token list)")

    tables = commands["token create-tables"] = actions.add_parser(
        "create-tables", help="create the bbrest_ tables (else made by the first token or "
        "logout)")
    tables.add_argument("--db", default=DEFAULT_DB_URL, help=db_help)

    drop = commands["token drop-tables"] = actions.add_parser(
        "drop-tables", help="drop the bbrest_ tables: every token, and the logouts of "
        "sessions")
    drop.add_argument("--db", default=DEFAULT_DB_URL, help=db_help)
    drop.add_argument("--yes", action="store_true", help="yes, drop them (required)")


def _token(ns: argparse.Namespace) -> int:
    from buildbot_rest.auth import tables
    from buildbot_rest.auth.tokens import TokenStore, iso
    from buildbot_rest.data.errors import NotFound
    from buildbot_rest.db import DatabaseError
    db = _open(ns.db)
    try:
        status = db.status_sync()
        if not status.usable and ns.action in ("create", "create-tables"):
            raise DatabaseError(f"{db.safe_url}: {status.message}")
        store = TokenStore(db)
        if ns.action == "create":
            user: dict[str, Any] = {"username": ns.user}
            for key, value in (("email", ns.email), ("full_name", ns.full_name),
                               ("groups", ns.groups)):
                if value:
                    user[key] = value
            token, info = store.create_sync(user, ns.roles, ns.scope, ns.expires,
                                            ns.description)
            roles = ", ".join(info.roles) if info.roles is not None else \
                "those of the user's role matchers"
            print(f"token #{info.id} for {info.name}")
            print(f"scope: {info.scope}; roles: {roles}")
            print(f"expires: {iso(info.expires_at) or 'never'}")
            print("It is shown only now; send it as: Authorization: Bearer <token>")
            print(token)
        elif ns.action == "list":
            who = {"username": ns.user} if ns.user else None
            found = store.list_sync(who)
            if ns.json:
                print(json.dumps([info.as_json() for info in found], indent=2))
            else:
                _print_tokens(found, store.clock())
        elif ns.action == "revoke":
            try:
                info, now = store.revoke_sync(ns.id)
            except NotFound:
                raise ValueError(f"no token #{ns.id}") from None
            print(f"token #{info.id} ({info.name}): "
                  + ("revoked" if now else f"already revoked at {iso(info.revoked_at)}"))
        elif ns.action == "create-tables":
            db.pool.run_in_transaction_sync(tables.ensure_tables)
            print(f"{db.safe_url}: tables {', '.join(t.name for t in tables.TABLES)} "
                  "present")
        else:
            dropped = db.pool.run_in_transaction_sync(tables.drop_tables)
            print(f"{db.safe_url}: dropped {', '.join(dropped)}" if dropped
                  else f"{db.safe_url}: no bbrest_ tables")
    finally:
        db.stop()
    return 0


def _print_tokens(found: Sequence[Any], now: float) -> None:
    from buildbot_rest.auth.tokens import iso
    rows = [("ID", "USER", "SCOPE", "ROLES", "STATE", "CREATED", "EXPIRES", "LAST USED",
             "REVOKED", "DESCRIPTION")]
    for info in found:
        rows.append((str(info.id), info.name, info.scope,
                     ",".join(info.roles) if info.roles is not None else "(user's)",
                     info.state(now), iso(info.created_at) or "",
                     iso(info.expires_at) or "never", iso(info.last_used_at) or "never",
                     iso(info.revoked_at) or "-",
                     info.description.replace("\n", " ")[:40]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
              + ("  " + row[-1]).rstrip())


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
