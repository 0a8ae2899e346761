"""Field types: URL parsing, JSON values from the database, and their spec."""

from __future__ import annotations

import pytest

from buildbot_rest.data import types as t


def test_integer_parse():
    assert t.Integer().parse("42") == 42
    assert t.Integer().parse("-3") == -3
    assert t.DateTime().parse("1700000000") == 1700000000
    assert t.Integer().parse(str(2**63 - 1)) == 2**63 - 1
    for bad in ("", "+1", " 1", "1_0", "1.0", "0x1", "\u0663", str(2**63), str(-(2**63) - 1)):
        with pytest.raises(ValueError):
            t.Integer().parse(bad)


def test_string_identifier_boolean():
    assert t.String().parse("") == ""
    with pytest.raises(ValueError):
        t.String().parse("a\x00")
    # COMPAT 27: any stored name, whatever upstream's declared pattern and length
    for name in ("a-b", "abcd", "", "1a", "a b", "set props", "é/x", "a" * 300):
        assert t.Identifier(3).parse(name) == name
    with pytest.raises(ValueError):
        t.Identifier(3).parse("a\x00b")
    assert t.Boolean().parse("YES") is True
    assert t.Boolean().parse("Off") is False
    with pytest.raises(ValueError):
        t.Boolean().parse("2")


def test_from_db():
    assert t.Boolean().from_db(1) is True
    assert t.NoneOk(t.Boolean()).from_db(None) is None
    assert t.Binary().from_db(b"x") is None
    assert t.JsonObject().from_db('{"a": 1}') == {"a": 1}
    assert t.JsonObject().from_db(None) == {}
    # damaged stored JSON reads as missing, never as an error
    assert t.JsonObject().from_db('{"a": ') == {}
    assert t.JsonObject().from_db("a\ufffdb") == {}
    assert t.loads_json('["a\ufffdb", "src"]') == ["a\ufffdb", "src"]
    assert t.loads_json("{", "default") == "default"
    assert t.loads_json(None) is None
    assert t.NoneOk(t.List(t.Integer())).parse("3") == 3


def test_unfilterable():
    for typ in (t.Binary(), t.JsonObject(), t.SourcedProperties(), t.Entity("x", {})):
        assert not typ.filterable
        with pytest.raises(ValueError):
            typ.parse("1")


def test_spec():
    assert t.NoneOk(t.Integer()).type_name() == "integer or None"
    assert t.NoneOk(t.Integer()).type_spec() == {"name": "integer", "can_be_null": True}
    assert t.List(t.String()).type_spec() == {"type": "list", "of": {"name": "string"}}
    assert t.Identifier(50).type_spec() == {"name": "identifier"}
    e = t.Entity("master", {"masterid": t.Integer(), "name": t.NoneOk(t.String())})
    assert e.type_spec() == {"type": "master", "fields": [
        {"name": "masterid", "type": "integer", "type_spec": {"name": "integer"}},
        {"name": "name", "type": "string or None",
         "type_spec": {"name": "string", "can_be_null": True}}]}
