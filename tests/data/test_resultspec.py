"""Parsing query strings into ResultSpecs (upstream protocol §2, COMPAT #3, #4, #25)."""

from __future__ import annotations

import pytest

from buildbot_rest.data import types as t
from buildbot_rest.data.errors import InvalidQuery
from buildbot_rest.data.resultspec import Filter, group, parse, parse_query_string, sort_items

FIELDS = {
    "buildid": t.Integer(), "number": t.Integer(), "started_at": t.DateTime(),
    "complete": t.Boolean(), "complete_at": t.NoneOk(t.DateTime()),
    "state_string": t.String(), "name": t.Identifier(20), "tags": t.List(t.String()),
    "properties": t.SourcedProperties(), "data": t.JsonObject(),
}


def spec(query, collection=True):
    return parse(group(parse_query_string(query)), FIELDS, collection=collection)


def error(query, collection=True):
    with pytest.raises(InvalidQuery) as e:
        spec(query, collection)
    return e.value.message


def test_query_string_decoding():
    assert parse_query_string(b"a=1;b=2&a=3&c&d=&e=x+y%2Bz") == [
        ("a", "1"), ("b", "2"), ("a", "3"), ("d", ""), ("e", "x y+z")]
    assert parse_query_string(b"s=%C3%A9&t=\xc3\xa9") == [("s", "\u00e9"), ("t", "\u00e9")]
    assert parse_query_string("name=set%20props") == [("name", "set props")]
    # bytes that are not UTF-8 name their parameter (issue 9 item 4)
    for raw, message in ((b"name__ne=%FF", "invalid value for name__ne: not UTF-8"),
                         (b"a=1&name=\xff", "invalid value for name: not UTF-8"),
                         (b"name=%C3", "invalid value for name: not UTF-8"),
                         (b"na%FFme=1", "invalid query parameter name: not UTF-8"),
                         (b"\xe9=1", "invalid query parameter name: not UTF-8")):
        with pytest.raises(InvalidQuery) as e:
            parse_query_string(raw)
        assert e.value.message == message
        assert e.value.status == 400
    assert list(group([("b", "1"), ("a", "2"), ("b", "3")]).items()) == [
        ("b", ["1", "3"]), ("a", ["2"])]


def test_fields_order_paging_properties():
    r = spec("field=buildid;field=number&field=buildid&order=-number&order=buildid"
             "&limit=5&limit=7&offset=2&property=a&property=*")
    assert r.fields == ["buildid", "number"]
    assert r.order == ["-number", "buildid"]
    assert (r.limit, r.offset) == (5, 2)
    assert r.properties == ["a", "*"]
    assert spec("limit").limit is None  # no "=": dropped


def test_filters_every_operator():
    assert spec("number=1&number=2").filters == [Filter("number", "eq", [1, 2])]
    for op in ("eq", "ne", "lt", "le", "gt", "ge", "in", "notin"):
        assert spec(f"number__{op}=3").filters == [Filter("number", op, [3])]
    for op in ("eq", "ne", "in", "notin", "contains"):
        field = "state_string" if op == "contains" else "number"
        v = ["a", "b"] if op == "contains" else [1, 2]
        assert spec(f"{field}__{op}={v[0]}&{field}__{op}={v[1]}").filters == [
            Filter(field, op, v)]
    assert spec("tags__contains=x").filters == [Filter("tags", "contains", ["x"])]
    assert spec("complete_at__isnull=TRUE").filters == [Filter("complete_at", "isnull",
                                                               [True])]


def test_boolean_words():
    for word, value in (("on", True), ("TRUE", True), ("Yes", True), ("1", True),
                        ("off", False), ("false", False), ("NO", False), ("0", False)):
        assert spec(f"complete={word}").filters[0].values == [value]
    assert error("complete=maybe") == "invalid filter value for complete"


@pytest.mark.parametrize("query, message", [
    ("foo=1", "unrecognized query parameter 'foo'"),
    ("LIMIT=1", "unrecognized query parameter 'LIMIT'"),
    ("order=", "no such field ''"),
    ("order=-", "no such field ''"),
    ("order=nope", "no such field 'nope'"),
    ("field=", "no such field ''"),
    ("field=-buildid", "no such field '-buildid'"),
    ("field=buildid,number", "no such field 'buildid,number'"),
    ("limit=x", "invalid limit"),
    ("limit=1.5", "invalid limit"),
    ("limit=", "invalid limit"),
    ("offset=x", "invalid offset"),
    ("number=x", "invalid filter value for number"),
    ("number=+1", "invalid filter value for number"),
    ("number=99999999999999999999", "invalid filter value for number"),
    ("started_at__gt=1.5", "invalid filter value for started_at__gt"),
    ("name=a%00b", "invalid filter value for name"),
    ("state_string=a%00b", "invalid filter value for state_string"),
    ("properties=1", "invalid filter value for properties"),
    ("data__eq=1", "invalid filter value for data__eq"),
    ("complete_at__isnull=perhaps", "invalid filter value for complete_at__isnull"),
])
def test_errors(query, message):
    assert error(query) == message


def test_errors_of_compat_3_and_25():
    assert "no such operator 'foo'" in error("number__foo=1")
    assert "no such field 'foo'" in error("foo__lt=1")
    assert "takes one value" in error("number__lt=1&number__lt=2")
    assert "takes one value" in error("complete_at__isnull=1&complete_at__isnull=0")
    assert "contains" in error("number__contains=1")
    assert error("limit=-1").startswith("invalid limit")
    assert error("offset=-1").startswith("invalid offset")
    assert error("limit=99999999999999999999").startswith("invalid limit")
    assert error("property=a%00") == "invalid property value for property"
    # the first offending key, in query order, names the error
    assert error("bar=1&foo=1") == "unrecognized query parameter 'bar'"


def test_unselected_and_single():
    assert error("field=buildid&order=number") == "cannot order on un-selected fields"
    assert error("field=buildid&order=-number") == "cannot order on un-selected fields"
    assert error("field=buildid&number=1") == "cannot filter on un-selected fields"
    assert spec("field=number&order=-number&number__gt=1").fields == ["number"]
    assert error("number=1", collection=False) == "this is not a collection"
    r = spec("field=buildid&order=-buildid&limit=1&offset=3&property=*", collection=False)
    assert (r.fields, r.limit, r.offset) == (["buildid"], 1, 3)


def test_filter_matches_with_null_semantics():
    assert not Filter("x", "ne", [1]).matches(None)
    assert not Filter("x", "notin", [1]).matches(None)
    assert not Filter("x", "lt", [1]).matches(None)
    assert Filter("x", "isnull", [True]).matches(None)
    assert Filter("x", "isnull", [False]).matches(0)
    assert Filter("x", "contains", ["b"]).matches(["a", "b"])
    assert not Filter("x", "contains", ["B"]).matches("abc")
    assert Filter("x", "contains", ["%"]).matches("100%")
    assert not Filter("x", "contains", ["%"]).matches("100")


def test_sort_nulls_first_ascending_last_descending_key_tiebreak():
    items = [{"k": 1, "v": None}, {"k": 2, "v": 3}, {"k": 3, "v": None}, {"k": 4, "v": 1},
             {"k": 5, "v": 3}]
    assert [i["k"] for i in sort_items(items, ["v"], ["k"])] == [1, 3, 4, 2, 5]
    assert [i["k"] for i in sort_items(items, ["-v"], ["k"])] == [2, 5, 4, 1, 3]
    # unlike types never fail
    assert len(sort_items([{"v": [{"a": 1}]}, {"v": [{"a": 2}]}, {"v": "x"}], ["v"], [])) == 3


def test_sort_tiebreak_key_keeps_its_direction() -> None:
    # A descending key ("-id") breaks ties descending, as the SQL ORDER BY does.
    items = [{"id": 1, "v": 0}, {"id": 2, "v": 0}, {"id": 3, "v": 1}]
    assert [i["id"] for i in sort_items(items, ["v"], ["-id"])] == [2, 1, 3]
    assert [i["id"] for i in sort_items(items, [], ["-id"])] == [3, 2, 1]


def test_list_fields_match_by_membership():
    # COMPAT 26: eq/in when the list holds one of the values, ne/notin when it holds none
    tags = ["linux", "py311"]
    assert Filter("tags", "eq", ["linux"]).matches(tags)
    assert Filter("tags", "eq", ["slow", "py311"]).matches(tags)
    assert not Filter("tags", "eq", ["slow"]).matches(tags)
    assert Filter("tags", "in", ["py311"]).matches(tags)
    assert not Filter("tags", "ne", ["linux"]).matches(tags)
    assert not Filter("tags", "ne", ["slow", "linux"]).matches(tags)
    assert Filter("tags", "ne", ["slow"]).matches(tags)
    assert Filter("tags", "notin", ["slow", "macos"]).matches(tags)
    assert not Filter("tags", "notin", ["py311"]).matches(tags)
    assert not Filter("tags", "eq", ["linux"]).matches([])
    assert Filter("tags", "ne", ["linux"]).matches([])
    assert Filter("ids", "eq", [3]).matches((1, 3))
    # a scalar is still compared as a scalar
    assert not Filter("name", "eq", ["li"]).matches("linux")
    assert Filter("name", "ne", ["li"]).matches("linux")


def test_no_order_between_a_list_and_an_element():
    for op in ("lt", "le", "gt", "ge"):
        assert error(f"tags__{op}=a") == (f"invalid filter tags__{op}: '{op}' does not "
                                          "apply to a list")


def test_order_on_json_and_list_fields_is_400():
    # COMPAT 29: upstream ignores it silently
    for name, kind in (("tags", "a list"), ("properties", "a JSON object"),
                       ("data", "a JSON object")):
        for order in (name, f"-{name}"):
            assert error(f"order={order}") == (f"invalid order {order}: {name!r} is {kind}, "
                                               "which has no order")
    assert spec("order=-name&order=complete_at").order == ["-name", "complete_at"]


def test_identifier_filters_take_any_stored_name():
    # COMPAT 27: names with spaces, leading digits, any length
    for name in ("set props", "1abc", "a" * 300, "x/y", "caf\u00e9"):
        query = "name=" + name.replace(" ", "%20").replace("\u00e9", "%C3%A9")
        assert spec(query).filters == [Filter("name", "eq", [name])]
