"""Directory Jsonnet with the real pinned go-jsonnet binary, on a read-only checkout."""

from __future__ import annotations

import dataclasses
import hashlib
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitsail.kinds.argo_application import render_options
from gitsail.model import Artifact, Obj
from gitsail.policy import DEFAULT_POLICY
from gitsail.render import Renderer, RenderError, RenderOptions
from gitsail.toolchain import find_binary

pytestmark = pytest.mark.integration


def _cm(name: str, **data: str) -> str:
    return f"{{apiVersion: 'v1', kind: 'ConfigMap', metadata: {{name: '{name}'}}, data: {data!r}}}"


class Repo:
    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))

    def artifact(self, path: str = "app") -> Artifact:
        files = sorted(p for p in self.root.rglob("*") if p.is_file())
        content = "".join(f"{p}{p.read_text()}" for p in files)
        return Artifact(
            url="https://user:pw@git.example/repo.git",
            revision="0123456789abcdef0123456789abcdef01234567",
            requested="main",
            root=self.root,
            path=path,
            digest="sha256:" + hashlib.sha256(content.encode()).hexdigest(),
        )


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    root = tmp_path / "checkout"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("the-host-secret")
    return Repo(root)


@pytest.fixture
def renderer(tmp_path: Path) -> Iterator[Renderer]:
    r = Renderer(work_dir=tmp_path / "work", jsonnet=find_binary("jsonnet"))
    yield r
    r.close()


def _opts(directory: dict[str, Any] | None = None) -> RenderOptions:
    source = {"directory": directory} if directory else {}
    return render_options(source, app_name="guestbook", namespace="prod")


def _names(objs: tuple[Obj, ...]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


async def test_ext_vars_and_tlas_reach_the_program_with_the_build_environment(
    repo: Repo, renderer: Renderer
) -> None:
    repo.write(
        "app/main.jsonnet",
        """
        function(ns, replicas) {
          apiVersion: 'v1', kind: 'ConfigMap',
          metadata: {name: std.extVar('app'), namespace: ns},
          data: {env: std.extVar('env'), replicas: std.toString(replicas + 1),
                 url: std.extVar('url'), rev: std.extVar('rev')},
        }
        """,
    )
    opts = _opts(
        {
            "jsonnet": {
                "extVars": [
                    {"name": "app", "value": "$ARGOCD_APP_NAME"},
                    {"name": "env", "value": "--prod"},
                    {"name": "url", "value": "${ARGOCD_APP_SOURCE_REPO_URL}"},
                    {"name": "rev", "value": "$ARGOCD_APP_REVISION_SHORT"},
                ],
                "tlas": [
                    {"name": "ns", "value": "$ARGOCD_APP_NAMESPACE"},
                    {"name": "replicas", "value": "2", "code": True},
                ],
            }
        }
    )
    rendered = await renderer.render(repo.artifact(), opts)
    assert rendered.tool == "directory"
    (cm,) = rendered.manifests
    assert cm["metadata"] == {"name": "guestbook", "namespace": "prod"}
    assert cm["data"] == {
        "env": "--prod",
        "replicas": "3",
        "url": "https://git.example/repo.git",
        "rev": "0123456",
    }


async def test_libs_recurse_include_and_exclude_are_honoured(
    repo: Repo, renderer: Renderer
) -> None:
    repo.write("vendor/k.libsonnet", "{ cm(name):: " + _cm("x").replace("'x'", "name") + " }")
    repo.write("app/a.jsonnet", "(import 'k.libsonnet').cm('from-lib')")
    repo.write("app/helpers.libsonnet", "{ never: 'rendered on its own' }")
    repo.write("app/sub/b.jsonnet", _cm("nested"))
    repo.write("app/sub/skip.jsonnet", _cm("excluded"))
    repo.write("app/c.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: yaml}\n")
    flat = await renderer.render(repo.artifact(), _opts({"jsonnet": {"libs": ["vendor"]}}))
    assert _names(flat.manifests) == ["from-lib", "yaml"]
    deep = await renderer.render(
        repo.artifact(),
        _opts({"recurse": True, "exclude": "*skip*", "jsonnet": {"libs": ["/vendor"]}}),
    )
    assert _names(deep.manifests) == ["from-lib", "yaml", "nested"]
    only = await renderer.render(
        repo.artifact(), _opts({"recurse": True, "include": "sub/*.jsonnet"})
    )
    assert _names(only.manifests) == ["nested", "excluded"]


async def test_arrays_and_list_kinds_are_flattened_in_order(repo: Repo, renderer: Renderer) -> None:
    repo.write(
        "app/list.jsonnet",
        f"""
        [
          {_cm("one")},
          {{apiVersion: 'v1', kind: 'List', items: [{_cm("two")}, {_cm("three")}]}},
          null,
        ]
        """,
    )
    rendered = await renderer.render(repo.artifact(), _opts())
    assert _names(rendered.manifests) == ["one", "two", "three"]


async def test_a_nested_array_is_an_error_as_in_argo_cd(repo: Repo, renderer: Renderer) -> None:
    repo.write("app/nested.jsonnet", f"[[{_cm('a')}]]")
    with pytest.raises(RenderError, match=r"app/nested\.jsonnet: output item 0 is an array"):
        await renderer.render(repo.artifact(), _opts())


@pytest.mark.parametrize(
    "program",
    [
        "importstr '../../secret.txt'",
        "importstr '/etc/passwd'",
        "{ data: importstr 'link.txt' }",
    ],
)
async def test_reading_outside_the_repository_is_refused_before_jsonnet_runs(
    repo: Repo, renderer: Renderer, program: str
) -> None:
    (repo.root / "app").mkdir()
    (repo.root / "app" / "link.txt").symlink_to(repo.root.parent / "secret.txt")
    repo.write("app/steal.jsonnet", program)
    calls = renderer.subprocess_calls
    with pytest.raises(RenderError, match="is refused") as caught:
        await renderer.render(repo.artifact(), _opts())
    assert "the-host-secret" not in str(caught.value)
    assert str(repo.root) not in str(caught.value)
    assert renderer.subprocess_calls - calls <= 1  # at most the version probe, never an eval


async def test_an_import_in_a_code_value_is_checked_too(repo: Repo, renderer: Renderer) -> None:
    repo.write("app/main.jsonnet", _cm("a"))
    opts = _opts(
        {
            "jsonnet": {
                "extVars": [{"name": "x", "value": "importstr '/etc/hostname'", "code": True}]
            }
        }
    )
    with pytest.raises(RenderError, match="extVar x:1: importstr '/etc/hostname' is refused"):
        await renderer.render(repo.artifact(), opts)


async def test_errors_name_repository_paths_not_the_checkout(
    repo: Repo, renderer: Renderer
) -> None:
    repo.write("app/broken.jsonnet", "{ a: error 'boom' }")
    with pytest.raises(RenderError, match=r"app/broken\.jsonnet") as caught:
        await renderer.render(repo.artifact(), _opts())
    assert "boom" in str(caught.value)
    assert str(repo.root) not in str(caught.value)


@pytest.mark.parametrize(
    ("program", "limits", "message"),
    [
        (
            "{apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'a'}, "
            "data: {k: std.join(',', std.makeArray(200000, function(i) 'xxxxxxxx'))}}",
            {"render_output_bytes": 1_000_000},
            "larger than 1000000 bytes",
        ),
        (
            "local s = std.join('', std.makeArray(100000, function(i) 'x'));"
            "std.foldl(function(a, i) std.md5(s + a), std.range(1, 20000), '')",
            {"render_timeout": 2.0},
            r"timed out after 2s|resource limit",
        ),
        (
            "local s = std.join('', [std.repeat('x', 1000000) + i for i in std.range(1, 3000)]);"
            "{apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'm'}, data: {n: s}}",
            {"render_memory_bytes": 1024 * 1024 * 1024},
            r"out of memory|resource limit",
        ),
    ],
    ids=["output", "time", "memory"],
)
async def test_output_time_and_memory_limits_stop_the_evaluation(
    repo: Repo, tmp_path: Path, program: str, limits: dict[str, Any], message: str
) -> None:
    repo.write("app/main.jsonnet", program)
    policy = dataclasses.replace(DEFAULT_POLICY, **limits)
    r = Renderer(work_dir=tmp_path / "w2", jsonnet=find_binary("jsonnet"), policy=policy)
    try:
        with pytest.raises(RenderError, match=message):
            await r.render(repo.artifact(), _opts())
    finally:
        r.close()


async def test_the_cache_key_carries_the_jsonnet_version_and_the_values(
    repo: Repo, renderer: Renderer
) -> None:
    repo.write(
        "app/main.jsonnet",
        "{apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: std.extVar('n')}}",
    )
    a = _opts({"jsonnet": {"extVars": [{"name": "n", "value": "a"}]}})
    b = _opts({"jsonnet": {"extVars": [{"name": "n", "value": "b"}]}})
    first = await renderer.render(repo.artifact(), a)
    second = await renderer.render(repo.artifact(), b)
    assert (_names(first.manifests), _names(second.manifests)) == (["a"], ["b"])
    assert first.key != second.key
    assert (await renderer.tool_version("jsonnet")).startswith("jsonnet/v0.")
