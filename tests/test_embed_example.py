"""docs/examples/embed.py, the example of docs/embedding.rst, runs as written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "embed.py"


def test_embed_example_runs(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--once",
                           f"sqlite:///{tmp_path / 'embed.sqlite'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status, _, body = proc.stdout.strip().splitlines()[-1].partition(" ")
    assert status == "200"
    answer = json.loads(body)
    assert answer["meta"]["total"] == 6
    assert [set(b) for b in answer["builders"]] == [{"name"}] * 3
