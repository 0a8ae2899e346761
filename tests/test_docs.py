"""The documentation builds without a warning (``sphinx-build -W``), and the README's
commands and links are those that work."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    pytest.importorskip("sphinx", reason="Sphinx is not installed (pip install -e '.[docs]')")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "html" / "compatibility.html").exists()


def test_readme_links_and_commands() -> None:
    readme = (ROOT / "README.rst").read_text()
    for target in re.findall(r"<(docs/[^>]+)>`_", readme):
        assert (ROOT / target).is_file(), target
    assert "<docs/beside-a-master.rst>`_" in readme
    # the install and test commands, in a virtual environment; CI runs the test command
    for command in ("python3 -m venv .venv && . .venv/bin/activate",
                    "pip install . && twistd -n buildbot-rest --demo",
                    "pip install tox && tox",
                    "pip install -e '.[docs]'"):
        assert command in readme, command
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == "pip install tox && tox"
