"""The import scanner reads what go-jsonnet would import, and refuses what it cannot read."""

from __future__ import annotations

import pytest

from gitsail.source.jsonnet_imports import JsonnetImport, JsonnetImportError, imports


def _paths(text: str) -> list[tuple[str, str]]:
    return [(i.kind, i.path) for i in imports(text)]


def test_every_import_kind_and_literal_form_is_found_with_its_line() -> None:
    text = (
        "local a = import 'a.libsonnet';\n"
        'local b = importstr "b.txt";\n'
        "local c = importbin @'c''s.bin';\n"
        'local d = import /* between */ @"d.libsonnet";\n'
        "a + b"
    )
    assert imports(text) == [
        JsonnetImport("import", "a.libsonnet", 1),
        JsonnetImport("importstr", "b.txt", 2),
        JsonnetImport("importbin", "c's.bin", 3),
        JsonnetImport("import", "d.libsonnet", 4),
    ]


def test_imports_in_comments_and_strings_are_not_imports() -> None:
    text = (
        '// import "/etc/passwd"\n'
        '# importstr "/etc/shadow"\n'
        '/* import "/x" */\n'
        '{ a: \'import "/y"\', b: "it\\"s import \'/z\'", c: @\'import "/w"\' }\n'
    )
    assert _paths(text) == []


def test_a_quote_inside_a_text_block_does_not_hide_the_code_after_it() -> None:
    text = 'local t = |||\n  it\'s "quoted\n  still text\n|||;\nimportstr "/etc/shadow"\n'
    assert _paths(text) == [("importstr", "/etc/shadow")]


def test_a_text_block_ends_at_the_first_less_indented_line() -> None:
    text = "local t = |||-\n\n    a\n\n    |||not the end\n  |||;\nimport 'x.libsonnet'\n"
    assert _paths(text) == [("import", "x.libsonnet")]


def test_a_keyword_glued_to_a_number_is_still_checked() -> None:
    # go-jsonnet lexes `1e5import` as a number and the keyword: report it to be safe.
    assert _paths('[1e5import "/etc/passwd"]') == [("import", "/etc/passwd")]


def test_identifiers_that_start_with_import_are_not_imports() -> None:
    assert _paths("local importer = 1; local imports = [importer]; imports") == []


def test_escape_sequences_in_an_import_path_are_refused() -> None:
    with pytest.raises(JsonnetImportError, match="escape sequences"):
        imports('import "\\u002e\\u002e/secret"')


def test_a_text_block_as_an_import_path_is_refused() -> None:
    with pytest.raises(JsonnetImportError, match="text blocks"):
        imports("importstr |||\n  /etc/shadow\n|||")


@pytest.mark.parametrize(
    "text",
    ["'unterminated", "/* open comment", "@'open verbatim", "local t = |||\nnot indented\n|||"],
)
def test_what_cannot_be_read_is_an_error_not_a_skip(text: str) -> None:
    with pytest.raises(JsonnetImportError):
        imports(text)
