# -*- test-case-name: tests.auth.test_backends -*-
"""``buildbot-rest hash-password``: a password hash for ``[auth.users.<name>]``."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from passlib.hash import bcrypt  # type: ignore[import-untyped]

#: bcrypt's cost (2^12 rounds: about a quarter of a second per login on a common CPU)
ROUNDS = 12


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]
               ) -> argparse.ArgumentParser:
    """Add the ``hash-password`` command to the console script's sub-parsers."""
    parser = sub.add_parser(
        "hash-password", help="print a bcrypt hash of a password, for [auth.users.<name>] "
        "password",
        description="Print a bcrypt hash of a password (asked twice on the terminal, or "
        "read from the first line of standard input with --stdin), for the password of a "
        "static user ([auth.users.<name>] password = \"<hash>\").")
    parser.add_argument("--stdin", action="store_true",
                        help="read the password from the first line of standard input")
    return parser


def hash_password(password: str, *, rounds: int = ROUNDS) -> str:
    """A bcrypt hash (``$2b$``) of ``password``; ValueError for an empty one or one
    longer than bcrypt's 72 bytes (which bcrypt would silently cut)."""
    if not password:
        raise ValueError("the password is empty")
    if len(password.encode("utf-8")) > 72:
        raise ValueError("the password is longer than 72 bytes, all bcrypt uses")
    return str(bcrypt.using(rounds=rounds).hash(password))


def hash_password_command(ns: argparse.Namespace, *, stdin: TextIO | None = None,
                          stdout: TextIO | None = None,
                          ask: Callable[[str], str] | None = None) -> int:
    """Run ``hash-password`` (``ns`` from :func:`add_parser`'s parser): print the hash
    alone on a line; exit status 0, or 1 with one line on standard error."""
    out = stdout or sys.stdout
    try:
        if ns.stdin:
            line = (stdin or sys.stdin).readline()
            if not line:
                raise EOFError
            password = line[:-1] if line.endswith("\n") else line
            password = password[:-1] if password.endswith("\r") else password
        else:
            if ask is None and not sys.stdin.isatty():
                raise EOFError  # (getpass would warn, then read nothing useful)
            prompt = ask or getpass.getpass
            password = prompt("Password: ")
            if prompt("Again: ") != password:
                raise ValueError("the two passwords differ")
        print(hash_password(password), file=out)
    except EOFError:
        print("buildbot-rest hash-password: no password given (without a terminal, "
              "give it on standard input with --stdin)", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"buildbot-rest hash-password: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``hash-password`` on its own (``python -m buildbot_rest.auth.cli [--stdin]``)."""
    parser = argparse.ArgumentParser(prog="buildbot-rest")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    ns = parser.parse_args(["hash-password", *(sys.argv[1:] if argv is None else argv)])
    return hash_password_command(ns)


if __name__ == "__main__":
    raise SystemExit(main())
