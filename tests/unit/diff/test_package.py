import gitsail.diff

SUBMODULES = {
    "compare",
    "drift",
    "errors",
    "fields",
    "ignore",
    "jqpath",
    "normalize",
    "pointer",
    "redact",
    "sealed",
}


def test_public_api_is_exactly_all() -> None:
    public = {name for name in dir(gitsail.diff) if not name.startswith("_")}
    assert public - (SUBMODULES - set(gitsail.diff.__all__)) == set(gitsail.diff.__all__)


def test_normalize_name_is_the_function_not_the_module() -> None:
    assert callable(gitsail.diff.normalize)
    assert gitsail.diff.normalize({"status": {}, "kind": "ConfigMap"}) == {"kind": "ConfigMap"}
