"""The emulator's small building blocks without HTTP: JSON Patch, merge patch, filters, tokens."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pinmigrate.emulator.jsonpatch import PatchError, apply_patch, merge_patch
from pinmigrate.emulator.query import (
    Order,
    QueryError,
    decode_token,
    encode_token,
    parse_condition,
    parse_limit,
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
    assert parse_limit(None, cap=100) == 100
    assert parse_limit("20", cap=100) == 20
    assert parse_limit("500", cap=100) == 100
    for bad in ("0", "-1", "x"):
        with pytest.raises(QueryError):
            parse_limit(bad, cap=100)
    order = parse_order("-name")
    assert order == Order("name", True)
    token = encode_token(order, ("Loyalty", "id-1"))
    assert decode_token(token, order) == ("Loyalty", "id-1")
    with pytest.raises(QueryError):
        decode_token(token, Order("createdAt"))
    with pytest.raises(QueryError):
        decode_token("%%%", order)
    with pytest.raises(QueryError):
        parse_order("colour")
