"""docs/examples/record.py, the update-method example of docs/embedding.rst, runs as
written: it records a whole build, sees its events, and reads it back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "record.py"


def run_example(tmp_path: Path, db_url: str) -> list[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, str(EXAMPLE), db_url],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines()


def parsed(lines: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The routing keys of the events printed, and the read-back values by name."""
    events = [line.split(" ", 1)[1] for line in lines if line.startswith("event ")]
    values: dict[str, Any] = {}
    for line in lines:
        name, _, rest = line.partition(" ")
        if name in ("build", "steps", "log"):
            values[name] = json.loads(rest)
    return events, values


def test_record_example_records_a_whole_build(tmp_path: Path) -> None:
    db = tmp_path / "record.sqlite"
    assert not db.exists()
    events, values = parsed(run_example(tmp_path, f"sqlite:///{db}"))
    assert db.exists()  # created by the example (Config.create)
    assert events == [
        "masters/1/started", "builders/1/started",
        "buildsets/1/new", "buildrequests/1/new", "buildrequests/1/claimed",
        "builds/1/new", "steps/1/new", "steps/1/started",
        "logs/1/new", "logs/1/append", "logs/1/append", "logs/1/finished",
        "steps/1/finished", "builds/1/update", "builds/1/finished",
        "buildrequests/1/complete", "buildsets/1/complete",
        "builders/1/stopped", "masters/1/stopped",
    ]
    assert values["build"] == {"buildid": 1, "number": 1, "complete": True, "results": 0,
                               "state_string": "build successful"}
    assert values["steps"] == [{"name": "compile", "results": 0}]
    assert values["log"] == "hmake all\nocc -c main.c\nebuild ok\n"


def test_record_example_runs_again_on_its_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'record.sqlite'}"
    run_example(tmp_path, url)
    events, values = parsed(run_example(tmp_path, url))
    # the same master, builder and worker rows; a second build of the builder
    assert events[0] == "masters/1/started" and events[-1] == "masters/1/stopped"
    assert "builds/2/finished" in events
    assert values["build"]["number"] == 2
