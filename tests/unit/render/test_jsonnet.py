"""Jsonnet options, import confinement, output decoding and argv: no binary needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitsail.kinds.argo_application import render_options
from gitsail.model import Artifact
from gitsail.render import DirectoryOptions, Renderer, RenderError, RenderOptions, cache_key
from gitsail.render._jsonnet import (
    Jsonnet,
    build_environment,
    check_imports,
    decode_output,
    envsubst,
    substitute,
)
from gitsail.render._options import JsonnetOptions, JsonnetVar
from gitsail.render._process import ToolRunner


def _opts(jsonnet: object) -> RenderOptions:
    source = {"directory": {"jsonnet": jsonnet}}
    return render_options(source, app_name="guestbook", namespace="prod")


# --- options -----------------------------------------------------------------------------


def test_jsonnet_block_is_parsed_into_ext_vars_tlas_and_libs() -> None:
    opts = _opts(
        {
            "extVars": [
                {"name": "env", "value": "prod"},
                {"name": "n", "value": "3", "code": True},
            ],
            "tlas": [{"name": "ns", "value": "$ARGOCD_APP_NAMESPACE"}],
            "libs": ["vendor", "/lib/k8s", "a/../b"],
        }
    )
    assert opts.directory == DirectoryOptions(
        jsonnet=JsonnetOptions(
            ext_vars=(JsonnetVar("env", "prod"), JsonnetVar("n", "3", code=True)),
            tlas=(JsonnetVar("ns", "$ARGOCD_APP_NAMESPACE"),),
            libs=("vendor", "lib/k8s", "b"),
        )
    )
    assert opts.explicit_tool() == "directory"


@pytest.mark.parametrize(
    "name", ["--output-file", "-e", "a=b", "", "1x", "has space", "x" * 300, "a\nb"]
)
def test_a_variable_name_that_is_not_an_identifier_is_refused(name: str) -> None:
    with pytest.raises(RenderError, match="not a Jsonnet identifier"):
        _opts({"extVars": [{"name": name, "value": "v"}]})
    with pytest.raises(RenderError, match="not a Jsonnet identifier"):
        _opts({"tlas": [{"name": name, "value": "v"}]})


def test_values_with_nul_bytes_or_over_the_argv_limit_are_refused() -> None:
    with pytest.raises(RenderError, match="NUL"):
        _opts({"extVars": [{"name": "a", "value": "x\0y"}]})
    with pytest.raises(RenderError, match="longer than"):
        _opts({"tlas": [{"name": "a", "value": "x" * 70_000}]})


@pytest.mark.parametrize("lib", ["..", "../other", "a/../../b", "/../etc", ""])
def test_a_library_path_leaving_the_repository_is_refused(lib: str) -> None:
    with pytest.raises(RenderError, match=r"libs\[0\]"):
        _opts({"libs": [lib]})


@pytest.mark.parametrize(
    "jsonnet",
    [
        {"extVars": "a=b"},
        {"extVars": [["a", "b"]]},
        {"tlas": [{"name": "a", "value": "b", "code": "yes"}]},
        {"libs": [3]},
        {"extVar": [{"name": "a", "value": "b"}]},
    ],
)
def test_malformed_jsonnet_blocks_are_refused(jsonnet: object) -> None:
    with pytest.raises(RenderError, match=r"spec\.source\.directory\.jsonnet"):
        _opts(jsonnet)


def test_ext_vars_and_tlas_change_the_cache_key() -> None:
    a = _opts({"extVars": [{"name": "env", "value": "prod"}]})
    b = _opts({"extVars": [{"name": "env", "value": "dev"}]})
    c = _opts({"tlas": [{"name": "env", "value": "prod"}]})
    d = _opts({"extVars": [{"name": "env", "value": "prod", "code": True}]})
    keys = {
        cache_key("sha256:1", "directory", o, tool_version="jsonnet/v0.21.0") for o in (a, b, c, d)
    }
    assert len(keys) == 4
    assert cache_key("sha256:1", "directory", a, tool_version="jsonnet/v0.21.0") != cache_key(
        "sha256:1", "directory", a, tool_version="jsonnet/v0.22.0"
    )


# --- the build environment ---------------------------------------------------------------


def test_envsubst_follows_go_os_expand_as_argo_cd_uses_it() -> None:
    env = {"ARGOCD_APP_NAME": "guestbook", "X": "1"}
    assert envsubst("$ARGOCD_APP_NAME-${X}", env) == "guestbook-1"
    assert envsubst("$UNKNOWN|$$|$1|${}", env) == "|$||"
    assert envsubst("cost: 5 $", env) == "cost: 5 $"


def test_build_environment_never_carries_url_credentials() -> None:
    env = build_environment(
        app_name="a",
        namespace="n",
        revision="0123456789abcdef",
        path="apps/a",
        repo_url="https://user:hunter2@git.example/r.git",
        requested="main",
    )
    assert env["ARGOCD_APP_SOURCE_REPO_URL"] == "https://git.example/r.git"
    assert env["ARGOCD_APP_REVISION_SHORT"] == "0123456"
    assert env["ARGOCD_APP_REVISION_SHORT_8"] == "01234567"
    opts = JsonnetOptions(tlas=(JsonnetVar("rev", "$ARGOCD_APP_REVISION_SHORT", code=False),))
    assert substitute(opts, env).tlas == (JsonnetVar("rev", "0123456"),)


# --- import confinement ------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "app" / "sub").mkdir(parents=True)
    (root / "lib").mkdir()
    (root / "lib" / "k.libsonnet").write_text("{ kind: 'ConfigMap' }")
    (tmp_path / "secret.txt").write_text("s3cret")
    return root


def _check(repo: Path, text: str, *, libs: tuple[str, ...] = ()) -> None:
    main = repo / "app" / "main.jsonnet"
    main.write_text(text)
    search = [repo / "app", *(repo / lib for lib in libs)]
    check_imports(repo, search, [("", main, "app/main.jsonnet")], max_bytes=1 << 20)


def test_imports_inside_the_repository_pass(repo: Path) -> None:
    (repo / "app" / "sub" / "x.libsonnet").write_text("import '../../lib/k.libsonnet'")
    _check(repo, "import 'sub/x.libsonnet' + import 'k.libsonnet'", libs=("lib",))


@pytest.mark.parametrize(
    "text",
    [
        "importstr '/etc/shadow'",
        "import '../../secret.txt'",
        "importbin '../../../../../../etc/passwd'",
        "import 'sub/../../../secret.txt'",
    ],
)
def test_absolute_and_escaping_imports_are_refused(repo: Path, text: str) -> None:
    with pytest.raises(RenderError, match="is refused"):
        _check(repo, text)


def test_an_escape_in_an_imported_library_is_refused(repo: Path) -> None:
    (repo / "lib" / "k.libsonnet").write_text("importstr '../../secret.txt'")
    with pytest.raises(RenderError, match=r"lib/k\.libsonnet:1: importstr.*outside"):
        _check(repo, "import 'k.libsonnet'", libs=("lib",))


def test_a_symlink_out_of_the_repository_is_refused(repo: Path) -> None:
    (repo / "app" / "link.txt").symlink_to(repo.parent / "secret.txt")
    with pytest.raises(RenderError, match="symlink that points outside"):
        _check(repo, "importstr 'link.txt'")


def test_code_values_are_checked_like_files(repo: Path) -> None:
    search = [repo / "app"]
    snippet = ("importstr '/etc/hostname'", repo / "app" / "<extVar x>", "extVar x")
    with pytest.raises(RenderError, match="extVar x:1: importstr '/etc/hostname' is refused"):
        check_imports(repo, search, [snippet], max_bytes=1 << 20)


def test_a_program_that_cannot_be_scanned_is_refused(repo: Path) -> None:
    with pytest.raises(RenderError, match="cannot read its imports"):
        _check(repo, "import '\\u002e\\u002e/secret.txt'")


def test_an_oversized_program_is_refused(repo: Path) -> None:
    main = repo / "app" / "main.jsonnet"
    main.write_text("[" + "1," * 1000 + "]")
    with pytest.raises(RenderError, match="larger than"):
        check_imports(repo, [repo / "app"], [("", main, "app/main.jsonnet")], max_bytes=100)


def test_a_library_directory_symlinked_out_of_the_repository_is_refused(repo: Path) -> None:
    (repo / "outside").symlink_to(repo.parent)
    opts = JsonnetOptions(libs=("outside",))
    with pytest.raises(RenderError, match="leads outside the repository"):
        Jsonnet(
            ToolRunner(home=repo / ".h"), Path("/j"), root=repo, app_dir=repo / "app", options=opts
        )


# --- argv --------------------------------------------------------------------------------


def test_argv_passes_values_as_separate_words_and_the_file_after_double_dash(repo: Path) -> None:
    opts = JsonnetOptions(
        ext_vars=(JsonnetVar("a", "--output-file=/tmp/x"), JsonnetVar("b", "{}", code=True)),
        tlas=(JsonnetVar("c", "-J /"),),
        libs=("lib",),
    )
    evaluator = Jsonnet(
        ToolRunner(home=repo / ".h"),
        Path("/bin/jsonnet"),
        root=repo,
        app_dir=repo / "app",
        options=opts,
    )
    argv = evaluator.argv(repo / "app" / "main.jsonnet")
    real = repo.resolve()
    assert argv == [
        "/bin/jsonnet",
        "--ext-str",
        "a=--output-file=/tmp/x",
        "--ext-code",
        "b={}",
        "--tla-str",
        "c=-J /",
        "--jpath",
        str(real / "app"),
        "--jpath",
        str(real / "lib"),
        "--",
        str(repo / "app" / "main.jsonnet"),
    ]


# --- output ------------------------------------------------------------------------------

_CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}


def test_output_may_be_an_object_an_array_or_a_list_kind() -> None:
    import json

    one = json.dumps(_CM).encode()
    assert decode_output(one, "a.jsonnet") == [_CM]
    assert decode_output(json.dumps([_CM, None, {}, _CM]).encode(), "a.jsonnet") == [_CM, _CM]
    listed = {"apiVersion": "v1", "kind": "List", "items": [_CM, _CM]}
    assert decode_output(json.dumps([listed]).encode(), "a.jsonnet") == [_CM, _CM]


def test_nested_arrays_and_non_objects_are_errors_naming_the_file() -> None:
    with pytest.raises(RenderError, match=r"a\.jsonnet: output item 0 is an array"):
        decode_output(b'[[{"apiVersion": "v1", "kind": "ConfigMap"}]]', "a.jsonnet")
    with pytest.raises(RenderError, match="without apiVersion and kind"):
        decode_output(b'{"a": {"apiVersion": "v1", "kind": "ConfigMap"}}', "a.jsonnet")
    with pytest.raises(RenderError, match="is not a Kubernetes object"):
        decode_output(b'"text"', "a.jsonnet")


# --- the renderer ------------------------------------------------------------------------


async def test_a_directory_without_jsonnet_files_never_needs_the_binary(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITSAIL_BIN_JSONNET", str(repo / "missing-jsonnet"))
    (repo / "app" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    artifact = Artifact(url="u", revision="r", requested="", root=repo, path="app", digest="")
    rendered = await Renderer(work_dir=repo.parent / "w").render(artifact, RenderOptions())
    assert [m["metadata"]["name"] for m in rendered.manifests] == ["a"]


# --- what the digest covers --------------------------------------------------------------


def test_the_digest_covers_files_imported_next_to_a_program(repo: Path) -> None:
    from gitsail.source import input_files

    (repo / "common").mkdir()
    (repo / "common" / "x.libsonnet").write_text("importstr 'data.txt'")
    (repo / "common" / "data.txt").write_text("d")
    (repo / "app" / "main.jsonnet").write_text("import '../common/x.libsonnet'")
    files = input_files(repo, "app", tool_hint="directory")
    assert files is not None
    rels = [f.relative_to(repo.resolve()).as_posix() for f in files]
    assert rels == ["app/main.jsonnet", "common/data.txt", "common/x.libsonnet"]


def test_an_import_through_a_library_directory_makes_the_digest_cover_the_tree(
    repo: Path,
) -> None:
    from gitsail.source import input_files

    (repo / "app" / "main.jsonnet").write_text("import 'k.libsonnet'")
    assert input_files(repo, "app", tool_hint="directory") is None


def test_jsonnet_code_that_imports_turns_the_render_cache_off() -> None:
    from gitsail.render._jsonnet import code_imports

    plain = _opts({"extVars": [{"name": "a", "value": "import 'x'"}]})
    code = _opts({"extVars": [{"name": "a", "value": "import 'x'", "code": True}]})
    assert not code_imports(plain.directory)
    assert code_imports(code.directory)
