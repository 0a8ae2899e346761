"""The layout of the source: every module names tests that exist, and the layers of
DESIGN.md import one way (``www`` may use ``data``; ``data`` and ``db`` never ``www``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(ROOT / "buildbot_rest").rglob("*.py"),
                  *(ROOT / "twisted" / "plugins").glob("*.py")])
HEADER = re.compile(r"-\*- test-case-name: ([\w.]+) -\*-")


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_test_case_name_names_a_test_module(path: Path) -> None:
    found = HEADER.search(path.read_text())
    if found is None:
        # only package faces with nothing of their own may go without
        assert path.name == "__init__.py", f"{path} has no test-case-name header"
        return
    target = ROOT / (found.group(1).replace(".", "/") + ".py")
    assert target.is_file(), f"{path}: test-case-name {found.group(1)} does not exist"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


#: package -> the packages of ours it must never import
FORBIDDEN = {
    "db": ("buildbot_rest.data", "buildbot_rest.www", "buildbot_rest.mq",
           "buildbot_rest.auth", "buildbot_rest.service"),
    "mq": ("buildbot_rest.data", "buildbot_rest.www", "buildbot_rest.db",
           "buildbot_rest.service"),
    "data": ("buildbot_rest.www", "buildbot_rest.auth", "buildbot_rest.service"),
    "auth": ("buildbot_rest.www", "buildbot_rest.service"),
    "www": ("buildbot_rest.service", "sqlalchemy", "buildbot_rest.db"),
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_import_downwards(package: str) -> None:
    for path in (ROOT / "buildbot_rest" / package).rglob("*.py"):
        for name in _imports(path):
            assert not name.startswith(FORBIDDEN[package]), (
                f"{path.relative_to(ROOT)} imports {name}")
