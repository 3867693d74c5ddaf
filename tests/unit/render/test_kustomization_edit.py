"""Argo CD's `kustomize edit` steps, made in Python on the copied kustomization file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gitsail.render import KustomizeOptions, KustomizeReplica, RenderError
from gitsail.render._kustomize import apply_kustomize_options, parse_image


@pytest.mark.parametrize(
    ("spec", "entry"),
    [
        ("nginx:1.27", {"name": "nginx", "newTag": "1.27"}),
        ("nginx@sha256:abc", {"name": "nginx", "digest": "sha256:abc"}),
        (
            "nginx=registry.io/nginx:1.27",
            {"name": "nginx", "newName": "registry.io/nginx", "newTag": "1.27"},
        ),
        ("nginx=registry.io/nginx", {"name": "nginx", "newName": "registry.io/nginx"}),
        (
            "nginx=registry.io/nginx@sha256:abc",
            {"name": "nginx", "newName": "registry.io/nginx", "digest": "sha256:abc"},
        ),
        ("localhost:5000/app:v1", {"name": "localhost:5000/app", "newTag": "v1"}),
        ("app:v1@sha256:abc", {"name": "app", "newTag": "v1", "digest": "sha256:abc"}),
    ],
)
def test_parse_image_argo_forms(spec: str, entry: dict[str, str]) -> None:
    assert parse_image(spec) == entry


def test_image_without_tag_or_digest_is_an_error() -> None:
    with pytest.raises(RenderError, match="expected name=newName:tag"):
        parse_image("nginx")


BASE = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: development
resources:
  - ../../base/myapp
replicas:
  - name: myapp
    count: 1
images:
  - name: myregistry.io/myapp
    newTag: 1.10  # a float to a YAML reader, a string to kustomize
commonLabels:
  app: myapp
"""


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "kustomization.yaml").write_text(BASE)
    (tmp_path / "components" / "extra").mkdir(parents=True)
    return tmp_path / "app"


def _edit(app: Path, **kw: object) -> dict[str, object]:
    apply_kustomize_options(app, app.parent, KustomizeOptions(**kw))  # type: ignore[arg-type]
    data = yaml.safe_load((app / "kustomization.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_untouched_fields_keep_their_exact_text(app: Path) -> None:
    _edit(app, name_prefix="p-")
    assert "newTag: 1.10" in (app / "kustomization.yaml").read_text()


def test_prefix_suffix_namespace_replicas_images(app: Path) -> None:
    data = _edit(
        app,
        name_prefix="p-",
        name_suffix="-s",
        namespace="production",
        replicas=(KustomizeReplica("myapp", 5), KustomizeReplica("other", 2)),
        images=("myregistry.io/myapp:v2.0", "busybox=mirror/busybox:1.36"),
    )
    assert (data["namePrefix"], data["nameSuffix"], data["namespace"]) == ("p-", "-s", "production")
    assert data["replicas"] == [{"name": "myapp", "count": 5}, {"name": "other", "count": 2}]
    assert data["images"] == [
        {"name": "myregistry.io/myapp", "newTag": "v2.0"},
        {"name": "busybox", "newName": "mirror/busybox", "newTag": "1.36"},
    ]


def test_digest_replaces_tag_on_an_existing_image(app: Path) -> None:
    data = _edit(app, images=("myregistry.io/myapp@sha256:abc",))
    assert data["images"] == [{"name": "myregistry.io/myapp", "digest": "sha256:abc"}]


def test_existing_label_needs_force_like_kustomize_edit_add_label(app: Path) -> None:
    with pytest.raises(
        RenderError, match="label 'app' is already in the kustomization; set forceCommonLabels"
    ):
        _edit(app, common_labels=(("app", "other"),))
    data = _edit(app, common_labels=(("app", "other"), ("team", "a")), force_common_labels=True)
    assert data["commonLabels"] == {"app": "other", "team": "a"}


def test_labels_without_selector_go_to_labels(app: Path) -> None:
    data = _edit(
        app,
        common_labels=(("team", "a"),),
        label_without_selector=True,
        label_include_templates=True,
    )
    assert data["labels"] == [
        {"pairs": {"team": "a"}, "includeSelectors": False, "includeTemplates": True}
    ]


def test_annotations_patches_components(app: Path) -> None:
    patch = {"target": {"kind": "Deployment"}, "patch": "- op: add\n  path: /x\n  value: 1\n"}
    data = _edit(
        app,
        common_annotations=(("owner", "team-a"),),
        patches=(patch,),
        components=("../components/extra",),
    )
    assert data["commonAnnotations"] == {"owner": "team-a"}
    assert data["patches"] == [patch]
    assert data["components"] == ["../components/extra"]


def test_missing_component_is_an_error_unless_ignored(app: Path) -> None:
    with pytest.raises(RenderError, match=r"component '\.\./nope' does not exist"):
        _edit(app, components=("../nope",))
    data = _edit(app, components=("../nope",), ignore_missing_components=True)
    assert data["components"] == []


def test_component_outside_the_repository_is_refused(app: Path) -> None:
    with pytest.raises(RenderError, match="outside the repository"):
        _edit(app, components=("../../../../etc",))


def test_no_kustomization_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="no kustomization file"):
        apply_kustomize_options(tmp_path, tmp_path, KustomizeOptions(name_prefix="x"))


def test_edit_replaces_a_symlinked_kustomization_instead_of_writing_through(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared.yaml"
    shared.write_text("resources: []\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "kustomization.yaml").symlink_to(shared)
    apply_kustomize_options(tmp_path / "app", tmp_path, KustomizeOptions(name_prefix="x-"))
    assert shared.read_text() == "resources: []\n"
    assert "namePrefix: x-" in (tmp_path / "app" / "kustomization.yaml").read_text()
