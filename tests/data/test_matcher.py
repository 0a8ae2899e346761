"""The path matcher (upstream protocol §1.5, COMPAT #5, #23)."""

from __future__ import annotations

import pytest

from buildbot_rest.data.errors import InvalidPath
from buildbot_rest.data.matcher import Matcher


@pytest.fixture
def m():
    m = Matcher()
    for p in ("/builders/n:builderid", "/builders/s:buildername", "/workers/n:workerid",
              "/workers/i:name", "/builds/n:buildid/steps/i:step_name",
              "/builds/n:buildid/steps/n:step_number", "/builders/:builderid/forceschedulers",
              "/buildsets/:buildsetid/sourcestamps", "/x/:name", "/"):
        m.add(p, p)
    return m


def test_precedence(m):
    assert m.match(("builders", "12")) == ("/builders/n:builderid", {"builderid": 12})
    assert m.match(("builders", "runtests")) == ("/builders/s:buildername",
                                                 {"buildername": "runtests"})
    assert m.match(("builders", "")) == ("/builders/s:buildername", {"buildername": ""})
    assert m.match(("workers", "w1"))[1] == {"name": "w1"}
    assert m.match(("builds", "1", "steps", "compile"))[1] == {"buildid": 1,
                                                               "step_name": "compile"}
    assert m.match(("builds", "1", "steps", "3"))[1] == {"buildid": 1, "step_number": 3}
    assert m.match(("builds", "1", "steps", "-1"))[1] == {"buildid": 1, "step_name": "-1"}
    assert m.match(()) == ("/", {})


@pytest.mark.parametrize("text", ["+1", " 1", "1 ", "1_0", "-3", "1.0", "0x1", "", "\u0663"])
def test_only_plain_digits_are_numbers(m, text):
    # builders fall through to the name; workers take identifiers only
    assert m.match(("builders", text)) == ("/builders/s:buildername", {"buildername": text})
    with pytest.raises(InvalidPath):
        m.match(("builds", text, "steps", "3"))


def test_untyped_ids_are_numbers(m):
    assert m.match(("builders", "7", "forceschedulers"))[1] == {"builderid": 7}
    assert m.match(("buildsets", "7", "sourcestamps"))[1] == {"buildsetid": 7}
    with pytest.raises(InvalidPath):
        m.match(("buildsets", "x", "sourcestamps"))
    assert m.match(("x", "anything"))[1] == {"name": "anything"}


def test_identifiers(m):
    assert m.match(("workers", "-1")) == ("/workers/i:name", {"name": "-1"})
    assert m.match(("workers", "_a.b-c9"))[1] == {"name": "_a.b-c9"}
    # COMPAT 27: any stored name (a segment holds "/" only percent-encoded)
    for name in ("1a", ".a", "a b", "a/b", "é", "set props", "1\n", "x" * 500):
        assert m.match(("workers", name)) == ("/workers/i:name", {"name": name})
    for bad in ("", "a\x00"):
        with pytest.raises(InvalidPath):
            m.match(("workers", bad))


def test_numbers_before_names_whatever_the_registration_order():
    m = Matcher()
    for p in ("/steps/i:step_name", "/steps/n:step_number", "/a/i:x/b", "/a/n:y/i:z",
              "/c/i:x", "/c/literal"):
        m.add(p, p)
    assert m.match(("steps", "3")) == ("/steps/n:step_number", {"step_number": 3})
    assert m.match(("steps", "3a")) == ("/steps/i:step_name", {"step_name": "3a"})
    assert m.match(("a", "4", "b")) == ("/a/n:y/i:z", {"y": 4, "z": "b"})
    assert m.match(("a", "q", "b")) == ("/a/i:x/b", {"x": "q"})
    assert m.match(("c", "literal")) == ("/c/literal", {})
    assert m.match(("c", "other")) == ("/c/i:x", {"x": "other"})


def test_invalid_path_messages(m):
    for path, text in ((("",), "Invalid path: "), (("builds", ""), "Invalid path: builds/"),
                       (("nope", "1"), "Invalid path: nope/1"),
                       (("builders", "1", "a", "b"), "Invalid path: builders/1/a/b")):
        with pytest.raises(InvalidPath) as e:
            m.match(path)
        assert e.value.message == text
        assert e.value.status == 404


def test_duplicates_rejected(m):
    with pytest.raises(ValueError, match="duplicate"):
        m.add("/builders/n:builderid", "again")
    assert ("builders", "n:builderid") in m.patterns()
