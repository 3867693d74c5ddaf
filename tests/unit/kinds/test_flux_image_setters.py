"""The Setters strategy (markers rewritten, nothing else moves) and the commit message."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitsail.kinds.flux_image import ImageUpdateAutomation, parse_image_update_automation
from gitsail.kinds.flux_image_message import DEFAULT_MESSAGE, render_message
from gitsail.kinds.flux_image_setters import PolicyImage, SetterResult, apply_setters
from gitsail.kinds.gotemplate import TemplateError
from gitsail.source.yamledit import EditError

POLICIES = {"flux-system:app": PolicyImage("ghcr.io/org/app", "1.2.0")}
POLICY_REF = "ghcr.io/org/app:1.2.0"

DEPLOYMENT = """\
# the app
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  namespace: prod
spec:
  template:
    spec:
      containers:
        - name: app
          image: "ghcr.io/org/app:1.0.0" # {"$imagepolicy": "flux-system:app"}
        - name: sidecar
          image: ghcr.io/org/sidecar:3.0 # {"$imagepolicy": "flux-system:other"}
"""

VALUES = """\
image:
  repository: old.example/app # {"$imagepolicy": "flux-system:app:name"}
  tag: 1.0.0   # {"$imagepolicy": "flux-system:app:tag"}
  digest: sha256:abc # {"$imagepolicy": "flux-system:app:digest"}
  pullPolicy: IfNotPresent # unrelated
"""


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_markers_set_reference_tag_and_name_keeping_everything_else(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"apps/deploy.yaml": DEPLOYMENT, "apps/values.yml": VALUES})
    result = apply_setters(root, "apps", POLICIES)
    assert result.markers == 5
    deploy = result.files["apps/deploy.yaml"]
    assert deploy == DEPLOYMENT.replace(
        '"ghcr.io/org/app:1.0.0"', '"ghcr.io/org/app:1.2.0"'
    )  # quoting kept; the other policy's marker untouched
    values = result.files["apps/values.yml"]
    assert values == VALUES.replace("old.example/app", "ghcr.io/org/app").replace(
        "tag: 1.0.0", "tag: 1.2.0"
    )  # the digest marker is not reflected
    changes = {(c.file, c.line, c.setter, c.old, c.new) for c in result.changes}
    assert changes == {
        (
            "apps/deploy.yaml",
            12,
            "flux-system:app",
            "ghcr.io/org/app:1.0.0",
            "ghcr.io/org/app:1.2.0",
        ),
        ("apps/values.yml", 2, "flux-system:app:name", "old.example/app", "ghcr.io/org/app"),
        ("apps/values.yml", 3, "flux-system:app:tag", "1.0.0", "1.2.0"),
    }
    first = next(c for c in result.changes if c.file == "apps/deploy.yaml")
    assert (first.object_kind, first.object_name, first.object_namespace) == (
        "Deployment",
        "app",
        "prod",
    )


def test_nothing_to_do_when_values_are_current_or_outside_the_path(tmp_path: Path) -> None:
    current = DEPLOYMENT.replace("app:1.0.0", "app:1.2.0")
    root = _tree(tmp_path, {"apps/deploy.yaml": current, "other/values.yaml": VALUES})
    result = apply_setters(root, "apps", POLICIES)
    assert (result.files, result.changes) == ({}, ())


def test_a_number_becomes_a_quoted_string(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"v.yaml": 'tag: 1.0 # {"$imagepolicy": "flux-system:app:tag"}\n'})
    policies = {"flux-system:app": PolicyImage("ghcr.io/org/app", "1.10")}
    text = apply_setters(root, ".", policies).files["v.yaml"]
    assert text == 'tag: "1.10" # {"$imagepolicy": "flux-system:app:tag"}\n'


def test_unsafe_values_and_escaping_paths_are_refused(tmp_path: Path) -> None:
    block = 'image: |\n  x # {"$imagepolicy": "flux-system:app"}\n'
    anchored = 'a: &x ghcr.io/org/app:1.0.0 # {"$imagepolicy": "flux-system:app"}\n'
    root = _tree(tmp_path, {"ok/a.yaml": anchored})
    with pytest.raises(EditError, match="anchor"):
        apply_setters(root, "ok", POLICIES)
    with pytest.raises(EditError, match="leaves the repository"):
        apply_setters(root, "../", POLICIES)
    _tree(tmp_path, {"blk/b.yaml": block})
    assert apply_setters(root, "blk", POLICIES).files == {}  # the marker is inside the text


def test_symbolic_links_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "deploy.yaml").write_text(DEPLOYMENT)
    root = tmp_path / "repo"
    (root / "apps").mkdir(parents=True)
    (root / "apps" / "link.yaml").symlink_to(outside / "deploy.yaml")
    (root / "apps" / "dir").symlink_to(outside)
    assert apply_setters(root, "apps", POLICIES).markers == 0


def _automation(template: str, values: dict[str, str] | None = None) -> ImageUpdateAutomation:
    commit: dict[str, object] = {
        "author": {"name": "bot", "email": "bot@example.invalid"},
        "messageTemplate": template,
    }
    if values:
        commit["messageTemplateValues"] = values
    return parse_image_update_automation(
        {
            "apiVersion": "image.toolkit.fluxcd.io/v1",
            "kind": "ImageUpdateAutomation",
            "metadata": {"name": "auto", "namespace": "flux-system", "generation": 1},
            "spec": {
                "interval": "1m",
                "sourceRef": {"kind": "GitRepository", "name": "repo"},
                "git": {"commit": commit},
            },
        }
    )


def _result(tmp_path: Path) -> SetterResult:
    root = _tree(tmp_path, {"apps/deploy.yaml": DEPLOYMENT, "apps/values.yml": VALUES})
    return apply_setters(root, "apps", POLICIES)


def test_message_template_with_changes_file_changes_and_values(tmp_path: Path) -> None:
    template = (
        "[{{ .Values.env }}] update by {{ .AutomationObject }}\n"
        "{{ range $file, $objects := .Changed.FileChanges -}}\n"
        "{{ $file }}:\n"
        "{{- range $object, $changes := $objects }}\n"
        "  {{ $object.Kind }} {{ $object.Name }}:\n"
        "{{- range $changes }} {{ .OldValue }} -> {{ .NewValue }};{{ end }}\n"
        "{{- end }}\n"
        "{{ end -}}\n"
        "{{ len .Changed.Changes }} changes"
    )
    auto = _automation(template, {"env": "prod"})
    text = render_message(template, auto, _result(tmp_path))
    assert text == (
        "[prod] update by flux-system/auto\n"
        "apps/deploy.yaml:\n"
        "  Deployment app: ghcr.io/org/app:1.0.0 -> ghcr.io/org/app:1.2.0;\n"
        "apps/values.yml:\n"
        "   : old.example/app -> ghcr.io/org/app; 1.0.0 -> 1.2.0;\n"
        "3 changes"
    )


def test_older_updated_fields_and_the_default(tmp_path: Path) -> None:
    template = "{{ range .Updated.Images }}- {{ . }}\n{{ end }}"
    auto = _automation(template)
    text = render_message(template, auto, _result(tmp_path))
    assert text == "- ghcr.io/org/app:1.2.0\n- ghcr.io/org/app\n- 1.2.0\n"
    empty = _automation("{{ if .Values.x }}x{{ end }}")
    assert render_message("{{ if .Values.x }}x{{ end }}", empty, _result(tmp_path)) == (
        DEFAULT_MESSAGE
    )


def test_a_template_that_fails_is_an_error(tmp_path: Path) -> None:
    auto = _automation("{{ nope }}")
    with pytest.raises(TemplateError):
        render_message("{{ nope }}", auto, _result(tmp_path))
