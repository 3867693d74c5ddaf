import pytest

from gitsail.diff import DiffError
from gitsail.diff.pointer import format_pointer, parse_pointer, remove_pointer


def test_pointer_tokens_unescape_tilde_sequences_in_order() -> None:
    assert parse_pointer("/metadata/annotations/example.com~1rev") == (
        "metadata",
        "annotations",
        "example.com/rev",
    )
    assert parse_pointer("/a~0b") == ("a~b",)
    assert parse_pointer("/~01") == ("~1",)
    assert parse_pointer("") == ()


def test_pointer_must_start_with_a_slash() -> None:
    with pytest.raises(DiffError, match="must start with '/'"):
        parse_pointer("spec/replicas")


def test_format_round_trips_through_parse() -> None:
    tokens = ("metadata", "annotations", "a/b~c", 0)
    assert format_pointer(tokens) == "/metadata/annotations/a~1b~0c/0"
    assert parse_pointer(format_pointer(tokens)) == ("metadata", "annotations", "a/b~c", "0")


def test_remove_deletes_map_keys_and_list_items() -> None:
    doc = {"spec": {"replicas": 3, "containers": [{"name": "a"}, {"name": "b"}]}}
    assert remove_pointer(doc, parse_pointer("/spec/containers/0"))
    assert remove_pointer(doc, parse_pointer("/spec/replicas"))
    assert doc == {"spec": {"containers": [{"name": "b"}]}}


def test_remove_of_missing_paths_is_a_no_op() -> None:
    doc = {"spec": {"containers": [{"name": "a"}]}}
    for pointer in ("/status/replicas", "/spec/containers/5", "/spec/containers/-", "/spec/x/y"):
        assert not remove_pointer(doc, parse_pointer(pointer))
    assert not remove_pointer(doc, parse_pointer("/spec/containers/01"))
    assert not remove_pointer(doc, ())
    assert doc == {"spec": {"containers": [{"name": "a"}]}}
