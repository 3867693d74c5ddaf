"""`gitsail image set` against the real kustomize, git server and registry."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gitsail.dev.gitserver import Workdir, git
from gitsail.dev.registry import Registry
from gitsail.toolchain import find_binary
from gitsail.workflow.imageref import parse_update
from gitsail.workflow.imageset import plan_image_set, write_edits
from tests.integration.workflow.conftest import gitsail, push_image, remote_file

pytestmark = pytest.mark.integration

DIGEST = "sha256:" + "0123456789abcdef" * 4
STAGING = "apps/overlays/staging/kustomization.yaml"

KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: []
# images CI bumps
images:
  - name: myregistry.io/myapp
    newTag: 1.0.0 # tested in staging
  - name: pinned/by-digest
    digest: sha256:1111111111111111111111111111111111111111111111111111111111111111
"""


def _images(path: Path) -> dict[str, dict[str, str]]:
    doc = yaml.safe_load(path.read_text())
    return {
        entry["name"]: {k: str(v) for k, v in entry.items()} for entry in doc.get("images") or []
    }


@pytest.mark.parametrize(
    "argument",
    [
        "myregistry.io/myapp:1.2.0",
        f"myregistry.io/myapp@{DIGEST}",
        "pinned/by-digest:2.0.0",
        "brand/new:0.1.0",
        f"brand/new@{DIGEST}",
        "myregistry.io/myapp=ghcr.io/org/myapp:1.3.0",
        "brand/new=ghcr.io/org/new:3",
        f"myregistry.io/myapp:1.4.0@{DIGEST}",
    ],
)
def test_images_agree_with_kustomize_edit_set_image(tmp_path: Path, argument: str) -> None:
    theirs, ours = tmp_path / "kustomize", tmp_path / "gitsail"
    for directory in (theirs, ours):
        directory.mkdir()
        (directory / "kustomization.yaml").write_text(KUSTOMIZATION)
    subprocess.run(
        [str(find_binary("kustomize")), "edit", "set", "image", argument],
        cwd=theirs,
        check=True,
        capture_output=True,
        timeout=60,
    )
    write_edits(plan_image_set(ours, parse_update(argument)).edits)
    assert _images(ours / "kustomization.yaml") == _images(theirs / "kustomization.yaml")
    kept = (ours / "kustomization.yaml").read_text()
    assert "# images CI bumps\n" in kept  # and kustomize's own rewrite drops comments


def test_image_set_commits_and_pushes_one_line(checkout: Workdir) -> None:
    before = (checkout.path / STAGING).read_text()
    done = gitsail(
        "image", "set", "apps/overlays/staging", "myregistry.io/myapp:1.2.0",
        "--push", "--no-verify", cwd=checkout.path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert remote_file(checkout, "main", STAGING) == before.replace(
        "newTag: 1.0.0", "newTag: 1.2.0"
    )
    message = git("log", "-1", "--format=%s", "origin/main", cwd=checkout.path).strip()
    assert message == ("chore(deploy): set myregistry.io/myapp to 1.2.0 in apps/overlays/staging")
    changed = git("show", "--name-only", "--format=", "origin/main", cwd=checkout.path).split()
    assert changed == [STAGING]


def test_image_set_on_a_new_branch_leaves_main_alone(checkout: Workdir) -> None:
    main_before = git("rev-parse", "HEAD", cwd=checkout.path).strip()
    done = gitsail(
        "image", "set", "apps/overlays/staging", "myregistry.io/myapp:1.2.0",
        "--branch", "bump/myapp-1.2.0", "--push", "--no-verify", "-o", "json",
        cwd=checkout.path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"branch": "bump/myapp-1.2.0"' in done.stdout
    assert "newTag: 1.2.0" in remote_file(checkout, "bump/myapp-1.2.0", STAGING)
    heads = git("ls-remote", "--heads", "origin", cwd=checkout.path)
    assert f"{main_before}\trefs/heads/main" in heads


@pytest.mark.parametrize("branch", ["bad..name", "-f", "x@{-1}", "a b", "refs/heads/../x"])
def test_invalid_branch_names_are_refused_before_any_write(checkout: Workdir, branch: str) -> None:
    before = (checkout.path / STAGING).read_text()
    done = gitsail(
        "image", "set", "apps/overlays/staging", "myregistry.io/myapp:1.2.0",
        f"--branch={branch}", "--no-verify", cwd=checkout.path,
    )  # fmt: skip
    assert done.returncode == 1
    assert "not a valid branch name" in done.stderr
    assert (checkout.path / STAGING).read_text() == before
    assert git("status", "--porcelain", cwd=checkout.path) == ""


def test_uncommitted_changes_in_the_file_are_not_swept_into_the_commit(
    checkout: Workdir,
) -> None:
    path = checkout.path / STAGING
    path.write_text(path.read_text() + "# a local note\n")
    done = gitsail(
        "image", "set", "apps/overlays/staging", "myregistry.io/myapp:1.2.0",
        "--commit", "--no-verify", cwd=checkout.path,
    )  # fmt: skip
    assert done.returncode == 1
    assert "uncommitted changes" in done.stderr
    assert "newTag: 1.0.0" in path.read_text()


def test_a_tag_missing_from_the_registry_is_refused(
    checkout: Workdir, image_registry: Registry
) -> None:
    name = f"{image_registry.host}/team/myapp"
    pushed = push_image(image_registry, "team/myapp", "1.2.0")
    overlay = checkout.path / "apps/overlays/staging"
    done = gitsail("image", "set", str(overlay), f"{name}:1.3.0", cwd=checkout.path)
    assert done.returncode == 1
    assert "does not exist" in done.stderr
    assert "--no-verify" in done.stderr
    assert name not in (overlay / "kustomization.yaml").read_text()

    done = gitsail("image", "set", str(overlay), f"{name}:1.2.0", cwd=checkout.path)
    assert done.returncode == 0, done.stderr
    assert _images(overlay / "kustomization.yaml")[name] == {"name": name, "newTag": "1.2.0"}

    done = gitsail("image", "set", str(overlay), f"{name}@{pushed}", cwd=checkout.path)
    assert done.returncode == 0, done.stderr
    assert _images(overlay / "kustomization.yaml")[name] == {"name": name, "digest": pushed}

    done = gitsail("image", "set", str(overlay), f"{name}@{DIGEST}", cwd=checkout.path)
    assert done.returncode == 1  # a digest the registry does not have

    done = gitsail("image", "set", str(overlay), f"{name}:9.9.9", "--no-verify", cwd=checkout.path)
    assert done.returncode == 0, done.stderr


def test_helm_values_with_setter_markers_keep_every_other_byte(
    checkout: Workdir, tmp_path: Path
) -> None:
    values = checkout.path / "apps/helm/production/values.yaml"
    values.parent.mkdir(parents=True)
    text = (
        "# production values\n"
        "image:\n"
        '  repository: "myregistry.io/myapp"   # the app\n'
        '  tag: "1.0.0" # {"$imagepolicy": "flux-system:myapp:tag"}\n'
        "resources:\n"
        "  limits: {cpu: 500m}\n"
    )
    values.write_text(text)
    git("add", "--all", cwd=checkout.path)
    git("commit", "-qm", "helm env", cwd=checkout.path)
    done = gitsail(
        "image", "set", "apps/helm/production", "myregistry.io/myapp:1.2.0",
        "--policy", "flux-system:myapp", "--commit", "--no-verify", cwd=checkout.path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert values.read_text() == text.replace('"1.0.0"', '"1.2.0"')
    shutil.rmtree(tmp_path, ignore_errors=True)
