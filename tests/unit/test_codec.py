"""gitsail.codec: orjson where it can, the standard library's answer where orjson refuses."""

from __future__ import annotations

import json
import math
from pathlib import PurePosixPath

import pytest

from gitsail import codec


def test_round_trip_of_an_object_as_the_apiserver_sends_it() -> None:
    obj = {"metadata": {"name": "web", "labels": {"é": "ü"}}, "spec": {"replicas": 3}}
    assert codec.loads(codec.dumps(obj)) == obj
    assert codec.dumps({"a": [1, 2.5, None, True]}) == b'{"a":[1,2.5,null,true]}'


def test_sorted_output_is_canonical_and_equal_to_the_standard_library() -> None:
    value = {"b": 1, "a": {"d": [3, {"z": 1, "y": 2}], "c": "é"}}
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert codec.dumps(value, sort_keys=True) == expected.encode()


def test_digest_ignores_key_order_and_sees_every_value() -> None:
    assert codec.digest({"a": 1, "b": [1, 2]}) == codec.digest({"b": [1, 2], "a": 1})
    assert codec.digest({"a": 1, "b": [1, 2]}) != codec.digest({"a": 1, "b": [2, 1]})
    assert codec.digest({"a": 1}) != codec.digest({"a": "1"})


def test_what_orjson_refuses_to_encode_falls_back_to_the_standard_library() -> None:
    big = 2**70
    assert codec.dumps({"n": big}) == b'{"n":1180591620717411303424}'
    assert codec.dumps({1: "one"}) == b'{"1":"one"}'
    # default=str for a value neither library knows (as the digests always did)
    assert codec.dumps({"p": PurePosixPath("a/b")}) == b'{"p":"a/b"}'
    assert codec.digest({"n": big}) != codec.digest({"n": big + 1})


def test_what_orjson_refuses_to_decode_falls_back_to_the_standard_library() -> None:
    assert math.isnan(codec.loads(b'{"x": NaN}')["x"])
    assert codec.loads("[1]") == [1]
    assert codec.loads(bytearray(b'{"a":1}')) == {"a": 1}


@pytest.mark.parametrize("data", [b"", b"{", b"not json", b'{"a":1}x'])
def test_what_is_not_json_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(json.JSONDecodeError):  # a ValueError, as callers catch it
        codec.loads(data)


def test_decoded_objects_share_their_map_keys() -> None:
    """The memory point of the codec: a thousand cached objects hold one copy of a key."""
    first = codec.loads(b'{"managedFields-like-key": 1}')
    second = codec.loads(b'{"managedFields-like-key": 2}')
    assert next(iter(first)) is next(iter(second))


def test_share_strings_makes_equal_short_values_one_object_and_changes_nothing_else() -> None:
    text = b'{"status": {"conditions": [{"type": "Available", "status": "True"}]}, "n": 1}'
    first, second = codec.loads(text), codec.loads(text)
    before = codec.loads(text)
    assert codec.share_strings(first) is first
    codec.share_strings(second)
    assert first == second == before  # the same values
    a, b = first["status"]["conditions"][0], second["status"]["conditions"][0]
    assert a["type"] is b["type"]
    assert a["status"] is b["status"]
    listed = codec.share_strings(codec.loads(b'["Available", ["True"]]'))
    assert listed[0] is a["type"]
    assert listed[1][0] is a["status"]


def test_share_strings_leaves_long_values_alone() -> None:
    long = "x" * (codec.SHARED_STRING_MAX + 1)
    one = codec.loads(codec.dumps({"cert": long}))
    two = codec.loads(codec.dumps({"cert": long}))
    codec.share_strings(one)
    codec.share_strings(two)
    assert one == two
    assert one["cert"] is not two["cert"]
