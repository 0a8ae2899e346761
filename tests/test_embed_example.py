"""docs/examples/embed.py, the example of docs/embedding.rst, runs as written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "embed.py"


def run_example(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, str(EXAMPLE), *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)


def answers(proc: subprocess.CompletedProcess[str]) -> list[tuple[str, Any]]:
    """The (status, JSON body) pairs that ``--once`` printed: /api, then the builders."""
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pairs = []
    for line in proc.stdout.strip().splitlines()[-2:]:
        status, _, body = line.partition(" ")
        pairs.append((status, json.loads(body)))
    return pairs


def test_embed_example_runs(tmp_path: Path) -> None:
    proc = run_example(tmp_path, "--once", "--port", "0",
                       f"sqlite:///{tmp_path / 'embed.sqlite'}")
    (api_status, api), (status, builders) = answers(proc)
    assert (api_status, status) == ("200", "200")
    assert builders["meta"]["total"] == 6
    assert [set(b) for b in builders["builders"]] == [{"name"}] * 3
    # the links name the port the example served on, which --port 0 left to the system
    link = api["api_versions"]["v2"]
    assert link.startswith("http://127.0.0.1:") and link.endswith("/api/v2")
    assert link != "http://127.0.0.1:0/api/v2"


def test_embed_example_port_in_use(tmp_path: Path) -> None:
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        number = taken.getsockname()[1]
        proc = run_example(tmp_path, "--once", "--port", str(number),
                           f"sqlite:///{tmp_path / 'embed.sqlite'}")
    assert proc.returncode != 0
    assert "Address already in use" in proc.stderr
    assert not (tmp_path / "embed.sqlite").exists()  # nothing filled before listening
