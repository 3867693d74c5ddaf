"""Argo CD `spec.source` dicts become RenderOptions (read by the Argo adapter, never by
render); detect_tool picks the tool like Argo CD."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitsail.kinds.argo_application import render_options
from gitsail.render import (
    DirectoryOptions,
    HelmFileParameter,
    HelmOptions,
    HelmParameter,
    KustomizeReplica,
    RenderError,
    RenderOptions,
    detect_tool,
)


def _opts(source: dict[str, object]) -> RenderOptions:
    return render_options(source, app_name="guestbook", namespace="prod")


def test_plain_source_has_no_tool_blocks() -> None:
    opts = _opts({"repoURL": "https://x", "path": "guestbook", "targetRevision": "HEAD"})
    assert opts == RenderOptions(app_name="guestbook", namespace="prod")


def test_directory_block() -> None:
    opts = _opts({"directory": {"recurse": True, "include": "*.yaml", "exclude": "{a,b}.yaml"}})
    assert opts.directory == DirectoryOptions(recurse=True, include="*.yaml", exclude="{a,b}.yaml")


def test_plugin_is_refused() -> None:
    with pytest.raises(RenderError, match="plugins are not supported"):
        _opts({"plugin": {"name": "cmp"}})


def test_kustomize_block() -> None:
    opts = _opts(
        {
            "kustomize": {
                "namePrefix": "p-",
                "nameSuffix": "-s",
                "images": ["nginx=registry/nginx:1.27", "busybox:1.36", "redis@sha256:abc"],
                "replicas": [{"name": "web", "count": 3}, {"name": "db", "count": "2"}],
                "namespace": "other",
                "commonLabels": {"team": "a"},
                "commonAnnotations": {"owner": "b"},
                "patches": [{"target": {"kind": "Deployment", "name": ""}, "patch": "[]"}],
                "components": ["../components/x"],
                "version": "v5.8.1",
            }
        }
    )
    k = opts.kustomize
    assert k is not None
    assert (k.name_prefix, k.name_suffix, k.namespace) == ("p-", "-s", "other")
    assert k.images == ("nginx=registry/nginx:1.27", "busybox:1.36", "redis@sha256:abc")
    assert k.replicas == (KustomizeReplica("web", 3), KustomizeReplica("db", 2))
    assert k.common_labels == (("team", "a"),)
    assert k.common_annotations == (("owner", "b"),)
    assert k.patches == ({"target": {"kind": "Deployment"}, "patch": "[]"},)
    assert k.components == ("../components/x",)


@pytest.mark.parametrize(
    ("kustomize", "message"),
    [
        ({"replicas": [{"name": "web", "count": -1}]}, r"replicas\[0\]\.count"),
        ({"images": [1]}, r"images\[0\] must be a string"),
        ({"patches": [{"target": {"kind": "X"}}]}, r"patches\[0\] needs a path or a patch"),
        ({"patches": [{"patch": "[]", "bogus": 1}]}, r"unknown field\(s\) bogus"),
        ({"commonAnnotationsEnvsubst": True, "commonAnnotations": {"a": "$X"}}, "Envsubst"),
    ],
)
def test_bad_kustomize_options_are_errors(kustomize: dict[str, object], message: str) -> None:
    with pytest.raises(RenderError, match=message):
        _opts({"kustomize": kustomize})


def test_helm_block() -> None:
    opts = _opts(
        {
            "chart": "redis",
            "helm": {
                "releaseName": "rel",
                "valueFiles": ["values-prod.yaml"],
                "ignoreMissingValueFiles": True,
                "values": "a: 1\n",
                "valuesObject": {"b": 2},
                "parameters": [
                    {"name": "image.tag", "value": "1.2"},
                    {"name": "port", "value": "80", "forceString": True},
                ],
                "fileParameters": [{"name": "cfg", "path": "files/cfg.txt"}],
                "skipCrds": True,
                "skipSchemaValidation": True,
                "namespace": "helm-ns",
                "kubeVersion": "1.30.0",
                "apiVersions": ["monitoring.coreos.com/v1"],
                "passCredentials": True,
            },
        }
    )
    h = opts.helm
    assert h is not None
    assert opts.chart == "redis"
    assert h.release_name == "rel"
    assert h.value_files == ("values-prod.yaml",)
    assert h.ignore_missing_value_files
    assert h.skip_crds
    assert h.skip_schema_validation
    assert (h.values, h.values_object) == ("a: 1\n", {"b": 2})
    assert h.parameters == (HelmParameter("image.tag", "1.2"), HelmParameter("port", "80", True))
    assert h.file_parameters == (HelmFileParameter("cfg", "files/cfg.txt"),)
    assert (h.namespace, h.kube_version, h.api_versions) == (
        "helm-ns",
        "1.30.0",
        ("monitoring.coreos.com/v1",),
    )
    assert h.pass_credentials


def test_empty_blocks_do_not_force_a_tool_as_in_argo_cd() -> None:
    opts = _opts({"helm": {}, "kustomize": {"images": []}, "directory": {"recurse": False}})
    assert (opts.helm, opts.kustomize, opts.directory) == (None, None, None)


def test_two_tool_blocks_are_an_error() -> None:
    with pytest.raises(RenderError, match="multiple application sources defined: kustomize,helm"):
        _opts({"helm": {"releaseName": "x"}, "kustomize": {"namePrefix": "p-"}})


def test_wrong_types_are_errors_naming_the_field() -> None:
    with pytest.raises(RenderError, match=r"spec\.source\.helm\.skipCrds must be true or false"):
        _opts({"helm": {"skipCrds": "yes"}})
    with pytest.raises(RenderError, match=r"spec\.source\.directory must be a mapping"):
        _opts({"directory": "x"})


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    return tmp_path / "app"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ([], "directory"),
        (["deploy.yaml"], "directory"),
        (["Chart.yaml"], "helm"),
        (["kustomization.yaml"], "kustomize"),
        (["kustomization.yml"], "kustomize"),
        (["Kustomization"], "kustomize"),
        (["Chart.yaml", "kustomization.yaml"], "helm"),
    ],
)
def test_detect_tool_from_files(app: Path, files: list[str], expected: str) -> None:
    for name in files:
        (app / name).write_text("{}\n")
    assert detect_tool(app, RenderOptions()) == expected


def test_explicit_block_wins_over_files(app: Path) -> None:
    (app / "Chart.yaml").write_text("{}\n")
    assert detect_tool(app, _opts({"directory": {"recurse": True}})) == "directory"
    assert detect_tool(app, _opts({"kustomize": {"namePrefix": "x-"}})) == "kustomize"
    assert detect_tool(app, _opts({"chart": "redis"})) == "helm"


def test_render_options_are_built_by_the_kind_adapter_not_read_from_an_argo_spec() -> None:
    assert not hasattr(RenderOptions, "from_source")
    assert _opts({"helm": {"releaseName": "r"}}).helm == HelmOptions(release_name="r")
