"""Render with the real pinned helm and kustomize binaries, on read-only artifact roots."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import stat
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitsail.kinds.argo_application import render_options
from gitsail.model import Artifact, Obj
from gitsail.render import Renderer, RenderError, RenderOptions, render_local
from gitsail.toolchain import find_binary

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "gitops-repo"


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def _set_read_only(root: Path, read_only: bool) -> None:
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        write = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
        path.chmod(mode & ~write if read_only else mode | stat.S_IWUSR)


class Repo:
    """A repository checkout under construction; ``freeze()`` makes it a read-only artifact."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.before: dict[str, str] = {}

    def write(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))

    def freeze(self) -> None:
        self.before = _snapshot(self.root)
        _set_read_only(self.root, True)

    def artifact(self, path: str, digest: str = "") -> Artifact:
        digest = digest or "sha256:" + hashlib.sha256(f"{path}{self.before}".encode()).hexdigest()
        return Artifact(
            url="https://git.example/repo.git",
            revision="0" * 40,
            requested="main",
            root=self.root,
            path=path,
            digest=digest,
        )

    def assert_unchanged(self) -> None:
        assert _snapshot(self.root) == self.before


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repo]:
    root = tmp_path / "checkout"
    root.mkdir()
    r = Repo(root)
    yield r
    _set_read_only(root, False)


@pytest.fixture
def article_repo(repo: Repo) -> Repo:
    shutil.copytree(EXAMPLE, repo.root, dirs_exist_ok=True)
    return repo


@pytest.fixture
def renderer(tmp_path: Path) -> Iterator[Renderer]:
    r = Renderer(
        work_dir=tmp_path / "work", helm=find_binary("helm"), kustomize=find_binary("kustomize")
    )
    yield r
    r.close()


def _by_kind(objs: tuple[Obj, ...], kind: str) -> Obj:
    return next(o for o in objs if o["kind"] == kind)


def _container(deploy: Obj) -> dict[str, Any]:
    container: dict[str, Any] = deploy["spec"]["template"]["spec"]["containers"][0]
    return container


def _opts(source: dict[str, Any], name: str = "myapp", namespace: str = "default") -> RenderOptions:
    return render_options(source, app_name=name, namespace=namespace)


# --- kustomize ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "replicas", "tag"),
    [("development", 1, "dev"), ("staging", 2, "1.0.0"), ("production", 5, "v1.0.0")],
)
async def test_article_overlays_render_per_environment(
    article_repo: Repo, renderer: Renderer, env: str, replicas: int, tag: str
) -> None:
    article_repo.freeze()
    rendered = await renderer.render(article_repo.artifact(f"apps/overlays/{env}"), RenderOptions())
    assert rendered.tool == "kustomize"
    assert [o["kind"] for o in rendered.manifests] == ["Service", "Deployment"]
    deploy = _by_kind(rendered.manifests, "Deployment")
    assert deploy["metadata"]["namespace"] == env
    assert deploy["spec"]["replicas"] == replicas
    assert _container(deploy)["image"] == f"myregistry.io/myapp:{tag}"
    expected = (
        {"memory": "1Gi", "cpu": "500m"}
        if env == "production"
        else {"memory": "64Mi", "cpu": "50m"}
    )
    assert _container(deploy)["resources"]["requests"] == expected
    article_repo.assert_unchanged()


async def test_argo_kustomize_options_are_applied(article_repo: Repo, renderer: Renderer) -> None:
    article_repo.write(
        "apps/components/monitoring/kustomization.yaml",
        """\
        apiVersion: kustomize.config.k8s.io/v1alpha1
        kind: Component
        resources:
          - configmap.yaml
        """,
    )
    article_repo.write(
        "apps/components/monitoring/configmap.yaml",
        """\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: monitoring
        data:
          scrape: "true"
        """,
    )
    article_repo.freeze()
    options = _opts(
        {
            "kustomize": {
                "namePrefix": "team-",
                "images": ["myregistry.io/myapp=mirror.io/myapp:v2.0.0"],
                "replicas": [{"name": "myapp", "count": 7}],
                "namespace": "prod-eu",
                "commonLabels": {"team": "payments"},
                "patches": [
                    {
                        "target": {"kind": "Service", "name": "myapp"},
                        "patch": "- op: replace\n  path: /spec/ports/0/port\n  value: 8081\n",
                    }
                ],
                "components": ["../../components/monitoring"],
            }
        }
    )
    rendered = await renderer.render(article_repo.artifact("apps/overlays/production"), options)
    kinds = {o["kind"]: o for o in rendered.manifests}
    assert set(kinds) == {"Service", "Deployment", "ConfigMap"}
    for obj in rendered.manifests:
        assert obj["metadata"]["name"].startswith("team-")
        assert obj["metadata"]["namespace"] == "prod-eu"
        assert obj["metadata"]["labels"]["team"] == "payments"
    deploy = kinds["Deployment"]
    assert deploy["spec"]["replicas"] == 7
    assert _container(deploy)["image"] == "mirror.io/myapp:v2.0.0"
    assert deploy["spec"]["selector"]["matchLabels"]["team"] == "payments"
    assert kinds["Service"]["spec"]["ports"][0]["port"] == 8081
    article_repo.assert_unchanged()


async def test_kustomize_error_carries_kustomize_stderr(
    article_repo: Repo, renderer: Renderer
) -> None:
    article_repo.write(
        "apps/overlays/broken/kustomization.yaml",
        "resources:\n  - ../../base/does-not-exist\n",
    )
    article_repo.freeze()
    with pytest.raises(RenderError) as info:
        await renderer.render(article_repo.artifact("apps/overlays/broken"), RenderOptions())
    message = str(info.value)
    assert message.startswith("apps/overlays/broken (kustomize): kustomize build failed (exit 1)")
    assert "does-not-exist" in message
    article_repo.assert_unchanged()


async def test_malformed_yaml_is_a_clear_error(article_repo: Repo, renderer: Renderer) -> None:
    article_repo.write(
        "apps/plain/ok.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n"
    )
    article_repo.write(
        "apps/plain/broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [x\n"
    )
    article_repo.write("apps/overlays/badyaml/kustomization.yaml", "resources: [\n")
    article_repo.freeze()
    with pytest.raises(
        RenderError, match=r"^apps/plain \(directory\): apps/plain/broken\.yaml:\d+: "
    ):
        await renderer.render(article_repo.artifact("apps/plain"), RenderOptions())
    with pytest.raises(  # refused by the input checks, which must parse it first
        RenderError,
        match=r"^apps/overlays/badyaml \(kustomize\): apps/overlays/badyaml/kustomization\.yaml",
    ):
        await renderer.render(article_repo.artifact("apps/overlays/badyaml"), RenderOptions())
    with pytest.raises(RenderError, match=r"kustomization\.yaml:\d+: "):
        await renderer.render(
            article_repo.artifact("apps/overlays/badyaml"),
            _opts({"kustomize": {"namePrefix": "x-"}}),
        )
    article_repo.assert_unchanged()


# --- helm ---------------------------------------------------------------------------------

CHART = {
    "Chart.yaml": """\
        apiVersion: v2
        name: web
        version: 0.1.0
        """,
    "values.yaml": """\
        replicas: 1
        image: {repository: nginx, tag: "1.25"}
        extra: from-chart
        """,
    "values-production.yaml": """\
        replicas: 3
        image: {tag: "1.27"}
        """,
    "crds/widgets.yaml": """\
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata:
          name: widgets.example.com
        spec:
          group: example.com
          names: {kind: Widget, plural: widgets}
          scope: Namespaced
          versions:
            - name: v1
              served: true
              storage: true
              schema: {openAPIV3Schema: {type: object}}
        """,
    "templates/deployment.yaml": """\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {{ .Release.Name }}-web
          namespace: {{ .Release.Namespace }}
        spec:
          replicas: {{ .Values.replicas }}
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              containers:
                - name: web
                  image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
        """,
    "templates/info.yaml": """\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {{ .Release.Name }}-info
        data:
          kubeVersion: {{ .Capabilities.KubeVersion.Version | quote }}
          hasMonitoring: {{ .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" | quote }}
          extra: {{ .Values.extra | quote }}
          extraKind: {{ kindOf .Values.extra | quote }}
        """,
    "templates/tests/test.yaml": """\
        apiVersion: v1
        kind: Pod
        metadata:
          name: {{ .Release.Name }}-test
          annotations: {"helm.sh/hook": test}
        spec: {containers: [{name: t, image: busybox}]}
        """,
}


@pytest.fixture
def chart_repo(repo: Repo) -> Repo:
    for rel, text in CHART.items():
        repo.write(f"charts/web/{rel}", text)
    return repo


async def test_helm_chart_with_production_values_file(chart_repo: Repo, renderer: Renderer) -> None:
    chart_repo.freeze()
    options = _opts(
        {"helm": {"valueFiles": ["values-production.yaml"]}}, name="shop", namespace="prod"
    )
    rendered = await renderer.render(chart_repo.artifact("charts/web"), options)
    assert rendered.tool == "helm"
    assert [o["kind"] for o in rendered.manifests] == [
        "CustomResourceDefinition",
        "ConfigMap",
        "Deployment",
    ]  # CRDs first, no test hooks
    deploy = _by_kind(rendered.manifests, "Deployment")
    assert deploy["metadata"] == {"name": "shop-web", "namespace": "prod"}
    assert deploy["spec"]["replicas"] == 3
    assert _container(deploy)["image"] == "nginx:1.27"
    chart_repo.assert_unchanged()


async def test_helm_values_precedence(chart_repo: Repo, renderer: Renderer) -> None:
    chart_repo.freeze()
    artifact = chart_repo.artifact("charts/web")

    async def image(helm: dict[str, Any]) -> tuple[str, str]:
        rendered = await renderer.render(artifact, _opts({"helm": helm}))
        info = _by_kind(rendered.manifests, "ConfigMap")["data"]["extra"]
        return _container(_by_kind(rendered.manifests, "Deployment"))["image"], info

    files = {"valueFiles": ["values-production.yaml"]}
    values = {**files, "values": "image: {tag: from-values}\nextra: from-values\n"}
    values_object = {**values, "valuesObject": {"image": {"tag": "from-object"}}}
    params = {**values_object, "parameters": [{"name": "image.tag", "value": "from-param"}]}
    assert await image(files) == ("nginx:1.27", "from-chart")
    assert await image(values) == ("nginx:from-values", "from-values")
    # As in Argo CD, valuesObject replaces `values` (it is not merged with it).
    assert await image(values_object) == ("nginx:from-object", "from-chart")
    assert await image(params) == ("nginx:from-param", "from-chart")
    for force_string, kind in ((False, "bool"), (True, "string")):
        param = {"name": "extra", "value": "true", "forceString": force_string}
        rendered = await renderer.render(artifact, _opts({"helm": {"parameters": [param]}}))
        assert _by_kind(rendered.manifests, "ConfigMap")["data"]["extraKind"] == kind


async def test_skip_crds(chart_repo: Repo, renderer: Renderer) -> None:
    chart_repo.freeze()
    rendered = await renderer.render(
        chart_repo.artifact("charts/web"), _opts({"helm": {"skipCrds": True}})
    )
    assert "CustomResourceDefinition" not in [o["kind"] for o in rendered.manifests]


async def test_kube_version_and_api_versions_reach_the_chart(
    chart_repo: Repo, renderer: Renderer
) -> None:
    chart_repo.freeze()
    artifact = chart_repo.artifact("charts/web")
    rendered = await renderer.render(
        artifact,
        RenderOptions(app_name="a"),
        kube_version="v1.31.4",
        api_versions=["monitoring.coreos.com/v1"],
    )
    data = _by_kind(rendered.manifests, "ConfigMap")["data"]
    assert data["kubeVersion"] == "v1.31.4"
    assert data["hasMonitoring"] == "true"
    other = await renderer.render(artifact, RenderOptions(app_name="a"), kube_version="v1.30.0")
    assert _by_kind(other.manifests, "ConfigMap")["data"] == {
        "kubeVersion": "v1.30.0",
        "hasMonitoring": "false",
        "extra": "from-chart",
        "extraKind": "string",
    }
    pinned = _opts({"helm": {"kubeVersion": "1.29.0"}}, name="a")
    rendered = await renderer.render(artifact, pinned, kube_version="v1.31.4")
    assert _by_kind(rendered.manifests, "ConfigMap")["data"]["kubeVersion"] == "v1.29.0"


async def test_cache_hit_starts_no_subprocess(
    article_repo: Repo, renderer: Renderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    article_repo.freeze()
    started: list[tuple[Any, ...]] = []
    real = asyncio.create_subprocess_exec

    async def counting(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        started.append(args)
        return await real(*args, **kwargs)

    monkeypatch.setattr(asyncio, "create_subprocess_exec", counting)
    artifact = article_repo.artifact("apps/overlays/staging")
    first = await renderer.render(artifact, RenderOptions())
    assert started  # version probe + kustomize build
    count = len(started)
    second = await renderer.render(artifact, RenderOptions())
    assert len(started) == count
    assert second.manifests == first.manifests
    assert renderer.stats.hits == 1


async def test_helm_template_error_is_clear_and_redacts_secrets(
    chart_repo: Repo, renderer: Renderer
) -> None:
    chart_repo.write(
        "charts/web/templates/broken.yaml",
        '{{ if .Values.fail }}{{ fail (printf "refusing %s" .Values.db.password) }}{{ end }}\n',
    )
    chart_repo.freeze()
    options = _opts(
        {
            "helm": {
                "parameters": [
                    {"name": "fail", "value": "true"},
                    {"name": "db.password", "value": "hunter2-very-secret"},
                ]
            }
        }
    )
    with pytest.raises(RenderError) as info:
        await renderer.render(chart_repo.artifact("charts/web"), options)
    message = str(info.value)
    assert message.startswith("charts/web (helm): helm template failed (exit 1)")
    assert "broken.yaml" in message
    assert "refusing ***" in message
    assert "hunter2" not in message
    chart_repo.assert_unchanged()


async def test_value_files_must_stay_inside_the_repository(
    chart_repo: Repo, renderer: Renderer, tmp_path: Path
) -> None:
    (tmp_path / "outside.yaml").write_text("replicas: 9\n")
    chart_repo.write("envs/prod/replicas.yaml", "replicas: 4\n")
    chart_repo.write("envs/prod/tag.yaml", "image: {tag: globbed}\n")
    chart_repo.freeze()
    artifact = chart_repo.artifact("charts/web")
    with pytest.raises(RenderError, match="resolves outside the repository"):
        await renderer.render(artifact, _opts({"helm": {"valueFiles": ["../../../outside.yaml"]}}))
    with pytest.raises(RenderError, match=r"value file 'missing\.yaml' not found"):
        await renderer.render(artifact, _opts({"helm": {"valueFiles": ["missing.yaml"]}}))
    rendered = await renderer.render(
        artifact,
        _opts(
            {
                "helm": {
                    "valueFiles": ["missing.yaml", "/envs/prod/*.yaml"],
                    "ignoreMissingValueFiles": True,
                }
            }
        ),
    )
    deploy = _by_kind(rendered.manifests, "Deployment")
    assert deploy["spec"]["replicas"] == 4
    assert _container(deploy)["image"] == "nginx:globbed"


async def test_local_file_dependencies_are_built_in_a_copy(repo: Repo, renderer: Renderer) -> None:
    repo.write(
        "charts/app/Chart.yaml",
        """\
        apiVersion: v2
        name: app
        version: 0.1.0
        dependencies:
          - name: common
            version: 0.1.0
            repository: file://../common
        """,
    )
    repo.write(
        "charts/app/templates/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n"
    )
    repo.write("charts/common/Chart.yaml", "apiVersion: v2\nname: common\nversion: 0.1.0\n")
    repo.write(
        "charts/common/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: common-{{ .Release.Name }}}\n",
    )
    repo.write(
        "charts/remote/Chart.yaml",
        """\
        apiVersion: v2
        name: remote
        version: 0.1.0
        dependencies:
          - name: redis
            version: 1.0.0
            repository: https://charts.example.com
        """,
    )
    repo.freeze()
    rendered = await renderer.render(repo.artifact("charts/app"), RenderOptions(app_name="rel"))
    assert sorted(o["metadata"]["name"] for o in rendered.manifests) == ["app", "common-rel"]
    with pytest.raises(
        RenderError, match=r"'redis' from https://charts\.example\.com is not in charts/"
    ):
        await renderer.render(repo.artifact("charts/remote"), RenderOptions())
    repo.assert_unchanged()


def test_render_local_renders_a_checkout_without_a_cluster(article_repo: Repo) -> None:
    (article_repo.root / ".git").mkdir()
    rendered = render_local(
        article_repo.root / "apps" / "overlays" / "production",
        kustomize=find_binary("kustomize"),
    )
    assert rendered.tool == "kustomize"
    assert _by_kind(rendered.manifests, "Deployment")["spec"]["replicas"] == 5


def test_renderer_environment_is_scrubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-pass")
    renderer = Renderer(work_dir=tmp_path / "w")
    env = renderer._runner.environment()
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert env["HOME"].startswith(str(tmp_path))
    assert env["PATH"] == os.environ["PATH"]


# --- hardening: what reaches helm's argv (issue 7, items 2, 3 and 17) ------------------

ECHO_CHART = {
    "Chart.yaml": """\
        apiVersion: v2
        name: echo
        version: 0.1.0
        """,
    "templates/values.yaml": """\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {{ .Release.Name }}-values
        data:
          values.json: {{ toJson .Values | quote }}
        """,
    "files/config.txt": "from-the-repo\n",
}


@pytest.fixture
def echo_repo(repo: Repo) -> Repo:
    for rel, text in ECHO_CHART.items():
        repo.write(f"charts/echo/{rel}", text)
    return repo


def _values(rendered: Any) -> Any:
    import json

    return json.loads(_by_kind(rendered.manifests, "ConfigMap")["data"]["values.json"])


# Values exactly as written in the spec, and what the chart must see.
ROUND_TRIPS: list[tuple[str, str, bool, Any]] = [
    ("comma", "a,b", False, "a,b"),
    ("escapedComma", "a\\,b", False, "a\\,b"),
    ("backslash", "C:\\dir\\file", False, "C:\\dir\\file"),
    ("assignment", "x=1,leak=/etc/passwd", False, "x=1,leak=/etc/passwd"),
    ("dotsAndBrackets", "a.b[0]=c", False, "a.b[0]=c"),
    ("braceStart", "{open", False, "{open"),
    ("list", "{one,two}", False, ["one", "two"]),
    ("listSmuggle", "{a},injected={b}", False, ["a}", "injected={b"]),
    ("number", "42", False, 42),
    ("numberAsString", "42", True, "42"),
    ("boolean", "true", False, True),
    ("booleanAsString", "true", True, "true"),
    ("empty", "", False, ""),
]


async def test_set_values_reach_the_chart_exactly_as_written(
    echo_repo: Repo, renderer: Renderer
) -> None:
    echo_repo.freeze()
    params = [
        {"name": name, "value": value, "forceString": force}
        for name, value, force, _ in ROUND_TRIPS
    ]
    params.append({"name": "annotations.example\\.com/name", "value": "dotted"})
    params.append({"name": "items[1].name", "value": "second"})
    rendered = await renderer.render(
        echo_repo.artifact("charts/echo"), _opts({"helm": {"parameters": params}})
    )
    values = _values(rendered)
    for name, _, _, expected in ROUND_TRIPS:
        assert values[name] == expected, name
    assert "injected" not in values
    assert "leak" not in values
    assert values["annotations"] == {"example.com/name": "dotted"}
    assert values["items"] == [None, {"name": "second"}]
    echo_repo.assert_unchanged()


async def test_file_parameter_reads_the_repository_file_even_with_commas_in_its_path(
    echo_repo: Repo, renderer: Renderer
) -> None:
    echo_repo.write("charts/echo/files/a,b=c.txt", "odd-name\n")
    echo_repo.freeze()
    rendered = await renderer.render(
        echo_repo.artifact("charts/echo"),
        _opts(
            {
                "helm": {
                    "fileParameters": [
                        {"name": "config", "path": "files/config.txt"},
                        {"name": "odd", "path": "files/a,b=c.txt"},
                        {"name": "fromRoot", "path": "/charts/echo/files/config.txt"},
                    ]
                }
            }
        ),
    )
    values = _values(rendered)
    assert values == {
        "config": "from-the-repo\n",
        "odd": "odd-name\n",
        "fromRoot": "from-the-repo\n",
    }


async def test_file_parameter_name_cannot_read_a_host_file(
    echo_repo: Repo, renderer: Renderer, tmp_path: Path
) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret-hash\n")
    echo_repo.freeze()
    options = _opts(
        {
            "helm": {
                "fileParameters": [{"name": f"leak={secret},unused", "path": "files/config.txt"}]
            }
        }
    )
    with pytest.raises(RenderError, match="is not a Helm value key") as info:
        await renderer.render(echo_repo.artifact("charts/echo"), options)
    assert "secret-hash" not in str(info.value)


async def test_release_name_that_is_a_helm_flag_is_refused_before_helm_runs(
    echo_repo: Repo, renderer: Renderer, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    script = tmp_path / "post.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\ncat\n")
    script.chmod(0o755)
    echo_repo.freeze()
    for release in (f"--post-renderer={script}", "--post-renderer", "-h", "Web"):
        options = _opts({"helm": {"releaseName": release}})
        with pytest.raises(RenderError, match="is not a valid Helm release name"):
            await renderer.render(echo_repo.artifact("charts/echo"), options)
    assert not marker.exists()


def test_local_chart_with_a_symlink_out_of_the_repository_is_refused(
    echo_repo: Repo, tmp_path: Path
) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret-hash\n")
    echo_repo.write(
        "charts/echo/templates/leak.yaml",
        """\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: leak}
        data: {leak: {{ .Files.Get "files/leak" | quote }}}
        """,
    )
    (echo_repo.root / "charts/echo/files/leak").symlink_to(secret)
    (echo_repo.root / ".git").mkdir()
    with pytest.raises(RenderError, match=r"charts/echo/files/leak is a symbolic link") as info:
        render_local(echo_repo.root / "charts" / "echo", helm=find_binary("helm"))
    assert "secret-hash" not in str(info.value)


def test_chart_schema_cannot_make_helm_read_a_host_file(echo_repo: Repo, tmp_path: Path) -> None:
    secret = tmp_path / "creds.json"
    secret.write_text('{"type": "object", "required": ["secret-key-abc"]}')
    echo_repo.write("charts/echo/values.schema.json", f'{{"$ref": "file://{secret}"}}')
    (echo_repo.root / ".git").mkdir()
    with pytest.raises(RenderError, match="points outside the schema") as info:
        render_local(echo_repo.root / "charts" / "echo", helm=find_binary("helm"))
    assert "secret-key-abc" not in str(info.value)


def test_local_kustomization_never_reads_through_a_symlink_out(repo: Repo, tmp_path: Path) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stolen}\ndata: {k: host-secret}\n"
    )
    repo.write("app/kustomization.yaml", "resources: [cm.yaml, stolen.yaml]\n")
    repo.write("app/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n")
    (repo.root / "app" / "stolen.yaml").symlink_to(secret)
    (repo.root / ".git").mkdir()
    with pytest.raises(RenderError) as info:
        render_local(repo.root / "app", kustomize=find_binary("kustomize"))
    assert "host-secret" not in str(info.value)
