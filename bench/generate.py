"""Generate a benchmark database: ``python -m bench.generate --db URL --builds N``.

Creates the schema in an empty database, fills it with :func:`buildbot_rest.demo.populate`
and shows a progress bar on stderr; the row counts and the time taken go to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TextIO

from buildbot_rest import demo
from buildbot_rest.db.database import Database, DatabaseError, make_engine
from buildbot_rest.db.logchunks import ZSTD


class ProgressBar:
    """A one-line bar redrawn with ``\\r`` on a terminal; plain lines every 5% elsewhere."""

    def __init__(self, out: TextIO = sys.stderr, width: int = 30) -> None:
        self.out = out
        self.width = width
        self.tty = out.isatty()
        self.start = time.monotonic()
        self.stage = ""
        self.shown = -1

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.end_line()
            self.stage, self.stage_start, self.shown = stage, time.monotonic(), -1
        frac = done / total if total else 1.0
        step = int(frac * 20)
        if not self.tty and step == self.shown and done < total:
            return
        self.shown = step
        elapsed = time.monotonic() - self.stage_start
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        filled = int(frac * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        line = (f"{stage:8} [{bar}] {100 * frac:5.1f}%  {done}/{total}  "
                f"{elapsed:7.1f}s  eta {eta:6.1f}s")
        self.out.write(("\r" + line) if self.tty else (line + "\n"))
        self.out.flush()

    def end_line(self) -> None:
        if self.tty and self.stage:
            self.out.write("\n")
            self.out.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.generate", description=__doc__)
    parser.add_argument("--db", required=True, help="database URL, e.g. sqlite:///bench.sqlite")
    parser.add_argument("--builds", type=int, required=True, help="number of builds")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--big-log-mb", type=float, default=0,
                        help="also write one log of this many MB (slug big-stdio, on step 0 "
                             "of build 1)")
    parser.add_argument("--big-log-codec", type=int, default=ZSTD, choices=range(6),
                        help="its logchunks.compressed code (default 4, zstd)")
    args = parser.parse_args(argv)
    if args.builds < 1:
        parser.error("--builds must be at least 1")

    try:
        db = Database(args.db)
        new_file = db.sqlite_file is not None and not os.path.exists(db.sqlite_file)
        status = None if new_file else db.status_sync()
        if status is not None and status.state != "empty":
            print(f"refusing to fill {db.safe_url}: it is not empty ({status.message})",
                  file=sys.stderr)
            return 2
        db.prepare_sync(create=True)
        db.engine.dispose()  # so the generator's connection is alone on the database
    except DatabaseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    engine = make_engine(args.db, pool_size=1)
    bar = ProgressBar()
    started = time.monotonic()
    try:
        counts = demo.populate(engine, builds=args.builds, seed=args.seed, progress=bar,
                               big_log_bytes=int(args.big_log_mb * 1024 * 1024),
                               big_log_codec=args.big_log_codec)
    finally:
        bar.end_line()
        engine.dispose()
    elapsed = time.monotonic() - started
    width = max(map(len, counts))
    for table, n in counts.items():
        print(f"{table:{width}}  {n:>12,}")
    print(f"{'total rows':{width}}  {sum(counts.values()):>12,}")
    print(f"generated {args.builds:,} builds in {elapsed:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
