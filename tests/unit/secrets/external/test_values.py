"""External Secrets' value handling: properties, keys, decoding, rewrite, data hash."""

from __future__ import annotations

import hashlib

import pytest

from gitsail.secrets.external.values import (
    ValueProblem,
    convert_key,
    data_hash,
    decode,
    go_regexp,
    json_map,
    pick_property,
    rewrite_keys,
)


def test_exact_top_level_property_wins_over_a_gjson_path() -> None:
    raw = b'{"a.b": "exact", "a": {"b": "nested"}}'
    assert pick_property(raw, "a.b", key="k") == b"exact"
    assert pick_property(b'{"a": {"b": "nested"}}', "a.b", key="k") == b"nested"


def test_property_paths_index_lists_and_escape_dots() -> None:
    raw = b'{"list": ["x", {"y": 1}], "d.e": {"f": true}}'
    assert pick_property(raw, "list.0", key="k") == b"x"
    assert pick_property(raw, "list.1.y", key="k") == b"1"
    assert pick_property(raw, "d\\.e.f", key="k") == b"true"
    assert pick_property(raw, "list.#", key="k") == b"2"


def test_missing_property_and_non_json_say_which_key_without_the_value() -> None:
    with pytest.raises(ValueProblem, match="has no property 'nope'") as missing:
        pick_property(b'{"password": "hunter2-secret"}', "nope", key="db")
    assert "hunter2" not in str(missing.value)
    with pytest.raises(ValueProblem, match="not JSON") as not_json:
        pick_property(b"plain-secret-text", "p", key="db")
    assert "plain-secret-text" not in str(not_json.value)


def test_json_map_turns_non_strings_into_json() -> None:
    assert json_map(b'{"a": "x", "n": 3, "o": {"k": 1}, "z": null}', key="k") == {
        "a": b"x",
        "n": b"3",
        "o": b'{"k":1}',
        "z": b"",
    }
    with pytest.raises(ValueProblem):
        json_map(b"[1]", key="k")


def test_convert_key_default_and_unicode() -> None:
    assert convert_key("db/pass word@x", "Default") == "db_pass_word_x"
    assert convert_key("a/b", "Unicode") == "a_U002f_b"
    assert convert_key("ok-._1", "Default") == "ok-._1"


def test_decoding_strategies() -> None:
    assert decode(b"aGVsbG8=", "Base64", key="k") == b"hello"
    assert decode(b"aGVsbG8", "Base64", key="k") == b"hello"  # padding is optional
    assert decode(b"-_8=", "Base64URL", key="k") == b"\xfb\xff"
    assert decode(b"-_8=", "Auto", key="k") == b"\xfb\xff"
    assert decode(b"not base64!", "Auto", key="k") == b"not base64!"
    assert decode(b"raw", "None", key="k") == b"raw"
    with pytest.raises(ValueProblem, match="not valid base64"):
        decode(b"not base64!", "Base64", key="k")


def test_rewrite_uses_go_replacement_syntax() -> None:
    data = {"db-user": b"1", "db-pass": b"2", "other": b"3"}
    out = rewrite_keys(data, "^db-(.*)$", "DB_${1}", where="r")
    assert out == {"DB_user": b"1", "DB_pass": b"2", "other": b"3"}
    # Go skips an empty match right after a match: (.*) rewrites a key once, not twice.
    assert rewrite_keys({"user": b"1"}, "(.*)", "db_$1", where="r") == {"db_user": b"1"}
    assert rewrite_keys({"a-b": b"1"}, "-?", "_", where="r") == {"_a_b_": b"1"}
    named = rewrite_keys({"ab": b"1"}, "(?P<first>a)b", "$first-x", where="r")
    assert named == {"a-x": b"1"}


def test_regexps_that_re2_does_not_have_are_refused() -> None:
    with pytest.raises(ValueProblem, match="not RE2"):
        go_regexp("(a)\\1", where="w")
    with pytest.raises(ValueProblem, match="over"):
        go_regexp("a" * 2000, where="w")


def test_data_hash_is_esos_object_hash_of_the_byte_map() -> None:
    text = b"map[a:[104 105] b:[]]"
    assert data_hash({"b": b"", "a": b"hi"}) == hashlib.sha3_224(text).hexdigest()
