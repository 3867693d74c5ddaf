"""The public API is exactly ``gitsail.render.__all__``."""

from __future__ import annotations

import gitsail.render as render


def test_all_names_exist_and_nothing_private_is_exported() -> None:
    assert sorted(render.__all__) == sorted(set(render.__all__))
    for name in render.__all__:
        assert not name.startswith("_")
        assert hasattr(render, name)
    public = {n for n in vars(render) if not n.startswith("_") and n != "annotations"}
    assert public == set(render.__all__)
