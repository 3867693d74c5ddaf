"""Moved to ``gitsail.source.yamledit`` (the controller's image automation edits files with
it too, and the controller may not import the workflow layer); the names stay here."""

from gitsail.source.yamledit import (
    MAX_FILE_BYTES,
    EditError,
    Splice,
    apply_splices,
    compose,
    delete_key,
    insert_key,
    last_index,
    line_end,
    line_start,
    lookup,
    replace_scalar,
    scalar_text,
    set_key,
    walk,
)

__all__ = [
    "MAX_FILE_BYTES",
    "EditError",
    "Splice",
    "apply_splices",
    "compose",
    "delete_key",
    "insert_key",
    "last_index",
    "line_end",
    "line_start",
    "lookup",
    "replace_scalar",
    "scalar_text",
    "set_key",
    "walk",
]
