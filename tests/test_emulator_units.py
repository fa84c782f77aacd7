"""The emulator's small building blocks without HTTP: JSON Patch, merge patch, filters, tokens."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pinmigrate.emulator.jsonpatch import PatchError, apply_patch, merge_patch
from pinmigrate.emulator.query import (
    MAX_TOKEN,
    Cursor,
    Order,
    QueryError,
    check_names,
    decode_token,
    encode_token,
    parse_condition,
    parse_count,
    parse_limit,
    parse_list_query,
    parse_order,
)

# RFC 6902, Appendix A (a selection).
RFC_CASES: list[tuple[Any, list[dict[str, Any]], Any]] = [
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}], {"baz": "qux", "foo": "bar"}),
    (
        {"foo": ["bar", "baz"]},
        [{"op": "add", "path": "/foo/1", "value": "qux"}],
        {"foo": ["bar", "qux", "baz"]},
    ),
    ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    ({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}], {"foo": ["bar", "baz"]}),
    (
        {"baz": "qux", "foo": "bar"},
        [{"op": "replace", "path": "/baz", "value": "boo"}],
        {"baz": "boo", "foo": "bar"},
    ),
    (
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
    ),
    (
        {"foo": ["all", "grass", "cows", "eat"]},
        [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
        {"foo": ["all", "cows", "eat", "grass"]},
    ),
    (
        {"foo": "bar"},
        [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
        {"foo": "bar", "child": {"grandchild": {}}},
    ),
    (
        {"foo": ["bar"]},
        [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
        {"foo": ["bar", ["abc", "def"]]},
    ),
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
    ({"foo": 1}, [{"op": "copy", "from": "/foo", "path": "/bar"}], {"foo": 1, "bar": 1}),
]


@pytest.mark.parametrize(("doc", "ops", "expected"), RFC_CASES)
def test_rfc6902_examples(doc: Any, ops: list[dict[str, Any]], expected: Any) -> None:
    before = copy.deepcopy(doc)
    assert apply_patch(doc, ops) == expected
    assert doc == before


@pytest.mark.parametrize(
    ("doc", "ops"),
    [
        ({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}]),
        ({"foo": ["a"]}, [{"op": "add", "path": "/foo/5", "value": 1}]),
        ({"foo": ["a"]}, [{"op": "add", "path": "/foo/01", "value": 1}]),
        ({"foo": ["a"]}, [{"op": "remove", "path": "/foo/-"}]),
        ({"foo": "bar"}, [{"op": "remove", "path": "/nope"}]),
        ({"foo": "bar"}, [{"op": "replace", "path": "/nope", "value": 1}]),
        ({"foo": "bar"}, [{"op": "test", "path": "/foo", "value": "baz"}]),
        ({"foo": "bar"}, [{"op": "add", "path": "foo", "value": 1}]),
        ({"foo": "bar"}, [{"op": "add", "path": "/x"}]),
        ({"foo": "bar"}, [{"op": "launch", "path": "/foo"}]),
        ({"foo": {"a": 1}}, [{"op": "move", "from": "/foo", "path": "/foo/a/b"}]),
        ({"foo": "bar"}, [{"path": "/foo"}]),
        ({"foo": "bar"}, {"op": "remove", "path": "/foo"}),
        ({"foo": "bar"}, ["not an op"]),
    ],
)
def test_invalid_patches_raise_and_change_nothing(doc: Any, ops: Any) -> None:
    before = copy.deepcopy(doc)
    with pytest.raises(PatchError):
        apply_patch(doc, ops)
    assert doc == before


def test_a_failing_op_late_in_the_list_leaves_the_document_alone() -> None:
    doc = {"a": [1, 2]}
    with pytest.raises(PatchError):
        apply_patch(
            doc, [{"op": "add", "path": "/a/-", "value": 3}, {"op": "remove", "path": "/missing"}]
        )
    assert doc == {"a": [1, 2]}


def test_merge_patch_rfc7386() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}}
    assert merge_patch(target, {"a": "z", "c": {"f": None}}) == {"a": "z", "c": {"d": "e"}}
    assert target == {"a": "b", "c": {"d": "e", "f": "g"}}
    assert merge_patch({"a": [1]}, {"a": [2]}) == {"a": [2]}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=4), json_values, max_size=4), json_values)
def test_add_then_remove_round_trips(doc: dict[str, Any], value: Any) -> None:
    key = "k/~" + str(len(doc))
    pointer = "/" + key.replace("~", "~0").replace("/", "~1")
    added = apply_patch(doc, [{"op": "add", "path": pointer, "value": value}])
    assert added[key] == value
    assert apply_patch(added, [{"op": "remove", "path": pointer}]) == doc


# --- filters and tokens ------------------------------------------------------------------------

FLOW = {
    "name": "Loyalty members",
    "state": "enabled",
    "createdAt": 1700000000000,
    "inheritedAttributes": {
        "properties": {"isDestinationFlow": True},
        "targetConnections": [
            {"connectionSpec": {"id": "spec-a"}},
            {"connectionSpec": {"id": "spec-b"}},
        ],
    },
}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("state==enabled", True),
        ("state==disabled", False),
        ("state==disabled,enabled", True),
        ("state!=disabled", True),
        ("state!=disabled,enabled", False),
        ("name==Loyalty members", True),
        ("inheritedAttributes.properties.isDestinationFlow==true", True),
        ("inheritedAttributes.targetConnections[].connectionSpec.id==spec-b", True),
        ("inheritedAttributes.targetConnections[].connectionSpec.id==spec-c", False),
        ("inheritedAttributes.targetConnections.connectionSpec.id==spec-a", False),
        ("missing.field==x", False),
        ("createdAt>1600000000000", True),
        ("createdAt<=1600000000000", False),
        ("createdAt>=1700000000000", True),
    ],
)
def test_property_conditions(text: str, matches: bool) -> None:
    assert parse_condition(text).matches(FLOW) is matches


@pytest.mark.parametrize("text", ["state", "==x", "a..b==c", "state=enabled", "a b==c"])
def test_malformed_conditions(text: str) -> None:
    with pytest.raises(QueryError):
        parse_condition(text)


def test_limits_orders_and_tokens() -> None:
    assert parse_limit(None) is None
    assert parse_limit("20") == 20
    assert parse_limit("100") == 100
    assert parse_limit("500", over_max="cap") == 100
    for bad in ("0", "-1", "x", "101", "500"):
        with pytest.raises(QueryError):
            parse_limit(bad)
    order = parse_order("-name")
    assert order == Order("name", True)
    assert parse_order(" name") == parse_order("+name") == Order("name")  # "+" read as a space
    token = encode_token(Cursor(order.spec, ("Loyalty", "id-1")))
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_token(token, query_mode=False) == Cursor("-name", ("Loyalty", "id-1"))
    for bad_token in ("%%%", "garbage!", "e30", token + "x" * MAX_TOKEN):
        with pytest.raises(QueryError, match="invalid continuationToken"):
            decode_token(bad_token, query_mode=False)
    with pytest.raises(QueryError):  # a position token is not a query token, nor the reverse
        decode_token(token, query_mode=True)
    with pytest.raises(QueryError):
        parse_order("colour")


def test_count_and_parameter_names() -> None:
    assert parse_count("true") and parse_count("True") and not parse_count("False")
    assert not parse_count(None)
    with pytest.raises(QueryError):
        parse_count("yes")
    check_names({"property": ["a==b"], "limit": ["1"]}, {"property", "limit"})
    with pytest.raises(QueryError, match="unknown query parameter 'start'"):
        check_names({"property": ["a==b"], "start": ["1"]}, {"property", "limit"})


def _next_token(query_mode: bool, **params: list[str]) -> str:
    query = parse_list_query(params, query_mode=query_mode)
    last: tuple[Any, str] = ("M", "id-5") if query.order.field == "name" else (5, "id-5")
    return encode_token(query.cursor(last, query_mode=query_mode))


def test_a_position_token_takes_the_filters_from_the_request() -> None:
    token = _next_token(False, property=["state==enabled"], limit=["2"])
    again = parse_list_query(
        {"continuationToken": [token], "property": ["state==enabled"]}, query_mode=False
    )
    assert [c.text for c in again.conditions] == ["state==enabled"] and again.after == (5, "id-5")
    forgot = parse_list_query({"continuationToken": [token]}, query_mode=False)
    assert forgot.conditions == () and forgot.limit is None  # unfiltered: the mode bites
    with pytest.raises(QueryError, match="does not belong"):
        parse_list_query({"continuationToken": [token], "orderby": ["name"]}, query_mode=False)


def test_a_query_token_carries_the_query_and_refuses_another() -> None:
    token = _next_token(True, property=["state==enabled", "name>A"], limit=["2"], orderby=["-name"])
    alone = parse_list_query({"continuationToken": [token]}, query_mode=True)
    assert sorted(c.text for c in alone.conditions) == ["name>A", "state==enabled"]
    assert alone.order == Order("name", True) and alone.limit == 2
    same = parse_list_query(
        {
            "continuationToken": [token],
            "property": ["name>A", "state==enabled"],
            "orderby": ["-name"],
            "limit": ["3"],
        },
        query_mode=True,
    )
    assert same.conditions == alone.conditions and same.limit == 3  # a limit may change
    for other in (
        {"property": ["state==enabled"]},
        {"property": ["state==disabled", "name>A"]},
        {"orderby": ["name"]},
    ):
        with pytest.raises(QueryError, match="does not belong"):
            parse_list_query({"continuationToken": [token], **other}, query_mode=True)
