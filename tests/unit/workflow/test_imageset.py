"""Image references and in-place edits of kustomizations, values files and manifests."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitsail.source.yamledit import EditError
from gitsail.workflow.imageref import ImageRef, ImageRefError, parse_image, parse_update
from gitsail.workflow.imageset import plan_image_set

DIGEST = "sha256:" + "ab" * 32


def test_parse_image_splits_registry_port_tag_and_digest() -> None:
    ref = parse_image(f"127.0.0.1:5000/team/app:1.2.0@{DIGEST}")
    assert ref == ImageRef("127.0.0.1:5000/team/app", "1.2.0", DIGEST)
    assert ref.registry == "127.0.0.1:5000"
    assert ref.repository == "team/app"
    assert ref.version == DIGEST


def test_docker_hub_names_get_library_prefix() -> None:
    assert parse_image("nginx:1.27").repository == "library/nginx"
    assert parse_image("nginx:1.27").registry == "docker.io"
    assert parse_image("bitnami/redis:7").repository == "bitnami/redis"


@pytest.mark.parametrize(
    "text",
    [
        "",
        " nginx:1",
        "-nginx:1",
        "Nginx:1",
        "nginx:1 2",
        "nginx:-1",
        "nginx@sha256:abc",
        "nginx:1;rm -rf /",
        "a//b:1",
        "registry.io/" + "a" * 300,
        "nginx:" + "x" * 129,
    ],
)
def test_parse_image_refuses_what_the_grammar_does_not_allow(text: str) -> None:
    with pytest.raises(ImageRefError):
        parse_image(text)


def test_parse_update_forms() -> None:
    assert parse_update("app:1.0").tag == "1.0"
    assert parse_update(f"app@{DIGEST}").digest == DIGEST
    renamed = parse_update("app=ghcr.io/me/app:2")
    assert (renamed.name, renamed.new_name, renamed.tag) == ("app", "ghcr.io/me/app", "2")
    with pytest.raises(ImageRefError):
        parse_update("app")  # nothing to set
    with pytest.raises(ImageRefError):
        parse_update("app:1=other:2")  # NAME carries no tag


KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
# the production overlay
resources:
    - ../../base/myapp   # shared base
images:
    # pinned by CI
    -   name: myregistry.io/myapp
        newTag: "1.0.0"  # keep me
    -   name: other
        digest: sha256:0000000000000000000000000000000000000000000000000000000000000000
patches:
  - path: p.yaml
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_kustomize_tag_change_is_one_line_and_keeps_comments_and_style(tmp_path: Path) -> None:
    _write(tmp_path, "kustomization.yaml", KUSTOMIZATION)
    plan = plan_image_set(tmp_path, parse_update("myregistry.io/myapp:1.2.0"))
    (edit,) = plan.edits
    assert edit.after == KUSTOMIZATION.replace('"1.0.0"', '"1.2.0"')
    (change,) = edit.changes
    assert (change.line, change.old, change.new) == (9, "1.0.0", "1.2.0")


def test_kustomize_digest_replaces_tag_in_place(tmp_path: Path) -> None:
    _write(tmp_path, "kustomization.yaml", KUSTOMIZATION)
    (edit,) = plan_image_set(tmp_path, parse_update(f"myregistry.io/myapp@{DIGEST}")).edits
    assert f"        digest: {DIGEST}  # keep me\n" in edit.after
    assert "newTag" not in edit.after.split("- ")[2].split("other")[0]


def test_kustomize_tag_replaces_digest(tmp_path: Path) -> None:
    _write(tmp_path, "kustomization.yaml", KUSTOMIZATION)
    (edit,) = plan_image_set(tmp_path, parse_update("other:3")).edits
    assert '    -   name: other\n        newTag: "3"\npatches:' in edit.after


def test_kustomize_missing_entry_is_appended_in_the_lists_indentation(tmp_path: Path) -> None:
    _write(tmp_path, "kustomization.yaml", KUSTOMIZATION)
    (edit,) = plan_image_set(tmp_path, parse_update("new/img=ghcr.io/x/img:1.0.1")).edits
    assert (
        "    -   name: new/img\n        newName: ghcr.io/x/img\n        newTag: 1.0.1\npatches:"
        in edit.after
    )
    assert edit.after.startswith(KUSTOMIZATION.split("patches:")[0])


def test_kustomize_without_images_gets_the_key(tmp_path: Path) -> None:
    _write(tmp_path, "kustomization.yaml", "resources:\n- a.yaml\n")
    (edit,) = plan_image_set(tmp_path, parse_update("app:1.0")).edits
    assert edit.after == 'resources:\n- a.yaml\nimages:\n- name: app\n  newTag: "1.0"\n'


def test_kustomize_same_tag_is_no_edit(tmp_path: Path) -> None:
    _write(tmp_path, "kustomization.yaml", KUSTOMIZATION)
    plan = plan_image_set(tmp_path, parse_update("myregistry.io/myapp:1.0.0"))
    assert plan.edits == ()
    assert plan.matched == 1


VALUES = """\
# values for production
replicaCount: 2
image:
  repository: myregistry.io/myapp
  tag: 1.0.0 # the tested tag
sidecar:
  image: myregistry.io/myapp:1.0.0
other:
  image:
    registry: docker.io
    repository: bitnami/redis
    tag: '7.0'
marked:
  ref: myregistry.io/myapp:0.9 # {"$imagepolicy": "flux-system:myapp"}
  onlyTag: "0.9" # {"$imagepolicy": "flux-system:myapp:tag"}
"""


def test_values_repository_tag_and_image_scalar(tmp_path: Path) -> None:
    _write(tmp_path, "values.yaml", VALUES)
    plan = plan_image_set(tmp_path, parse_update("myregistry.io/myapp:1.1.0"))
    (edit,) = plan.edits
    expected = VALUES.replace("tag: 1.0.0 #", "tag: 1.1.0 #").replace(
        "image: myregistry.io/myapp:1.0.0", "image: myregistry.io/myapp:1.1.0"
    )
    assert edit.after == expected  # markers are only followed with --policy
    assert {c.field for c in edit.changes} == {"image.tag", "sidecar.image"}


def test_values_registry_and_repository_split(tmp_path: Path) -> None:
    _write(tmp_path, "values.yaml", VALUES)
    (edit,) = plan_image_set(tmp_path, parse_update("docker.io/bitnami/redis:7.2")).edits
    assert "    tag: '7.2'\n" in edit.after


def test_values_dotted_key(tmp_path: Path) -> None:
    _write(tmp_path, "values.yaml", VALUES)
    (edit,) = plan_image_set(tmp_path, parse_update("x/y:2.0"), keys=["image.tag"]).edits
    assert '  tag: "2.0" # the tested tag\n' in edit.after


def test_values_setter_markers(tmp_path: Path) -> None:
    _write(tmp_path, "values.yaml", VALUES)
    (edit,) = plan_image_set(
        tmp_path, parse_update("myregistry.io/myapp:1.3.0"), policy="flux-system:myapp"
    ).edits
    assert '  ref: myregistry.io/myapp:1.3.0 # {"$imagepolicy": "flux-system:myapp"}' in edit.after
    assert '  onlyTag: "1.3.0" # {"$imagepolicy": "flux-system:myapp:tag"}' in edit.after


def test_plain_manifest_container_image(tmp_path: Path) -> None:
    text = (
        "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n"
        "      containers:\n      - name: a\n        image: myregistry.io/myapp:1.0.0\n"
        "      - name: b\n        image: myregistry.io/other:1.0.0\n"
    )
    _write(tmp_path, "deploy/deployment.yaml", text)
    (edit,) = plan_image_set(tmp_path, parse_update(f"myregistry.io/myapp@{DIGEST}")).edits
    assert edit.after == text.replace("myapp:1.0.0", f"myapp@{DIGEST}")


def test_image_named_nowhere_matches_nothing(tmp_path: Path) -> None:
    _write(tmp_path, "values.yaml", VALUES)
    plan = plan_image_set(tmp_path, parse_update("elsewhere/app:1"))
    assert (plan.edits, plan.matched) == ((), 0)


def test_digest_alone_into_a_tag_field_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "values.yaml", VALUES)
    with pytest.raises(EditError, match="holds a tag"):
        plan_image_set(tmp_path, parse_update(f"myregistry.io/myapp@{DIGEST}"))


def test_invalid_yaml_is_refused_with_the_file(tmp_path: Path) -> None:
    _write(tmp_path, "values.yaml", "image: [myregistry.io/myapp\n")
    with pytest.raises(EditError, match=r"values\.yaml"):
        plan_image_set(tmp_path, parse_update("myregistry.io/myapp:1"))
