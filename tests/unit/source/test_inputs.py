"""input_files / input_digest: exactly the files a render reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitsail.source import InvalidSource, PathNotFound, input_digest, input_files


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


def _rel(root: Path, files: list[Path] | None) -> list[str]:
    assert files is not None
    return [f.relative_to(root.resolve()).as_posix() for f in files]


KUSTOMIZE_REPO = {
    "apps/web/overlays/prod/kustomization.yaml": """
resources:
  - ../../base
  - extra.yaml
components:
  - ../../../../components/monitoring
patches:
  - path: patch-replicas.yaml
    target: {kind: Deployment}
  - patch: |-
      - op: replace
        path: /spec/replicas
        value: 3
patchesStrategicMerge:
  - psm.yaml
  - |-
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: inline}
patchesJson6902:
  - path: json6902.yaml
    target: {kind: Service, name: web}
configMapGenerator:
  - name: cfg
    files: [app.properties, renamed=conf/other.txt]
    envs: [env/prod.env]
secretGenerator:
  - name: sec
    env: env/secret.env
replacements:
  - path: replacement.yaml
openapi:
  path: schema.json
crds: [crds/thing.yaml]
""",
    "apps/web/overlays/prod/extra.yaml": "kind: ConfigMap\n",
    "apps/web/overlays/prod/patch-replicas.yaml": "p\n",
    "apps/web/overlays/prod/psm.yaml": "p\n",
    "apps/web/overlays/prod/json6902.yaml": "p\n",
    "apps/web/overlays/prod/app.properties": "a=1\n",
    "apps/web/overlays/prod/conf/other.txt": "x\n",
    "apps/web/overlays/prod/env/prod.env": "A=1\n",
    "apps/web/overlays/prod/env/secret.env": "S=1\n",
    "apps/web/overlays/prod/replacement.yaml": "r\n",
    "apps/web/overlays/prod/schema.json": "{}\n",
    "apps/web/overlays/prod/crds/thing.yaml": "crd\n",
    "apps/web/overlays/prod/unused.yaml": "not referenced\n",
    "apps/web/overlays/staging/kustomization.yaml": "resources: [../../base]\n",
    "apps/web/base/kustomization.yaml": "resources: [deploy.yaml, svc.yaml]\n",
    "apps/web/base/deploy.yaml": "kind: Deployment\n",
    "apps/web/base/svc.yaml": "kind: Service\n",
    "apps/web/base/README.md": "docs\n",
    "components/monitoring/kustomization.yaml": "kind: Component\nresources: [sm.yaml]\n",
    "components/monitoring/sm.yaml": "kind: ServiceMonitor\n",
    "apps/other/deploy.yaml": "kind: Deployment\n",
}


def test_kustomize_references_are_followed_and_unrelated_files_excluded(tmp_path: Path) -> None:
    root = _tree(tmp_path, KUSTOMIZE_REPO)
    files = _rel(root, input_files(root, "apps/web/overlays/prod"))
    assert files == sorted(
        [
            "apps/web/base/deploy.yaml",
            "apps/web/base/kustomization.yaml",
            "apps/web/base/svc.yaml",
            "apps/web/overlays/prod/app.properties",
            "apps/web/overlays/prod/conf/other.txt",
            "apps/web/overlays/prod/crds/thing.yaml",
            "apps/web/overlays/prod/env/prod.env",
            "apps/web/overlays/prod/env/secret.env",
            "apps/web/overlays/prod/extra.yaml",
            "apps/web/overlays/prod/json6902.yaml",
            "apps/web/overlays/prod/kustomization.yaml",
            "apps/web/overlays/prod/patch-replicas.yaml",
            "apps/web/overlays/prod/psm.yaml",
            "apps/web/overlays/prod/replacement.yaml",
            "apps/web/overlays/prod/schema.json",
            "components/monitoring/kustomization.yaml",
            "components/monitoring/sm.yaml",
        ]
    )


def test_digest_ignores_changes_outside_the_inputs(tmp_path: Path) -> None:
    root = _tree(tmp_path, KUSTOMIZE_REPO)
    before = input_digest(root, "apps/web/overlays/prod")
    _tree(root, {"apps/other/deploy.yaml": "changed\n", "apps/web/base/README.md": "more\n"})
    _tree(root, {"apps/web/overlays/prod/unused.yaml": "still unused\n", "new/file": "x"})
    assert input_digest(root, "apps/web/overlays/prod") == before
    _tree(root, {"apps/web/base/svc.yaml": "kind: Service\nmetadata: {name: x}\n"})
    assert input_digest(root, "apps/web/overlays/prod") != before


def test_digest_is_the_same_for_the_same_content_at_another_root(tmp_path: Path) -> None:
    a = _tree(tmp_path / "a", KUSTOMIZE_REPO)
    b = _tree(tmp_path / "b", KUSTOMIZE_REPO)
    assert input_digest(a, "apps/web/overlays/prod") == input_digest(b, "apps/web/overlays/prod")
    assert input_digest(a, "apps/web/overlays/prod").startswith("sha256:")


def test_renaming_an_input_changes_the_digest(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"app/a.yaml": "x\n"})
    before = input_digest(root, "app")
    (root / "app/a.yaml").rename(root / "app/b.yaml")
    assert input_digest(root, "app") != before


def test_reference_cycles_terminate(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "a/kustomization.yaml": "resources: [../b, cm.yaml]\n",
            "a/cm.yaml": "x\n",
            "b/kustomization.yaml": "resources: [../a]\n",
        },
    )
    assert _rel(root, input_files(root, "a")) == [
        "a/cm.yaml",
        "a/kustomization.yaml",
        "b/kustomization.yaml",
    ]


def test_remote_reference_makes_inputs_unbounded_and_digest_covers_the_tree(
    tmp_path: Path,
) -> None:
    root = _tree(
        tmp_path,
        {
            "app/kustomization.yaml": (
                "resources:\n  - github.com/org/repo//deploy?ref=v1.0.0\n  - local.yaml\n"
            ),
            "app/local.yaml": "x\n",
            "elsewhere/file.yaml": "y\n",
        },
    )
    assert input_files(root, "app") is None
    before = input_digest(root, "app")
    _tree(root, {"elsewhere/file.yaml": "changed\n"})
    assert input_digest(root, "app") != before


def test_https_remote_resource_is_unbounded(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {"app/kustomization.yaml": "resources: [https://example.com/manifests.yaml]\n"},
    )
    assert input_files(root, "app") is None


def test_reference_escaping_the_repository_is_refused(tmp_path: Path) -> None:
    (tmp_path / "outside.yaml").write_text("secret: host file\n")
    root = _tree(tmp_path / "repo", {"app/kustomization.yaml": "resources: [../../outside.yaml]\n"})
    with pytest.raises(InvalidSource, match="outside the repository"):
        input_files(root, "app")


def test_symlink_escaping_the_repository_is_refused(tmp_path: Path) -> None:
    (tmp_path / "host.yaml").write_text("x\n")
    root = _tree(tmp_path / "repo", {"app/a.yaml": "a\n"})
    (root / "app/link.yaml").symlink_to(tmp_path / "host.yaml")
    with pytest.raises(InvalidSource, match="outside the repository"):
        input_files(root, "app")


def test_plain_directory_reads_every_file_under_its_path(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {"app/a.yaml": "a\n", "app/sub/b.json": "{}\n", "other/c.yaml": "c\n", ".git/x": "g"},
    )
    assert _rel(root, input_files(root, "app")) == ["app/a.yaml", "app/sub/b.json"]
    assert _rel(root, input_files(root, "")) == ["app/a.yaml", "app/sub/b.json", "other/c.yaml"]


def test_helm_chart_includes_chart_files_local_dependencies_and_value_files(
    tmp_path: Path,
) -> None:
    root = _tree(
        tmp_path,
        {
            "charts/web/Chart.yaml": (
                "apiVersion: v2\nname: web\nversion: 1.0.0\ndependencies:\n"
                "  - name: common\n    version: 1.0.0\n    repository: file://../common\n"
            ),
            "charts/web/values.yaml": "replicas: 1\n",
            "charts/web/templates/deploy.yaml": "kind: Deployment\n",
            "charts/common/Chart.yaml": "apiVersion: v2\nname: common\nversion: 1.0.0\n",
            "charts/common/templates/_helpers.tpl": "{{/* */}}\n",
            "envs/prod/values.yaml": "replicas: 3\n",
            "envs/staging/values.yaml": "replicas: 2\n",
        },
    )
    files = _rel(root, input_files(root, "charts/web", value_files=["../../envs/prod/values.yaml"]))
    assert files == [
        "charts/common/Chart.yaml",
        "charts/common/templates/_helpers.tpl",
        "charts/web/Chart.yaml",
        "charts/web/templates/deploy.yaml",
        "charts/web/values.yaml",
        "envs/prod/values.yaml",
    ]


def test_helm_remote_dependency_not_vendored_is_unbounded(tmp_path: Path) -> None:
    chart = (
        "apiVersion: v2\nname: web\nversion: 1.0.0\ndependencies:\n"
        "  - name: redis\n    version: 17.0.0\n    repository: https://charts.example.com\n"
    )
    root = _tree(tmp_path, {"web/Chart.yaml": chart})
    assert input_files(root, "web") is None
    _tree(root, {"web/charts/redis/Chart.yaml": "name: redis\n"})
    assert input_files(root, "web") is not None


def test_value_file_escaping_the_repository_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path / "repo", {"web/Chart.yaml": "name: web\n"})
    with pytest.raises(InvalidSource):
        input_files(root, "web", value_files=["../../../etc/passwd"])


def test_kustomize_helm_charts_use_the_local_chart_home(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "app/kustomization.yaml": (
                "helmCharts:\n  - name: web\n    valuesFile: values.yaml\n"
                "    repo: https://charts.example.com\n"
            ),
            "app/values.yaml": "a: 1\n",
            "app/charts/web/Chart.yaml": "name: web\n",
        },
    )
    assert _rel(root, input_files(root, "app")) == [
        "app/charts/web/Chart.yaml",
        "app/kustomization.yaml",
        "app/values.yaml",
    ]
    (root / "app/charts/web/Chart.yaml").unlink()
    (root / "app/charts/web").rmdir()
    assert input_files(root, "app") is None


def test_missing_path_is_path_not_found(tmp_path: Path) -> None:
    with pytest.raises(PathNotFound):
        input_files(tmp_path, "nope")


# --- the outside-reference check fails closed -------------------------------------------


def _escape_repo(tmp_path: Path, kustomization: bytes | str) -> Path:
    """A repository whose app's kustomization is ``kustomization``; a secret lies outside."""
    (tmp_path / "other" / "app").mkdir(parents=True)
    (tmp_path / "other" / "app" / "kustomization.yaml").write_text("resources: [secret.yaml]\n")
    (tmp_path / "other" / "app" / "secret.yaml").write_text("kind: Secret\n")
    app = tmp_path / "repo" / "app"
    app.mkdir(parents=True)
    data = kustomization.encode() if isinstance(kustomization, str) else kustomization
    (app / "kustomization.yaml").write_bytes(data)
    return tmp_path / "repo"


@pytest.mark.parametrize(
    "kustomization",
    [
        "namePrefix: !foo x\nresources: [../../other/app]\n",  # unknown tag elsewhere
        "resources: [!foo ../../other/app]\n",  # unknown tag on the reference
        "resources: [!!binary Li4vLi4vb3RoZXIvYXBw]\n",  # base64 of ../../other/app
        "base: &b {resources: [../../other/app]}\n<<: *b\n",  # merged from an alias
        "resources: !!seq [../../other/app]\n",
    ],
)
def test_reference_outside_is_refused_whatever_the_tags(tmp_path: Path, kustomization: str) -> None:
    root = _escape_repo(tmp_path, kustomization)
    with pytest.raises(InvalidSource, match="points outside the repository"):
        input_files(root, "app")
    with pytest.raises(InvalidSource, match="points outside the repository"):
        input_digest(root, "app")


@pytest.mark.parametrize(
    ("kustomization", "message"),
    [
        ("resources: [../../other/app\n", r"app/kustomization.yaml:2: .*cannot check"),
        (b"resources: [\xff../../other/app]\n", r"app/kustomization.yaml: not UTF-8 text"),
        ("resources: [{path: ../../other/app}]\n", r"resources must be a list of strings"),
        ("resources: [a]\nresources: [../../other/app]\n", r":2: duplicate key 'resources'"),
        ("- resources\n", r"a kustomization must be a mapping"),
        ("patches: [../../other/app]\n", r"patches must be a list of mappings"),
        ("a: &a [*a]\n", r"alias refers to a node that contains it"),
        ("a: !!binary '#'\n", r"invalid base64"),
    ],
)
def test_kustomization_the_check_cannot_read_is_refused_naming_the_file(
    tmp_path: Path, kustomization: str | bytes, message: str
) -> None:
    root = _escape_repo(tmp_path, kustomization)
    with pytest.raises(InvalidSource, match=message):
        input_files(root, "app")


def test_alias_bomb_in_a_kustomization_is_refused(tmp_path: Path) -> None:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    root = _escape_repo(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(InvalidSource, match="GITSAIL_YAML_ALIAS_NODES"):
        input_files(root, "app")


def test_non_utf8_chart_yaml_is_a_clear_error(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    chart.mkdir()
    (chart / "Chart.yaml").write_bytes(b"name: caf\xe9\nversion: 1.0.0\n")
    with pytest.raises(InvalidSource, match=r"chart/Chart.yaml: not UTF-8 text"):
        input_files(tmp_path, "chart")


def test_kustomization_symlink_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    root = _escape_repo(tmp_path, "resources: []\n")
    kfile = root / "app" / "kustomization.yaml"
    kfile.unlink()
    kfile.symlink_to(tmp_path / "other" / "app" / "kustomization.yaml")
    with pytest.raises(InvalidSource, match="points outside the repository"):
        input_files(root, "app")


def test_scalars_of_any_type_are_references_as_text(tmp_path: Path) -> None:
    root = _escape_repo(tmp_path, "resources: [123]\n")
    (root / "app" / "123").mkdir()
    (root / "app" / "123" / "cm.yaml").write_text("kind: ConfigMap\n")
    assert _rel(root, input_files(root, "app")) == ["app/123/cm.yaml", "app/kustomization.yaml"]


def test_a_binary_value_that_is_not_ascii_is_refused_naming_the_file(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    chart.mkdir()
    (chart / "Chart.yaml").write_text("name: !!binary \u00ff\nversion: 1.0.0\n")
    with pytest.raises(InvalidSource, match=r"Chart\.yaml"):
        input_files(tmp_path, "chart", tool_hint="helm")
