"""Sphinx configuration of the buildbot_rest documentation."""

import re
from pathlib import Path

_init = (Path(__file__).resolve().parent.parent / "buildbot_rest" / "__init__.py").read_text()

project = "buildbot_rest"
author = "the buildbot_rest authors"
copyright = "the buildbot_rest authors"
release = re.search(r'__version__ = "([^"]+)"', _init).group(1)
version = release

extensions: list[str] = []
exclude_patterns = ["_build", "examples"]
html_theme = "alabaster"
highlight_language = "none"
