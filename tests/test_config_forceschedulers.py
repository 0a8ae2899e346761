"""Force schedulers declared in the configuration: the ``all_fields`` they compile to
are what upstream's ForceScheduler serialises for the same declaration (checked against
upstream 4.3.0 itself when its virtualenv is there), and bad declarations stop the
server with one line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from buildbot_rest.config import Config, ConfigError
from buildbot_rest.data.resources.forceschedulers import configured

UPSTREAM_PYTHON = Path.home() / ".cache/buildbot_rest/upstream-4.3.0/bin/python"

# Run in upstream's virtualenv: builds each ForceScheduler from a JSON description
# ({"class": "StringParameter", "args": {...}} for a parameter) and prints what its data
# API serves for it (encoded as its REST layer encodes it).
UPSTREAM_SCRIPT = r"""
import json, sys
from buildbot.schedulers import forcesched as f
from buildbot.data.forceschedulers import forceScheduler2Data
from buildbot.util import toJson

def build(obj):
    if isinstance(obj, dict) and "class" in obj:
        return getattr(f, obj["class"])(**{k: build(v) for k, v in obj["args"].items()})
    if isinstance(obj, list):
        return [build(x) for x in obj]
    return obj

out = []
for d in json.load(sys.stdin):
    sched = f.ForceScheduler(name=d["name"], builderNames=d["builderNames"],
                             **{k: build(v) for k, v in d["kwargs"].items()})
    sched.reconfigService(*sched._config_args, **sched._config_kwargs)
    out.append(forceScheduler2Data(sched))
print(json.dumps(out, default=toJson))
"""


def P(cls: str, **args: Any) -> dict[str, Any]:
    return {"class": cls, "args": args}


# (our declaration, upstream's constructor arguments) for the same force scheduler
CASES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"name": "plain", "builder_names": ["a", "b"]},
     {"name": "plain", "builderNames": ["a", "b"], "kwargs": {}}),
    ({"name": "labelled", "builder_names": ["a"], "label": "Force it", "button_name": "Go",
      "reason": {"label": "Why?", "default": "because", "required": True,
                 "regex": "^[a-z]+$", "maxsize": 40, "size": 50, "tooltip": "say why"},
      "username": {"need_email": False, "label": "Who:", "hide": True},
      "priority": {"default": 3, "label": "Prio", "tablabel": "P"}},
     {"name": "labelled", "builderNames": ["a"], "kwargs": {
         "label": "Force it", "buttonName": "Go",
         "reason": P("StringParameter", name="reason", label="Why?", default="because",
                     required=True, regex="^[a-z]+$", maxsize=40, size=50,
                     tooltip="say why"),
         "username": P("UserNameParameter", need_email=False, label="Who:", hide=True),
         "priority": P("IntParameter", name="priority", default=3, label="Prio",
                       tablabel="P")}}),
    ({"name": "codebases", "builder_names": ["a"],
      "codebases": ["", {"codebase": "lib", "branch": {"default": "main", "label": "B"},
                         "revision": "HEAD", "project": False, "hide": True},
                   {"codebase": "docs", "name": "documentation", "label": "Docs",
                    "columns": 3, "repository": {"kind": "choice",
                                                 "choices": ["r1", "r2"],
                                                 "strict": False}}]},
     {"name": "codebases", "builderNames": ["a"], "kwargs": {"codebases": [
         P("CodebaseParameter", codebase=""),
         P("CodebaseParameter", codebase="lib",
           branch=P("StringParameter", name="branch", default="main", label="B"),
           revision="HEAD", project=None, hide=True),
         P("CodebaseParameter", codebase="docs", name="documentation", label="Docs",
           columns=3, repository=P("ChoiceStringParameter", name="repository",
                                   choices=["r1", "r2"], strict=False))]}}),
    ({"name": "params", "builder_names": ["a"], "parameters": [
        {"name": "s", "label": "S", "default": "x", "size": 5, "maxsize": 9},
        {"kind": "text", "name": "t", "cols": 40, "rows": 3, "default": "long"},
        {"kind": "int", "name": "n", "default": 7, "required": True},
        {"kind": "int", "name": "m"},
        {"kind": "boolean", "name": "b", "default": True},
        {"kind": "boolean", "name": "b2"},
        {"kind": "choice", "name": "c", "choices": ["x", "y"], "default": "y"},
        {"kind": "choice", "name": "cm", "choices": ["x", "y", "z"], "multiple": True,
         "default": ["x", "z"], "strict": False},
        {"kind": "fixed", "name": "f", "default": "v"},
        {"kind": "string", "name": "h", "hide": True, "regex": "^a", "tablabel": "H"},
      ]},
     {"name": "params", "builderNames": ["a"], "kwargs": {"properties": [
         P("StringParameter", name="s", label="S", default="x", size=5, maxsize=9),
         P("TextParameter", name="t", cols=40, rows=3, default="long"),
         P("IntParameter", name="n", default=7, required=True),
         P("IntParameter", name="m"),
         P("BooleanParameter", name="b", default=True),
         P("BooleanParameter", name="b2"),
         P("ChoiceStringParameter", name="c", choices=["x", "y"], default="y"),
         P("ChoiceStringParameter", name="cm", choices=["x", "y", "z"], multiple=True,
           default=["x", "z"], strict=False),
         P("FixedParameter", name="f", default="v"),
         P("StringParameter", name="h", hide=True, regex="^a", tablabel="H"),
     ]}}),
]


def _upstream(declarations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not UPSTREAM_PYTHON.exists():
        pytest.skip(f"upstream 4.3.0's virtualenv is missing ({UPSTREAM_PYTHON})")
    done = subprocess.run([str(UPSTREAM_PYTHON), "-c", UPSTREAM_SCRIPT],
                          input=json.dumps(declarations), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


def test_declared_fields_are_upstreams() -> None:
    ours = configured(_ctx(Config(forceschedulers=[c[0] for c in CASES])))
    theirs = _upstream([c[1] for c in CASES])
    assert len(ours) == len(theirs)
    for mine, upstream in zip(ours, theirs, strict=True):
        assert mine == upstream, mine["name"]
    # the regex upstream serialises as null stays known for forcing
    [entry] = Config(forceschedulers=[CASES[1][0]]).forceschedulers
    reason = entry["all_fields"][0]["fields"][1]
    assert (reason["regex"], reason["_regex"]) == (None, "^[a-z]+$")


def _ctx(config: Config) -> Any:
    """What :func:`configured` reads of a request's context."""
    return SimpleNamespace(config=config)


def test_compiled_entries_compile_to_themselves(tmp_path: Path) -> None:
    config = Config(forceschedulers=[c[0] for c in CASES])
    assert Config(**config.settings()) == config
    assert config.merged(pool_size=2).forceschedulers == config.forceschedulers
    json.dumps(config.settings())  # what worker processes are given


def test_toml_sub_tables(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text('''
[[forceschedulers]]
name = "force"
builder_names = ["linux"]
reason_string = "%(owner)s wants: %(reason)s"

[forceschedulers.reason]
default = "go"
required = true

[[forceschedulers.codebases]]
codebase = ""
revision = "HEAD"

[[forceschedulers.codebases]]
codebase = "lib"
project = false

[[forceschedulers.parameters]]
kind = "choice"
name = "target"
choices = ["debug", "release"]
''')
    [entry] = Config.from_toml(path).forceschedulers
    assert entry["reason_string"] == "%(owner)s wants: %(reason)s"
    top, main, lib, target = entry["all_fields"]
    assert top["fields"][1]["default"] == "go"
    assert [f["fullName"] for f in main["fields"]] == [
        "branch", "project", "repository", "revision"]
    assert main["fields"][3]["type"] == "fixed"
    assert [f["fullName"] for f in lib["fields"]] == [
        "lib_branch", "lib_repository", "lib_revision"]
    assert (target["type"], target["choices"]) == ("list", ["debug", "release"])
    assert "reason_string" not in configured(_ctx(Config.from_toml(path)))[0]


def test_raw_all_fields_are_kept() -> None:
    raw = [{"name": "reason", "type": "text", "regex": "^x"}]
    [entry] = Config(forceschedulers=[{"name": "r", "all_fields": raw}]).forceschedulers
    assert entry["all_fields"] == raw and entry["all_fields"] is not raw


FS = "[[forceschedulers]]\nname = \"f\"\n"


@pytest.mark.parametrize("text, message", [
    ('[[forceschedulers]]\nname = "no spaces"\n',
     "forceschedulers[0].name must be an identifier"),
    (FS + "all_fields = []\ncodebases = [\"\"]\n",
     "forceschedulers[0]: all_fields cannot go with codebases"),
    (FS + "codebases = []\n", "forceschedulers[0].codebases cannot be empty"),
    (FS + "codebases = [\"a\", \"a\"]\n", "codebase 'a' is declared twice"),
    (FS + "codebases = [{branch = \"x\"}]\n", "forceschedulers[0].codebases[0].codebase is "
                                              "required"),
    (FS + "codebases = [{codebase = \"\", colour = 1}]\n",
     "unknown key forceschedulers[0].codebases[0].colour"),
    (FS + "codebases = [{codebase = \"\", branch = true}]\n",
     "forceschedulers[0].codebases[0].branch must be a table, a string"),
    (FS + "codebases = [{codebase = \"\", branch = {name = \"x\"}}]\n",
     "forceschedulers[0].codebases[0].branch.name must be 'branch'"),
    (FS + "codebases = [{codebase = \"\", columns = 5}]\n",
     "forceschedulers[0].codebases[0].columns must be from 1 to 4"),
    (FS + "parameters = [{kind = \"int\"}]\n", "forceschedulers[0].parameters[0].name is "
                                              "required"),
    (FS + "parameters = [{name = \"owner\"}]\n", "parameters[0].name 'owner' is reserved"),
    (FS + "parameters = [{name = \"x\", kind = \"float\"}]\n",
     "forceschedulers[0].parameters[0].kind must be one of string, text, int"),
    (FS + "parameters = [{name = \"x\", choices = [\"a\"]}]\n",
     "unknown key forceschedulers[0].parameters[0].choices"),
    (FS + "parameters = [{name = \"x\", kind = \"int\", default = \"1\"}]\n",
     "forceschedulers[0].parameters[0].default must be integer, not string"),
    (FS + "parameters = [{name = \"x\", kind = \"choice\", multiple = true, "
          "default = \"a\"}]\n", "parameters[0].default must be an array of strings"),
    (FS + "parameters = [{name = \"x\", kind = \"choice\", choices = [1]}]\n",
     "parameters[0].choices must be an array of strings"),
    (FS + "parameters = [{name = \"x\", regex = \"(\"}]\n",
     "parameters[0].regex is not a valid regular expression"),
    (FS + "parameters = [{name = \"x\", maxsize = -1}]\n",
     "parameters[0].maxsize must be at least 0"),
    (FS + "parameters = [{name = \"x\", required = \"yes\"}]\n",
     "parameters[0].required must be boolean, not string"),
    (FS + "parameters = [{name = \"reason\"}]\n",
     "forceschedulers[0]: two fields are named 'reason'"),
    (FS + "parameters = [\"x\"]\n", "parameters[0] must be a table, not string"),
    (FS + "priority = {kind = \"string\"}\n", "forceschedulers[0].priority.kind must be "
                                              "'int'"),
    (FS + "reason = {kind = \"text\", cols = \"x\"}\n",
     "forceschedulers[0].reason.cols must be integer, not string"),
    (FS + "reason_string = \"%(who)s\"\n", "reason_string must use only %(owner)s"),
    (FS + "all_fields = [{fields = 1}]\n", "all_fields[0].fields must be an array of "
                                           "tables"),
])
def test_bad_declarations(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "server.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        Config.from_toml(path)
    got = str(info.value)
    assert message in got
    assert str(path) in got
    assert "\n" not in got


def test_two_force_schedulers_cannot_share_a_name() -> None:
    with pytest.raises(ConfigError, match=r"forceschedulers\[1\].name 'x' is taken"):
        Config(forceschedulers=[{"name": "x"}, {"name": "x"}])
