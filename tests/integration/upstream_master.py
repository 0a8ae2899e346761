"""Run upstream Buildbot 4.3.0 as a subprocess: a build master with no builders, workers or
schedulers that serves ``/api/v2`` over a database we give it.

The master runs from the ``upstream_venv`` virtualenv (see tests/conftest.py), in a master
directory made by upstream's own ``buildbot create-master``, with a ``master.cfg`` written
here. It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import raw_engine_for, upstream_env

#: The base URL both servers put into absolute links, so that those compare equal.
BASE_URL = "http://testserver/"

MASTER_CFG = """\
# Written by tests/integration/upstream_master.py: a master that only serves the REST API.
c = BuildmasterConfig = {{}}
c['title'] = 'buildbot_rest differential test'
c['titleURL'] = {base_url!r}
c['buildbotURL'] = {base_url!r}
# Without builders a master only starts when it is one of several.
c['multiMaster'] = True
c['db'] = {{'db_url': {db_url!r}}}
c['www'] = {{'port': 'tcp:{port}:interface=127.0.0.1', 'plugins': {{}}}}
c['protocols'] = {{}}
c['workers'] = []
c['builders'] = []
c['schedulers'] = []
c['change_source'] = []
# No usage report to buildbot.net from a test.
c['buildbotNetUsageData'] = None

# Upstream 4.3.0 writes REST bodies to the request from a pool thread, which is not
# thread-safe: under concurrent requests its reactor loses connections and file
# descriptors. Same bytes, written from the reactor thread instead:
from twisted.internet import reactor as _reactor, threads as _threads
from buildbot.www import rest as _rest


def _write_json_data(request, encoder, data):
    body = ''.join(encoder.iterencode(data)).encode('utf-8')

    def write():
        if _rest._is_request_finished(request):
            return
        request.setHeader(b'content-length', str(len(body)).encode())
        if request.method != b'HEAD':
            request.write(body)

    _threads.blockingCallFromThread(_reactor, write)


_rest.V2RootResource._write_json_data = staticmethod(_write_json_data)
"""

# Upstream's web service refuses to start without a "base" www plugin (the UI, from the
# buildbot-www package), although /api/v2 does not use it. When the virtualenv lacks
# buildbot-www, an empty stand-in is put on PYTHONPATH: a package with a VERSION file and
# an empty static/ folder, registered under upstream's entry point group.
_STUB_PACKAGE = "bbrest_www_stub"
_STUB_INIT = """\
from buildbot.www.plugin import Application

ep = Application(__name__, "empty stand-in for buildbot-www (buildbot_rest tests)")
"""


def force_cfg(worker: str, builders: list[str], schedulers: str) -> str:
    """master.cfg lines (see :meth:`UpstreamMaster.create`) that configure ``builders``
    (each served by ``worker``, which never connects: its requests stay unclaimed) and the
    schedulers of the Python expression ``schedulers`` (a list; ``schedulers`` and
    ``util`` of ``buildbot.plugins`` are imported)."""
    return f"""
# Added by tests/integration/upstream_master.py force_cfg(): builders and schedulers.
from buildbot.plugins import schedulers, util, worker as _worker
from buildbot.config import BuilderConfig as _BuilderConfig
from buildbot.process.factory import BuildFactory as _BuildFactory
c['workers'] = [_worker.Worker({worker!r}, 'not-a-secret')]
c['protocols'] = {{'pb': {{'port': 'tcp:0:interface=127.0.0.1'}}}}
c['builders'] = [_BuilderConfig(name=_n, workernames=[{worker!r}], factory=_BuildFactory())
                 for _n in {builders!r}]
c['schedulers'] = {schedulers}
# A new request does not collapse the waiting ones (claimed and completed SKIPPED): that
# is the work of the master running the builders, which our server is not.
c['collapseRequests'] = False
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def has_www_plugin(venv: Path) -> bool:
    """Whether the virtualenv has upstream's buildbot-www installed."""
    return any(venv.glob("lib/python*/site-packages/buildbot_www"))


def write_www_stub(directory: Path) -> Path:
    """The stand-in for buildbot-www under ``directory``; returns the PYTHONPATH entry."""
    package = directory / _STUB_PACKAGE
    (package / "static").mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(_STUB_INIT)
    (package / "VERSION").write_text("0.0\n")
    (package / "static" / "index.html").write_text("<html></html>\n")
    info = directory / f"{_STUB_PACKAGE}-0.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: bbrest-www-stub\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text(f"[buildbot.www]\nbase = {_STUB_PACKAGE}:ep\n")
    return directory


def upstream_log_codecs(venv: Path) -> set[int]:
    """The log chunk compression codes upstream can read in ``venv`` (lz4, zstd and
    brotli need their libraries installed there)."""
    probe = ("from buildbot.db.logs import LogsConnectorComponent as L\n"
             "print(' '.join(str(k) for k, c in L.COMPRESSION_BYID.items() if c.available))")
    proc = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL, env=upstream_env(),
                          check=True)
    return {int(code) for code in proc.stdout.split()}


def keep_masters_alive(url: str) -> None:
    """Mark every master in the database as seen now.

    At start, upstream expires masters not seen for 10 minutes and does their
    housekeeping: it finishes their running builds with RETRY and releases their
    builders, workers, schedulers and change sources. That would empty the demo data of
    everything that makes it interesting, so the demo masters are made recent instead."""
    engine = raw_engine_for(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE masters SET active = 1, last_active = :now"),
                         {"now": int(time.time())})
    finally:
        engine.dispose()


class UpstreamMaster:
    """One upstream master process over ``db_url``, its files under ``basedir``."""

    def __init__(self, venv: Path, basedir: Path, db_url: str, *,
                 port: int | None = None) -> None:
        self.venv = venv
        self.basedir = basedir
        self.db_url = db_url
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> str:
        """The URL of the web server's root (``<root>api/v2/...``)."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def log_file(self) -> Path:
        return self.basedir / "twistd.log"

    def create(self, run_upstream: Callable[..., str], extra_cfg: str = "") -> None:
        """Make the master directory with ``buildbot create-master`` (which also runs
        upstream's schema upgrade: a no-op on a database at the head) and our master.cfg.

        ``extra_cfg`` is Python appended to master.cfg (builders, schedulers... for the
        write differential, see :func:`force_cfg`)."""
        self.basedir.parent.mkdir(parents=True, exist_ok=True)
        run_upstream("buildbot", "create-master", "--relocatable", "--db", self.db_url,
                     str(self.basedir), cwd=self.basedir.parent)
        self.write_cfg(extra_cfg)

    def write_cfg(self, extra_cfg: str = "") -> None:
        """(Re)write master.cfg, for this master's database URL and port."""
        (self.basedir / "master.cfg").write_text(
            MASTER_CFG.format(base_url=BASE_URL, db_url=self.db_url, port=self.port)
            + extra_cfg)

    def start(self, timeout: float = 90) -> None:
        """Start ``twistd`` in the foreground (as a child) and wait until /api/v2 answers."""
        env = upstream_env()
        if not has_www_plugin(self.venv):
            env["PYTHONPATH"] = str(write_www_stub(self.basedir / "www-stub"))
        with open(self.basedir / "stdout.log", "wb") as output:
            self.process = subprocess.Popen(
                [str(self.venv / "bin" / "twistd"), "--nodaemon", "--no_save", "--pidfile=",
                 "-y", "buildbot.tac"],
                cwd=self.basedir, env=env, stdin=subprocess.DEVNULL, stdout=output,
                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"upstream master exited with {self.process.returncode} "
                                   f"while starting:\n{self.log_tail()}")
            if self._answers():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"upstream master did not answer on {self.root}api/v2 "
                                   f"within {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.25)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.root + "api/v2", timeout=5) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self, timeout: float = 30) -> None:
        """Stop the master (SIGTERM, then SIGKILL) and wait for it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the master's log (and of its stdout), for failure messages."""
        parts = []
        for path in (self.log_file, self.basedir / "stdout.log"):
            if path.is_file():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts) or "(no log)"
